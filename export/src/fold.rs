//! BatchNorm in eval form folded into the preceding convolution.
//!
//! Eval-mode BatchNorm is a per-channel affine map `y = s·x + t` with `s = γ / √(σ² + ε)` and
//! `t = β − μ·s` (running mean μ, running variance σ²; `wgan_models::spec::batch_norm_affine`,
//! the formula the runtime's native backend uses too). After a convolution with weight `W` and
//! bias `b` it equals one convolution with weight `W·s` (scaled along the *output* channel
//! axis: dim 1 of a transposed convolution's `[in, out, k, k]` weight, dim 0 of a
//! convolution's `[out, in, k, k]`) and bias `s·b + t`. Computed in f64, rounded to f32.

use anyhow::{ensure, Result};
use wgan_models::spec::{batch_norm_affine, LayerKind};

/// The eval-form parameters of one BatchNorm, per output channel.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNormValues {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub running_mean: Vec<f32>,
    pub running_var: Vec<f32>,
    pub eps: f64,
}

/// A convolution weight and bias with the BatchNorm folded in.
#[derive(Clone, Debug, PartialEq)]
pub struct Folded {
    /// Same layout and shape as the input weight.
    pub weight: Vec<f32>,
    /// One value per output channel.
    pub bias: Vec<f32>,
}

/// Folds `bn` into a convolution of `kind` with weight `weight` (PyTorch layout, `shape`) and
/// optional `bias`.
pub fn fold_batch_norm(
    kind: LayerKind,
    shape: [usize; 4],
    weight: &[f32],
    bias: Option<&[f32]>,
    bn: &BatchNormValues,
) -> Result<Folded> {
    let out_axis = match kind {
        LayerKind::ConvTranspose => 1,
        LayerKind::Conv => 0,
    };
    let out_channels = shape[out_axis];
    ensure!(
        weight.len() == shape.iter().product::<usize>(),
        "weight has {} values, shape {shape:?}",
        weight.len()
    );
    for (what, v) in [
        ("γ", &bn.gamma),
        ("β", &bn.beta),
        ("running mean", &bn.running_mean),
        ("running var", &bn.running_var),
    ] {
        ensure!(
            v.len() == out_channels,
            "BatchNorm {what} has {} values for {out_channels} channels",
            v.len()
        );
    }
    if let Some(b) = bias {
        ensure!(
            b.len() == out_channels,
            "bias has {} values for {out_channels} channels",
            b.len()
        );
    }
    let (scale, shift) = batch_norm_affine(
        &bn.gamma,
        &bn.beta,
        &bn.running_mean,
        &bn.running_var,
        bn.eps,
    );
    let taps = shape[2] * shape[3];
    let folded_weight = weight
        .iter()
        .enumerate()
        .map(|(idx, &w)| {
            let o = match kind {
                LayerKind::ConvTranspose => (idx / taps) % shape[1],
                LayerKind::Conv => idx / (taps * shape[1]),
            };
            (w as f64 * scale[o]) as f32
        })
        .collect();
    let folded_bias = (0..out_channels)
        .map(|o| {
            let b = bias.map_or(0.0, |b| b[o] as f64);
            (scale[o] * b + shift[o]) as f32
        })
        .collect();
    Ok(Folded {
        weight: folded_weight,
        bias: folded_bias,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};
    use wgan_models::latent::Rng;

    /// Eval BatchNorm on NCHW by its definition (independent of the models' layer internals).
    fn batch_norm_eval(
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        mean: &Tensor,
        var: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let c = |t: &Tensor| t.reshape((1, (), 1, 1));
        let inv_std = (c(var)? + 1e-5)?.sqrt()?.recip()?;
        x.broadcast_sub(&c(mean)?)?
            .broadcast_mul(&inv_std)?
            .broadcast_mul(&c(gamma)?)?
            .broadcast_add(&c(beta)?)
    }

    fn randn(rng: &mut Rng, n: usize, scale: f32, offset: f32) -> Vec<f32> {
        (0..n).map(|_| offset + scale * rng.normal_f32()).collect()
    }

    /// conv → BN(eval) in candle equals the folded conv, for both convolution directions.
    #[test]
    fn folding_matches_conv_then_batch_norm() {
        let dev = Device::Cpu;
        let mut rng = Rng::new(11);
        for kind in [LayerKind::ConvTranspose, LayerKind::Conv] {
            for with_bias in [false, true] {
                let (cin, cout, k) = (3, 5, 3);
                let shape = match kind {
                    LayerKind::ConvTranspose => [cin, cout, k, k],
                    LayerKind::Conv => [cout, cin, k, k],
                };
                let w = randn(&mut rng, shape.iter().product(), 0.5, 0.0);
                let b = randn(&mut rng, cout, 0.3, 0.0);
                let bn = BatchNormValues {
                    gamma: randn(&mut rng, cout, 0.5, 1.0),
                    beta: randn(&mut rng, cout, 0.5, 0.0),
                    running_mean: randn(&mut rng, cout, 0.5, 0.0),
                    running_var: randn(&mut rng, cout, 0.3, 0.0)
                        .iter()
                        .map(|v| v.abs() + 0.05)
                        .collect(),
                    eps: 1e-5,
                };
                let bias = with_bias.then_some(b.as_slice());
                let f = fold_batch_norm(kind, shape, &w, bias, &bn).unwrap();

                let x = Tensor::from_vec(
                    randn(&mut rng, 2 * cin * 36, 1.0, 0.0),
                    (2, cin, 6, 6),
                    &dev,
                )
                .unwrap();
                let wt = Tensor::from_vec(w.clone(), &shape, &dev).unwrap();
                let conv = |x: &Tensor, w: &Tensor| match kind {
                    LayerKind::ConvTranspose => x.conv_transpose2d(w, 1, 0, 2, 1).unwrap(),
                    LayerKind::Conv => x.conv2d(w, 1, 1, 1, 1).unwrap(),
                };
                let per_channel = |v: &[f32]| Tensor::from_vec(v.to_vec(), v.len(), &dev).unwrap();
                let mut y = conv(&x, &wt);
                if with_bias {
                    y = y
                        .broadcast_add(&per_channel(&b).reshape((1, cout, 1, 1)).unwrap())
                        .unwrap();
                }
                let reference = batch_norm_eval(
                    &y,
                    &per_channel(&bn.gamma),
                    &per_channel(&bn.beta),
                    &per_channel(&bn.running_mean),
                    &per_channel(&bn.running_var),
                )
                .unwrap();
                let folded = conv(&x, &Tensor::from_vec(f.weight, &shape, &dev).unwrap())
                    .broadcast_add(&per_channel(&f.bias).reshape((1, cout, 1, 1)).unwrap())
                    .unwrap();
                let diff = (reference - folded)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(diff < 1e-5, "{kind:?} bias {with_bias}: {diff}");
            }
        }
    }

    #[test]
    fn mismatched_lengths_are_errors() {
        let bn = BatchNormValues {
            gamma: vec![1.0; 2],
            beta: vec![0.0; 2],
            running_mean: vec![0.0; 2],
            running_var: vec![1.0; 3],
            eps: 1e-5,
        };
        let err = fold_batch_norm(
            LayerKind::ConvTranspose,
            [1, 2, 1, 1],
            &[1.0, 2.0],
            None,
            &bn,
        )
        .unwrap_err();
        assert!(err.to_string().contains("running var"), "{err}");
    }
}
