//! Running the `trainer` binary from the integration tests (the exit contract and the binary's
//! path are `wgan_test_support`'s).
#![allow(dead_code, unused_imports)] // each test file uses its own subset

use std::path::Path;
use std::process::{Command, Output};
pub use wgan_test_support::{assert_input_error, binary, stderr};

/// Runs `trainer args…` in `dir` and waits for it.
pub fn trainer(dir: &Path, args: &[&str]) -> Output {
    Command::new(binary("trainer"))
        .args(args)
        .current_dir(dir)
        // The binary must enable second-order gradients itself.
        .env_remove("CANDLE_GRAD_DO_NOT_DETACH")
        .output()
        .expect("running trainer")
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
