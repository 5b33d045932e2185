//! Parity of an exported file with candle: the candle generator in eval mode is the reference;
//! tract runs the written file on the same seeded latents ([`wgan_models::latent::latents`]).

use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use std::path::Path;
use tract_onnx::prelude::*;
use wgan_models::latent::latents;
use wgan_models::{Generator, Mode};

/// Largest accepted absolute difference between a runtime's images and candle's.
pub const TOLERANCE: f32 = 1e-4;

/// The images candle's generator makes in eval mode from latents `z` (`n · z_dim` values,
/// `[n, z_dim, 1, 1]`), row-major `[n, C, H, W]`.
pub fn candle_images(generator: &mut Generator, z: &[f32], n: usize) -> Result<Vec<f32>> {
    ensure!(
        z.len() == n * generator.z_dim,
        "{} latent values for {n} × {}",
        z.len(),
        generator.z_dim
    );
    let z = Tensor::from_vec(z.to_vec(), (n, generator.z_dim, 1, 1), &Device::Cpu)?;
    let images = generator.forward(&z, Mode::Eval)?;
    Ok(images
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

/// Largest absolute difference; NaN anywhere counts as infinitely different.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter().zip(b).fold(0f32, |m, (x, y)| {
        let d = (x - y).abs();
        if d.is_nan() {
            f32::INFINITY
        } else {
            m.max(d)
        }
    })
}

/// Result of [`verify_with_tract`].
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyReport {
    pub seed: u64,
    /// `(batch size, max abs diff)` per batch size run.
    pub batches: Vec<(usize, f32)>,
    /// The largest of them.
    pub max_abs_diff: f32,
}

impl VerifyReport {
    /// Whether every batch is within [`TOLERANCE`].
    pub fn passed(&self) -> bool {
        self.max_abs_diff <= TOLERANCE
    }
}

/// Runs the ONNX file at `path` through tract for each batch size in `batches` on the latents
/// of `seed`, and compares the images with candle's (`generator` in eval mode). Errors when
/// tract cannot load or run the file or when an output has the wrong shape; a numeric
/// difference is reported, not an error (see [`VerifyReport::passed`]).
pub fn verify_with_tract(
    path: &Path,
    generator: &mut Generator,
    seed: u64,
    batches: &[usize],
) -> Result<VerifyReport> {
    ensure!(!batches.is_empty(), "no batch size to verify");
    let plan = tract_onnx::onnx()
        .model_for_path(path)
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .with_context(|| format!("tract cannot load {}", path.display()))?;
    let z_dim = generator.z_dim;
    let mut out = Vec::with_capacity(batches.len());
    for &n in batches {
        let z = latents(seed, n, z_dim);
        let expected = candle_images(generator, &z, n)?;
        let input = tract_ndarray::Array4::from_shape_vec((n, z_dim, 1, 1), z)?.into_tensor();
        let result = plan
            .run(tvec![input.into_tvalue()])
            .with_context(|| format!("tract failed on a batch of {n}"))?;
        let image = result[0].to_plain_array_view::<f32>()?;
        let want = [
            n,
            generator.spec.layers.last().map_or(0, |l| l.out_channels),
        ];
        if image.ndim() != 4 || image.shape()[..2] != want[..] || image.len() != expected.len() {
            bail!(
                "tract's output has shape {:?}, candle's has {} values for a batch of {n}",
                image.shape(),
                expected.len()
            );
        }
        let got: Vec<f32> = image.iter().copied().collect();
        out.push((n, max_abs_diff(&got, &expected)));
    }
    let max = out.iter().map(|&(_, d)| d).fold(0f32, f32::max);
    Ok(VerifyReport {
        seed,
        batches: out,
        max_abs_diff: max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_and_length_mismatch_are_infinite() {
        assert_eq!(max_abs_diff(&[1.0, 2.0], &[1.0, 2.5]), 0.5);
        assert_eq!(max_abs_diff(&[f32::NAN], &[0.0]), f32::INFINITY);
        assert_eq!(max_abs_diff(&[0.0], &[0.0, 1.0]), f32::INFINITY);
    }
}
