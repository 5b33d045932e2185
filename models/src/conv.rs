//! Convolutions as matrix products, in channels-last (NHWC) layout.
//!
//! candle's CPU `conv_transpose2d` is a dot product per output element, and conv2d's input
//! gradient (hence the gradient penalty's second-order pass) runs through it. Here both
//! directions are one GEMM plus a pair of linear re-indexing ops, [`Im2Col`] and [`Col2Im`],
//! that are each other's adjoint: the backward of one is the other. Every gradient, to any
//! order, is therefore again GEMMs and these two gathers.
//!
//! - `conv2d(x, W)           = im2col(x) · Wᵀ`
//! - `conv_transpose2d(x, W) = col2im(x · W)` (the adjoint of the conv with the same geometry)
//!
//! On devices other than the CPU the custom ops have no kernel, so the same functions are
//! built from candle's generic tensor ops instead ([`conv2d_by_blocks`],
//! [`conv_transpose2d_by_blocks`]): when the stride divides the kernel size, a convolution is
//! one matrix product over shifted windows of the input cut into stride-sized blocks
//! (space-to-depth), and a transposed convolution one matrix product followed by a sum of
//! shifted, zero-padded block images. Their gradients, to any order, are again matrix
//! products, pads and slices, so on CUDA everything runs through cuBLAS and copies rather
//! than candle's direct convolution kernels. Other geometries fall back to candle's own
//! convolutions (through NCHW views). The layer code is device-neutral either way.

use crate::kernels::Real;
use crate::kernels::{self, Geometry};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, WithDType};

/// `[N, H, W, C]` → `[N, Ho, Wo, k, k, C]`: every patch of the convolution, zero outside.
#[derive(Clone, Copy, Debug)]
pub struct Im2Col(pub Geometry);

/// `[N, Ho, Wo, k, k, C]` → `[N, H, W, C]`: sums each patch entry back where it came from.
#[derive(Clone, Copy, Debug)]
pub struct Col2Im(pub Geometry);

fn contiguous_slice<'a, T: WithDType>(
    data: &'a [T],
    layout: &Layout,
    name: &str,
) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{name} needs a contiguous input"),
    }
}

fn image_shape(g: &Geometry) -> Shape {
    Shape::from((g.n, g.h, g.w, g.c))
}

fn cols_shape(g: &Geometry) -> Shape {
    Shape::from(vec![g.n, g.ho, g.wo, g.k, g.k, g.c])
}

fn im2col<T: Real>(src: &[T], g: &Geometry) -> Vec<T> {
    let mut dst = vec![T::zero(); g.cols_len()];
    kernels::im2col(src, g, &mut dst);
    dst
}

fn col2im<T: Real>(src: &[T], g: &Geometry) -> Vec<T> {
    let mut dst = vec![T::zero(); g.image_len()];
    kernels::col2im(src, g, &mut dst);
    dst
}

macro_rules! dispatch {
    ($storage:expr, $layout:expr, $name:expr, $f:expr, $g:expr) => {
        match $storage {
            CpuStorage::F32(d) => CpuStorage::F32($f(contiguous_slice(d, $layout, $name)?, $g)),
            CpuStorage::F64(d) => CpuStorage::F64($f(contiguous_slice(d, $layout, $name)?, $g)),
            _ => candle_core::bail!("{} supports f32 and f64", $name),
        }
    };
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col-nhwc"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        if layout.shape() != &image_shape(&self.0) {
            candle_core::bail!(
                "im2col: input {:?} does not match {:?}",
                layout.shape(),
                self.0
            );
        }
        Ok((
            dispatch!(storage, layout, "im2col", im2col, &self.0),
            cols_shape(&self.0),
        ))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.contiguous()?.apply_op1(Col2Im(self.0))?))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im-nhwc"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        if layout.shape() != &cols_shape(&self.0) {
            candle_core::bail!(
                "col2im: input {:?} does not match {:?}",
                layout.shape(),
                self.0
            );
        }
        Ok((
            dispatch!(storage, layout, "col2im", col2im, &self.0),
            image_shape(&self.0),
        ))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.contiguous()?.apply_op1(Im2Col(self.0))?))
    }
}

fn to_nchw(x: &Tensor) -> Result<Tensor> {
    x.permute((0, 3, 1, 2))?.contiguous()
}

fn to_nhwc(x: &Tensor) -> Result<Tensor> {
    x.permute((0, 2, 3, 1))?.contiguous()
}

