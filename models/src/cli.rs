//! The conventions every binary of the workspace shares (`trainer`, `export`, `runtime`; see
//! ARCHITECTURE.md): one exit path, one error format, one way to print results.
//!
//! - Exit status [`EXIT_OK`] (0) on success, [`EXIT_ERROR`] (2) on any error; the text of
//!   [`EXIT_STATUS_HELP`] ends every `--help`.
//! - A usage error is clap's whole message on stderr (it names the missing or bad argument,
//!   then shows the usage line or points to `--help`); `--help` and `--version` go to stdout.
//! - Any other error is one line on stderr, `error: ` and the cause chain joined by `: `.
//! - Results go to stdout through [`outln!`](crate::outln), which returns the write error
//!   instead of panicking: when the reader of a pipe goes away (`runtime info | head -1`), the
//!   binary stops quietly with status 0, as `grep` or `rg` do.
//! - `NAME completions SHELL` prints the shell completion script of the binary
//!   ([`CompletionsArgs`], clap_complete), as ripgrep ships its own.
//! - Signals as [`crate::signals`] says: `SIGINT`/`SIGTERM`/`SIGHUP` remove the process's
//!   temporary files and exit 130/143/129; `SIGXFSZ` is ignored (a file-size limit is an
//!   ordinary write error).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::ErrorKind;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

/// Exit status of a successful run.
pub const EXIT_OK: u8 = 0;
/// Exit status of every error: bad arguments, bad input, a failed run.
pub const EXIT_ERROR: u8 = 2;
/// The line about exit statuses at the end of every binary's `--help`.
pub const EXIT_STATUS_HELP: &str =
    "Exit status: 0 on success, 2 on any error (bad arguments, bad input, a failed run).";

/// Parses the command line as `C` and runs `run` on it, reporting the outcome as described in
/// the module documentation. The body of every binary's `main`.
pub fn main<C: clap::Parser>(run: impl FnOnce(C) -> anyhow::Result<()>) -> ExitCode {
    crate::signals::install();
    match C::try_parse() {
        Ok(cli) => report(run(cli)),
        Err(e) => usage(e),
    }
}

/// Prints a clap outcome whole: help and version on stdout (status 0), usage errors on stderr
/// (status 2).
pub fn usage(e: clap::Error) -> ExitCode {
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::from(EXIT_ERROR)
    } else {
        ExitCode::from(EXIT_OK)
    }
}

/// The exit status of a run's result; an error is printed as one `error:` line first. A
/// broken pipe (the reader of stdout went away) is a quiet success.
pub fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) if is_broken_pipe(&e) => ExitCode::from(EXIT_OK),
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Whether an I/O error in `e`'s cause chain is a broken pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == ErrorKind::BrokenPipe)
    })
}

/// An error's cause chain on one line: the causes joined by `: `, line breaks inside a cause
/// replaced by spaces, and a cause left out when the text before it already ends with it
/// (libraries that wrap an I/O error often repeat its message: "…: File too large: File too
/// large").
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if text.is_empty() || out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// `println!` that returns the write error (`std::io::Result<()>`) instead of panicking, so a
/// closed pipe ends the binary quietly through [`report`]. Use as `outln!("…")?;`.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        ::std::writeln!(::std::io::stdout().lock(), $($arg)*)
    }};
}

/// The binaries' global allocator: the system's, except that an allocation the system refuses
/// (out of memory, `ulimit -v`) ends the process with one `error:` line, its temporary files
/// removed and exit status 2, where Rust's default prints a message and aborts (status 134,
/// temporaries left behind). Inside [`crate::limits::fallibly`] (the servers' per-request
/// buffers, [`crate::limits::zeroed`]) a refusal goes back to the caller instead. A few lines
/// of our own because the standard hook for this (`set_alloc_error_hook`) is not stable Rust.
///
/// Each binary declares it: `#[global_allocator] static ALLOC: ExitOnOutOfMemory =
/// ExitOnOutOfMemory;`.
pub struct ExitOnOutOfMemory;

/// Set once an allocation failure is being reported, so that a second one (while reporting)
/// exits at once.
static OUT_OF_MEMORY: AtomicBool = AtomicBool::new(false);

