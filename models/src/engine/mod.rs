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
//! im2col/col2im; normalisations, activations and biases are fused single passes — the kernels
//! of [`crate::kernels`], which the runtime's native backend shares.

mod critic;
mod generator;
mod plan;
mod weights;

pub use crate::kernels::{nchw_to_nhwc, nhwc_to_nchw};
pub use critic::CriticEngine;
pub use generator::{BatchStats, GeneratorEngine};
pub use weights::{to_gradients, LayerGrads, LayerWeights, NetWeights};

pub(crate) use crate::kernels::sized;

/// The engines' float types: the kernels' ([`crate::kernels::Real`]) that candle also holds
/// (`f32` for training, `f64` for checks).
pub trait Real: crate::kernels::Real + candle_core::WithDType {}

impl<T: crate::kernels::Real + candle_core::WithDType> Real for T {}

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

#[cfg(test)]
mod tests;
