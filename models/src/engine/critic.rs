//! The critic's passes: forward, input gradient (the adjoint pass), the adjoint pass's own
//! reverse (second order), and the ordinary backward pass.
//!
//! Per layer `l` (conv → optional InstanceNorm → activation), with `z` the conv output,
//! `x̂, σ` the norm's state and `a` the activated output:
//!
//! - adjoint, for `∇ₓC`: `δz = N'(act'·δa)`, `δa₋ = Wᵀ ⋆ δz` (a col2im of a GEMM);
//! - its reverse, given `ḡ = ∂Φ/∂(∇ₓC)`: `ū = W ⋆ ā₋` (an im2col and a GEMM), `∂W += δzᵀ·im2col(ā₋)`,
//!   then the norm's second-order kernel turns `ū` into `ā` for the next layer and leaves
//!   `∂Φ/∂z` (`Φ` depends on the forward values through `x̂` and `σ`) to be injected into
//! - the backward pass over every row, which also carries the score weights `w`.
//!
//! The activations are piecewise linear, so their derivatives add nothing to the second order.

use super::plan::LayerPlan;
use super::weights::{LayerGrads, NetWeights};
use super::{checked_rows, sized, Real};
use crate::kernels::gemm::{matmul, Mat};
use crate::kernels::patches::{
    for_each_patch_chunk, patch_rows, scatter_patch_chunks, weight_grad_and_through,
};
use crate::kernels::{
    activation_backward, bias_activation, is_piecewise_linear, norm_backward, norm_forward,
    norm_second_order, NormForward, NormGrads, NormState,
};
use crate::spec::{LayerKind, NetSpec, Norm, NORM_EPS};
use anyhow::{bail, ensure, Result};
use std::ops::Range;

/// Explicit passes of a critic (see the module docs). Buffers live between calls and grow to
/// the largest batch seen.
pub struct CriticEngine<T: Real> {
    plans: Vec<LayerPlan>,
    /// Rows of the last forward.
    rows: usize,
    input: Vec<T>,
    /// Activated output of each layer.
    outs: Vec<Vec<T>>,
    xhat: Vec<Vec<T>>,
    inv_std: Vec<Vec<T>>,
    /// Rows of the last adjoint pass, and its per-layer `δz` and `δy = act'·δa`.
    adjoint: Option<Range<usize>>,
    adj_dz: Vec<Vec<T>>,
    adj_dy: Vec<Vec<T>>,
    /// `∂Φ/∂z` per norm layer for the adjoint rows, when the reverse pass ran.
    injected: Option<Vec<Vec<T>>>,
    grad_a: Vec<T>,
    grad_b: Vec<T>,
    scratch: Vec<T>,
    pre_norm: Vec<T>,
}

impl<T: Real> CriticEngine<T> {
    /// An engine for `spec` on `channels × image_size²` inputs. Fails for layers it cannot
    /// differentiate twice (BatchNorm, which couples samples; non-piecewise-linear
    /// activations) or an output other than one score per image.
    pub fn new(spec: &NetSpec, channels: usize, image_size: usize) -> Result<Self> {
        let (mut side, mut c) = (image_size, channels);
        let mut plans = Vec::new();
        for (i, l) in spec.layers.iter().enumerate() {
            ensure!(
                l.kind == LayerKind::Conv,
                "critic layer {i}: only convolutions are supported"
            );
            ensure!(
                l.norm != Norm::Batch,
                "critic layer {i}: BatchNorm couples samples and breaks the per-sample penalty"
            );
            ensure!(
                is_piecewise_linear(l.activation),
                "critic layer {i}: activation {:?} is not supported by the explicit engine",
                l.activation
            );
            ensure!(
                l.in_channels == c,
                "critic layer {i} expects {} channels, gets {c}",
                l.in_channels
            );
            ensure!(
                side + 2 * l.padding >= l.kernel,
                "critic layer {i}: input too small"
            );
            let plan = LayerPlan::square(*l, side);
            plans.push(plan);
            (side, c) = (plan.ho, l.out_channels);
        }
        if (side, c) != (1, 1) {
            bail!("the critic must end in one score per image, not {c}×{side}×{side}");
        }
        let n = plans.len();
        Ok(Self {
            plans,
            rows: 0,
            input: Vec::new(),
            outs: vec![Vec::new(); n],
            xhat: vec![Vec::new(); n],
            inv_std: vec![Vec::new(); n],
            adjoint: None,
            adj_dz: vec![Vec::new(); n],
            adj_dy: vec![Vec::new(); n],
            injected: None,
            grad_a: Vec::new(),
            grad_b: Vec::new(),
            scratch: Vec::new(),
            pre_norm: Vec::new(),
        })
    }

