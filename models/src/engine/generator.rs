//! The generator's passes in training mode: forward with batch statistics, and backward.
//!
//! Per layer (transposed conv → optional BatchNorm → activation): the transposed convolution
//! is `col2im(x · W)`; its backward is `∂W += xᵀ · im2col(δz)` and `δx = im2col(δz) · Wᵀ`.

use super::plan::LayerPlan;
use super::weights::{LayerGrads, NetWeights};
use super::{checked_rows, sized, Real};
use crate::kernels::gemm::{matmul, Mat};
use crate::kernels::patches::{patch_rows, scatter_patch_chunks, weight_grad_and_through};
use crate::kernels::{
    activation_backward, bias_activation, norm_backward, norm_forward, CrossRank, NormForward,
    NormGrads, NormState,
};
use crate::spec::{LayerKind, NetSpec, Norm, NORM_EPS};
use anyhow::{bail, ensure, Result};

/// Batch statistics of one BatchNorm layer in a training forward.
#[derive(Clone, Debug)]
pub struct BatchStats {
    /// Index of the layer in the spec.
    pub layer: usize,
    /// Per-channel mean, `[C]`.
    pub mean: Vec<f64>,
    /// Per-channel unbiased variance (what PyTorch puts in `running_var`), `[C]`.
    pub var_unbiased: Vec<f64>,
}

/// Explicit passes of a generator in training mode. Buffers live between calls.
pub struct GeneratorEngine<T: Real> {
    plans: Vec<LayerPlan>,
    rows: usize,
    input: Vec<T>,
    outs: Vec<Vec<T>>,
    xhat: Vec<Vec<T>>,
    inv_std: Vec<Vec<T>>,
    /// Patch-matrix scratch of one sample chunk.
    cols: Vec<T>,
    pre_norm: Vec<T>,
    grad_a: Vec<T>,
    grad_b: Vec<T>,
    /// The other ranks of a data-parallel run, whose rows share each BatchNorm's statistics.
    across: Option<std::sync::Arc<dyn CrossRank>>,
}

impl<T: Real> GeneratorEngine<T> {
    /// An engine for `spec` with latents of `z_dim` values (`[N, z_dim, 1, 1]`).
    pub fn new(spec: &NetSpec, z_dim: usize) -> Result<Self> {
        let (mut side, mut c) = (1, z_dim);
        let mut plans = Vec::new();
        for (i, l) in spec.layers.iter().enumerate() {
            ensure!(
                l.kind == LayerKind::ConvTranspose,
                "generator layer {i}: only transposed convolutions are supported"
            );
            ensure!(
                l.norm != Norm::Instance,
                "generator layer {i}: InstanceNorm is not supported in the generator"
            );
            ensure!(
                l.in_channels == c,
                "generator layer {i} expects {} channels, gets {c}",
                l.in_channels
            );
            let plan = LayerPlan::square(*l, side);
            plans.push(plan);
            (side, c) = (plan.ho, l.out_channels);
        }
        let n = plans.len();
        Ok(Self {
            plans,
            rows: 0,
            input: Vec::new(),
            outs: vec![Vec::new(); n],
            xhat: vec![Vec::new(); n],
            inv_std: vec![Vec::new(); n],
            cols: Vec::new(),
            pre_norm: Vec::new(),
            grad_a: Vec::new(),
            grad_b: Vec::new(),
            across: None,
        })
    }

    /// Makes every BatchNorm normalise with the statistics of the rows of all `ranks` (and
    /// backpropagate through them), as PyTorch's SyncBatchNorm does; `None` for one process.
    pub fn synchronise_batchnorm(&mut self, ranks: Option<std::sync::Arc<dyn CrossRank>>) {
        self.across = ranks;
    }

    /// Values of one latent.
    pub fn z_len(&self) -> usize {
        self.plans[0].in_len()
    }

    /// Values of one output image.
    pub fn image_len(&self) -> usize {
        self.plans[self.plans.len() - 1].out_len()
    }

