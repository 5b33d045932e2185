//! Differentiable building blocks on channels-last (`[N, H, W, C]`) activations. Every
//! function here is made of candle tensor ops whose gradients are themselves differentiable,
//! so the critic's gradient penalty can be back-propagated (second order).

use crate::conv;
use crate::rank_sum::RankSum;
use crate::reduce::{expand_mid, sum_mid};
use crate::spec::{Activation, LayerKind, LayerSpec, BN_MOMENTUM, LEAKY_SLOPE, NORM_EPS};
use candle_core::{Result, Tensor};

/// Training mode (BatchNorm uses and updates batch statistics) or inference mode (BatchNorm
/// uses its running statistics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// The layer's convolution (`[N, H, W, C]` in, `[N, H', W', C']` out; PyTorch-layout
/// weights) with its optional bias.
pub fn convolution(
    x: &Tensor,
    spec: &LayerSpec,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let y = match spec.kind {
        LayerKind::Conv => conv::conv2d(x, weight, spec.stride, spec.padding)?,
        LayerKind::ConvTranspose => conv::conv_transpose2d(x, weight, spec.stride, spec.padding)?,
    };
    match bias {
        Some(b) => {
            let (n, h, w, c) = y.dims4()?;
            (y.reshape((1, n * h * w, c))? + expand_mid(&b.reshape((1, 1, c))?, n * h * w)?)?
                .reshape((n, h, w, c))
        }
        None => Ok(y),
    }
}

/// Per-channel `x · γ + β` on `[N, H, W, C]`.
fn channel_affine(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    let m = n * h * w;
    let g = expand_mid(&gamma.reshape((1, 1, c))?, m)?;
    let b = expand_mid(&beta.reshape((1, 1, c))?, m)?;
    ((x.reshape((1, m, c))? * g)? + b)?.reshape((n, h, w, c))
}

/// Normalises `x` `[A, M, C]` over `M` with the biased variance: returns the normalised
/// tensor, the mean `[A, 1, C]` and the variance `[A, 1, C]`. With `across`, the `M` rows are
/// this rank's equal part of a group spread over the ranks, and the statistics are the whole
/// group's (two sums over the ranks: the mean, then the squared deviations from it).
fn normalise_mid(x: &Tensor, across: Option<&RankSum>) -> Result<(Tensor, Tensor, Tensor)> {
    let (_, m, _) = x.dims3()?;
    let over_ranks = |t: Tensor| match across {
        Some(r) => r.sum(&t),
        None => Ok(t),
    };
    let count = (m * across.map_or(1, RankSum::ranks)) as f64;
    let mean = (over_ranks(sum_mid(x)?)? / count)?;
    let centred = (x - expand_mid(&mean, m)?)?;
    let var = (over_ranks(sum_mid(&centred.sqr()?)?)? / count)?;
    let inv_std = (var.clone() + NORM_EPS)?.sqrt()?.recip()?;
    Ok(((centred * expand_mid(&inv_std, m)?)?, mean, var))
}

/// Batch statistics of a BatchNorm in training mode.
pub struct BatchStats {
    /// Per-channel mean, `[C]`.
    pub mean: Tensor,
    /// Per-channel unbiased variance, `[C]` (what PyTorch puts in `running_var`).
    pub var_unbiased: Tensor,
}

/// BatchNorm over (N, H, W) with the biased batch variance, as PyTorch does in training. With
/// `across`, over the rows of every rank (PyTorch's SyncBatchNorm; each rank holds an equal
/// part of the batch), and the statistics returned are the whole batch's.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    across: Option<&RankSum>,
) -> Result<(Tensor, BatchStats)> {
    let (n, h, w, c) = x.dims4()?;
    let (y, mean, var) = normalise_mid(&x.reshape((1, n * h * w, c))?, across)?;
    let count = (n * h * w * across.map_or(1, RankSum::ranks)) as f64;
    let stats = BatchStats {
        mean: mean.flatten_all()?.detach(),
        var_unbiased: (var.flatten_all()?.detach() * (count / (count - 1.0).max(1.0)))?,
    };
    Ok((
        channel_affine(&y.reshape((n, h, w, c))?, gamma, beta)?,
        stats,
    ))
}

/// BatchNorm with running statistics (inference).
pub fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
) -> Result<Tensor> {
    // Folded into one per-channel affine map: γ/σ and β − μ·γ/σ.
    let scale = (gamma / (var + NORM_EPS)?.sqrt()?)?;
    let shift = (beta - (mean * &scale)?)?;
    channel_affine(x, &scale, &shift)
}

/// New running statistic: `(1 − momentum) · running + momentum · batch`.
pub fn running_update(running: &Tensor, batch: &Tensor) -> Result<Tensor> {
    (running * (1.0 - BN_MOMENTUM))? + (batch * BN_MOMENTUM)?
}

/// InstanceNorm (per sample and channel over H, W, biased variance) with affine γ, β.
pub fn instance_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    let (y, _, _) = normalise_mid(&x.reshape((n, h * w, c))?, None)?;
    channel_affine(&y.reshape((n, h, w, c))?, gamma, beta)
}

/// Leaky ReLU as `max(x, 0) + s · min(x, 0)`, which candle differentiates twice correctly.
pub fn leaky_relu(x: &Tensor) -> Result<Tensor> {
    let zeros = x.zeros_like()?;
    x.maximum(&zeros)? + (x.minimum(&zeros)? * LEAKY_SLOPE)?
}

/// Applies `a`.
pub fn activation(x: &Tensor, a: Activation) -> Result<Tensor> {
    match a {
        Activation::None => Ok(x.clone()),
        Activation::Relu => x.relu(),
        Activation::LeakyRelu => leaky_relu(x),
        Activation::Tanh => x.tanh(),
    }
}
