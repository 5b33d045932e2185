//! `trainer eval`: how close a checkpoint's generator is to its data, on images it never saw.
//!
//! Every measure stands beside the value real images get in its place, so a number is read
//! against what a generator that matched the data would score:
//! - **critic**: the checkpoint's own critic's Wasserstein estimate `E[C(x)] − E[C(G(z))]` with
//!   held-out images `x`, and with as many training images. Near 0 means the critic cannot
//!   tell; training above held-out means the critic has learned the training images themselves
//!   (overfitting, Gulrajani et al. 2017, §5).
//! - **pixel MMD²**: the unbiased squared maximum mean discrepancy between generated and held-out
//!   images, with a Gaussian kernel on pixel vectors whose width is the median squared distance
//!   between held-out images. Reference: training against held-out images. It uses no network,
//!   so it cannot be fooled by the critic.
//! - **nearest training image**: the median Euclidean distance from a generated image to its
//!   nearest training image. Reference: the same for held-out images. A ratio well below 1 means
//!   the generator copies training images; well above 1, its images lie off the data.
//!
//! Distances are computed in f64 from matrix products, `|a|² + |b|² − 2a·b`.

use crate::config::TrainState;
use crate::data::{self, Dataset, Format};
use crate::train::{load_dataset, parse_device};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde::Serialize;
use std::path::Path;
use wgan_models::checkpoint as ckpt;
use wgan_models::{Critic, Generator, Mode};

/// Most images `trainer eval` compares per set (its kernel matrices are `n × n` in f64).
pub const MAX_EVAL_IMAGES: usize = 5000;

/// Images per network forward.
const FORWARD_BATCH: usize = 64;

/// Training images per block of the nearest-neighbour search.
const NEIGHBOUR_BLOCK: usize = 1024;

/// Distance below which two images count as the same: less than one 8-bit level (2/255 in
/// [-1, 1]) in a single pixel, far above the rounding of the distance computation.
const SAME_IMAGE: f64 = 1e-3;

/// What `trainer eval` measures; see the module documentation.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub checkpoint: String,
    pub preset: String,
    pub step: u64,
    /// Images per compared set (generated, held-out, training subset).
    pub n: usize,
    pub seed: u64,
    pub held_out: String,
    pub training: String,
    /// Training images searched for nearest neighbours (all of them).
    pub training_len: usize,
    /// `E[C(held-out)] − E[C(generated)]`.
    pub critic_held_out: f64,
    /// `E[C(training)] − E[C(generated)]`, over `n` training images.
    pub critic_training: f64,
    /// Kernel width σ² of `exp(−|a − b|² / σ²)`.
    pub kernel_sigma2: f64,
    /// MMD² between generated and held-out images.
    pub mmd2_generated: f64,
    /// MMD² between training and held-out images (the reference).
    pub mmd2_training: f64,
    /// Median distance from a generated image to its nearest training image.
    pub nearest_generated: f64,
    /// Median distance from a held-out image to its nearest training image (the reference).
    pub nearest_held_out: f64,
    /// Held-out images that are also in the training set (distance below 1e-3).
    pub held_out_in_training: usize,
}

/// Where the held-out images come from.
pub enum HeldOut<'a> {
    /// The embedded MNIST test digits (runs trained on the embedded MNIST).
    Default,
    /// Images at a path, in a format.
    Path(&'a Path, Format),
}

/// Evaluates the generator of checkpoint (or run directory) `path` on `n` images from each set.
pub fn evaluate(
    path: &Path,
    held_out: HeldOut,
    n: usize,
    seed: u64,
    device: &str,
) -> Result<EvalReport> {
    if !(2..=MAX_EVAL_IMAGES).contains(&n) {
        bail!("--n must be between 2 and {MAX_EVAL_IMAGES}");
    }
    let dir = ckpt::resolve(path)?;
    let header = ckpt::read_header(&dir)?;
    let state = TrainState::read(&dir)?;
    let preset = header.preset()?;
    let held = match held_out {
        HeldOut::Path(p, format) => data::load(p, format, preset.channels, preset.image_size)?,
        HeldOut::Default if state.config.data.is_none() => {
            data::embedded_mnist_test(preset.channels, preset.image_size)?
        }
        HeldOut::Default => bail!(
            "the run trained on {}: pass held-out images of the same kind with --data (its test split, say)",
            header.dataset
        ),
    };
    let training = load_dataset(&state.config, &preset).with_context(|| {
        format!(
            "cannot load the run's training data ({}), which the references need",
            header.dataset
        )
    })?;
    if held.len < 2 {
        bail!(
            "the held-out set has {} image; eval needs at least 2",
            held.len
        );
    }
    let n = n.min(held.len).min(training.len);
    let dim = held.sample_len();
    let device = parse_device(device)?;

    let mut g = Generator::load(
        &preset,
        &dir.join(ckpt::GENERATOR_FILE),
        DType::F32,
        &device,
    )?;
    let critic = Critic::load(&preset, &dir.join(ckpt::CRITIC_FILE), DType::F32, &device)?;
    let generated = generate(&mut g, seed, n, &device)?;
    let held_n = spread(&held, n);
    let train_n = spread(&training, n);

    let score = |images: &[f32]| mean_critic_score(&critic, images, &image_shape(&held), &device);
    let fake_score = score(&generated)?;
    let critic_held_out = score(&held_n)? - fake_score;
    let critic_training = score(&train_n)? - fake_score;

    let d_hh = sq_distances(&held_n, &held_n, dim)?;
    let kernel_sigma2 = median_off_diagonal(&d_hh, n);
    if kernel_sigma2 <= 0.0 {
        bail!("the held-out images are all identical: no kernel width can be set");
    }
    let mmd2_generated = mmd2_unbiased(&d_hh, &held_n, &generated, dim, kernel_sigma2)?;
    let mmd2_training = mmd2_unbiased(&d_hh, &held_n, &train_n, dim, kernel_sigma2)?;
    drop(d_hh);

    let near_gen = nearest_distances(&generated, &training.images, dim)?;
    let near_held = nearest_distances(&held_n, &training.images, dim)?;
    let held_out_in_training = near_held.iter().filter(|&&d| d < SAME_IMAGE).count();
    Ok(EvalReport {
        checkpoint: dir.display().to_string(),
        preset: header.preset.clone(),
        step: header.step,
        n,
        seed,
        held_out: held.description.clone(),
        training: training.description.clone(),
        training_len: training.len,
        critic_held_out,
        critic_training,
        kernel_sigma2,
        mmd2_generated,
        mmd2_training,
        nearest_generated: median(near_gen),
        nearest_held_out: median(near_held),
        held_out_in_training,
    })
}

