//! The Fréchet distance between Gaussians fitted to two sets of feature vectors, the recipe of
//! FID (Heusel et al. 2017) applied to any features:
//! `‖μ₁ − μ₂‖² + tr(Σ₁) + tr(Σ₂) − 2 tr((Σ₁ Σ₂)^½)`, with unbiased covariances (as `np.cov`).
//!
//! `tr((Σ₁ Σ₂)^½)` is computed without a non-symmetric matrix square root: `Σ₁ Σ₂` is similar to
//! the symmetric positive semi-definite `M = Σ₁^½ Σ₂ Σ₁^½`, so the trace is `Σᵢ √λᵢ(M)`. Both
//! steps are symmetric eigendecompositions (nalgebra), in f64; eigenvalues that rounding makes
//! slightly negative count as 0.

use anyhow::{bail, Result};
use nalgebra::{DMatrix, DVector};

/// Mean and covariance of a set of feature vectors.
#[derive(Clone, Debug)]
pub struct Gaussian {
    pub mean: DVector<f64>,
    pub cov: DMatrix<f64>,
}

impl Gaussian {
    /// Fits `features` (`n` rows of `dim` values, `n ≥ 2`).
    pub fn fit(features: &[f32], dim: usize) -> Result<Self> {
        if dim == 0 || !features.len().is_multiple_of(dim) {
            bail!(
                "feature vectors of {dim} values cannot hold {} values",
                features.len()
            );
        }
        let n = features.len() / dim;
        if n < 2 {
            bail!("a covariance needs at least two feature vectors, got {n}");
        }
        let x = DMatrix::from_row_iterator(n, dim, features.iter().map(|&v| v as f64));
        let mean = x.row_mean().transpose();
        let centred = DMatrix::from_fn(n, dim, |i, j| x[(i, j)] - mean[j]);
        let cov = (centred.transpose() * &centred) / (n - 1) as f64;
        Ok(Self { mean, cov })
    }
}

/// The symmetric square root of a symmetric positive semi-definite matrix.
fn sqrt_psd(m: &DMatrix<f64>) -> DMatrix<f64> {
    let e = m.clone().symmetric_eigen();
    let roots = e.eigenvalues.map(|l| l.max(0.0).sqrt());
    &e.eigenvectors * DMatrix::from_diagonal(&roots) * e.eigenvectors.transpose()
}

/// The Fréchet distance between `a` and `b` (0 for identical Gaussians, never negative).
pub fn frechet_distance(a: &Gaussian, b: &Gaussian) -> f64 {
    let diff = &a.mean - &b.mean;
    let root_a = sqrt_psd(&a.cov);
    let m = &root_a * &b.cov * &root_a;
    let m = (&m + m.transpose()) * 0.5;
    let cross: f64 = m
        .symmetric_eigen()
        .eigenvalues
        .iter()
        .map(|l| l.max(0.0).sqrt())
        .sum();
    (diff.norm_squared() + a.cov.trace() + b.cov.trace() - 2.0 * cross).max(0.0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use wgan_models::latent::Rng;

    fn normal(n: usize, seed: u64) -> Vec<f32> {
        let mut v = vec![0f32; n];
        Rng::new(seed).fill_normal(&mut v);
        v
    }

    #[test]
    fn a_set_against_itself_is_zero() {
        let x = normal(500 * 16, 1);
        let g = Gaussian::fit(&x, 16).unwrap();
        let d = frechet_distance(&g, &g);
        assert!(d.abs() < 1e-9, "{d}");
    }

    #[test]
    fn it_grows_with_added_noise() {
        let dim = 16;
        let x = normal(1000 * dim, 2);
        let reference = Gaussian::fit(&x, dim).unwrap();
        let noise = normal(1000 * dim, 3);
        let mut last = 0.0;
        for scale in [0.1f32, 0.3, 1.0, 3.0] {
            let noisy: Vec<f32> = x.iter().zip(&noise).map(|(a, b)| a + scale * b).collect();
            let d = frechet_distance(&reference, &Gaussian::fit(&noisy, dim).unwrap());
            assert!(d > last, "noise {scale}: {d} after {last}");
            last = d;
        }
    }

    #[test]
    fn diagonal_gaussians_match_the_closed_form() {
        // For diagonal covariances the distance is Σ (μa − μb)² + (σa − σb)².
        let a = Gaussian {
            mean: DVector::from_vec(vec![0.0, 1.0, 2.0]),
            cov: DMatrix::from_diagonal(&DVector::from_vec(vec![1.0, 4.0, 9.0])),
        };
        let b = Gaussian {
            mean: DVector::from_vec(vec![1.0, 1.0, 0.0]),
            cov: DMatrix::from_diagonal(&DVector::from_vec(vec![4.0, 4.0, 1.0])),
        };
        let want = 1.0 + 0.0 + 4.0 + 1.0 + 0.0 + 4.0;
        assert!((frechet_distance(&a, &b) - want).abs() < 1e-12);
    }

    /// `tests/goldens/eval_metrics.json`, written by `scripts/eval_goldens.py` (scipy).
    pub(crate) fn goldens() -> serde_json::Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/goldens/eval_metrics.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// A JSON array of numbers from the goldens, as f32.
    pub(crate) fn floats(v: &serde_json::Value) -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    }

    #[test]
    fn matches_scipys_sqrtm_formula() {
        let cases = goldens()["frechet"].as_array().unwrap().clone();
        assert_eq!(cases.len(), 3);
        for case in cases {
            let dim = case["dim"].as_u64().unwrap() as usize;
            let a = Gaussian::fit(&floats(&case["a"]), dim).unwrap();
            let b = Gaussian::fit(&floats(&case["b"]), dim).unwrap();
            let (got, want) = (frechet_distance(&a, &b), case["fd"].as_f64().unwrap());
            let rel = (got - want).abs() / want;
            assert!(
                rel < 1e-9,
                "{}: {got} vs scipy {want} ({rel:e})",
                case["name"]
            );
            // Symmetric in its arguments.
            assert!((frechet_distance(&b, &a) - got).abs() < 1e-9 * want);
        }
    }

    #[test]
    fn too_few_vectors_are_an_error() {
        assert!(Gaussian::fit(&[1.0, 2.0], 2).is_err());
        assert!(Gaussian::fit(&[1.0, 2.0, 3.0], 2).is_err());
    }
}