/// Convolution of `x` `[N, H, W, C]` with PyTorch-layout weight `[Cout, C, k, k]`, giving
/// `[N, Ho, Wo, Cout]`.
pub fn conv2d(x: &Tensor, weight: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    let (cout, cin, k, _) = weight.dims4()?;
    if cin != c {
        candle_core::bail!("conv2d: input has {c} channels, weight expects {cin}");
    }
    if h + 2 * pad < k || w + 2 * pad < k {
        candle_core::bail!(
            "conv2d: a {h}×{w} input padded by {pad} is smaller than the {k}×{k} kernel"
        );
    }
    let (ho, wo) = (
        (h + 2 * pad - k) / stride + 1,
        (w + 2 * pad - k) / stride + 1,
    );
    let whole_image = pad == 0 && (h, w) == (k, k);
    if !whole_image && !crate::cpu_custom_ops(x.device()) {
        return if k % stride == 0 {
            conv2d_by_blocks(x, weight, stride, pad)
        } else {
            to_nhwc(&to_nchw(x)?.conv2d(weight, pad, stride, 1, 1)?)
        };
    }
    // Rows of (ky, kx, c) to match the patch layout of `Im2Col`.
    let wmat = weight.permute((2, 3, 1, 0))?.reshape((k * k * c, cout))?;
    let cols = if whole_image {
        // One patch covering the whole image: the patch matrix is the image itself.
        x.reshape((n, k * k * c))?
    } else {
        let g = Geometry {
            n,
            h,
            w,
            c,
            k,
            stride,
            pad,
            ho,
            wo,
        };
        x.contiguous()?
            .apply_op1(Im2Col(g))?
            .reshape((n * ho * wo, k * k * c))?
    };
    cols.matmul(&wmat)?.reshape((n, ho, wo, cout))
}

/// Transposed convolution of `x` `[N, H, W, C]` with PyTorch-layout weight `[C, Cout, k, k]`,
/// giving `[N, Ho, Wo, Cout]` with `Ho = (H − 1)·stride + k − 2·pad`.
pub fn conv_transpose2d(x: &Tensor, weight: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    let (cin, cout, k, _) = weight.dims4()?;
    if cin != c {
        candle_core::bail!("conv_transpose2d: input has {c} channels, weight expects {cin}");
    }
    if h == 0 || w == 0 || (h.min(w) - 1) * stride + k < 2 * pad + 1 {
        candle_core::bail!("conv_transpose2d: padding {pad} leaves no output for a {h}×{w} input");
    }
    let single_pixel = pad == 0 && (h, w) == (1, 1);
    if !single_pixel && !crate::cpu_custom_ops(x.device()) {
        return if k % stride == 0 {
            conv_transpose2d_by_blocks(x, weight, stride, pad)
        } else {
            to_nhwc(&to_nchw(x)?.conv_transpose2d(weight, pad, 0, stride, 1)?)
        };
    }
    let (ho, wo) = (
        (h - 1) * stride + k - 2 * pad,
        (w - 1) * stride + k - 2 * pad,
    );
    // Columns of (ky, kx, cout) to match the patch layout of `Col2Im`.
    let wmat = weight.permute((0, 2, 3, 1))?.reshape((c, k * k * cout))?;
    let cols = x.reshape((n * h * w, c))?.matmul(&wmat)?;
    if single_pixel {
        // A single input pixel: its patch is the whole output.
        return cols.reshape((n, k, k, cout));
    }
    let g = Geometry {
        n,
        h: ho,
        w: wo,
        c: cout,
        k,
        stride,
        pad,
        ho: h,
        wo: w,
    };
    cols.reshape(vec![n, h, w, k, k, cout])?
        .apply_op1(Col2Im(g))
}

