//! `trainer classifier`: the digit classifier `eval` uses, trained and judged.

use super::{require_extension, ClassifierArgs};
use anyhow::{bail, Result};

pub(super) fn classifier(args: &ClassifierArgs) -> Result<()> {
    use crate::classifier::{train, TrainSettings, MIN_ACCURACY};
    require_extension(
        &args.out,
        "safetensors",
        "the weights are written as safetensors",
    )?;
    let settings = TrainSettings {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
    };
    let t0 = std::time::Instant::now();
    let mut accuracy = 0.0;
    let model = train(settings, |r| {
        accuracy = r.held_out_accuracy;
        eprintln!(
            "epoch {:>2}/{} · loss {:.4} · held-out accuracy {:.2} % · {:.0} s",
            r.epoch,
            args.epochs,
            r.train_loss,
            100.0 * r.held_out_accuracy,
            t0.elapsed().as_secs_f64()
        );
    })?;
    model.save(&args.out)?;
    eprintln!(
        "wrote {} · accuracy on the 1000 held-out test digits {:.2} %",
        args.out.display(),
        100.0 * accuracy
    );
    if accuracy < MIN_ACCURACY {
        bail!(
            "held-out accuracy {:.2} % is below the {:.0} % the digit measures need; train longer (--epochs) or with another --seed",
            100.0 * accuracy,
            100.0 * MIN_ACCURACY
        );
    }
    Ok(())
}
