//! Activations as types (kernels are compiled once per activation, the choice hoisted out of
//! their inner loops) and the fused bias + activation passes.

use super::Real;
use crate::spec::{Activation, LEAKY_SLOPE};
use rayon::prelude::*;

/// An activation as a type, so that kernels are compiled once per activation with the
/// choice hoisted out of their inner loops (which then vectorise).
pub(super) trait Act: Copy + Send + Sync {
    /// The activation of `y`.
    fn apply<T: Real>(y: T) -> T;
    /// Its derivative at the point whose activated value is `out`.
    fn slope<T: Real>(out: T) -> T;
}

#[derive(Clone, Copy)]
pub(super) struct Identity;
#[derive(Clone, Copy)]
pub(super) struct Relu;
#[derive(Clone, Copy)]
pub(super) struct Leaky;
#[derive(Clone, Copy)]
pub(super) struct Tanh;

impl Act for Identity {
    #[inline(always)]
    fn apply<T: Real>(y: T) -> T {
        y
    }
    #[inline(always)]
    fn slope<T: Real>(_: T) -> T {
        T::one()
    }
}

impl Act for Relu {
    #[inline(always)]
    fn apply<T: Real>(y: T) -> T {
        if y > T::zero() {
            y
        } else {
            T::zero()
        }
    }
    #[inline(always)]
    fn slope<T: Real>(out: T) -> T {
        if out > T::zero() {
            T::one()
        } else {
            T::zero()
        }
    }
}

impl Act for Leaky {
    #[inline(always)]
    fn apply<T: Real>(y: T) -> T {
        if y > T::zero() {
            y
        } else {
            y * T::of(LEAKY_SLOPE)
        }
    }
    #[inline(always)]
    fn slope<T: Real>(out: T) -> T {
        // The slope is positive, so the output has the input's sign.
        if out > T::zero() {
            T::one()
        } else {
            T::of(LEAKY_SLOPE)
        }
    }
}

impl Act for Tanh {
    #[inline(always)]
    fn apply<T: Real>(y: T) -> T {
        y.tanh_act()
    }
    #[inline(always)]
    fn slope<T: Real>(out: T) -> T {
        T::one() - out * out
    }
}

/// Runs `$body` with the type alias `A` bound to the [`Act`] type of `$act`.
macro_rules! with_act {
    ($act:expr, $body:expr) => {
        match $act {
            Activation::None => {
                type A = Identity;
                $body
            }
            Activation::Relu => {
                type A = Relu;
                $body
            }
            Activation::LeakyRelu => {
                type A = Leaky;
                $body
            }
            Activation::Tanh => {
                type A = Tanh;
                $body
            }
        }
    };
}
pub(super) use with_act;

/// Whether an activation's derivative is piecewise constant (so it contributes nothing to a
/// second-order gradient).
pub fn is_piecewise_linear(act: Activation) -> bool {
    matches!(
        act,
        Activation::None | Activation::Relu | Activation::LeakyRelu
    )
}

/// In place: `x = act(x + bias)` on `[rows, C]`.
pub fn bias_activation<T: Real>(x: &mut [T], c: usize, bias: Option<&[T]>, act: Activation) {
    with_act!(act, bias_activation_impl::<T, A>(x, c, bias))
}

fn bias_activation_impl<T: Real, A: Act>(x: &mut [T], c: usize, bias: Option<&[T]>) {
    let rows = (x.len() / c.max(1)).max(1);
    let chunk = rows.div_ceil(4 * rayon::current_num_threads()) * c;
    x.par_chunks_mut(chunk.max(c)).for_each(|x| match bias {
        // Few channels (an image's 1 or 3): the bias first, then the activation over the
        // whole chunk, so that the activation's loop vectorises.
        Some(b) if c < 8 => {
            let b = &b[..c];
            for row in x.chunks_exact_mut(c) {
                for ch in 0..c {
                    row[ch] += b[ch];
                }
            }
            x.iter_mut().for_each(|v| *v = A::apply(*v));
        }
        Some(b) => {
            let b = &b[..c];
            for row in x.chunks_exact_mut(c) {
                for ch in 0..c {
                    row[ch] = A::apply(row[ch] + b[ch]);
                }
            }
        }
        None => x.iter_mut().for_each(|v| *v = A::apply(*v)),
    });
}

/// `grad = act'(act_out) ⊙ grad` on `[rows, C]`, in place, and, with `dbias`, the
/// per-channel sums of the result added to it.
pub fn activation_backward<T: Real>(
    act_out: &[T],
    grad: &mut [T],
    c: usize,
    act: Activation,
    dbias: Option<&mut [f64]>,
) {
    with_act!(
        act,
        activation_backward_impl::<T, A>(act_out, grad, c, dbias)
    )
}

fn activation_backward_impl<T: Real, A: Act>(
    act_out: &[T],
    grad: &mut [T],
    c: usize,
    dbias: Option<&mut [f64]>,
) {
    assert_eq!(act_out.len(), grad.len());
    let rows = grad.len() / c.max(1);
    let parts = (4 * rayon::current_num_threads()).min(rows.max(1));
    let chunk = (rows.div_ceil(parts) * c).max(c);
    let want_sums = dbias.is_some();
    let per_chunk: Vec<Vec<f64>> = grad
        .par_chunks_mut(chunk)
        .enumerate()
        .map(|(i, g)| {
            let o = &act_out[i * chunk..][..g.len()];
            let mut acc = vec![0.0; if want_sums { c } else { 0 }];
            if want_sums {
                let acc = &mut acc[..c];
                for (gr, or) in g.chunks_exact_mut(c).zip(o.chunks_exact(c)) {
                    for ch in 0..c {
                        let v = A::slope(or[ch]) * gr[ch];
                        gr[ch] = v;
                        acc[ch] += v.f64();
                    }
                }
            } else {
                for (g, &o) in g.iter_mut().zip(o) {
                    *g = A::slope(o) * *g;
                }
            }
            acc
        })
        .collect();
    if let Some(db) = dbias {
        for acc in per_chunk {
            for (d, v) in db.iter_mut().zip(acc) {
                *d += v;
            }
        }
    }
}
