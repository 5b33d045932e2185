//! `trainer sample`: a grid of images from a checkpoint's generator.

use super::{check_truncation, require_extension, SampleArgs};
use crate::train::parse_device;
use anyhow::{bail, Result};
use candle_core::DType;
use wgan_models::images::{grid, save_png, BatchShape};

/// Most images `trainer sample` draws into one grid.
const MAX_SAMPLES: usize = 10_000;

pub(super) fn sample(args: &SampleArgs) -> Result<()> {
    if args.n == 0 || args.n > MAX_SAMPLES {
        bail!(
            "--n must be between 1 and {MAX_SAMPLES} (one grid); for more images use `runtime gen`"
        );
    }
    require_extension(&args.out, "png", "the grid is written as PNG")?;
    check_truncation(args.truncation)?;
    let dir = wgan_models::checkpoint::resolve(&args.checkpoint)?;
    wgan_models::output::check_not_an_input("--out", &args.out, &[&dir])?;
    let device = parse_device(&args.device)?;
    let mut loaded = wgan_models::checkpoint::load_generator(
        &args.checkpoint,
        args.weights,
        DType::F32,
        &device,
    )?;
    let images = crate::eval::generate(
        &mut loaded.generator,
        args.seed,
        args.truncation,
        args.n,
        &device,
    )?;
    let header = &loaded.header;
    let p = header.preset()?;
    let shape = BatchShape {
        n: args.n,
        channels: p.channels,
        height: p.image_size,
        width: p.image_size,
    };
    save_png(&grid(&images, shape, None)?, &args.out)?;
    eprintln!(
        "wrote {} ({} images, step {}, {} generator, seed {}{})",
        args.out.display(),
        args.n,
        header.step,
        loaded.weights_name(),
        args.seed,
        args.truncation
            .map(|psi| format!(", truncation {psi}"))
            .unwrap_or_default()
    );
    Ok(())
}
