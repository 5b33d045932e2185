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