    /// Elements of one input image.
    pub fn image_len(&self) -> usize {
        self.plans[0].in_len()
    }

    /// Scores of the images `x` `[N, H, W, C]` (channels-last), one per image. Keeps what
    /// the other passes need.
    pub fn forward(&mut self, weights: &NetWeights<T>, x: &[T]) -> Result<&[T]> {
        let per = self.image_len();
        let n = checked_rows("critic", x.len(), per, weights, self.plans.len())?;
        self.rows = n;
        self.adjoint = None;
        self.injected = None;
        sized(&mut self.input, x.len()).copy_from_slice(x);
        for (l, p) in self.plans.iter().enumerate() {
            let lw = &weights.layers[l];
            let g = p.conv_geometry(n);
            let mut out_buf = std::mem::take(&mut self.outs[l]);
            let prev: &[T] = if l == 0 {
                &self.input[..n * p.in_len()]
            } else {
                &self.outs[l - 1][..n * p.in_len()]
            };
            let cout = p.spec.out_channels;
            let m = n * p.ho * p.wo;
            let wt = Mat::rows(&lw.weight, cout, p.conv_patch()).t();
            let z = match p.spec.norm {
                Norm::Instance => sized(&mut self.pre_norm, m * cout),
                _ => sized(&mut out_buf, m * cout),
            };
            let pr = patch_rows(&g);
            for_each_patch_chunk(prev, &g, &mut self.scratch, |r, patches| {
                let a = Mat::rows(patches, r.len() * pr, p.conv_patch());
                matmul(
                    &mut z[r.start * pr * cout..r.end * pr * cout],
                    a,
                    wt,
                    false,
                    T::one(),
                );
            });
            match p.spec.norm {
                Norm::Instance => {
                    let (gamma, beta) = (lw.gamma.as_deref(), lw.beta.as_deref());
                    let (Some(gamma), Some(beta)) = (gamma, beta) else {
                        bail!("critic layer {l}: norm weights missing")
                    };
                    norm_forward(
                        &NormForward {
                            z: &self.pre_norm[..m * cout],
                            a: n,
                            m: p.ho * p.wo,
                            c: cout,
                            gamma,
                            beta,
                            eps: NORM_EPS,
                            act: p.spec.activation,
                            across: None,
                        },
                        sized(&mut self.xhat[l], m * cout),
                        sized(&mut out_buf, m * cout),
                        sized(&mut self.inv_std[l], n * cout),
                    );
                }
                _ => bias_activation(
                    &mut out_buf[..m * cout],
                    cout,
                    lw.bias.as_deref(),
                    p.spec.activation,
                ),
            }
            self.outs[l] = out_buf;
        }
        Ok(&self.outs[self.plans.len() - 1][..n])
    }

