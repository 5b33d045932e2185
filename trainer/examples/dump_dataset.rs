//! Writes the images `trainer train` trains on, decoded exactly as the trainer decodes them
//! (alpha onto white, shorter side resized, centre crop, rounded to 8 bits, values in [-1, 1],
//! NCHW f32), as one `.npy`, to compare with the tensors another pipeline feeds its model:
//!
//! ```sh
//! cargo run --release -p wgan-trainer --example dump_dataset -- DATA small 3 data.npy
//! ```

use anyhow::{Context, Result};
use std::path::PathBuf;
use wgan_trainer::data::{self, Format};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data_path, preset, channels, out] = args.as_slice() else {
        anyhow::bail!("usage: dump_dataset DATA PRESET CHANNELS OUT.npy");
    };
    let channels: usize = channels.parse().context("CHANNELS is 1 or 3")?;
    let preset = wgan_models::preset(preset, channels)?;
    let set = data::load(
        &PathBuf::from(data_path),
        Format::Auto,
        channels,
        preset.image_size,
    )?;
    let (n, s) = (set.len, preset.image_size);
    wgan_models::npy::write_f32(&PathBuf::from(out), &[n, channels, s, s], &set.images()?)?;
    eprintln!("{}: {n} images → {out}", set.description);
    Ok(())
}
