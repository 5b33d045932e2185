//! Convolutions sample-chunk by sample-chunk: the patch matrix of a few samples at a time
//! lives in one reused scratch buffer, so no pass ever holds the patch matrix of a whole
//! batch (for `dcgan64`'s critic that would be 200 MB per layer), and the chunk is still in
//! cache when the matrix product reads it.

use super::gemm::{matmul, Mat};
use super::im2col::{col2im, im2col, Geometry};
use super::{sized, Real};
use std::ops::Range;

/// Patch-matrix elements per chunk (16 MB in f32): small enough to stay in the last-level
/// cache, large enough (thousands of rows) for the matrix products to run at full speed.
const CHUNK_ELEMS: usize = 1 << 22;

/// Sample ranges covering `0..n`, each with at most [`CHUNK_ELEMS`] patch-matrix elements
/// (at least one sample each).
fn chunks(g: &Geometry) -> impl Iterator<Item = Range<usize>> {
    let per_sample = (g.cols_len() / g.n.max(1)).max(1);
    let step = (CHUNK_ELEMS / per_sample).clamp(1, g.n.max(1));
    let n = g.n;
    (0..n.div_ceil(step)).map(move |i| i * step..((i + 1) * step).min(n))
}

fn with_n(g: &Geometry, n: usize) -> Geometry {
    Geometry { n, ..*g }
}

/// Elements of one sample's image.
fn image_per_sample(g: &Geometry) -> usize {
    g.h * g.w * g.c
}

/// Rows of the patch matrix per sample.
pub fn patch_rows(g: &Geometry) -> usize {
    g.ho * g.wo
}

/// Calls `f(samples, patches)` for consecutive sample chunks of `image` `[n, h, w, c]`, with
/// `patches` the chunk's patch matrix `[len·ho·wo, k·k·c]` (the image itself when the
/// geometry is the identity).
pub fn for_each_patch_chunk<T: Real>(
    image: &[T],
    g: &Geometry,
    scratch: &mut Vec<T>,
    mut f: impl FnMut(Range<usize>, &[T]),
) {
    assert_eq!(image.len(), g.image_len(), "patch chunks: image size");
    if g.is_identity() {
        f(0..g.n, image);
        return;
    }
    let per = image_per_sample(g);
    for r in chunks(g) {
        let cg = with_n(g, r.len());
        let cols = sized(scratch, cg.cols_len());
        im2col(&image[r.start * per..r.end * per], &cg, cols);
        f(r, cols);
    }
}

/// The weight-side products of a convolution's backward pass, chunk by chunk over the patch
/// matrix `P` `[n·ho·wo, patch_len]` of `image`: with `rows` `[n·ho·wo, k]` row-aligned with
/// `P` (longer buffers allowed), `dw` `[k, patch_len]` `+= rowsᵀ · P` and, when `through` is
/// `Some((out, wt))`, `out` `[n·ho·wo, k]` `= P · wt` (`wt` `[patch_len, k]`).
pub fn weight_grad_and_through<T: Real>(
    image: &[T],
    g: &Geometry,
    scratch: &mut Vec<T>,
    patch_len: usize,
    (rows, k): (&[T], usize),
    dw: &mut [T],
    mut through: Option<(&mut [T], Mat<T>)>,
) {
    let pr = patch_rows(g);
    for_each_patch_chunk(image, g, scratch, |r, patches| {
        let (n_rows, span) = (r.len() * pr, r.start * pr * k..r.end * pr * k);
        let pm = Mat::rows(patches, n_rows, patch_len);
        matmul(
            dw,
            Mat::rows(&rows[span.clone()], n_rows, k).t(),
            pm,
            true,
            T::one(),
        );
        if let Some((out, wt)) = through.as_mut() {
            matmul(&mut out[span], pm, *wt, false, T::one());
        }
    });
}

/// Writes all of `image` `[n, h, w, c]` as the col2im of a patch matrix produced chunk by
/// chunk: `f(samples, cols)` fills `cols` `[len·ho·wo, k·k·c]` for those samples.
pub fn scatter_patch_chunks<T: Real>(
    image: &mut [T],
    g: &Geometry,
    scratch: &mut Vec<T>,
    mut f: impl FnMut(Range<usize>, &mut [T]),
) {
    assert_eq!(image.len(), g.image_len(), "patch chunks: image size");
    if g.is_identity() {
        f(0..g.n, image);
        return;
    }
    let per = image_per_sample(g);
    for r in chunks(g) {
        let cg = with_n(g, r.len());
        let cols = sized(scratch, cg.cols_len());
        f(r.clone(), cols);
        col2im(cols, &cg, &mut image[r.start * per..r.end * per]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_batch_within_the_budget() {
        let g = Geometry {
            n: 37,
            h: 32,
            w: 32,
            c: 64,
            k: 4,
            stride: 2,
            pad: 1,
            ho: 16,
            wo: 16,
        };
        let rs: Vec<_> = chunks(&g).collect();
        assert!(rs.len() > 1);
        assert_eq!(rs[0].start, 0);
        assert_eq!(rs.last().unwrap().end, 37);
        for w in rs.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        for r in &rs {
            assert!(with_n(&g, r.len()).cols_len() <= CHUNK_ELEMS);
        }
    }

    /// Chunked im2col and col2im equal the whole-batch ones.
    #[test]
    fn chunked_passes_equal_whole_batch_passes() {
        let g = Geometry {
            n: 100,
            h: 16,
            w: 16,
            c: 64,
            k: 4,
            stride: 2,
            pad: 1,
            ho: 8,
            wo: 8,
        };
        assert!(chunks(&g).count() > 1);
        let image: Vec<f64> = (0..g.image_len())
            .map(|i| (i as f64 * 0.37).sin())
            .collect();
        let mut whole = vec![0.0; g.cols_len()];
        im2col(&image, &g, &mut whole);
        let mut scratch = Vec::new();
        let mut seen = Vec::new();
        for_each_patch_chunk(&image, &g, &mut scratch, |r, p| {
            let rows = patch_rows(&g) * g.k * g.k * g.c;
            assert_eq!(p, &whole[r.start * rows..r.end * rows]);
            seen.push(r);
        });
        assert_eq!(seen.last().unwrap().end, g.n);
        let mut back_whole = vec![0.0; g.image_len()];
        col2im(&whole, &g, &mut back_whole);
        let mut back = vec![f64::NAN; g.image_len()];
        scatter_patch_chunks(&mut back, &g, &mut scratch, |r, cols| {
            let rows = patch_rows(&g) * g.k * g.k * g.c;
            cols.copy_from_slice(&whole[r.start * rows..r.end * rows]);
        });
        assert_eq!(back, back_whole);
    }
}