    /// Norm state of layer `l` restricted to `rows`.
    fn norm_state<'a>(
        &'a self,
        weights: &'a NetWeights<T>,
        l: usize,
        rows: Range<usize>,
    ) -> NormState<'a, T> {
        let p = &self.plans[l];
        let (per, c) = (p.out_len(), p.spec.out_channels);
        NormState {
            out: &self.outs[l][rows.start * per..rows.end * per],
            xhat: &self.xhat[l][rows.start * per..rows.end * per],
            inv_std: &self.inv_std[l][rows.start * c..rows.end * c],
            gamma: weights.layers[l].gamma.as_deref().unwrap_or(&[]),
            a: rows.len(),
            m: p.ho * p.wo,
            c,
            act: p.spec.activation,
            // InstanceNorm: each sample is its own group, whatever the ranks.
            across: None,
        }
    }

    /// `δa₋ = Wᵀ ⋆ δz` for `n` rows of layer `l`, into `dst`.
    fn input_grad_of(
        &mut self,
        weights: &NetWeights<T>,
        l: usize,
        n: usize,
        dz: &[T],
        dst: &mut Vec<T>,
    ) {
        let p = self.plans[l];
        let g = p.conv_geometry(n);
        let cout = p.spec.out_channels;
        let wm = Mat::rows(&weights.layers[l].weight, cout, p.conv_patch());
        let pr = patch_rows(&g);
        scatter_patch_chunks(
            sized(dst, g.image_len()),
            &g,
            &mut self.scratch,
            |r, cols| {
                let dzm = Mat::rows(
                    &dz[r.start * pr * cout..r.end * pr * cout],
                    r.len() * pr,
                    cout,
                );
                matmul(cols, dzm, wm, false, T::one());
            },
        );
    }

    /// The adjoint pass: `∇ₓ Σᵢ wᵢ·C(xᵢ)` over `rows` of the last forward, `[n, H, W, C]`,
    /// with `upstream` the weights `wᵢ`. Keeps its state for [`Self::reverse_adjoint`].
    pub fn input_gradient(
        &mut self,
        weights: &NetWeights<T>,
        rows: Range<usize>,
        upstream: &[T],
    ) -> Result<&[T]> {
        ensure!(
            rows.start < rows.end && rows.end <= self.rows,
            "rows {rows:?} outside the last forward's {} rows",
            self.rows
        );
        ensure!(upstream.len() == rows.len(), "one upstream weight per row");
        let n = rows.len();
        self.injected = None;
        let mut grad = std::mem::take(&mut self.grad_a);
        sized(&mut grad, n).copy_from_slice(upstream);
        for l in (0..self.plans.len()).rev() {
            let p = self.plans[l];
            let len = n * p.out_len();
            let mut dz = std::mem::take(&mut self.adj_dz[l]);
            match p.spec.norm {
                Norm::Instance => {
                    let mut dy = std::mem::take(&mut self.adj_dy[l]);
                    norm_backward(
                        &self.norm_state(weights, l, rows.clone()),
                        &grad[..len],
                        sized(&mut dz, len),
                        Some(sized(&mut dy, len)),
                        None,
                        None,
                    );
                    self.adj_dy[l] = dy;
                }
                _ => {
                    let d = sized(&mut dz, len);
                    d.copy_from_slice(&grad[..len]);
                    let per = p.out_len();
                    let out = &self.outs[l][rows.start * per..rows.end * per];
                    activation_backward(out, d, p.spec.out_channels, p.spec.activation, None);
                }
            }
            self.input_grad_of(weights, l, n, &dz[..len], &mut grad);
            self.adj_dz[l] = dz;
        }
        self.grad_a = grad;
        self.adjoint = Some(rows);
        Ok(&self.grad_a[..n * self.image_len()])
    }

    /// The reverse of the adjoint pass: given `gbar = ∂Φ/∂g` for the input gradients `g` of the
    /// last [`Self::input_gradient`], adds to `grads` the part of `dΦ/dθ` that flows through
    /// the weights' direct use in the adjoint pass, and keeps `∂Φ/∂z` per layer for
    /// [`Self::backward`].
    fn reverse_adjoint(
        &mut self,
        weights: &NetWeights<T>,
        gbar: &[T],
        grads: &mut [LayerGrads<T>],
    ) -> Result<()> {
        let Some(rows) = self.adjoint.clone() else {
            bail!("reverse_adjoint needs an input_gradient pass first")
        };
        let n = rows.len();
        ensure!(
            gbar.len() == n * self.image_len(),
            "gbar has the wrong size"
        );
        let last = self.plans.len() - 1;
        let mut injected = vec![Vec::new(); self.plans.len()];
        let mut ubar = std::mem::take(&mut self.grad_b);
        sized(&mut ubar, gbar.len()).copy_from_slice(gbar);
        let mut u = std::mem::take(&mut self.grad_a);
        for (l, grad) in grads.iter_mut().enumerate() {
            let p = self.plans[l];
            let g = p.conv_geometry(n);
            let m = n * p.ho * p.wo;
            let cout = p.spec.out_channels;
            let lw = &weights.layers[l];
            let wt = Mat::rows(&lw.weight, cout, p.conv_patch()).t();
            // Not needed after the last layer: ū feeds the next layer's reverse.
            let mut ub = (l != last).then(|| sized(&mut u, m * cout));
            // ∂W += δzᵀ · im2col(ā₋); ū = im2col(ā₋) · Wᵀ.
            weight_grad_and_through(
                &ubar[..g.image_len()],
                &g,
                &mut self.scratch,
                p.conv_patch(),
                (&self.adj_dz[l], cout),
                &mut grad.weight,
                ub.as_deref_mut().map(|ub| (ub, wt)),
            );
            let Some(ub) = ub else { break };
            match p.spec.norm {
                Norm::Instance => {
                    let Some(dgamma) = grad.gamma.as_deref_mut() else {
                        bail!("critic layer {l}: norm gradients missing")
                    };
                    norm_second_order(
                        &self.norm_state(weights, l, rows.clone()),
                        &self.adj_dy[l][..m * cout],
                        ub,
                        sized(&mut injected[l], m * cout),
                        dgamma,
                    );
                }
                _ => {
                    let per = p.out_len();
                    let out = &self.outs[l][rows.start * per..rows.end * per];
                    activation_backward(out, ub, cout, p.spec.activation, None);
                }
            }
            std::mem::swap(&mut u, &mut ubar);
        }
        self.grad_a = u;
        self.grad_b = ubar;
        self.injected = Some(injected);
        Ok(())
    }

    /// The backward pass over all rows of the last forward: adds `d/dθ Σᵢ wᵢ·C(xᵢ)` to
    /// `grads`, plus, after [`Self::reverse_adjoint`], the rest of `dΦ/dθ`.
    fn backward(
        &mut self,
        weights: &NetWeights<T>,
        upstream: &[T],
        grads: &mut [LayerGrads<T>],
    ) -> Result<()> {
        let n = self.rows;
        ensure!(upstream.len() == n, "one upstream weight per row");
        let mut grad = std::mem::take(&mut self.grad_a);
        sized(&mut grad, n).copy_from_slice(upstream);
        let mut dz = std::mem::take(&mut self.grad_b);
        let injected = self.injected.take();
        let first = self.adjoint.as_ref().map_or(0, |r| r.start);
        for l in (0..self.plans.len()).rev() {
            let p = self.plans[l];
            let m = n * p.ho * p.wo;
            let cout = p.spec.out_channels;
            let len = m * cout;
            let d = sized(&mut dz, len);
            let lg = &mut grads[l];
            match p.spec.norm {
                Norm::Instance => {
                    let added = injected
                        .as_ref()
                        .map(|inj| (inj[l].as_slice(), first))
                        .filter(|(x, _)| !x.is_empty());
                    let (Some(gamma), Some(beta)) =
                        (lg.gamma.as_deref_mut(), lg.beta.as_deref_mut())
                    else {
                        bail!("critic layer {l}: norm gradients missing")
                    };
                    norm_backward(
                        &self.norm_state(weights, l, 0..n),
                        &grad[..len],
                        d,
                        None,
                        added,
                        Some(NormGrads { gamma, beta }),
                    );
                }
                _ => {
                    d.copy_from_slice(&grad[..len]);
                    activation_backward(
                        &self.outs[l][..len],
                        d,
                        cout,
                        p.spec.activation,
                        lg.bias.as_deref_mut(),
                    );
                }
            }
            let g = p.conv_geometry(n);
            let prev: &[T] = if l == 0 {
                &self.input[..g.image_len()]
            } else {
                &self.outs[l - 1][..g.image_len()]
            };
            // ∂W += δzᵀ · im2col(a₋), the patches recomputed chunk by chunk.
            weight_grad_and_through(
                prev,
                &g,
                &mut self.scratch,
                p.conv_patch(),
                (d, cout),
                &mut lg.weight,
                None,
            );
            if l > 0 {
                let d = std::mem::take(&mut dz);
                self.input_grad_of(weights, l, n, &d[..len], &mut grad);
                dz = d;
            }
        }
        self.grad_a = grad;
        self.grad_b = dz;
        self.adjoint = None;
        Ok(())
    }

    /// Gradients with respect to every trainable parameter of
    /// `F(θ) = Σᵢ wᵢ·C(xᵢ) + Φ(∇ₓC(x_j) for j in penalty_rows)`, for the images `x`
    /// `[N, H, W, C]`, score weights `w` `[N]` and a function `Φ` of the per-image input
    /// gradients, given by `dphi`: it receives the input gradients `[n, H, W, C]` of the
    /// penalty rows and returns `∂Φ/∂g` of the same shape. Returns the scores and the
    /// gradients, layer by layer.
    pub fn gradients_with_input_penalty(
        &mut self,
        weights: &NetWeights<T>,
        x: &[T],
        score_weights: &[T],
        penalty_rows: Range<usize>,
        dphi: impl FnOnce(&[T]) -> Result<Vec<T>>,
    ) -> Result<(Vec<T>, Vec<LayerGrads<T>>)> {
        let scores = self.forward(weights, x)?.to_vec();
        let ones = vec![T::one(); penalty_rows.len()];
        let g = self.input_gradient(weights, penalty_rows, &ones)?;
        let gbar = dphi(g)?;
        let mut grads: Vec<LayerGrads<T>> =
            weights.layers.iter().map(LayerGrads::zeros_like).collect();
        self.reverse_adjoint(weights, &gbar, &mut grads)?;
        self.backward(weights, score_weights, &mut grads)?;
        Ok((scores, grads))
    }

    /// Gradients of `Σᵢ wᵢ·C(xᵢ)` (no penalty), with the scores.
    pub fn gradients(
        &mut self,
        weights: &NetWeights<T>,
        x: &[T],
        score_weights: &[T],
    ) -> Result<(Vec<T>, Vec<LayerGrads<T>>)> {
        let scores = self.forward(weights, x)?.to_vec();
        let mut grads: Vec<LayerGrads<T>> =
            weights.layers.iter().map(LayerGrads::zeros_like).collect();
        self.backward(weights, score_weights, &mut grads)?;
        Ok((scores, grads))
    }
}
