//! `trainer train` and `trainer resume`: the run driven with a progress bar (or a line per
//! sampled step when stderr is not a terminal), stopped cleanly by a signal.

use crate::metrics::MetricsRow;
use crate::train::{RunEnd, Trainer};
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The flag a first SIGINT (Ctrl-C), SIGTERM or SIGHUP sets: the run then saves a checkpoint
/// after the current iteration and exits 0. A second one exits at once (see
/// `wgan_models::signals`).
fn stop_flag() -> Arc<AtomicBool> {
    wgan_models::signals::graceful_stop(
        "saving a checkpoint after this iteration (send it again, e.g. Ctrl-C, to quit now)",
        "exiting without a checkpoint",
    )
}

fn progress(trainer: &Trainer) -> ProgressBar {
    let pb = if std::io::stderr().is_terminal() {
        ProgressBar::new(trainer.config.steps)
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:24} {pos}/{len} · ETA {eta} · {msg}",
        )
        .expect("valid template"),
    );
    pb.set_position(trainer.step);
    pb.reset_eta();
    pb
}

/// Iterations per second, or seconds per iteration when slower than one per second.
fn rate(sec_per_iter: f64) -> String {
    if sec_per_iter > 0.0 && sec_per_iter < 1.0 {
        format!("{:.1} it/s", 1.0 / sec_per_iter)
    } else {
        format!("{sec_per_iter:.2} s/it")
    }
}

pub(super) fn drive(mut trainer: Trainer) -> Result<()> {
    let run_dir = trainer.run_dir.clone();
    let stop = stop_flag();
    if trainer.ranks().rank() > 0 {
        // Rank 0 speaks for the run; the others train quietly (errors still print).
        return trainer.run(&stop, |_| {}).map(drop);
    }
    for w in &trainer.warnings {
        eprintln!("warning: {w}");
    }
    let ranks = match trainer.ranks().size() {
        1 => String::new(),
        _ => format!(" · {}", trainer.ranks().describe()),
    };
    eprintln!(
        "run {} · preset {} · {} · device {}{ranks} · steps {}→{}",
        run_dir.display(),
        trainer.preset.name,
        trainer.state().header.dataset,
        trainer.config.device,
        trainer.step,
        trainer.config.steps
    );
    let pb = progress(&trainer);
    let plain = pb.is_hidden();
    let every = trainer.config.sample_every;
    let result = trainer.run(&stop, |r: &MetricsRow| {
        let msg = format!(
            "{} · W {:.3} · GP {:.3} · D {:.3} · G {:.3}",
            rate(r.sec_per_iter),
            r.wasserstein,
            r.penalty,
            r.critic_loss,
            r.generator_loss
        );
        if plain && (r.step.is_multiple_of(every) || r.step == 1) {
            eprintln!("step {} · {msg}", r.step);
        }
        pb.set_message(msg);
        pb.set_position(r.step);
    });
    pb.finish_and_clear();
    match result? {
        RunEnd::Finished => eprintln!(
            "done: {} step{}; samples, checkpoints, metrics.csv and losses.png in {}",
            trainer.step,
            if trainer.step == 1 { "" } else { "s" },
            run_dir.display()
        ),
        RunEnd::Interrupted => eprintln!(
            "stopped at step {}; checkpoint {} saved. Continue with: trainer resume --checkpoint {}",
            trainer.step,
            run_dir
                .join(wgan_models::checkpoint::CHECKPOINTS_DIR)
                .join(crate::checkpoints::dir_name(trainer.step))
                .display(),
            run_dir.display()
        ),
    }
    Ok(())
}