/// [`conv2d`] from generic tensor ops only (any device), for kernels that the stride divides.
///
/// With `k = s·A`, kernel row `ky = s·a + r` of output row `oy` reads padded input row
/// `s·(oy + a) + r`: block `oy + a`, offset `r`, once the padded input is cut into blocks of
/// `s` rows (and columns). The patch matrix is the `A²` windows of blocks shifted by `(a_y,
/// a_x)`, side by side, and the convolution one matrix product with the weight in the same
/// `(a_y, a_x, r_y, r_x, c)` order.
pub fn conv2d_by_blocks(x: &Tensor, weight: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    let (cout, cin, k, _) = weight.dims4()?;
    let s = stride;
    if cin != c || k % s != 0 || h + 2 * pad < k || w + 2 * pad < k {
        candle_core::bail!(
            "conv2d_by_blocks: needs {c} input channels (weight has {cin}), a stride dividing the kernel ({s} vs {k}) and an input no smaller than the kernel"
        );
    }
    let a = k / s;
    let (ho, wo) = ((h + 2 * pad - k) / s + 1, (w + 2 * pad - k) / s + 1);
    // Blocks read by some output; trailing padded rows beyond them are never read.
    let (bh, bw) = (ho + a - 1, wo + a - 1);
    let padded = x
        .pad_with_zeros(1, pad, pad)?
        .pad_with_zeros(2, pad, pad)?
        .narrow(1, 0, bh * s)?
        .narrow(2, 0, bw * s)?
        .reshape(vec![n, bh, s, bw, s, c])?;
    let mut windows = Vec::with_capacity(a * a);
    for ay in 0..a {
        for ax in 0..a {
            windows.push(
                padded
                    .narrow(1, ay, ho)?
                    .narrow(3, ax, wo)?
                    .permute((0, 1, 3, 2, 4, 5))?
                    .reshape((n * ho * wo, s * s * c))?,
            );
        }
    }
    let cols = Tensor::cat(&windows, 1)?;
    let wmat = weight
        .reshape(vec![cout, c, a, s, a, s])?
        .permute(vec![2, 4, 3, 5, 1, 0])?
        .reshape((k * k * c, cout))?;
    cols.matmul(&wmat)?.reshape((n, ho, wo, cout))
}

