//! Patch gathering on channels-last buffers: a convolution's input as a patch matrix
//! (im2col) and a patch matrix summed back into an image (col2im).

use super::Real;
use rayon::prelude::*;

/// Geometry of a square-kernel convolution from an `h × w` image with `c` channels to an
/// `ho × wo` grid of patches (for a transposed convolution, the image is its output).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Geometry {
    /// Elements of the image `[n, h, w, c]`.
    pub fn image_len(&self) -> usize {
        self.n * self.h * self.w * self.c
    }

    /// Elements of the patch matrix `[n·ho·wo, k·k·c]`.
    pub fn cols_len(&self) -> usize {
        self.n * self.ho * self.wo * self.k * self.k * self.c
    }

    /// Whether the patch matrix is the image itself (one patch covering it, no padding).
    pub fn is_identity(&self) -> bool {
        self.pad == 0 && (self.h, self.w) == (self.k, self.k) && (self.ho, self.wo) == (1, 1)
    }

    /// Image coordinate read by patch position `o` at kernel tap `t`, if inside the image.
    #[inline]
    fn source(&self, o: usize, t: usize, size: usize) -> Option<usize> {
        let i = (o * self.stride + t).checked_sub(self.pad)?;
        (i < size).then_some(i)
    }
}

/// `[N, H, W, C]` → `[N·Ho·Wo, k·k·C]`, columns ordered `(ky, kx, c)`: every patch, zero
/// outside the image. Writes all of `dst`.
pub fn im2col<T: Real>(src: &[T], g: &Geometry, dst: &mut [T]) {
    let (k, c) = (g.k, g.c);
    let row = g.wo * k * k * c;
    assert_eq!(src.len(), g.image_len(), "im2col: image size");
    assert_eq!(dst.len(), g.cols_len(), "im2col: patch matrix size");
    dst.par_chunks_mut(row).enumerate().for_each(|(ny, out)| {
        let (n, oy) = (ny / g.ho, ny % g.ho);
        for ox in 0..g.wo {
            for ky in 0..k {
                let d = (ox * k + ky) * k * c;
                let Some(iy) = g.source(oy, ky, g.h) else {
                    out[d..d + k * c].fill(T::zero());
                    continue;
                };
                for kx in 0..k {
                    let d = d + kx * c;
                    match g.source(ox, kx, g.w) {
                        Some(ix) => {
                            let s = ((n * g.h + iy) * g.w + ix) * c;
                            out[d..d + c].copy_from_slice(&src[s..s + c]);
                        }
                        None => out[d..d + c].fill(T::zero()),
                    }
                }
            }
        }
    });
}

/// The adjoint of [`im2col`]: `[N·Ho·Wo, k·k·C]` → `[N, H, W, C]`, summing every patch entry
/// back where it came from. Writes all of `dst`.
pub fn col2im<T: Real>(src: &[T], g: &Geometry, dst: &mut [T]) {
    let (k, c, s) = (g.k, g.c, g.stride);
    assert_eq!(src.len(), g.cols_len(), "col2im: patch matrix size");
    assert_eq!(dst.len(), g.image_len(), "col2im: image size");
    // A gather: each image row sums the patch entries that read it, so rows are independent.
    dst.par_chunks_mut(g.w * c)
        .enumerate()
        .for_each(|(ny, out)| {
            out.fill(T::zero());
            let (n, iy) = (ny / g.h, ny % g.h);
            for ky in 0..k {
                let t = iy + g.pad;
                if t < ky || !(t - ky).is_multiple_of(s) || (t - ky) / s >= g.ho {
                    continue;
                }
                let oy = (t - ky) / s;
                for ix in 0..g.w {
                    let acc = &mut out[ix * c..(ix + 1) * c];
                    for kx in 0..k {
                        let t = ix + g.pad;
                        if t < kx || !(t - kx).is_multiple_of(s) || (t - kx) / s >= g.wo {
                            continue;
                        }
                        let ox = (t - kx) / s;
                        let base = ((((n * g.ho + oy) * g.wo + ox) * k + ky) * k + kx) * c;
                        for (a, &v) in acc.iter_mut().zip(&src[base..base + c]) {
                            *a += v;
                        }
                    }
                }
            }
        });
}
