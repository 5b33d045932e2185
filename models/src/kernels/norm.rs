//! Normalisation forward, backward and second-order backward, fused with the activation.
//!
//! Normalisations work on a `[A, M, C]` view and normalise each `(a, c)` group over `M`:
//! InstanceNorm is `A = N, M = H·W`, BatchNorm in training is `A = 1, M = N·H·W`. Sums are
//! accumulated in f64, tile by tile in a fixed order, so results do not depend on scheduling.

use super::act::{with_act, Act, Identity, Leaky, Relu, Tanh};
use super::Real;
use crate::spec::Activation;
use rayon::prelude::*;

/// The sums of a normalisation over the ranks of a data-parallel run: each rank holds `m`
/// rows of a group of `ranks · m`, and BatchNorm in training must normalise with the statistics
/// of the whole group (PyTorch's SyncBatchNorm). `sum` adds a buffer element-wise over the
/// ranks, in place, with the same result on every rank.
pub trait CrossRank: Send + Sync {
    /// Ranks that hold rows of the group (1: the rows are the whole group).
    fn ranks(&self) -> usize;
    /// Element-wise sum over the ranks, in place.
    fn sum(&self, values: &mut [f64]);
}

/// A `[A, M, C]` view split into tiles of `rows` consecutive `M`-rows inside one `a`.
#[derive(Clone, Copy, Debug)]
struct Tiles {
    m: usize,
    c: usize,
    rows: usize,
}

impl Tiles {
    fn new(a: usize, m: usize, c: usize) -> Self {
        // Enough tiles to keep every thread busy; tiles divide M so none crosses a group.
        let want = (4 * rayon::current_num_threads()).div_ceil(a.max(1));
        let mut parts = want.clamp(1, m.max(1));
        while parts > 1 && !m.is_multiple_of(parts) {
            parts -= 1;
        }
        Self {
            m,
            c,
            rows: (m / parts).max(1),
        }
    }

    /// Elements per tile.
    fn len(&self) -> usize {
        self.rows * self.c
    }

    fn per_group(&self) -> usize {
        self.m / self.rows
    }

    /// The `a` index of tile `t`.
    fn group(&self, t: usize) -> usize {
        t / self.per_group()
    }

    /// Per-tile sums (`K` quantities per channel, `[K][C]` per tile) combined per group in
    /// tile order: `[A][K][C]`.
    fn sums<const K: usize>(
        &self,
        a: usize,
        f: impl Fn(usize, &mut [f64]) + Sync + Send,
    ) -> Vec<f64> {
        let width = K * self.c;
        let per_tile: Vec<Vec<f64>> = (0..a * self.per_group())
            .into_par_iter()
            .map(|t| {
                let mut acc = vec![0.0; width];
                f(t, &mut acc);
                acc
            })
            .collect();
        let mut out = vec![0.0; a * width];
        for (t, acc) in per_tile.iter().enumerate() {
            let g = self.group(t);
            for (o, v) in out[g * width..(g + 1) * width].iter_mut().zip(acc) {
                *o += v;
            }
        }
        out
    }
}

/// Inputs of [`norm_forward`].
pub struct NormForward<'a, T> {
    /// `[A, M, C]` pre-normalisation values.
    pub z: &'a [T],
    pub a: usize,
    pub m: usize,
    pub c: usize,
    pub gamma: &'a [T],
    pub beta: &'a [T],
    pub eps: f64,
    pub act: Activation,
    /// The ranks whose rows make up each group with these (BatchNorm of a data-parallel run;
    /// `None` for one process): the sums are added over them, and `m` counts their rows too.
    pub across: Option<&'a dyn CrossRank>,
}

/// Statistics of one normalisation forward, per `(a, c)` group, `[A·C]`.
pub struct GroupStats {
    pub mean: Vec<f64>,
    /// Biased variance.
    pub var: Vec<f64>,
}

/// Normalisation in training mode: `x̂ = (z − μ)/σ` with the group's mean and biased
/// variance (`σ = √(var + eps)`), then `out = act(γ·x̂ + β)`. Writes `xhat`, `out` and the
/// inverse deviations `inv_std` `[A·C]`; returns the group statistics.
pub fn norm_forward<T: Real>(
    p: &NormForward<T>,
    xhat: &mut [T],
    out: &mut [T],
    inv_std: &mut [T],
) -> GroupStats {
    with_act!(p.act, norm_forward_impl::<T, A>(p, xhat, out, inv_std))
}