/// [`conv_transpose2d`] from generic tensor ops only (any device), for kernels that the
/// stride divides.
///
/// One matrix product gives every input pixel's `k×k` patch; with `k = s·A`, the patch's part
/// `(a_y, a_x)` is an `s×s` block that lands on output block `(iy + a_y, ix + a_x)`. The output
/// is the sum of the `A²` block images, each shifted by zero-padding, cropped by `pad`.
pub fn conv_transpose2d_by_blocks(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    let (cin, cout, k, _) = weight.dims4()?;
    let s = stride;
    if cin != c || k % s != 0 || h == 0 || w == 0 || (h.min(w) - 1) * s + k < 2 * pad + 1 {
        candle_core::bail!(
            "conv_transpose2d_by_blocks: needs {c} input channels (weight has {cin}), a stride dividing the kernel ({s} vs {k}) and a padding that leaves an output"
        );
    }
    let a = k / s;
    let (bh, bw) = (h + a - 1, w + a - 1);
    let wmat = weight
        .reshape(vec![c, cout, a, s, a, s])?
        .permute(vec![0, 2, 4, 3, 5, 1])?
        .reshape((c, k * k * cout))?;
    let cols =
        x.reshape((n * h * w, c))?
            .matmul(&wmat)?
            .reshape(vec![n, h, w, a * a, s, s, cout])?;
    let mut full: Option<Tensor> = None;
    for ay in 0..a {
        for ax in 0..a {
            let block = cols
                .narrow(3, ay * a + ax, 1)?
                .squeeze(3)?
                .permute((0, 1, 3, 2, 4, 5))?
                .pad_with_zeros(1, ay, a - 1 - ay)?
                .pad_with_zeros(3, ax, a - 1 - ax)?;
            full = Some(match full {
                None => block,
                Some(sum) => (sum + block)?,
            });
        }
    }
    let full = full
        .expect("k ≥ s gives at least one block")
        .reshape((n, bh * s, bw * s, cout))?;
    let (ho, wo) = (bh * s - 2 * pad, bw * s - 2 * pad);
    full.narrow(1, pad, ho)?.narrow(2, pad, wo)?.contiguous()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latent::Rng;
    use candle_core::{DType, Device, Var};

    fn randn(rng: &mut Rng, shape: &[usize]) -> Tensor {
        let v: Vec<f64> = (0..shape.iter().product())
            .map(|_| rng.normal_f32() as f64)
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    /// Outputs, first-order gradients (input and weight) and a second-order quantity (the
    /// weight gradient of the squared input-gradient norm, as in the gradient penalty)
    /// against candle's own convolutions, in f64. `by_blocks` checks the generic-op forms
    /// (the path on GPUs) instead of the custom ops.
    fn check(
        transpose: bool,
        by_blocks: bool,
        (n, c, cout, hw, k, stride, pad): (usize, usize, usize, usize, usize, usize, usize),
    ) {
        let mut rng = Rng::new((c * 131 + hw * 7 + stride) as u64);
        let x = Var::from_tensor(&randn(&mut rng, &[n, hw, hw, c])).unwrap();
        let wshape = if transpose {
            [c, cout, k, k]
        } else {
            [cout, c, k, k]
        };
        let w = Var::from_tensor(&randn(&mut rng, &wshape)).unwrap();
        let ours = |x: &Tensor, w: &Tensor| {
            match (transpose, by_blocks) {
                (true, false) => conv_transpose2d(x, w, stride, pad),
                (true, true) => conv_transpose2d_by_blocks(x, w, stride, pad),
                (false, false) => conv2d(x, w, stride, pad),
                (false, true) => conv2d_by_blocks(x, w, stride, pad),
            }
            .unwrap()
        };
        let reference = |x: &Tensor, w: &Tensor| {
            let y = if transpose {
                to_nchw(x).unwrap().conv_transpose2d(w, pad, 0, stride, 1)
            } else {
                to_nchw(x).unwrap().conv2d(w, pad, stride, 1, 1)
            };
            to_nhwc(&y.unwrap()).unwrap()
        };
        let (ya, yb) = (
            ours(x.as_tensor(), w.as_tensor()),
            reference(x.as_tensor(), w.as_tensor()),
        );
        assert_eq!(ya.dims(), yb.dims());
        assert!(max_diff(&ya, &yb) < 1e-10, "forward");
        let probe = randn(&mut rng, ya.dims());
        let second = |f: &dyn Fn(&Tensor, &Tensor) -> Tensor| {
            let y = f(x.as_tensor(), w.as_tensor());
            let g = (y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let (gx, gw) = (
                g.get(x.as_tensor()).unwrap().clone(),
                g.get(w.as_tensor()).unwrap().clone(),
            );
            let gg = gx.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            (gx, gw, gg.get(w.as_tensor()).unwrap().clone())
        };
        let (a, b) = (second(&ours), second(&reference));
        assert!(max_diff(&a.0, &b.0) < 1e-10, "input gradient");
        assert!(max_diff(&a.1, &b.1) < 1e-10, "weight gradient");
        assert!(max_diff(&a.2, &b.2) < 1e-9, "second-order weight gradient");
    }

    #[test]
    fn conv2d_matches_candle_to_second_order() {
        assert!(
            std::env::var("CANDLE_GRAD_DO_NOT_DETACH").is_ok_and(|v| !v.is_empty() && v != "0"),
            "second-order checks need CANDLE_GRAD_DO_NOT_DETACH=1 (set in .cargo/config.toml)"
        );
        check(false, false, (2, 3, 5, 8, 4, 2, 1));
        check(false, false, (2, 4, 3, 4, 4, 1, 0));
        check(false, false, (1, 2, 3, 7, 3, 2, 1));
        check(false, false, (2, 3, 2, 4, 4, 2, 0));
    }

    #[test]
    fn conv_transpose2d_matches_candle_to_second_order() {
        check(true, false, (2, 3, 5, 4, 4, 2, 1));
        check(true, false, (2, 6, 4, 1, 4, 1, 0));
        check(true, false, (1, 2, 3, 5, 3, 2, 1));
    }

    #[test]
    fn block_forms_match_candle_to_second_order() {
        // The presets' strided layers, odd sizes whose last padded row is never read,
        // stride 1, and a transposed convolution whose padding crops more than one block.
        check(false, true, (2, 3, 5, 8, 4, 2, 1));
        check(false, true, (2, 3, 4, 7, 4, 2, 1));
        check(false, true, (2, 4, 3, 5, 2, 1, 0));
        check(false, true, (1, 2, 3, 9, 6, 3, 2));
        check(true, true, (2, 3, 5, 4, 4, 2, 1));
        check(true, true, (2, 6, 4, 3, 4, 1, 0));
        check(true, true, (2, 2, 3, 3, 4, 2, 0));
        check(true, true, (1, 3, 2, 3, 6, 2, 3));
    }

    #[test]
    fn block_forms_refuse_strides_that_do_not_divide_the_kernel() {
        let x = Tensor::ones((1, 5, 5, 2), DType::F64, &Device::Cpu).unwrap();
        let w = Tensor::ones((3, 2, 3, 3), DType::F64, &Device::Cpu).unwrap();
        assert!(conv2d_by_blocks(&x, &w, 2, 1).is_err());
        assert!(conv_transpose2d_by_blocks(&x, &w.transpose(0, 1).unwrap(), 2, 1).is_err());
    }

    #[test]
    fn f32_path_runs_and_rejects_mismatched_channels() {
        let x = Tensor::ones((1, 4, 4, 2), DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::ones((3, 2, 4, 4), DType::F32, &Device::Cpu).unwrap();
        let y = conv2d(&x, &w, 2, 1).unwrap();
        assert_eq!(y.dims(), &[1, 2, 2, 3]);
        // Corner output sees a 3×3 window of ones in 2 channels.
        assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0], 18.0);
        let bad = Tensor::ones((3, 5, 4, 4), DType::F32, &Device::Cpu).unwrap();
        assert!(conv2d(&x, &bad, 2, 1).is_err());
    }
}
