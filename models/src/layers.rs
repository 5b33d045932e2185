//! Differentiable building blocks on channels-last (`[N, H, W, C]`) activations. Every
//! function here is made of candle tensor ops whose gradients are themselves differentiable,
//! so the critic's gradient penalty can be back-propagated (second order).

use crate::conv;
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
pub fn convolution(x: &Tensor, spec: &LayerSpec, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let y = match spec.kind {
        LayerKind::Conv => conv::conv2d(x, weight, spec.stride, spec.padding)?,
        LayerKind::ConvTranspose => conv::conv_transpose2d(x, weight, spec.stride, spec.padding)?,
    };
    match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, 1, 1, ()))?),
        None => Ok(y),
    }
}

fn channel_affine(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
    x.broadcast_mul(&gamma.reshape((1, 1, 1, ()))?)?.broadcast_add(&beta.reshape((1, 1, 1, ()))?)
}

/// Batch statistics of a BatchNorm in training mode.
pub struct BatchStats {
    /// Per-channel mean, `[C]`.
    pub mean: Tensor,
    /// Per-channel unbiased variance, `[C]` (what PyTorch puts in `running_var`).
    pub var_unbiased: Tensor,
}

/// BatchNorm over (N, H, W) with the biased batch variance, as PyTorch does in training.
pub fn batch_norm_train(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<(Tensor, BatchStats)> {
    let (n, h, w, _c) = x.dims4()?;
    let mean = x.mean_keepdim((0, 1, 2))?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim((0, 1, 2))?;
    let y = centred.broadcast_div(&(var.clone() + NORM_EPS)?.sqrt()?)?;
    let count = (n * h * w) as f64;
    let stats = BatchStats {
        mean: mean.flatten_all()?.detach(),
        var_unbiased: (var.flatten_all()?.detach() * (count / (count - 1.0).max(1.0)))?,
    };
    Ok((channel_affine(&y, gamma, beta)?, stats))
}

/// BatchNorm with running statistics (inference).
pub fn batch_norm_eval(x: &Tensor, gamma: &Tensor, beta: &Tensor, mean: &Tensor, var: &Tensor) -> Result<Tensor> {
    let mean = mean.reshape((1, 1, 1, ()))?;
    let inv_std = (var.reshape((1, 1, 1, ()))? + NORM_EPS)?.sqrt()?.recip()?;
    channel_affine(&x.broadcast_sub(&mean)?.broadcast_mul(&inv_std)?, gamma, beta)
}

/// New running statistic: `(1 − momentum) · running + momentum · batch`.
pub fn running_update(running: &Tensor, batch: &Tensor) -> Result<Tensor> {
    (running * (1.0 - BN_MOMENTUM))? + (batch * BN_MOMENTUM)?
}

/// InstanceNorm (per sample and channel over H, W, biased variance) with affine γ, β.
pub fn instance_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    let flat = x.reshape((n, h * w, c))?;
    let mean = flat.mean_keepdim(1)?;
    let centred = flat.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(1)?;
    let y = centred.broadcast_div(&(var + NORM_EPS)?.sqrt()?)?.reshape((n, h, w, c))?;
    channel_affine(&y, gamma, beta)
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
