//! Distances between image sets in pixel space: squared Euclidean distance matrices, the
//! unbiased MMD² with a Gaussian kernel, nearest-neighbour distances and medians. Distances are
//! computed in f64 from matrix products, `|a|² + |b|² − 2a·b`.

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};

/// Training images per block of the nearest-neighbour search.
const NEIGHBOUR_BLOCK: usize = 1024;

/// Squared Euclidean distances between the rows of `a` and of `b` (`dim` values each), as a
/// row-major `rows(a) × rows(b)` matrix in f64. Rounding can make a tiny distance negative; it
/// is clamped to 0.
pub fn sq_distances(a: &[f32], b: &[f32], dim: usize) -> Result<Vec<f64>> {
    let (m, n) = (a.len() / dim, b.len() / dim);
    let ta = Tensor::from_slice(a, (m, dim), &Device::Cpu)?.to_dtype(DType::F64)?;
    let tb = Tensor::from_slice(b, (n, dim), &Device::Cpu)?.to_dtype(DType::F64)?;
    let na = ta.sqr()?.sum_keepdim(1)?;
    let nb = tb.sqr()?.sum_keepdim(1)?.t()?;
    let d = (na.broadcast_add(&nb)? - (ta.matmul(&tb.t()?)? * 2.0)?)?.clamp(0f64, f64::MAX)?;
    Ok(d.flatten_all()?.to_vec1::<f64>()?)
}

/// The median of the off-diagonal entries of a square `n × n` distance matrix.
pub fn median_off_diagonal(d: &[f64], n: usize) -> f64 {
    let v = (0..n)
        .flat_map(|i| ((i + 1)..n).map(move |j| d[i * n + j]))
        .collect();
    median(v)
}

/// Unbiased MMD² between samples `x` and `y` with the kernel `exp(−|a − b|² / σ²)`;
/// `d_xx` is `sq_distances(x, x)`. Needs at least two rows in each.
pub fn mmd2_unbiased(d_xx: &[f64], x: &[f32], y: &[f32], dim: usize, sigma2: f64) -> Result<f64> {
    let (m, n) = (x.len() / dim, y.len() / dim);
    if m < 2 || n < 2 {
        bail!("MMD² needs at least two images per set");
    }
    let k = |d: f64| (-d / sigma2).exp();
    let off_diagonal_mean = |d: &[f64], n: usize| {
        let total: f64 = d.iter().map(|&v| k(v)).sum();
        (total - n as f64) / (n * (n - 1)) as f64
    };
    let d_yy = sq_distances(y, y, dim)?;
    let d_xy = sq_distances(x, y, dim)?;
    let cross = d_xy.iter().map(|&v| k(v)).sum::<f64>() / (m * n) as f64;
    Ok(off_diagonal_mean(d_xx, m) + off_diagonal_mean(&d_yy, n) - 2.0 * cross)
}

/// For each row of `queries`, the Euclidean distance to its nearest row of `refs`.
pub fn nearest_distances(queries: &[f32], refs: &[f32], dim: usize) -> Result<Vec<f64>> {
    let q = queries.len() / dim;
    let mut best = vec![f64::INFINITY; q];
    for block in refs.chunks(NEIGHBOUR_BLOCK * dim) {
        let d = sq_distances(queries, block, dim)?;
        let r = block.len() / dim;
        for (i, b) in best.iter_mut().enumerate() {
            for &v in &d[i * r..(i + 1) * r] {
                *b = b.min(v);
            }
        }
    }
    Ok(best.into_iter().map(f64::sqrt).collect())
}

