//! A bounds-checked matrix product on strided views, over the `gemm` crate.

use super::Real;

/// A read-only view of a `rows × cols` matrix: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A row-major `rows × cols` matrix over the first `rows·cols` elements of `data`.
    pub fn rows(data: &'a [T], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "matrix view out of bounds");
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }
}

/// `dst = (accumulate ? dst : 0) + scale · a · b`, with `dst` row-major `a.rows × b.cols`.
/// Runs on rayon's pool.
pub fn matmul<T: Real>(dst: &mut [T], a: Mat<T>, b: Mat<T>, accumulate: bool, scale: T) {
    assert_eq!(dst.len(), a.rows * b.cols, "matmul: destination size");
    matmul_rows(dst, b.cols, a, b, accumulate, scale)
}

/// [`matmul`] into the first `b.cols` columns of a row-major destination whose rows are
/// `dst_rs` apart (a column block of a wider matrix).
pub fn matmul_rows<T: Real>(
    dst: &mut [T],
    dst_rs: usize,
    a: Mat<T>,
    b: Mat<T>,
    accumulate: bool,
    scale: T,
) {
    assert_eq!(a.cols, b.rows, "matmul: inner dimensions differ");
    let (m, n, k) = (a.rows, b.cols, a.cols);
    assert!(dst_rs >= n, "matmul: row stride below the width");
    assert!(
        m == 0 || dst.len() >= (m - 1) * dst_rs + n,
        "matmul: destination size"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(dst_rs).take(m) {
                row[..n].fill(T::zero());
            }
        }
        return;
    }
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 && m * n * k >= 1 << 15 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `Mat::rows` checked that every (i, j) of each view is inside its slice (the
    // transpose keeps the same extent), and `dst` holds m rows of n elements, dst_rs apart.
    unsafe {
        gemm_raw(
            dst.as_mut_ptr(),
            dst_rs,
            a,
            b,
            accumulate,
            scale,
            parallelism,
        )
    }
}

/// `[rows, cols]` row-major → consecutive column blocks of `block` columns, each
/// `[rows, width]` row-major (the last one narrower): the layout of
/// [`matmul_column_blocks`]'s right-hand side.
pub fn to_column_blocks<T: Copy>(w: &[T], rows: usize, cols: usize, block: usize) -> Vec<T> {
    assert_eq!(w.len(), rows * cols, "column blocks: matrix size");
    let mut out = Vec::with_capacity(w.len());
    for j0 in (0..cols).step_by(block) {
        let width = block.min(cols - j0);
        for i in 0..rows {
            out.extend_from_slice(&w[i * cols + j0..i * cols + j0 + width]);
        }
    }
    out
}

/// `dst = a · w`, `dst` row-major `[a.rows, cols]`, `w` `[a.cols, cols]` in the layout of
/// [`to_column_blocks`]. Each block is one contiguous product, so `gemm` streams its weights
/// instead of striding over whole rows of them, and the blocks are shared out over rayon's
/// pool, one single-threaded product each: for a few rows (batch 1) `gemm`'s own split has
/// little to share, and with many rows this is as fast (measured in docs/performance.md,
/// "Generation against onnxruntime" and "How the native backend works").
pub fn matmul_column_blocks<T: Real>(dst: &mut [T], a: Mat<T>, w: &[T], cols: usize, block: usize) {
    let (m, k) = (a.rows, a.cols);
    assert!(block > 0, "column blocks: zero block width");
    assert_eq!(w.len(), k * cols, "column blocks: weight size");
    assert_eq!(dst.len(), m * cols, "column blocks: destination size");
    let blocks = cols.div_ceil(block);
    let view = |j: usize| {
        let (j0, width) = (j * block, block.min(cols - j * block));
        (j0, Mat::rows(&w[j0 * k..(j0 + width) * k], k, width))
    };
    // Empty products and single blocks take `matmul_rows`, which handles m = 0 and k = 0.
    if m == 0 || k == 0 || blocks == 1 || rayon::current_num_threads() == 1 {
        for j in 0..blocks {
            let (j0, b) = view(j);
            matmul_rows(&mut dst[j0..], cols, a, b, false, T::one());
        }
        return;
    }
    struct Dst<T>(*mut T);
    // SAFETY: the blocks write disjoint columns of `dst` (see below).
    unsafe impl<T> Sync for Dst<T> {}
    let out = Dst(dst.as_mut_ptr());
    use rayon::prelude::*;
    (0..blocks).into_par_iter().for_each(|j| {
        let (j0, b) = view(j);
        let out = &out;
        // SAFETY: the views are in bounds (`Mat::rows`); block j writes columns
        // j0..j0 + b.cols of the m rows of `dst` (checked above to hold m·cols), which no
        // other block touches, and `dst` stays borrowed until every block has finished.
        unsafe {
            gemm_raw(
                out.0.add(j0),
                cols,
                a,
                b,
                false,
                T::one(),
                gemm::Parallelism::None,
            )
        }
    });
}

