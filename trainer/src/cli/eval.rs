//! `trainer eval`: a checkpoint (or with `--all` every checkpoint of a run) measured on
//! held-out images, as a table or JSON.

use super::{check_truncation, EvalArgs};
use anyhow::Result;
use wgan_models::outln;

pub(super) fn eval(args: &EvalArgs) -> Result<()> {
    use crate::eval::{self, EvalOptions, HeldOut};
    check_truncation(args.truncation)?;
    let options = EvalOptions {
        held_out: match &args.data {
            Some(p) => HeldOut::Path(p, args.format),
            None => HeldOut::Default,
        },
        n: args.n,
        seed: args.seed,
        truncation: args.truncation,
        device: &args.device,
        weights: args.weights,
        batchnorm: args.batchnorm,
    };
    if !args.all {
        let report = eval::evaluate(&args.checkpoint, &options)?;
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&report)?)?;
        } else {
            outln!("{}", eval::table(&report).trim_end())?;
        }
        return Ok(());
    }
    let run = eval::evaluate_run(&args.checkpoint, &options, |i, total, report, seconds| {
        eprintln!(
            "[{i}/{total}] step {} · {} · {seconds:.1} s",
            report.step,
            eval::headline(report)
        );
        if !args.json {
            outln!("{}", eval::table(report))?;
        }
        Ok(())
    })?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&run.reports)?)?;
    }
    eprintln!(
        "wrote {} and {} ({} checkpoints)",
        run.csv.display(),
        run.png.display(),
        run.reports.len()
    );
    Ok(())
}
