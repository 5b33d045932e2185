//! Timing a loaded generator: a latency table per batch size.

use crate::Generator;
use anyhow::{ensure, Result};
use std::time::Instant;

/// One row of [`bench`]: latency of one `run` of `batch` latents.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchRow {
    pub batch: usize,
    pub iters: usize,
    pub median_ms: f64,
    pub p90_ms: f64,
    /// The fastest run: the least disturbed by other work on a shared machine.
    pub min_ms: f64,
    /// `batch / median`.
    pub images_per_s: f64,
}

/// Times `iters` runs per batch size (after two warm-up runs that also build tract's plan for
/// that size), with fixed latents of seed 0.
pub fn bench(
    generator: &mut Generator,
    batch_sizes: &[usize],
    iters: usize,
) -> Result<Vec<BenchRow>> {
    ensure!(iters > 0, "bench needs at least one iteration");
    let mut rows = Vec::new();
    for &b in batch_sizes {
        ensure!(b > 0, "batch sizes must be at least 1");
        let z = generator.latents(0, b);
        for _ in 0..2 {
            generator.run(&z)?;
        }
        let mut times = Vec::with_capacity(iters);
        for _ in 0..iters {
            let t = Instant::now();
            std::hint::black_box(generator.run(&z)?);
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        let median_ms = quantile(&times, 0.5);
        rows.push(BenchRow {
            batch: b,
            iters,
            median_ms,
            p90_ms: quantile(&times, 0.9),
            min_ms: times[0],
            images_per_s: b as f64 / (median_ms / 1e3),
        });
    }
    Ok(rows)
}

/// Linear-interpolated quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert!((quantile(&v, 0.9) - 4.6).abs() < 1e-12);
        assert_eq!(quantile(&[7.0], 0.9), 7.0);
    }
}
