//! Comparing outputs: the largest absolute difference, mean and spread, and (feature `candle`)
//! tensors as flat `f64` values.

/// max |a − b| over two slices of the same length (panics otherwise).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "the outputs differ in length");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// ‖a − b‖ / ‖b‖ (Euclidean, in f64) over two slices of the same length.
pub fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "the outputs differ in length");
    let norm = b.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
    let diff = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    diff / norm.max(1e-30)
}

/// Mean and standard deviation (in f64), to check that images are not trivial.
pub fn mean_std(v: &[f32]) -> (f32, f32) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean as f32, var.sqrt() as f32)
}

/// A tensor's values, flattened in row-major order, as `f64`.
#[cfg(feature = "candle")]
pub fn flat(t: &candle_core::Tensor) -> Vec<f64> {
    t.to_dtype(candle_core::DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .expect("a tensor of numbers")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_and_moments() {
        assert_eq!(max_abs_diff(&[1.0, -2.0, 3.0], &[1.5, -2.0, 1.0]), 2.0);
        assert_eq!(mean_std(&[1.0, 3.0, 1.0, 3.0]), (2.0, 1.0));
        assert_eq!(relative_l2(&[3.0, 4.0], &[0.0, 8.0]), 5.0 / 8.0);
    }
}
