//! The `trainer` command line: the arguments ([`args`]), then one module per command, each of
//! which checks its arguments, calls the module that does the work (`train`, `data`, `eval`,
//! `classifier`, `parity`) and prints.

mod args;
mod check_device;
mod classifier;
mod eval;
mod prepare;
mod sample;
mod train;

pub use args::*;

use crate::train::Trainer;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::ExitCode;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => {
            let ranks = crate::collective::from_environment()?;
            train::drive(Trainer::new_on(args.config()?, args.out.as_deref(), ranks)?)
        }
        Command::Resume(args) => {
            let run = args
                .checkpoint
                .or(args.run_dir)
                .context("resume needs the run: --checkpoint RUN_DIR")?;
            check_exists(&run)?;
            let options = crate::train::ResumeOptions {
                steps: args.steps,
                device: args.device,
                threads: args.threads,
                allow_data_change: args.allow_data_change,
            };
            let ranks = crate::collective::from_environment()?;
            train::drive(Trainer::resume_on(&run, &options, ranks)?)
        }
        Command::Prepare(args) => prepare::prepare(&args),
        Command::Sample(args) => sample::sample(&args),
        Command::Eval(args) => eval::eval(&args),
        Command::Classifier(args) => classifier::classifier(&args),
        Command::CheckDevice(args) => check_device::check_device(&args),
        Command::Completions(args) => Ok(wgan_models::cli::print_completions::<Cli>(&args)?),
    }
}

fn check_exists(p: &Path) -> Result<()> {
    if !p.exists() {
        bail!("{} does not exist", p.display());
    }
    Ok(())
}

/// An error unless `out` ends in `.ext` (any case), saying `why` and what to name the file.
pub(super) fn require_extension(out: &Path, ext: &str, why: &str) -> Result<()> {
    if !out.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext)) {
        bail!("--out {}: {why}; name the file *.{ext}", out.display());
    }
    Ok(())
}

/// `--truncation`, when given, checked before any work.
pub(super) fn check_truncation(truncation: Option<f32>) -> Result<()> {
    match truncation {
        Some(psi) => {
            wgan_models::latent::check_truncation(psi, "--truncation").map_err(anyhow::Error::from)
        }
        None => Ok(()),
    }
}

/// Entry point of the binary: sets up second-order gradients (see
/// [`crate::second_order`]), then parses arguments and runs them under the workspace's CLI
/// conventions ([`wgan_models::cli`]: exit 0 on success, 2 with an `error:` message on any
/// error).
pub fn main() -> ExitCode {
    crate::second_order::pin_first_order_on_this_thread();
    crate::second_order::enable_for_new_threads();
    wgan_models::cli::main(run)
}
