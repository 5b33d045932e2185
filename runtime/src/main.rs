//! `runtime`: generate images with an ONNX generator (native, tract or ONNX Runtime), inspect a
//! model, time it, serve it. Exit statuses and error format are the workspace's CLI
//! conventions ([`wgan_models::cli`]); the command line is [`cli`].

mod cli;

use std::process::ExitCode;

/// Out of memory is an `error:` line and exit status 2, not an abort (see
/// `wgan_models::cli::ExitOnOutOfMemory`).
#[global_allocator]
static ALLOC: wgan_models::cli::ExitOnOutOfMemory = wgan_models::cli::ExitOnOutOfMemory;

fn main() -> ExitCode {
    wgan_models::cli::main(cli::run)
}
