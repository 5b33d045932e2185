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

#[cfg(test)]
mod tests {
    use super::*;

    /// col2im is im2col's adjoint: ⟨im2col(x), y⟩ = ⟨x, col2im(y)⟩ for every geometry
    /// (strides 1–3, pads 0–2, kernels 1–5, odd sizes), in f64.
    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        let value = |i: usize, salt: f64| ((i as f64 + salt) * 0.7137).sin();
        for (h, w, k, stride, pad) in [
            (5, 7, 3, 1, 1),
            (8, 8, 4, 2, 1),
            (9, 6, 4, 2, 2),
            (7, 7, 5, 3, 2),
            (4, 4, 4, 1, 0),
            (6, 5, 1, 2, 0),
            (3, 3, 2, 3, 1),
        ] {
            let (n, c) = (2, 3);
            let ho = (h + 2 * pad - k) / stride + 1;
            let wo = (w + 2 * pad - k) / stride + 1;
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
            let x: Vec<f64> = (0..g.image_len()).map(|i| value(i, 0.3)).collect();
            let y: Vec<f64> = (0..g.cols_len()).map(|i| value(i, 11.9)).collect();
            let mut cols = vec![f64::NAN; g.cols_len()];
            im2col(&x, &g, &mut cols);
            let mut img = vec![f64::NAN; g.image_len()];
            col2im(&y, &g, &mut img);
            let lhs: f64 = cols.iter().zip(&y).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.iter().zip(&img).map(|(a, b)| a * b).sum();
            assert!(
                (lhs - rhs).abs() < 1e-9 * lhs.abs().max(1.0),
                "{g:?}: {lhs} vs {rhs}"
            );
        }
    }
}
