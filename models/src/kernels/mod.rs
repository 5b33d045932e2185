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
    /// The hyperbolic tangent: libm's for `f64`; for `f32` [`tanh_f32`], which has no libm
    /// call, so that loops over it vectorise.
    fn tanh_act(self) -> Self;
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
    #[inline(always)]
    fn tanh_act(self) -> Self {
        tanh_f32(self)
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
    #[inline(always)]
    fn tanh_act(self) -> Self {
        self.tanh()
    }
}

/// `tanh(x)` for `f32`, evaluated in `f64` with selects instead of branches and no libm call
/// (so that loops over it vectorise; glibc's `tanh`, one call per value, cost about a tenth of
/// a generation: see docs/performance.md): `e = exp(2|x|)` as
/// `2^k · p(r)` with a degree-13 Taylor polynomial on `|r| ≤ ln2/2`, then `(e − 1)/(e + 1)`,
/// or `a − a³/3 + 2a⁵/15` below 2⁻¹², where `e − 1` would cancel. The `f64` value is within
/// 1e-15 of the true one, so the `f32` result is tanh correctly rounded but for ties within
/// that margin (checked against libm's `f64` tanh in the tests). NaN stays NaN.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    const LN2_HI: f64 = 0.693_147_180_369_123_8; // ln 2 to 32 bits, so k·LN2_HI is exact
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    const ROUND: f64 = 6_755_399_441_055_744.0; // 1.5·2⁵², adding it rounds to an integer
    let a = (x as f64).abs().min(10.0); // tanh(10) rounds to 1 in f32
    let t = 2.0 * a;
    let kr = t * std::f64::consts::LOG2_E + ROUND; // its low bits: k = round(t / ln 2), 0..=29
    let kf = kr - ROUND;
    let r = (t - kf * LN2_HI) - kf * LN2_LO;
    let mut p = 1.0 / 6_227_020_800.0; // 1/13!
    for d in [
        479_001_600.0,
        39_916_800.0,
        3_628_800.0,
        362_880.0,
        40_320.0,
        5_040.0,
        720.0,
        120.0,
        24.0,
        6.0,
        2.0,
        1.0,
        1.0,
    ] {
        p = p * r + 1.0 / d;
    }
    let e = p * f64::from_bits((kr.to_bits() + 1023) << 52); // p · 2^k: the shift drops ROUND's bits
    let big = (e - 1.0) / (e + 1.0);
    let a2 = a * a;
    let small = a * (1.0 + a2 * (-1.0 / 3.0 + a2 * (2.0 / 15.0)));
    let y = if a < 1.0 / 4096.0 { small } else { big };
    if x.is_nan() {
        x
    } else {
        (y as f32).copysign(x)
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

#[cfg(test)]
mod tests {
    use super::tanh_f32;

    /// Against libm's `f64` tanh rounded to `f32`, over every 301st `f32` from 0 to 12 (both
    /// signs; ~3.5 million values), the branch edges and the special values.
    #[test]
    fn tanh_f32_is_libm_tanh_rounded() {
        let reference = |x: f32| (x as f64).tanh() as f32;
        let check = |x: f32| {
            let (got, want) = (tanh_f32(x), reference(x));
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "tanh({x:e}) = {got:e}, libm {want:e}"
            );
        };
        for bits in (0..=12f32.to_bits()).step_by(301) {
            let x = f32::from_bits(bits);
            check(x);
            check(-x);
        }
        let edge = 1.0f32 / 4096.0;
        for x in [
            edge,
            f32::from_bits(edge.to_bits() - 1),
            0.3466,
            9.99,
            10.0,
            10.01,
            50.0,
        ] {
            check(x);
            check(-x);
        }
        assert_eq!(tanh_f32(0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(tanh_f32(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(tanh_f32(f32::NEG_INFINITY), -1.0);
        assert_eq!(tanh_f32(f32::MIN_POSITIVE), f32::MIN_POSITIVE);
        assert!(tanh_f32(f32::NAN).is_nan());
    }
}