/// `n` images of the generator in eval mode (BatchNorm with running statistics) from the
/// latents of `seed` (the runtime's latent function), CHW each, concatenated.
pub fn generate(g: &mut Generator, seed: u64, n: usize, device: &Device) -> Result<Vec<f32>> {
    let z = wgan_runtime::latent::latents(seed, n, g.z_dim);
    let mut images = Vec::new();
    for chunk in z.chunks(FORWARD_BATCH * g.z_dim) {
        let z = Tensor::from_vec(
            chunk.to_vec(),
            (chunk.len() / g.z_dim, g.z_dim, 1, 1),
            device,
        )?;
        images.extend(g.forward(&z, Mode::Eval)?.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(images)
}

/// `(channels, size, size)` of a data set's images.
fn image_shape(d: &Dataset) -> (usize, usize, usize) {
    (d.channels, d.size, d.size)
}

/// `n` images spread evenly over the data set (image `⌊i·len/n⌋` for `i < n`), concatenated.
fn spread(d: &Dataset, n: usize) -> Vec<f32> {
    (0..n)
        .flat_map(|i| d.image(i * d.len / n))
        .copied()
        .collect()
}

/// Mean critic score over `images` (CHW each, concatenated).
fn mean_critic_score(
    critic: &Critic,
    images: &[f32],
    (c, h, w): &(usize, usize, usize),
    device: &Device,
) -> Result<f64> {
    let dim = c * h * w;
    let mut sum = 0f64;
    for chunk in images.chunks(FORWARD_BATCH * dim) {
        let x = Tensor::from_vec(chunk.to_vec(), (chunk.len() / dim, *c, *h, *w), device)?;
        let scores = critic.forward(&x)?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        sum += scores.iter().sum::<f64>();
    }
    let mean = sum / (images.len() / dim) as f64;
    if !mean.is_finite() {
        bail!("the critic's scores are not finite: the checkpoint's critic is broken");
    }
    Ok(mean)
}

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
fn median_off_diagonal(d: &[f64], n: usize) -> f64 {
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
fn median(mut v: Vec<f64>) -> f64 {
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

/// The report as a table, each measure beside its reference.
pub fn table(r: &EvalReport) -> String {
    let mut s = format!(
        "checkpoint {} · preset {} · step {}\n\
         generated: {} images, seed {}\n\
         held-out:  {} of {}\n\
         training:  {} of {}; all {} searched for nearest neighbours\n\n",
        r.checkpoint,
        r.preset,
        r.step,
        r.n,
        r.seed,
        r.n,
        r.held_out,
        r.n,
        r.training,
        r.training_len
    );
    s += "| measure | generated images | reference | the reference is |\n|---|---|---|---|\n";
    s += &format!(
        "| critic's Wasserstein estimate against held-out images | {:.4} | {:.4} | the same against training images; above held-out: the critic overfits (gap {:+.4}) |\n",
        r.critic_held_out,
        r.critic_training,
        r.critic_training - r.critic_held_out
    );
    s += &format!(
        "| pixel MMD² to held-out images (σ² = {:.1}) | {:.5} | {:.5} | training images (what matching the data scores) |\n",
        r.kernel_sigma2, r.mmd2_generated, r.mmd2_training
    );
    s += &format!(
        "| median distance to the nearest training image | {:.3} | {:.3} | held-out images (ratio {:.2}: well below 1 is copying) |\n",
        r.nearest_generated,
        r.nearest_held_out,
        r.nearest_generated / r.nearest_held_out
    );
    if r.held_out_in_training > 0 {
        s += &format!(
            "\nwarning: {} of {} held-out images are also in the training set: the references are not independent of training\n",
            r.held_out_in_training, r.n
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = wgan_runtime::latent::Rng::new(seed);
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
