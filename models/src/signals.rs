//! Signals, handled the same way in every binary (see ARCHITECTURE.md, CLI conventions):
//!
//! - `SIGXFSZ` is ignored, so that a file-size limit (`ulimit -f`) is an ordinary write error
//!   (`EFBIG`, "File too large") that the writer reports, and the atomic writes of
//!   [`crate::output`] leave the previous file in place, as they do on a full disk.
//! - `SIGINT`, `SIGTERM` and `SIGHUP` remove the temporary files and folders the process is
//!   writing ([`crate::output::remove_temp_files_and_exit`]) and exit with status 128 + the signal
//!   number (130, 143, 129), as the default action would, minus the leftovers.
//! - A binary that can stop cleanly (`trainer train` and `resume`) asks for
//!   [`graceful_stop`]: the first of those signals then only sets a flag (the trainer saves a
//!   checkpoint and exits 0); a second one exits at once as above.
//!
//! - A binary on an async runtime (`runtime serve`) receives those three itself
//!   (`tokio::signal`) and calls [`leave_to_caller`]; it keeps the same policy: a graceful stop
//!   on the first, [`exit_on_second`] on the second.
//!
//! The signals are received by a thread of their own (signal-hook's iterator), so the clean-up
//! runs as ordinary code, not in a signal handler.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// What the first signal does when a graceful stop was asked for.
struct Graceful {
    flag: Arc<AtomicBool>,
    /// Printed on the first signal (after the signal's name).
    first: &'static str,
    /// Printed on the second signal, before exiting.
    second: &'static str,
}

static GRACEFUL: OnceLock<Graceful> = OnceLock::new();

/// Set by [`leave_to_caller`]: the signal thread then ignores SIGINT, SIGTERM and SIGHUP.
static LEFT_TO_CALLER: AtomicBool = AtomicBool::new(false);

/// Installs the policy of the module documentation. Called once by [`crate::cli::main`].
pub fn install() {
    #[cfg(unix)]
    unix::install();
}

/// Makes the first `SIGINT`, `SIGTERM` or `SIGHUP` set the returned flag (printing the
/// signal's name and `first`) instead of exiting; a second one prints `second` and exits with
/// 128 + its number. The flag is shared by every call.
pub fn graceful_stop(first: &'static str, second: &'static str) -> Arc<AtomicBool> {
    GRACEFUL
        .get_or_init(|| Graceful {
            flag: Arc::new(AtomicBool::new(false)),
            first,
            second,
        })
        .flag
        .clone()
}

/// Leaves `SIGINT`, `SIGTERM` and `SIGHUP` to the caller, which has started receiving them
/// itself (with `tokio::signal`, say; start receiving first, so that none is lost in between).
/// The caller follows the policy of the module documentation.
pub fn leave_to_caller() {
    LEFT_TO_CALLER.store(true, Ordering::SeqCst);
}

/// The second stop signal's action: prints `second` after the signal's name, removes the
/// temporary files and exits with 128 + `signal`.
pub fn exit_on_second(signal: i32, second: &str) -> ! {
    eprintln!("\nsecond signal, {}: {second}", name(signal));
    crate::output::remove_temp_files_and_exit(128 + signal)
}

/// The conventional name of a signal number.
pub fn name(signal: i32) -> &'static str {
    match signal {
        1 => "SIGHUP",
        2 => "SIGINT (Ctrl-C)",
        15 => "SIGTERM",
        _ => "signal",
    }
}

/// Reacts to `signal`: returns when it only set the graceful-stop flag, exits otherwise.
fn on_signal(signal: i32) {
    if LEFT_TO_CALLER.load(Ordering::SeqCst) {
        return;
    }
    if let Some(g) = GRACEFUL.get() {
        if !g.flag.swap(true, Ordering::SeqCst) {
            eprintln!("\n{}: {}", name(signal), g.first);
            return;
        }
        exit_on_second(signal, g.second);
    }
    crate::output::remove_temp_files_and_exit(128 + signal);
}

#[cfg(unix)]
mod unix {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;

    pub fn install() {
        // SAFETY: setting a signal's disposition to "ignore" has no preconditions.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        }
        // Without the handlers the signals keep their default action (exit, leftovers and all).
        let Ok(mut signals) = Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            return;
        };
        let _ = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    super::on_signal(signal);
                }
            });
    }
}