// SAFETY: every method forwards to the system allocator with the same arguments and returns
// what it returns; only a null result is acted on, and that never returns.
unsafe impl GlobalAlloc for ExitOnOutOfMemory {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            refused(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            refused(layout.size());
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            refused(new_size);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// A refused allocation of `size` bytes: back to the caller inside a fallible section, else
/// the end of the process (see [`ExitOnOutOfMemory`]).
fn refused(size: usize) {
    if crate::limits::in_fallible_section() {
        return;
    }
    if OUT_OF_MEMORY.swap(true, Ordering::SeqCst) {
        // Reporting the first failure needed memory that is not there either.
        // SAFETY: _exit ends the process without running anything else.
        unsafe { libc::_exit(EXIT_ERROR as i32) }
    }
    // Formatted into a buffer on the stack: the heap is what just failed.
    let mut line = StackLine::default();
    let _ = std::fmt::Write::write_fmt(
        &mut line,
        format_args!(
            "error: out of memory: the system refused {} MiB ({size} bytes); use smaller sizes (--batch-size, --n) or allow the process more memory\n",
            size >> 20
        ),
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.bytes());
    crate::output::try_remove_temp_files_and_exit(EXIT_ERROR as i32)
}

/// A line of text in a fixed buffer (longer text is cut).
struct StackLine {
    buf: [u8; 256],
    len: usize,
}

impl Default for StackLine {
    fn default() -> Self {
        Self {
            buf: [0; 256],
            len: 0,
        }
    }
}

impl StackLine {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Write for StackLine {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn errors_are_one_line_and_broken_pipes_are_quiet() {
        let e = anyhow::anyhow!("disk full\nretry later").context("cannot write out.png");
        assert_eq!(one_line(&e), "cannot write out.png: disk full retry later");
        // A wrapper that repeats its source's message is said once.
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "I/O error: {}", self.0)
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let full = std::io::Error::other("No space left on device");
        let twice = anyhow::Error::new(Wrapper(full)).context("cannot write g.safetensors");
        assert_eq!(
            one_line(&twice),
            "cannot write g.safetensors: I/O error: No space left on device"
        );
        assert!(!is_broken_pipe(&e));
        let pipe: anyhow::Result<()> =
            Err(std::io::Error::from(ErrorKind::BrokenPipe)).context("writing the report");
        let pipe = pipe.unwrap_err();
        assert!(is_broken_pipe(&pipe));
        assert_eq!(report(Err(pipe)), ExitCode::from(EXIT_OK));
        assert_eq!(report(Err(e)), ExitCode::from(EXIT_ERROR));
    }

    #[derive(clap::Parser, Debug)]
    struct Args {
        #[arg(long)]
        checkpoint: String,
    }

    #[test]
    fn usage_errors_name_the_missing_argument() {
        use clap::Parser;
        let e = Args::try_parse_from(["bin"]).unwrap_err();
        assert!(e.use_stderr());
        assert!(
            e.render().to_string().contains("--checkpoint"),
            "{}",
            e.render()
        );
        assert_eq!(usage(e), ExitCode::from(EXIT_ERROR));
    }
}

/// `completions SHELL`: the binary's shell completion script, on stdout.
#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell: bash (source it, or put it in /usr/share/bash-completion/completions/NAME),
    /// zsh (a file `_NAME` on the fpath), fish (~/.config/fish/completions/NAME.fish), elvish
    /// or powershell.
    pub shell: clap_complete::Shell,
}

/// Prints the completion script of command line `C` for `args.shell`, under the name the binary
/// was started as (`export` and `wgan-export` complete under their own names).
pub fn print_completions<C: clap::CommandFactory>(args: &CompletionsArgs) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut cmd = C::command();
    let name = std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| cmd.get_name().to_string());
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, name.clone(), &mut script);
    if args.shell == clap_complete::Shell::Bash && name.contains('-') {
        // clap_complete's bash script spells a hyphenated name two ways (clap issue #6421):
        // the dispatch loop sets `wgan__export__subcmd__onnx`, the arms match
        // `wgan__subcmd__export__subcmd__onnx`, so nothing after a subcommand completes.
        // Spell the arms as the loop does.
        let text = String::from_utf8_lossy(&script)
            .replace(&name.replace('-', "__subcmd__"), &name.replace('-', "__"));
        script = text.into_bytes();
    }
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    out.flush()
}
