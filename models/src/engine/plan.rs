//! One layer's shapes, shared by both engines.

use crate::kernels::Geometry;
use crate::spec::LayerSpec;

/// One layer's shapes: input `h × w × cin`, output `ho × wo × cout` (channels-last rows).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LayerPlan {
    pub spec: LayerSpec,
    pub h: usize,
    pub w: usize,
    pub ho: usize,
    pub wo: usize,
}

impl LayerPlan {
    /// The layer applied to a square `side × side` input.
    pub fn square(spec: LayerSpec, side: usize) -> Self {
        let out = spec.out_size(side);
        Self {
            spec,
            h: side,
            w: side,
            ho: out,
            wo: out,
        }
    }

    /// The im2col geometry of a convolution: the image is the input, the patch grid the output.
    pub fn conv_geometry(&self, n: usize) -> Geometry {
        Geometry {
            n,
            h: self.h,
            w: self.w,
            c: self.spec.in_channels,
            k: self.spec.kernel,
            stride: self.spec.stride,
            pad: self.spec.padding,
            ho: self.ho,
            wo: self.wo,
        }
    }

    /// The col2im geometry of a transposed convolution: the image is the output, the patch
    /// grid the input.
    pub fn deconv_geometry(&self, n: usize) -> Geometry {
        Geometry {
            n,
            h: self.ho,
            w: self.wo,
            c: self.spec.out_channels,
            k: self.spec.kernel,
            stride: self.spec.stride,
            pad: self.spec.padding,
            ho: self.h,
            wo: self.w,
        }
    }

    /// Input elements per row.
    pub fn in_len(&self) -> usize {
        self.h * self.w * self.spec.in_channels
    }

    /// Output elements per row.
    pub fn out_len(&self) -> usize {
        self.ho * self.wo * self.spec.out_channels
    }

    /// Patch length of a convolution, `k·k·Cin`.
    pub fn conv_patch(&self) -> usize {
        self.spec.kernel * self.spec.kernel * self.spec.in_channels
    }

    /// Patch length of a transposed convolution, `k·k·Cout`.
    pub fn deconv_patch(&self) -> usize {
        self.spec.kernel * self.spec.kernel * self.spec.out_channels
    }
}
