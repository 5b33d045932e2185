//! Running the `trainer` binary from the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `trainer args…` in `dir` and waits for it.
pub fn trainer(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .current_dir(dir)
        // The binary must enable second-order gradients itself.
        .env_remove("CANDLE_GRAD_DO_NOT_DETACH")
        .output()
        .expect("running trainer")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit code 2, one `error:` line (a usage error: clap's whole message), no panic.
pub fn assert_input_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    // A usage error is clap's whole message (naming the argument, ending in a pointer to --help); any
    // other error is one line.
    let usage = err.contains("try '--help'");
    assert!(
        (usage || lines.len() == 1) && lines[0].starts_with("error:"),
        "expected one error line or a usage error, got: {err}"
    );
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
}

pub const TINY: &[&str] = &[
    "train",
    "--preset",
    "tiny",
    "--batch-size",
    "4",
    "--n-critic",
    "2",
];