fn norm_forward_impl<T: Real, A: Act>(
    p: &NormForward<T>,
    xhat: &mut [T],
    out: &mut [T],
    inv_std: &mut [T],
) -> GroupStats {
    let (a, m, c) = (p.a, p.m, p.c);
    assert_eq!(p.z.len(), a * m * c);
    assert!(xhat.len() == a * m * c && out.len() == a * m * c && inv_std.len() == a * c);
    let tiles = Tiles::new(a, m, c);
    let tl = tiles.len();
    let mut sums = tiles.sums::<2>(a, |t, acc| {
        let (s1, s2) = acc.split_at_mut(c);
        for z in p.z[t * tl..][..tl].chunks_exact(c) {
            for ch in 0..c {
                let v = z[ch].f64();
                s1[ch] += v;
                s2[ch] += v * v;
            }
        }
    });
    // The whole group's rows, on every rank.
    let m_all = match p.across {
        Some(r) => {
            r.sum(&mut sums);
            m * r.ranks()
        }
        None => m,
    };
    let mut stats = GroupStats {
        mean: vec![0.0; a * c],
        var: vec![0.0; a * c],
    };
    for g in 0..a {
        for ch in 0..c {
            let s = &sums[g * 2 * c..];
            let mean = s[ch] / m_all as f64;
            let var = (s[c + ch] / m_all as f64 - mean * mean).max(0.0);
            stats.mean[g * c + ch] = mean;
            stats.var[g * c + ch] = var;
            inv_std[g * c + ch] = T::of(1.0 / (var + p.eps).sqrt());
        }
    }
    let (mean, inv): (Vec<T>, &[T]) = (stats.mean.iter().map(|&v| T::of(v)).collect(), inv_std);
    let (gamma, beta) = (&p.gamma[..c], &p.beta[..c]);
    xhat.par_chunks_mut(tl)
        .zip(out.par_chunks_mut(tl))
        .enumerate()
        .for_each(|(t, (xh, o))| {
            let g = tiles.group(t);
            let z = &p.z[t * tl..][..tl];
            let (mu, s) = (&mean[g * c..][..c], &inv[g * c..][..c]);
            for ((xh, o), z) in xh
                .chunks_exact_mut(c)
                .zip(o.chunks_exact_mut(c))
                .zip(z.chunks_exact(c))
            {
                for ch in 0..c {
                    let x = (z[ch] - mu[ch]) * s[ch];
                    xh[ch] = x;
                    o[ch] = A::apply(gamma[ch] * x + beta[ch]);
                }
            }
        });
    stats
}

/// Saved state of a normalisation forward, for its backward passes.
pub struct NormState<'a, T> {
    /// Activated output `[A, M, C]` (the activation's derivative is read from it).
    pub out: &'a [T],
    /// Normalised values `[A, M, C]`.
    pub xhat: &'a [T],
    /// `1/σ` per group, `[A·C]`.
    pub inv_std: &'a [T],
    pub gamma: &'a [T],
    pub a: usize,
    pub m: usize,
    pub c: usize,
    pub act: Activation,
    /// As [`NormForward::across`]: the sums of the input gradient's projection are the whole
    /// group's (each rank's parameter gradients stay its own, for the caller to add up).
    pub across: Option<&'a dyn CrossRank>,
}

/// Parameter-gradient accumulators of a normalisation (`[C]` each).
pub struct NormGrads<'a> {
    pub gamma: &'a mut [f64],
    pub beta: &'a mut [f64],
}

/// Backward of `out = act(γ·x̂ + β)` in training mode. Reads `grad` (`∂/∂out`, `[A, M, C]`),
/// writes `∂/∂z` into `dz`, plus `added` (`[G, M, C]`) on groups `first..first + G` when given.
/// With `keep_dy`, also writes `∂/∂(γx̂ + β)` there. With `grads`, adds `Σ ∂/∂y · x̂` and
/// `Σ ∂/∂y` to the γ and β accumulators.
pub fn norm_backward<T: Real>(
    s: &NormState<T>,
    grad: &[T],
    dz: &mut [T],
    keep_dy: Option<&mut [T]>,
    added: Option<(&[T], usize)>,
    grads: Option<NormGrads>,
) {
    with_act!(
        s.act,
        norm_backward_impl::<T, A>(s, grad, dz, keep_dy, added, grads)
    )
}

