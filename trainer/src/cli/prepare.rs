//! `trainer prepare`: a data set decoded once into a prepared file.

use super::PrepareArgs;
use anyhow::{bail, Result};
use wgan_models::outln;

pub(super) fn prepare(args: &PrepareArgs) -> Result<()> {
    use crate::data;
    if !(wgan_models::spec::MIN_IMAGE_SIZE..=wgan_models::spec::MAX_IMAGE_SIZE)
        .contains(&args.image_size)
        || !args.image_size.is_power_of_two()
    {
        bail!(
            "--image-size {} is not a power of two from {} to {} (the sizes the trainer builds)",
            args.image_size,
            wgan_models::spec::MIN_IMAGE_SIZE,
            wgan_models::spec::MAX_IMAGE_SIZE
        );
    }
    if args.channels != 1 && args.channels != 3 {
        bail!("--channels must be 1 or 3");
    }
    if let Some(t) = args.threads {
        wgan_models::limits::check_threads("--threads", t)?;
    }
    wgan_models::output::check_not_an_input("--out", &args.out, &[&args.data])?;
    let source = data::open_source(&args.data, args.format)?;
    let threads = args.threads.unwrap_or_else(data::default_threads);
    let t0 = std::time::Instant::now();
    let report = data::prepare_file(
        source.as_ref(),
        args.channels,
        args.image_size,
        threads,
        &args.out,
        crate::progress::decoding("preparing"),
    )?;
    let secs = t0.elapsed().as_secs_f64();
    if let Some(w) = report.skipped_warning() {
        eprintln!("warning: {w}");
    }
    let bytes = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    outln!(
        "wrote {} ({}, {}) and its sidecar {}: {}",
        args.out.display(),
        wgan_models::limits::human(bytes),
        report.fingerprint,
        data::prepared::sidecar_path(&args.out).display(),
        report.description
    )?;
    outln!(
        "{} images in {secs:.1} s ({:.0} images/s, {threads} thread{}); train on it with: trainer train --data {} --image-size {} --channels {}",
        report.count + report.skipped.len(),
        (report.count + report.skipped.len()) as f64 / secs.max(1e-9),
        if threads == 1 { "" } else { "s" },
        args.out.display(),
        args.image_size,
        args.channels
    )?;
    Ok(())
}