/// The median (mean of the two middle values for an even count); NaN for none.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let h = v.len() / 2;
    if v.len() % 2 == 1 {
        v[h]
    } else {
        (v[h - 1] + v[h]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = wgan_models::latent::Rng::new(seed);
        (0..n).map(|_| rng.uniform_f32() * 2.0 - 1.0).collect()
    }

    fn naive_sq(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
            .sum()
    }

    /// MMD² straight from its definition, one kernel evaluation per pair.
    fn naive_mmd2(x: &[f32], y: &[f32], dim: usize, sigma2: f64) -> f64 {
        let k = |a: &[f32], b: &[f32]| (-naive_sq(a, b) / sigma2).exp();
        let xs: Vec<&[f32]> = x.chunks(dim).collect();
        let ys: Vec<&[f32]> = y.chunks(dim).collect();
        let (m, n) = (xs.len() as f64, ys.len() as f64);
        let mut kxx = 0.0;
        for (i, a) in xs.iter().enumerate() {
            for (j, b) in xs.iter().enumerate() {
                if i != j {
                    kxx += k(a, b);
                }
            }
        }
        let mut kyy = 0.0;
        for (i, a) in ys.iter().enumerate() {
            for (j, b) in ys.iter().enumerate() {
                if i != j {
                    kyy += k(a, b);
                }
            }
        }
        let kxy: f64 = xs
            .iter()
            .flat_map(|a| ys.iter().map(move |b| k(a, b)))
            .sum();
        kxx / (m * (m - 1.0)) + kyy / (n * (n - 1.0)) - 2.0 * kxy / (m * n)
    }

    #[test]
    fn distances_match_the_direct_sum() {
        let dim = 13;
        let (a, b) = (values(7 * dim, 1), values(5 * dim, 2));
        let d = sq_distances(&a, &b, dim).unwrap();
        for i in 0..7 {
            for j in 0..5 {
                let want = naive_sq(&a[i * dim..][..dim], &b[j * dim..][..dim]);
                assert!(
                    (d[i * 5 + j] - want).abs() <= 1e-9 * want.max(1.0),
                    "{i},{j}"
                );
            }
        }
        // A row against itself is exactly 0, never negative.
        let self_d = sq_distances(&a, &a, dim).unwrap();
        assert!((0..7).all(|i| self_d[i * 7 + i] == 0.0));
    }

    #[test]
    fn mmd2_matches_its_definition() {
        let dim = 6;
        let (x, y) = (values(9 * dim, 3), values(11 * dim, 4));
        let sigma2 = 2.5;
        let got = mmd2_unbiased(&sq_distances(&x, &x, dim).unwrap(), &x, &y, dim, sigma2).unwrap();
        let want = naive_mmd2(&x, &y, dim, sigma2);
        assert!((got - want).abs() <= 1e-12, "{got} vs {want}");
    }

    #[test]
    fn mmd2_separates_a_shifted_sample_from_a_fresh_one() {
        let dim = 8;
        let x = values(200 * dim, 5);
        let same = values(200 * dim, 6);
        let shifted: Vec<f32> = values(200 * dim, 7).iter().map(|v| v + 0.5).collect();
        let dxx = sq_distances(&x, &x, dim).unwrap();
        let sigma2 = median_off_diagonal(&dxx, 200);
        let m_same = mmd2_unbiased(&dxx, &x, &same, dim, sigma2).unwrap();
        let m_shift = mmd2_unbiased(&dxx, &x, &shifted, dim, sigma2).unwrap();
        assert!(m_same.abs() < 0.01, "same distribution: {m_same}");
        assert!(
            m_shift > 10.0 * m_same.abs().max(1e-3),
            "{m_shift} vs {m_same}"
        );
    }

    #[test]
    fn nearest_distances_match_a_brute_force_search_across_blocks() {
        let dim = 3;
        // More reference rows than one block, so the running minimum crosses blocks.
        let refs = values((NEIGHBOUR_BLOCK + 37) * dim, 8);
        let mut queries = values(6 * dim, 9);
        // One query equal to a reference row in the second block.
        queries[..dim].copy_from_slice(&refs[(NEIGHBOUR_BLOCK + 5) * dim..][..dim]);
        let got = nearest_distances(&queries, &refs, dim).unwrap();
        assert_eq!(got[0], 0.0);
        for (i, q) in queries.chunks(dim).enumerate() {
            let want = refs
                .chunks(dim)
                .map(|r| naive_sq(q, r))
                .fold(f64::INFINITY, f64::min)
                .sqrt();
            assert!((got[i] - want).abs() <= 1e-9, "{i}: {} vs {want}", got[i]);
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