fn norm_backward_impl<T: Real, A: Act>(
    s: &NormState<T>,
    grad: &[T],
    dz: &mut [T],
    keep_dy: Option<&mut [T]>,
    added: Option<(&[T], usize)>,
    grads: Option<NormGrads>,
) {
    let (a, m, c) = (s.a, s.m, s.c);
    assert!(grad.len() == a * m * c && dz.len() == a * m * c);
    assert!(s.out.len() == a * m * c && s.xhat.len() == a * m * c);
    let tiles = Tiles::new(a, m, c);
    let tl = tiles.len();
    // Pass 1: dy = act'(out)·grad into dz, with per-group Σdy and Σdy·x̂.
    let per_tile: Vec<Vec<f64>> = dz
        .par_chunks_mut(tl)
        .enumerate()
        .map(|(t, dy)| {
            let (o, g, xh) = (
                &s.out[t * tl..][..tl],
                &grad[t * tl..][..tl],
                &s.xhat[t * tl..][..tl],
            );
            let mut acc = vec![0.0; 2 * c];
            let (s1, s2) = acc.split_at_mut(c);
            for (((dy, o), g), xh) in dy
                .chunks_exact_mut(c)
                .zip(o.chunks_exact(c))
                .zip(g.chunks_exact(c))
                .zip(xh.chunks_exact(c))
            {
                for ch in 0..c {
                    let v = A::slope(o[ch]) * g[ch];
                    dy[ch] = v;
                    s1[ch] += v.f64();
                    s2[ch] += (v * xh[ch]).f64();
                }
            }
            acc
        })
        .collect();
    let mut sums = vec![0.0; a * 2 * c];
    for (t, acc) in per_tile.iter().enumerate() {
        let g = tiles.group(t);
        for (o, v) in sums[g * 2 * c..][..2 * c].iter_mut().zip(acc) {
            *o += v;
        }
    }
    if let Some(pg) = grads {
        for g in 0..a {
            for ch in 0..c {
                pg.beta[ch] += sums[g * 2 * c + ch];
                pg.gamma[ch] += sums[g * 2 * c + c + ch];
            }
        }
    }
    let m_all = match s.across {
        Some(r) => {
            r.sum(&mut sums);
            m * r.ranks()
        }
        None => m,
    };
    // Per group: dz = γ/σ · (dy − mean(dy) − x̂·mean(dy·x̂)).
    let mut coef = vec![T::zero(); a * 3 * c];
    for g in 0..a {
        for ch in 0..c {
            let gs = s.gamma[ch].f64() * s.inv_std[g * c + ch].f64();
            coef[g * 3 * c + ch] = T::of(gs);
            coef[g * 3 * c + c + ch] = T::of(gs * sums[g * 2 * c + ch] / m_all as f64);
            coef[g * 3 * c + 2 * c + ch] = T::of(gs * sums[g * 2 * c + c + ch] / m_all as f64);
        }
    }
    let body = |t: usize, dz: &mut [T], kept: Option<&mut [T]>| {
        let g = tiles.group(t);
        let xh = &s.xhat[t * tl..][..tl];
        let k = &coef[g * 3 * c..][..3 * c];
        let (k0, k1, k2) = (&k[..c], &k[c..2 * c], &k[2 * c..3 * c]);
        if let Some(kept) = kept {
            kept.copy_from_slice(dz);
        }
        let add = added.and_then(|(x, first)| {
            let count = x.len() / (m * c).max(1);
            (g >= first && g < first + count)
                .then(|| &x[(t - first * tiles.per_group()) * tl..][..tl])
        });
        match add {
            Some(add) => {
                for ((dz, xh), add) in dz
                    .chunks_exact_mut(c)
                    .zip(xh.chunks_exact(c))
                    .zip(add.chunks_exact(c))
                {
                    for ch in 0..c {
                        dz[ch] = k0[ch] * dz[ch] - k1[ch] - xh[ch] * k2[ch] + add[ch];
                    }
                }
            }
            None => {
                for (dz, xh) in dz.chunks_exact_mut(c).zip(xh.chunks_exact(c)) {
                    for ch in 0..c {
                        dz[ch] = k0[ch] * dz[ch] - k1[ch] - xh[ch] * k2[ch];
                    }
                }
            }
        }
    };
    match keep_dy {
        Some(kept) => dz
            .par_chunks_mut(tl)
            .zip(kept.par_chunks_mut(tl))
            .enumerate()
            .for_each(|(t, (d, k))| body(t, d, Some(k))),
        None => dz
            .par_chunks_mut(tl)
            .enumerate()
            .for_each(|(t, d)| body(t, d, None)),
    }
}

/// Second-order backward of an InstanceNorm layer, for the reverse of the adjoint pass.
///
/// The adjoint (input-gradient) pass computed `δz = γσ⁻¹·P(δy)` with
/// `P(v) = v − mean(v) − x̂·mean(v·x̂)`, from `δy = act'·δa`. Given `u = ∂Φ/∂δz`, this writes
/// into `u` (in place) `∂Φ/∂δa = act'·γσ⁻¹·P(u)`, into `dz_bar` the gradient of `⟨u, δz⟩` with
/// respect to the layer's pre-norm values `z` (through `x̂` and `σ`), and adds
/// `∂⟨u, δz⟩/∂γ` to `dgamma`.
pub fn norm_second_order<T: Real>(
    s: &NormState<T>,
    dy: &[T],
    u: &mut [T],
    dz_bar: &mut [T],
    dgamma: &mut [f64],
) {
    with_act!(
        s.act,
        norm_second_order_impl::<T, A>(s, dy, u, dz_bar, dgamma)
    )
}