    /// Images `[N, H, W, C]` (channels-last) for latents `z` `[N, z_dim]`, with BatchNorm on
    /// batch statistics (returned, for the running statistics). Keeps what
    /// [`Self::backward`] needs.
    pub fn forward_train(
        &mut self,
        weights: &NetWeights<T>,
        z: &[T],
    ) -> Result<(&[T], Vec<BatchStats>)> {
        let per = self.z_len();
        let n = checked_rows("generator", z.len(), per, weights, self.plans.len())?;
        self.rows = n;
        sized(&mut self.input, z.len()).copy_from_slice(z);
        let mut stats = Vec::new();
        for (l, p) in self.plans.iter().enumerate() {
            let lw = &weights.layers[l];
            let g = p.deconv_geometry(n);
            let cout = p.spec.out_channels;
            let mut out_buf = std::mem::take(&mut self.outs[l]);
            let x: &[T] = if l == 0 {
                &self.input[..n * p.in_len()]
            } else {
                &self.outs[l - 1][..n * p.in_len()]
            };
            let wm = Mat::rows(&lw.weight, p.spec.in_channels, p.deconv_patch());
            let len = n * p.out_len();
            let z = if p.spec.norm == Norm::Batch {
                sized(&mut self.pre_norm, len)
            } else {
                sized(&mut out_buf, len)
            };
            // z = col2im(x · W), chunk by chunk.
            let pr = patch_rows(&g);
            let cin = p.spec.in_channels;
            scatter_patch_chunks(z, &g, &mut self.cols, |r, cols| {
                let xm = Mat::rows(&x[r.start * pr * cin..r.end * pr * cin], r.len() * pr, cin);
                matmul(cols, xm, wm, false, T::one());
            });
            if p.spec.norm == Norm::Batch {
                let (Some(gamma), Some(beta)) = (lw.gamma.as_deref(), lw.beta.as_deref()) else {
                    bail!("generator layer {l}: norm weights missing")
                };
                let m = n * p.ho * p.wo;
                let m_all = m * self.across.as_ref().map_or(1, |r| r.ranks());
                let s = norm_forward(
                    &NormForward {
                        z: &self.pre_norm[..len],
                        a: 1,
                        m,
                        c: cout,
                        gamma,
                        beta,
                        eps: NORM_EPS,
                        act: p.spec.activation,
                        across: self.across.as_deref(),
                    },
                    sized(&mut self.xhat[l], len),
                    sized(&mut out_buf, len),
                    sized(&mut self.inv_std[l], cout),
                );
                let unbias = m_all as f64 / (m_all as f64 - 1.0).max(1.0);
                stats.push(BatchStats {
                    layer: l,
                    mean: s.mean,
                    var_unbiased: s.var.iter().map(|v| v * unbias).collect(),
                });
            } else {
                bias_activation(
                    &mut out_buf[..len],
                    cout,
                    lw.bias.as_deref(),
                    p.spec.activation,
                );
            }
            self.outs[l] = out_buf;
        }
        let last = self.plans.len() - 1;
        Ok((&self.outs[last][..n * self.image_len()], stats))
    }

    /// Gradients of `⟨grad_image, G(z)⟩` with respect to every trainable parameter, for the
    /// last [`Self::forward_train`]; `grad_image` is `[N, H, W, C]`.
    pub fn backward(
        &mut self,
        weights: &NetWeights<T>,
        grad_image: &[T],
    ) -> Result<Vec<LayerGrads<T>>> {
        let n = self.rows;
        ensure!(n > 0, "backward needs a forward pass first");
        ensure!(
            grad_image.len() == n * self.image_len(),
            "image gradient has {} values, expected {}",
            grad_image.len(),
            n * self.image_len()
        );
        let mut grads: Vec<LayerGrads<T>> =
            weights.layers.iter().map(LayerGrads::zeros_like).collect();
        let mut grad = std::mem::take(&mut self.grad_a);
        sized(&mut grad, grad_image.len()).copy_from_slice(grad_image);
        let mut dz = std::mem::take(&mut self.grad_b);
        for l in (0..self.plans.len()).rev() {
            let p = self.plans[l];
            let cout = p.spec.out_channels;
            let len = n * p.out_len();
            let lg = &mut grads[l];
            let d = sized(&mut dz, len);
            if p.spec.norm == Norm::Batch {
                let (Some(gamma), Some(beta)) = (lg.gamma.as_deref_mut(), lg.beta.as_deref_mut())
                else {
                    bail!("generator layer {l}: norm gradients missing")
                };
                norm_backward(
                    &NormState {
                        out: &self.outs[l][..len],
                        xhat: &self.xhat[l][..len],
                        inv_std: &self.inv_std[l][..cout],
                        gamma: weights.layers[l].gamma.as_deref().unwrap_or(&[]),
                        a: 1,
                        m: n * p.ho * p.wo,
                        c: cout,
                        act: p.spec.activation,
                        across: self.across.as_deref(),
                    },
                    &grad[..len],
                    d,
                    None,
                    None,
                    Some(NormGrads { gamma, beta }),
                );
            } else {
                d.copy_from_slice(&grad[..len]);
                activation_backward(
                    &self.outs[l][..len],
                    d,
                    cout,
                    p.spec.activation,
                    lg.bias.as_deref_mut(),
                );
            }
            let g = p.deconv_geometry(n);
            let x: &[T] = if l == 0 {
                &self.input[..n * p.in_len()]
            } else {
                &self.outs[l - 1][..n * p.in_len()]
            };
            let cin = p.spec.in_channels;
            let wt = Mat::rows(&weights.layers[l].weight, cin, p.deconv_patch()).t();
            let dx = (l > 0).then(|| (sized(&mut grad, n * p.in_len()), wt));
            // ∂W += xᵀ · im2col(δz); δx = im2col(δz) · Wᵀ.
            weight_grad_and_through(
                &d[..len],
                &g,
                &mut self.cols,
                p.deconv_patch(),
                (x, cin),
                &mut lg.weight,
                dx,
            );
        }
        self.grad_a = grad;
        self.grad_b = dz;
        Ok(grads)
    }
}
