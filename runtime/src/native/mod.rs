//! The native backend: generator graphs run on the training engine's CPU kernels
//! (`wgan_models::kernels`: GEMM, im2col/col2im, fused bias + activation), pure Rust, no
//! candle.
//!
//! [`graph::lower`] folds the nodes that compute from constants only ([`fold::FOLDED`]) and turns
//! the rest of the ONNX graph into a [`plan::Plan`], a chain of steps over channels-last
//! buffers, one lowering per operator ([`ops::OPERATORS`]), folding BatchNormalization,
//! constant Add/Mul and activations into the convolution or matrix product before them. A transposed convolution is `col2im(x · W)` and a convolution
//! `im2col(x) · Wᵀ`, sample chunk by sample chunk through one reused patch buffer; the
//! matrix products run on a private rayon pool of `threads` threads. Buffers grow to the
//! largest batch seen and are reused. Graphs outside the supported set are refused with
//! [`Unsupported`] naming the node (`--backend auto` then uses tract).

mod constant;
mod error;
pub mod fold;
pub mod graph;
pub mod ops;
pub mod plan;

pub use error::{LoadError, Unsupported};

use crate::engine::{Engine, Options};
use crate::onnx::Contract;
use anyhow::Result;
use plan::{Act, ConvShape, Plan, Step, DECONV_BLOCK};
use rayon::prelude::*;
use wgan_models::kernels::{
    bias_activation,
    gemm::matmul_column_blocks,
    im2col::Geometry,
    matmul, nchw_to_nhwc, nhwc_to_nchw,
    patches::{for_each_patch_chunk, patch_rows, scatter_patch_chunks},
    sized, Mat,
};
use wgan_models::spec::Activation;

pub(crate) struct NativeEngine {
    plan: Plan,
    pool: rayon::ThreadPool,
    threads: usize,
    /// Ping-pong activation buffers and the patch scratch, reused across calls.
    a: Vec<f32>,
    b: Vec<f32>,
    cols: Vec<f32>,
}

impl NativeEngine {
    /// Lowers the model; [`LoadError::Unsupported`] when the graph is outside the native set.
    pub(crate) fn load(
        bytes: &[u8],
        contract: &Contract,
        options: &Options,
    ) -> Result<Self, LoadError> {
        let plan = graph::lower(bytes, &contract.input, &contract.output, contract.z_dim)?;
        let threads = options.threads();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("native-{i}"))
            .build()
            .map_err(|e| {
                LoadError::Failed(anyhow::anyhow!(
                    "cannot start the native backend's threads: {e}"
                ))
            })?;
        Ok(NativeEngine {
            plan,
            pool,
            threads,
            a: Vec::new(),
            b: Vec::new(),
            cols: Vec::new(),
        })
    }
}

impl Engine for NativeEngine {
    fn run(&mut self, z: &[f32], n: usize) -> Result<(Vec<f32>, Vec<usize>)> {
        anyhow::ensure!(
            n > 0 && z.len() == n * self.plan.z_dim,
            "{} latent values for {n} images of z_dim {}",
            z.len(),
            self.plan.z_dim
        );
        let Self {
            plan,
            pool,
            a,
            b,
            cols,
            ..
        } = self;
        let out = pool.install(|| {
            sized(a, z.len()).copy_from_slice(z);
            let mut len = z.len();
            for step in &plan.steps {
                len = run_step(step, n, &a[..len], b, cols);
                std::mem::swap(a, b);
            }
            let [c, h, w] = plan.image;
            nhwc_to_nchw(&a[..len], n, c, h * w)
        });
        let [c, h, w] = self.plan.image;
        Ok((out, vec![n, c, h, w]))
    }

    fn describe(&self) -> String {
        let s = if self.threads == 1 { "" } else { "s" };
        format!(
            "native ({} thread{s}, {} steps on the training engine's kernels)",
            self.threads,
            self.plan.steps.len()
        )
    }
}