fn norm_second_order_impl<T: Real, A: Act>(
    s: &NormState<T>,
    dy: &[T],
    u: &mut [T],
    dz_bar: &mut [T],
    dgamma: &mut [f64],
) {
    let (a, m, c) = (s.a, s.m, s.c);
    assert!(dy.len() == a * m * c && u.len() == a * m * c && dz_bar.len() == a * m * c);
    assert!(s.out.len() == a * m * c && s.xhat.len() == a * m * c);
    let tiles = Tiles::new(a, m, c);
    let tl = tiles.len();
    // Σu, Σu·x̂, Σu·δy, Σδy, Σδy·x̂ per group.
    let sums = tiles.sums::<5>(a, |t, acc| {
        let (u, dy, xh) = (
            &u[t * tl..][..tl],
            &dy[t * tl..][..tl],
            &s.xhat[t * tl..][..tl],
        );
        let (s0, rest) = acc.split_at_mut(c);
        let (s1, rest) = rest.split_at_mut(c);
        let (s2, rest) = rest.split_at_mut(c);
        let (s3, s4) = rest.split_at_mut(c);
        for ((u, dy), xh) in u
            .chunks_exact(c)
            .zip(dy.chunks_exact(c))
            .zip(xh.chunks_exact(c))
        {
            for ch in 0..c {
                let (u, d, x) = (u[ch].f64(), dy[ch].f64(), xh[ch].f64());
                s0[ch] += u;
                s1[ch] += u * x;
                s2[ch] += u * d;
                s3[ch] += d;
                s4[ch] += d * x;
            }
        }
    });
    let mf = m as f64;
    // Per group: [γσ⁻¹, mean u, mean u·x̂, σ⁻², Bm = mean δx̂·x̂, mean f, mean f·x̂ + K/M].
    const NC: usize = 7;
    let mut coef = vec![T::zero(); a * NC * c];
    for g in 0..a {
        for ch in 0..c {
            let sm = |k: usize| sums[g * 5 * c + k * c + ch];
            let (su, sux, sudy, sdy, sdyx) = (sm(0), sm(1), sm(2), sm(3), sm(4));
            let gamma = s.gamma[ch].f64();
            let inv = s.inv_std[g * c + ch].f64();
            let (mu_u, uxm) = (su / mf, sux / mf);
            let big_a = gamma * sdy / mf;
            let bm = gamma * sdyx / mf;
            let k = gamma * sudy - big_a * su - bm * sux;
            let mean_f = -uxm * big_a - bm * mu_u;
            let mean_fx = -2.0 * bm * uxm;
            dgamma[ch] += inv * (sudy - mu_u * sdy - uxm * sdyx);
            let row = &mut coef[g * NC * c..][..NC * c];
            for (j, v) in [
                gamma * inv,
                mu_u,
                uxm,
                inv * inv,
                bm,
                mean_f,
                mean_fx + k / mf,
            ]
            .into_iter()
            .enumerate()
            {
                row[j * c + ch] = T::of(v);
            }
        }
    }
    let gamma = &s.gamma[..c];
    u.par_chunks_mut(tl)
        .zip(dz_bar.par_chunks_mut(tl))
        .enumerate()
        .for_each(|(t, (u, zb))| {
            let g = tiles.group(t);
            let (o, dy, xh) = (
                &s.out[t * tl..][..tl],
                &dy[t * tl..][..tl],
                &s.xhat[t * tl..][..tl],
            );
            let k = &coef[g * NC * c..][..NC * c];
            let col = |j: usize| &k[j * c..(j + 1) * c];
            let (gs, mu_u, uxm, inv2) = (col(0), col(1), col(2), col(3));
            let (bm, mean_f, tail) = (col(4), col(5), col(6));
            for ((((u, zb), o), dy), xh) in u
                .chunks_exact_mut(c)
                .zip(zb.chunks_exact_mut(c))
                .zip(o.chunks_exact(c))
                .zip(dy.chunks_exact(c))
                .zip(xh.chunks_exact(c))
            {
                for ch in 0..c {
                    let ui = u[ch];
                    let f = T::zero() - uxm[ch] * (gamma[ch] * dy[ch]) - bm[ch] * ui;
                    zb[ch] = inv2[ch] * (f - mean_f[ch] - xh[ch] * tail[ch]);
                    u[ch] = A::slope(o[ch]) * gs[ch] * (ui - mu_u[ch] - xh[ch] * uxm[ch]);
                }
            }
        });
}