/// `gemm` on views; `dst` points at an m × b.cols row-major region with rows `dst_rs` apart.
///
/// # Safety
/// The views are in bounds (as [`Mat`] guarantees) and `dst` is valid for writes over the
/// whole region, which nothing else accesses during the call.
unsafe fn gemm_raw<T: Real>(
    dst: *mut T,
    dst_rs: usize,
    a: Mat<T>,
    b: Mat<T>,
    accumulate: bool,
    scale: T,
    parallelism: gemm::Parallelism,
) {
    gemm::gemm(
        a.rows,
        b.cols,
        a.cols,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        a.data.as_ptr(),
        a.cs as isize,
        a.rs as isize,
        b.data.as_ptr(),
        b.cs as isize,
        b.rs as isize,
        T::one(),
        scale,
        false,
        false,
        false,
        parallelism,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_of_views_match_the_definition() {
        let a: Vec<f64> = (0..6).map(|v| v as f64 + 0.5).collect(); // 2×3
        let b: Vec<f64> = (0..12).map(|v| (v as f64).sin()).collect(); // 3×4
        let naive = |at: bool, bt: bool| {
            let mut out = vec![0.0; 8];
            for i in 0..2 {
                for j in 0..4 {
                    for p in 0..3 {
                        let x = if at { a[p * 2 + i] } else { a[i * 3 + p] };
                        let y = if bt { b[j * 3 + p] } else { b[p * 4 + j] };
                        out[i * 4 + j] += x * y;
                    }
                }
            }
            out
        };
        let mut dst = vec![1.0; 8];
        matmul(
            &mut dst,
            Mat::rows(&a, 2, 3),
            Mat::rows(&b, 3, 4),
            false,
            1.0,
        );
        for (x, y) in dst.iter().zip(&naive(false, false)) {
            assert!((x - y).abs() < 1e-12);
        }
        // Transposed views: a stored 3×2, b stored 4×3; accumulate with a scale.
        let mut acc = vec![1.0; 8];
        matmul(
            &mut acc,
            Mat::rows(&a, 3, 2).t(),
            Mat::rows(&b, 4, 3).t(),
            true,
            2.0,
        );
        let want: Vec<f64> = naive(true, true).iter().map(|v| 1.0 + 2.0 * v).collect();
        for (x, y) in acc.iter().zip(&want) {
            assert!((x - y).abs() < 1e-12);
        }
        // A 2×4 product into columns 1..5 of a 2×6 matrix: the other columns stay.
        let mut wide = [-7.0; 12];
        matmul_rows(
            &mut wide[1..],
            6,
            Mat::rows(&a, 2, 3),
            Mat::rows(&b, 3, 4),
            false,
            1.0,
        );
        let want = naive(false, false);
        for i in 0..2 {
            assert_eq!((wide[i * 6], wide[i * 6 + 5]), (-7.0, -7.0));
            for j in 0..4 {
                assert!((wide[i * 6 + 1 + j] - want[i * 4 + j]).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn column_blocked_products_match_the_plain_product() {
        // 5 × 7 times 7 × 11 in blocks of 4 columns (the last block 3 wide), on one thread and
        // on a pool of three.
        let (m, k, n) = (5, 7, 11);
        let a: Vec<f64> = (0..m * k).map(|v| (v as f64 * 0.37).cos()).collect();
        let w: Vec<f64> = (0..k * n).map(|v| (v as f64 * 0.11).sin()).collect();
        let mut want = vec![0.0; m * n];
        matmul(
            &mut want,
            Mat::rows(&a, m, k),
            Mat::rows(&w, k, n),
            false,
            1.0,
        );
        let blocked = to_column_blocks(&w, k, n, 4);
        assert_eq!(blocked[..4], w[..4]);
        assert_eq!(blocked[4..8], w[n..n + 4]);
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut got = vec![f64::NAN; m * n];
            pool.install(|| matmul_column_blocks(&mut got, Mat::rows(&a, m, k), &blocked, n, 4));
            for (x, y) in got.iter().zip(&want) {
                assert!((x - y).abs() < 1e-12, "{threads} threads: {x} vs {y}");
            }
        }
    }
}
