//! The workspace binaries (`trainer`, `runtime`, `export`) as the tests run them, and the exit
//! contract every binary keeps on bad input: exit 2, one `error:` line naming the problem (or,
//! for a usage error, clap's whole message), no panic, no abort.

use std::path::PathBuf;
use std::process::Output;

/// The workspace binary `name` that cargo builds beside the test executables
/// (`target/<profile>/`): a package's tests get its own binaries; the workspace-level tests
/// need `cargo test --workspace` (`scripts/test.sh`), which builds every one. Panics with the
/// command to run when it is missing.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executables live in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo test --workspace` (scripts/test.sh), which builds every binary",
        path.display()
    );
    path
}

/// Bytes of output as text (lossy).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A finished command's stderr as text.
pub fn stderr(o: &Output) -> String {
    text(&o.stderr)
}

/// Bad input: exit 2, no panic or abort, and either one line (besides `warning:` lines)
/// starting with `error:` or a usage error (clap's whole message, naming the argument and
/// ending in a pointer to `--help`); `needle` is in it.
pub fn assert_input_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_exit_2_without_panic(o, &err);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("warning:"))
        .collect();
    let usage = err.contains("try '--help'");
    assert!(
        (usage || lines.len() == 1) && lines.first().is_some_and(|l| l.starts_with("error:")),
        "expected one error line or a usage error, got:\n{err}"
    );
    assert!(err.contains(needle), "expected {needle:?} in:\n{err}");
}

/// A failure after work began (a disk that fills, a memory limit): exit 2, no panic or abort,
/// and exactly one `error:` line, which contains `needle`; progress lines before it are fine.
pub fn assert_one_error_line(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_exit_2_without_panic(o, &err);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains(needle), "expected {needle:?} in:\n{err}");
}

fn assert_exit_2_without_panic(o: &Output, err: &str) {
    assert_eq!(o.status.code(), Some(2), "expected exit 2, stderr:\n{err}");
    assert!(
        !err.contains("panicked") && !err.contains("memory allocation of"),
        "a panic or an abort:\n{err}"
    );
}
