//! The native backend's plan: a chain of steps over channels-last buffers with their weights in
//! the kernels' matrix layouts (what [`super::graph::lower`] produces and
//! [`super::NativeEngine`] runs).

use wgan_models::spec::Activation;

/// An elementwise activation applied after a step: one of the specs' (the training engine's
/// kernels run it fused with the bias), or one that ONNX graphs may hold and the specs do not.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    Spec(Activation),
    /// Leaky ReLU with a slope other than the specs' [`wgan_models::spec::LEAKY_SLOPE`].
    LeakyRelu(f32),
    Sigmoid,
}

/// Square-kernel convolution geometry of one sample: input `h × w × cin`, output
/// `ho × wo × cout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
    pub ho: usize,
    pub wo: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

/// Per-sample shape of a value: an image (stored `[H, W, C]`, channels last) or a flat row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Image { c: usize, h: usize, w: usize },
    Flat(usize),
}

impl Shape {
    /// Values per sample.
    pub fn values(self) -> usize {
        match self {
            Shape::Image { c, h, w } => c * h * w,
            Shape::Flat(k) => k,
        }
    }

    /// Channels: an image's `c`, a flat row's length (its last axis).
    pub fn channels(self) -> usize {
        match self {
            Shape::Image { c, .. } => c,
            Shape::Flat(k) => k,
        }
    }
}

/// One step of a plan. Weight layouts are the matrix products' (see each variant).
#[derive(Clone, Debug)]
pub enum Step {
    /// Transposed convolution: `col2im(x · w)`, `w` `[cin, k·k·cout]` (ONNX `[cin, cout, k, k]`
    /// with the output channel moved last) while lowering; in a finished [`Plan`] split into
    /// column blocks of [`DECONV_BLOCK`], each `[cin, width]` contiguous. Then `+ bias` and the
    /// activation.
    Deconv {
        shape: ConvShape,
        w: Vec<f32>,
        bias: Vec<f32>,
        act: Act,
    },
    /// Convolution: `im2col(x) · wᵀ`, `w` `[cout, k·k·cin]` (ONNX `[cout, cin, k, k]` with the
    /// input channel moved last), then `+ bias` and the activation.
    Conv {
        shape: ConvShape,
        w: Vec<f32>,
        bias: Vec<f32>,
        act: Act,
    },
    /// Fully connected: `x · w + bias`, `w` `[k_in, m]`.
    Dense {
        k_in: usize,
        m: usize,
        w: Vec<f32>,
        bias: Vec<f32>,
        act: Act,
    },
    /// Per-channel `act(x · scale + shift)` on the last axis.
    Affine {
        c: usize,
        scale: Vec<f32>,
        shift: Vec<f32>,
        act: Act,
    },
    /// A flat row in ONNX order `(c, h, w)` to a channels-last image.
    ToImage { c: usize, h: usize, w: usize },
    /// A channels-last image to a flat row in ONNX order `(c, h, w)`.
    ToFlat { c: usize, h: usize, w: usize },
}

impl Step {
    /// The activation slot of a step that has one.
    pub(super) fn act_mut(&mut self) -> Option<&mut Act> {
        match self {
            Step::Deconv { act, .. }
            | Step::Conv { act, .. }
            | Step::Dense { act, .. }
            | Step::Affine { act, .. } => Some(act),
            _ => None,
        }
    }

    /// Folds a following per-channel `x · scale + shift` (a BatchNorm, Add or Mul) into this
    /// step when it is linear, not yet activated and has one output channel per entry: output
    /// channel `o`'s weights are scaled by `scale[o]` and its bias becomes
    /// `bias[o] · scale[o] + shift[o]`. Returns whether it folded.
    pub(super) fn fold_affine(&mut self, scale: &[f32], shift: &[f32]) -> bool {
        let (bias, stride, per_output) = match self {
            Step::Deconv {
                shape,
                w,
                bias,
                act: Act::Spec(Activation::None),
            } => (bias, Some(shape.cout), w),
            Step::Dense {
                m,
                w,
                bias,
                act: Act::Spec(Activation::None),
                ..
            } => (bias, Some(*m), w),
            // Row-major [cout, k·k·cin]: output channel o is row o.
            Step::Conv {
                w,
                bias,
                act: Act::Spec(Activation::None),
                ..
            } => (bias, None, w),
            Step::Affine {
                scale: own,
                shift: bias,
                act: Act::Spec(Activation::None),
                ..
            } => (bias, None, own),
            _ => return false,
        };
        if bias.is_empty() || bias.len() != scale.len() {
            return false;
        }
        let outputs = bias.len();
        match stride {
            // Output channel last: each run of `stride` values holds every output once (one
            // pass in memory order; a strided pass per channel touched every cache line
            // `stride` times).
            Some(stride) => per_output.chunks_exact_mut(stride).for_each(|row| {
                row.iter_mut().zip(scale).for_each(|(v, &s)| *v *= s);
            }),
            None => {
                let per = per_output.len() / outputs;
                per_output
                    .chunks_exact_mut(per)
                    .zip(scale)
                    .for_each(|(chunk, &s)| chunk.iter_mut().for_each(|v| *v *= s));
            }
        }
        for ((b, &s), &t) in bias.iter_mut().zip(scale).zip(shift) {
            *b = *b * s + t;
        }
        true
    }
}

/// What the native backend runs: the steps, the per-sample input and output shapes.
#[derive(Clone, Debug)]
pub struct Plan {
    pub z_dim: usize,
    pub steps: Vec<Step>,
    /// The output image `[C, H, W]`.
    pub image: [usize; 3],
}

/// Columns per block of a transposed convolution's weights in a [`Plan`]. Row-major
/// `[cin, k·k·cout]` weights make the `gemm` crate read 64 values per step of the inner sum
/// with a whole row (up to 32 KB) between steps; in blocks the stride is one block row (1 KB),
/// which made batch 1 up to 2× faster (docs/performance.md, "How the native backend works").
pub const DECONV_BLOCK: usize = 256;
