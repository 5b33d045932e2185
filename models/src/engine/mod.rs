//! Explicit forward and backward passes of the networks on the CPU, second order included.
//!
//! candle's autograd can differentiate the gradient penalty (see [`crate::layers`]), but on the
//! CPU it pays for it: every op allocates, the double backward keeps every intermediate
//! gradient alive, and it computes weight gradients nobody reads. This module computes
//! exactly the gradients a WGAN-GP step needs, with hand-derived passes over channels-last
//! buffers that are allocated once and reused:
//!
//! - [`CriticEngine`]: scores, input gradients, and the gradient with respect to the critic's
//!   parameters of `Σᵢ wᵢ·C(xᵢ) + Φ(∇ₓC)` for any differentiable `Φ` of the input gradients
//!   (the gradient penalty is one), by a forward pass, an adjoint pass, the adjoint pass's
//!   own reverse, and one ordinary backward pass.
//! - [`GeneratorEngine`]: the generator in training mode (batch statistics) and its backward
//!   pass.
//!
//! Both are built from the same [`crate::spec::NetSpec`] layer lists as the candle modules and
//! read their weights from the same [`crate::Params`]; tests check them against candle's
//! autograd to second order. Convolutions are GEMMs (the `gemm` crate, as candle uses) around
//! im2col/col2im; normalisations, activations and biases are fused single passes.

mod critic;
mod gemm;
mod generator;
pub(crate) mod kernels;
mod patches;
mod plan;
mod weights;

pub use critic::CriticEngine;
pub use generator::{BatchStats, GeneratorEngine};
pub use weights::{to_gradients, LayerGrads, LayerWeights, NetWeights};

use candle_core::WithDType;

/// The floating-point types the engines run in: `f32` for training, `f64` for checks.
pub trait Real: WithDType + Send + Sync + std::fmt::Debug {
    /// Converts from `f64` (rounding to nearest).
    fn of(v: f64) -> Self {
        <Self as WithDType>::from_f64(v)
    }
    /// Converts to `f64` (exact).
    fn f64(self) -> f64 {
        <Self as WithDType>::to_f64(self)
    }
}

impl Real for f32 {}
impl Real for f64 {}

/// The number of rows of a pass's input of `len` values, `per` per row, after checking that it
/// holds whole rows and that `weights` has one entry per layer of the engine (`layers`).
pub(crate) fn checked_rows<T>(
    net: &str,
    len: usize,
    per: usize,
    weights: &NetWeights<T>,
    layers: usize,
) -> anyhow::Result<usize> {
    anyhow::ensure!(
        len > 0 && len.is_multiple_of(per),
        "{net} input has {len} values, not a multiple of {per}"
    );
    anyhow::ensure!(
        weights.layers.len() == layers,
        "weights for another network"
    );
    Ok(len / per)
}

/// `buf` as a buffer of `len` elements, growing it if needed but never shrinking it (so
/// alternating batch sizes reuse one allocation). The contents are unspecified: every kernel
/// here writes all of its output.
pub(crate) fn sized<T: Real>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    if buf.len() < len {
        buf.resize(len, T::zero());
    }
    &mut buf[..len]
}

/// `[N, C, H, W]` → `[N, H, W, C]`.
pub fn nchw_to_nhwc<T: Real>(x: &[T], n: usize, c: usize, hw: usize) -> Vec<T> {
    if c == 1 {
        return x.to_vec();
    }
    let mut out = vec![T::zero(); x.len()];
    for i in 0..n {
        let (src, dst) = (&x[i * c * hw..][..c * hw], &mut out[i * c * hw..][..c * hw]);
        for ch in 0..c {
            for p in 0..hw {
                dst[p * c + ch] = src[ch * hw + p];
            }
        }
    }
    out
}

/// `[N, H, W, C]` → `[N, C, H, W]`.
pub fn nhwc_to_nchw<T: Real>(x: &[T], n: usize, c: usize, hw: usize) -> Vec<T> {
    if c == 1 {
        return x.to_vec();
    }
    let mut out = vec![T::zero(); x.len()];
    for i in 0..n {
        let (src, dst) = (&x[i * c * hw..][..c * hw], &mut out[i * c * hw..][..c * hw]);
        for p in 0..hw {
            for ch in 0..c {
                dst[ch * hw + p] = src[p * c + ch];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
