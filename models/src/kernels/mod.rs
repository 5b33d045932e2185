//! CPU kernels on channels-last buffers, without candle: what the training engine
//! ([`crate::engine`], feature `candle`) and the runtime's native inference backend share.
//!
//! - [`gemm`]: a bounds-checked matrix product on strided views, over the `gemm` crate (the
//!   one candle uses);
//! - [`im2col`]: patch gathering (im2col) and its adjoint (col2im) for square kernels;
//! - [`patches`]: convolutions sample-chunk by sample-chunk through one reused patch buffer;
//! - [`act`]: fused bias + activation passes and their derivatives;
//! - [`norm`]: normalisation forward, backward and second-order backward (training).
//!
//! Hand-written rather than taken from a tensor library because these passes are the
//! product's core: fusing bias, normalisation and activation into single passes over buffers
//! allocated once is what makes the CPU engine match PyTorch's speed (see ARCHITECTURE.md).

pub mod act;
pub mod gemm;
pub mod im2col;
pub mod norm;
pub mod patches;

pub use act::{activation_backward, bias_activation, is_piecewise_linear};
pub use gemm::{matmul, Mat};
pub use im2col::{col2im, im2col, Geometry};
pub use norm::*;

/// The floating-point types the kernels run in: `f32` for training and inference, `f64` for
/// checks.
pub trait Real:
    num_traits::Float + num_traits::NumAssign + Send + Sync + std::fmt::Debug + 'static
{
    /// Converts from `f64` (rounding to nearest).
    fn of(v: f64) -> Self;
    /// Converts to `f64` (exact).
    fn f64(self) -> f64;
}

impl Real for f32 {
    #[inline(always)]
    fn of(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    #[inline(always)]
    fn of(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self
    }
}

/// `buf` as a buffer of `len` elements, growing it if needed but never shrinking it (so
/// alternating batch sizes reuse one allocation). The contents are unspecified: every kernel
/// here writes all of its output.
pub fn sized<T: Real>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    if buf.len() < len {
        buf.resize(len, T::zero());
    }
    &mut buf[..len]
}

/// A convolution weight in the kernels' matrix layout: `[X, Y, k, k]` → `[X, k, k, Y]` (a
/// convolution's `[Cout, Cin, k, k]` becomes rows of im2col patches, a transposed
/// convolution's `[Cin, Cout, k, k]` rows of col2im patches).
pub fn second_axis_last<T: Copy>(src: &[T], [x, y, k, _]: [usize; 4]) -> Vec<T> {
    let mut out = Vec::with_capacity(src.len());
    for i in 0..x {
        for t in 0..k * k {
            for j in 0..y {
                out.push(src[(i * y + j) * k * k + t]);
            }
        }
    }
    out
}

/// The inverse of [`second_axis_last`]: `[X, k, k, Y]` → `[X, Y, k, k]`.
pub fn last_axis_second<T: Copy>(src: &[T], [x, y, k, _]: [usize; 4]) -> Vec<T> {
    let mut out = Vec::with_capacity(src.len());
    for i in 0..x {
        for j in 0..y {
            for t in 0..k * k {
                out.push(src[(i * k * k + t) * y + j]);
            }
        }
    }
    out
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