/// Runs one step on `n` samples of `x`, writing `out`; returns the output length.
fn run_step(step: &Step, n: usize, x: &[f32], out: &mut Vec<f32>, cols: &mut Vec<f32>) -> usize {
    match step {
        Step::Deconv {
            shape,
            w,
            bias,
            act,
        } => {
            let g = deconv_geometry(shape, n);
            let len = g.image_len();
            let y = sized(out, len);
            let (pr, cin) = (patch_rows(&g), shape.cin);
            let width = shape.k * shape.k * shape.cout;
            scatter_patch_chunks(y, &g, cols, |r, c| {
                let xm = Mat::rows(&x[r.start * pr * cin..r.end * pr * cin], r.len() * pr, cin);
                matmul_column_blocks(c, xm, w, width, DECONV_BLOCK);
            });
            epilogue(y, shape.cout, bias, *act);
            len
        }
        Step::Conv {
            shape,
            w,
            bias,
            act,
        } => {
            let g = conv_geometry(shape, n);
            let per = shape.ho * shape.wo * shape.cout;
            let len = n * per;
            let y = sized(out, len);
            let patch = shape.k * shape.k * shape.cin;
            let wt = Mat::rows(w, shape.cout, patch).t();
            let pr = patch_rows(&g);
            for_each_patch_chunk(x, &g, cols, |r, p| {
                let rows = r.len() * pr;
                matmul(
                    &mut y[r.start * per..r.end * per],
                    Mat::rows(p, rows, patch),
                    wt,
                    false,
                    1.0,
                );
            });
            epilogue(y, shape.cout, bias, *act);
            len
        }
        Step::Dense {
            k_in,
            m,
            w,
            bias,
            act,
        } => {
            let y = sized(out, n * m);
            matmul(
                y,
                Mat::rows(x, n, *k_in),
                Mat::rows(w, *k_in, *m),
                false,
                1.0,
            );
            epilogue(y, *m, bias, *act);
            n * m
        }
        Step::Affine {
            c,
            scale,
            shift,
            act,
        } => {
            let y = sized(out, x.len());
            let c = *c;
            y.par_chunks_mut(c * 256)
                .zip(x.par_chunks(c * 256))
                .for_each(|(y, x)| {
                    for (yr, xr) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
                        for ch in 0..c {
                            yr[ch] = xr[ch] * scale[ch] + shift[ch];
                        }
                    }
                });
            epilogue(y, c, &[], *act);
            x.len()
        }
        Step::ToImage { c, h, w } => {
            // [N, C·H·W] in (c, h, w) order → [N, H, W, C].
            *out = nchw_to_nhwc(x, n, *c, h * w);
            x.len()
        }
        Step::ToFlat { c, h, w } => {
            *out = nhwc_to_nchw(x, n, *c, h * w);
            x.len()
        }
    }
}

/// In place on `[rows, c]`: `act(y + bias)` (no bias when `bias` is empty), through the
/// training engine's fused pass where it has the activation.
fn epilogue(y: &mut [f32], c: usize, bias: &[f32], act: Act) {
    let bias = (!bias.is_empty()).then_some(bias);
    if let Act::Spec(shared) = act {
        bias_activation(y, c, bias, shared);
        return;
    }
    bias_activation(y, c, bias, Activation::None);
    let chunk = (y.len() / (4 * rayon::current_num_threads()).max(1)).max(4096);
    y.par_chunks_mut(chunk).for_each(|y| match act {
        Act::LeakyRelu(a) => y.iter_mut().for_each(|v| {
            if *v < 0.0 {
                *v *= a
            }
        }),
        _ => y.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
    });
}

/// The col2im geometry of a transposed convolution: the image is its output, the patch grid
/// its input.
fn deconv_geometry(s: &ConvShape, n: usize) -> Geometry {
    Geometry {
        n,
        h: s.ho,
        w: s.wo,
        c: s.cout,
        k: s.k,
        stride: s.stride,
        pad: s.pad,
        ho: s.h,
        wo: s.w,
    }
}

/// The im2col geometry of a convolution: the image is its input, the patch grid its output.
fn conv_geometry(s: &ConvShape, n: usize) -> Geometry {
    Geometry {
        n,
        h: s.h,
        w: s.w,
        c: s.cin,
        k: s.k,
        stride: s.stride,
        pad: s.pad,
        ho: s.ho,
        wo: s.wo,
    }
}

#[cfg(test)]
mod tests;
