//! `trainer eval`: how close a checkpoint's generator is to its data, on images it never saw.
//!
//! Every measure stands beside the value real images get in its place, so a number is read
//! against what a generator that matched the data would score:
//! - **digit measures** (runs on MNIST digits; [`digits`]): the Fréchet distance between the
//!   features of a digit classifier trained by this project ([`crate::classifier`]) on generated
//!   and on held-out digits ("FD", the FID recipe), the class histogram with its KL divergence
//!   from uniform, the classes covered and the mean top-class confidence. Reference: the same
//!   measures of as many training digits.
//! - **sliced Wasserstein distance** ([`swd`]): on a Laplacian pyramid of 7×7 patches, per
//!   level and mean (Karras et al. 2018), for any images. Reference: training images.
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
//! An [`Evaluator`] prepares everything that depends only on the data once (subsets, the
//! references, the held-out features), so `eval --all` measures every checkpoint of a run
//! against the same sets. Everything is deterministic for a seed.

pub mod digits;
pub mod distances;
pub mod frechet;
pub mod report;
pub mod swd;

pub use report::{csv, headline, plot, table};

use crate::classifier::Classifier;
use crate::config::TrainState;
use crate::data::{self, Dataset, Format};
use crate::run_data::{self, OnChange};
use crate::train::parse_device;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use digits::{DigitMeasures, DigitReference};
use distances::{median, median_off_diagonal, mmd2_unbiased, nearest_distances, sq_distances};
use serde::Serialize;
use std::path::{Path, PathBuf};
use wgan_models::checkpoint::{self as ckpt, GeneratorWeights};
use wgan_models::{Critic, Generator, Mode, Preset};

/// Most images `trainer eval` compares per set (its kernel matrices are `n × n` in f64).
pub const MAX_EVAL_IMAGES: usize = 5000;

/// Images per network forward.
const FORWARD_BATCH: usize = 64;

/// Distance below which two images count as the same: less than one 8-bit level (2/255 in
/// [-1, 1]) in a single pixel, far above the rounding of the distance computation.
const SAME_IMAGE: f64 = 1e-3;

/// What `trainer eval` measures; see the module documentation.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub checkpoint: String,
    pub preset: String,
    pub step: u64,
    /// `ema` (the generator's moving average) or `raw` (the trained weights).
    pub weights: String,
    /// The BatchNorm statistics the generator drew with.
    pub batchnorm: BatchNormStats,
    /// Images per compared set (generated, held-out, training subset).
    pub n: usize,
    pub seed: u64,
    /// Truncation ψ of the generated images' latents, when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncation: Option<f32>,
    pub held_out: String,
    pub training: String,
    /// Training images searched for nearest neighbours (all of them).
    pub training_len: usize,
    /// Digit measures of the generated images and of training digits (runs on MNIST).
    pub digits: Option<DigitsReport>,
    /// Sliced Wasserstein distances (images of at least 7×7).
    pub swd: Option<SwdReport>,
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

/// Digit measures against the held-out digits: of the generated images, and of training
/// digits (the floor a generator that matched the data would reach).
#[derive(Clone, Debug, Serialize)]
pub struct DigitsReport {
    pub generated: DigitMeasures,
    pub training: DigitMeasures,
}

/// Sliced Wasserstein distances (×10³) to the held-out images, per pyramid level.
#[derive(Clone, Debug, Serialize)]
pub struct SwdReport {
    /// Side of each level, finest first.
    pub resolutions: Vec<usize>,
    pub generated: Vec<f64>,
    pub generated_mean: f64,
    /// Training images against held-out images (the reference).
    pub training: Vec<f64>,
    pub training_mean: f64,
}

/// Which statistics the generator's BatchNorm layers normalise with when it draws images.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchNormStats {
    /// The running statistics saved with the weights: what the exported model and `runtime
    /// gen` compute.
    #[default]
    Running,
    /// The statistics of each batch of 64 images, as a PyTorch generator left in `train()`
    /// mode samples (the running statistics are not changed).
    Batch,
}

/// Where the held-out images come from.
pub enum HeldOut<'a> {
    /// The embedded MNIST test digits (runs trained on the embedded MNIST).
    Default,
    /// Images at a path, in a format.
    Path(&'a Path, Format),
}

/// What to evaluate against and how.
pub struct EvalOptions<'a> {
    pub held_out: HeldOut<'a>,
    /// Images per compared set (2 to [`MAX_EVAL_IMAGES`]; at most the held-out count).
    pub n: usize,
    /// Seed of the generated images' latents, the SWD's patches and directions.
    pub seed: u64,
    /// Truncation ψ of the generated images' latents (see `wgan_models::latent::truncate`).
    pub truncation: Option<f32>,
    /// `cpu`, `cuda` or `cuda:N`, for the networks.
    pub device: &'a str,
    pub weights: GeneratorWeights,
    pub batchnorm: BatchNormStats,
}

/// The data side of an evaluation, prepared once per run.
pub struct Evaluator {
    preset: Preset,
    device: Device,
    n: usize,
    seed: u64,
    truncation: Option<f32>,
    weights: GeneratorWeights,
    batchnorm: BatchNormStats,
    held: Dataset,
    training: Dataset,
    held_n: Vec<f32>,
    train_n: Vec<f32>,
    d_hh: Vec<f64>,
    kernel_sigma2: f64,
    mmd2_training: f64,
    nearest_held_out: f64,
    held_out_in_training: usize,
    digits: Option<(DigitReference, DigitMeasures)>,
    swd_training: Option<Vec<f64>>,
}

impl Evaluator {
    /// Loads the held-out and training images of the run that checkpoint (or run directory)
    /// `path` belongs to, and computes every reference.
    pub fn new(path: &Path, options: &EvalOptions) -> Result<Self> {
        if !(2..=MAX_EVAL_IMAGES).contains(&options.n) {
            bail!("--n must be between 2 and {MAX_EVAL_IMAGES}");
        }
        let dir = ckpt::resolve(path)?;
        let header = ckpt::read_header(&dir)?;
        let state = TrainState::read(&dir)?;
        let preset = header.preset()?;
        // Fail on a missing moving average before the slow part.
        options.weights.file(&dir)?;
        let (run, warnings) = run_data::reopen(
            &state.config,
            preset.image_size,
            &crate::run_dir::run_dir_of(&dir),
            state.data.as_ref(),
            header.step,
            OnChange::UseRunCopy,
            crate::progress::decoding("decoding the run's data set"),
        )
        .with_context(|| {
            format!(
                "cannot load the run's training data ({}), which the references need",
                header.dataset
            )
        })?;
        for w in warnings {
            eprintln!("warning: {w}");
        }
        let held = match (&options.held_out, run.held_out) {
            (HeldOut::Path(p, format), _) => {
                data::load(p, *format, preset.channels, preset.image_size)?
            }
            (HeldOut::Default, Some(held)) => held,
            (HeldOut::Default, None) if state.config.data.is_none() => {
                data::embedded_mnist_test(preset.channels, preset.image_size)?
            }
            (HeldOut::Default, None) => bail!(
                "the run trained on {} and held nothing out: pass held-out images of the same kind with --data (its test split, say), or train with --holdout N",
                header.dataset
            ),
        };
        let training = run.training;
        if held.len < 2 {
            bail!(
                "the held-out set has {} image; eval needs at least 2",
                held.len
            );
        }
        let n = options.n.min(held.len).min(training.len);
        let dim = held.sample_len();
        let device = parse_device(options.device)?;
        let held_n = spread(&held, n)?;
        let train_n = spread(&training, n)?;

        let d_hh = sq_distances(&held_n, &held_n, dim)?;
        let kernel_sigma2 = median_off_diagonal(&d_hh, n);
        if kernel_sigma2 <= 0.0 {
            bail!("the held-out images are all identical: no kernel width can be set");
        }
        let mmd2_training = mmd2_unbiased(&d_hh, &held_n, &train_n, dim, kernel_sigma2)?;
        let near_held = nearest_in(&held_n, &training)?;
        let held_out_in_training = near_held.iter().filter(|&&d| d < SAME_IMAGE).count();

        // Digit measures for grey MNIST-style digits (a data set that came with labels).
        let digits = if held.labels.is_some() && preset.channels == 1 {
            let reference =
                DigitReference::new(Classifier::embedded()?, &held_n, preset.image_size)?;
            let training_measures = reference.measure(&train_n, preset.image_size)?;
            Some((reference, training_measures))
        } else {
            None
        };
        let mut evaluator = Self {
            device,
            n,
            seed: options.seed,
            truncation: options.truncation,
            weights: options.weights,
            batchnorm: options.batchnorm,
            held,
            training,
            held_n,
            train_n,
            d_hh,
            kernel_sigma2,
            mmd2_training,
            nearest_held_out: median(near_held),
            held_out_in_training,
            digits,
            swd_training: None,
            preset,
        };
        evaluator.swd_training = evaluator
            .swd_against_held_out(&evaluator.train_n)?
            .map(|mut v| v.remove(0));
        Ok(evaluator)
    }

    fn images<'a>(&self, data: &'a [f32]) -> swd::Images<'a> {
        swd::Images {
            data,
            channels: self.preset.channels,
            size: self.preset.image_size,
        }
    }

    /// SWD of `images` to the held-out subset; `None` for images smaller than a patch.
    fn swd_against_held_out(&self, images: &[f32]) -> Result<Option<Vec<Vec<f64>>>> {
        if self.preset.image_size < swd::PATCH {
            return Ok(None);
        }
        let d =
            swd::sliced_wasserstein(self.images(&self.held_n), &[self.images(images)], self.seed)?;
        Ok(Some(d))
    }

    /// Measures the generator of checkpoint directory `dir` (of the run given to [`Self::new`]).
    pub fn evaluate(&self, dir: &Path) -> Result<EvalReport> {
        let header = ckpt::read_header(dir)?;
        if header.preset != self.preset.name || header.channels != self.preset.channels {
            bail!(
                "checkpoint {} is a {} run with {} channel(s), not {} with {}",
                dir.display(),
                header.preset,
                header.channels,
                self.preset.name,
                self.preset.channels
            );
        }
        let (file, ema) = self.weights.file(dir)?;
        let mut g = Generator::load(&self.preset, &file, DType::F32, &self.device)?;
        let critic = Critic::load(
            &self.preset,
            &dir.join(ckpt::CRITIC_FILE),
            DType::F32,
            &self.device,
        )?;
        let (n, dim) = (self.n, self.held.sample_len());
        let mode = match self.batchnorm {
            BatchNormStats::Running => Mode::Eval,
            BatchNormStats::Batch => Mode::Train,
        };
        let generated = generate_in(&mut g, self.seed, self.truncation, n, &self.device, mode)?;

        let shape = (self.held.channels, self.held.size, self.held.size);
        let score = |images: &[f32]| mean_critic_score(&critic, images, &shape, &self.device);
        let fake_score = score(&generated)?;
        let critic_held_out = score(&self.held_n)? - fake_score;
        let critic_training = score(&self.train_n)? - fake_score;

        let mmd2_generated = mmd2_unbiased(
            &self.d_hh,
            &self.held_n,
            &generated,
            dim,
            self.kernel_sigma2,
        )?;
        let near_gen = nearest_in(&generated, &self.training)?;
        let digits = match &self.digits {
            Some((reference, training)) => Some(DigitsReport {
                generated: reference.measure(&generated, self.preset.image_size)?,
                training: training.clone(),
            }),
            None => None,
        };
        let swd = match (self.swd_against_held_out(&generated)?, &self.swd_training) {
            (Some(mut g), Some(t)) => {
                let generated = g.remove(0);
                Some(SwdReport {
                    resolutions: swd::resolutions(self.preset.image_size),
                    generated_mean: mean(&generated),
                    generated,
                    training_mean: mean(t),
                    training: t.clone(),
                })
            }
            _ => None,
        };
        Ok(EvalReport {
            checkpoint: dir.display().to_string(),
            preset: header.preset.clone(),
            step: header.step,
            weights: if ema { "ema" } else { "raw" }.into(),
            batchnorm: self.batchnorm,
            n,
            seed: self.seed,
            truncation: self.truncation,
            held_out: self.held.description.clone(),
            training: self.training.description.clone(),
            training_len: self.training.len,
            digits,
            swd,
            critic_held_out,
            critic_training,
            kernel_sigma2: self.kernel_sigma2,
            mmd2_generated,
            mmd2_training: self.mmd2_training,
            nearest_generated: median(near_gen),
            nearest_held_out: self.nearest_held_out,
            held_out_in_training: self.held_out_in_training,
        })
    }
}

/// Evaluates the generator of checkpoint (or run directory) `path`.
pub fn evaluate(path: &Path, options: &EvalOptions) -> Result<EvalReport> {
    let evaluator = Evaluator::new(path, options)?;
    evaluator.evaluate(&ckpt::resolve(path)?)
}

/// The reports of every checkpoint of a run and the files written from them.
pub struct RunEvaluation {
    pub reports: Vec<EvalReport>,
    pub csv: PathBuf,
    pub png: PathBuf,
}

/// Evaluates every checkpoint of run directory `run` (the data prepared once), calling
/// `progress(i, total, report, seconds)` after each (its error stops the run), and writes `NAME.csv` and `NAME.png` into
/// the run: NAME is `eval`, or `eval-raw` for the raw weights of a run that keeps a moving
/// average (so both results stay), with `-batchnorm-batch` appended for batch statistics.
pub fn evaluate_run(
    run: &Path,
    options: &EvalOptions,
    mut progress: impl FnMut(usize, usize, &EvalReport, f64) -> Result<()>,
) -> Result<RunEvaluation> {
    let dirs = run_checkpoints(run)?;
    let evaluator = Evaluator::new(run, options)?;
    let mut reports = Vec::with_capacity(dirs.len());
    for (i, dir) in dirs.iter().enumerate() {
        let t0 = std::time::Instant::now();
        let report = evaluator.evaluate(dir)?;
        progress(i + 1, dirs.len(), &report, t0.elapsed().as_secs_f64())?;
        reports.push(report);
    }
    let has_ema = dirs
        .iter()
        .any(|d| d.join(ckpt::GENERATOR_EMA_FILE).exists());
    let mut name = String::from("eval");
    if has_ema && options.weights == GeneratorWeights::Raw {
        name += "-raw";
    }
    if options.batchnorm == BatchNormStats::Batch {
        name += "-batchnorm-batch";
    }
    let csv_path = run.join(format!("{name}.csv"));
    let png_path = run.join(format!("{name}.png"));
    wgan_models::output::write_atomic(&csv_path, csv(&reports).as_bytes())?;
    plot(&png_path, &reports)?;
    // A run that keeps TensorBoard files gets the measures there too, as a run of their own.
    let tensorboard = run.join(crate::tensorboard::TENSORBOARD_DIR);
    if tensorboard.is_dir() {
        let rows: Vec<(u64, Vec<(String, f64)>)> = reports
            .iter()
            .map(|r| {
                let values = report::columns(r)
                    .into_iter()
                    .filter_map(|(name, v)| Some((format!("eval/{name}"), v?)))
                    .collect();
                (r.step, values)
            })
            .collect();
        crate::tensorboard::replace_scalars(&tensorboard.join(&name), &rows)?;
    }
    Ok(RunEvaluation {
        reports,
        csv: csv_path,
        png: png_path,
    })
}

/// The checkpoint directories of run directory `run`, oldest first.
pub fn run_checkpoints(run: &Path) -> Result<Vec<PathBuf>> {
    let root = run.join(ckpt::CHECKPOINTS_DIR);
    if !root.is_dir() {
        bail!(
            "{} is not a run directory (no {}/): --all evaluates every checkpoint of a run",
            run.display(),
            ckpt::CHECKPOINTS_DIR
        );
    }
    let dirs: Vec<PathBuf> = crate::checkpoints::list(&root)?
        .into_iter()
        .filter(|d| d.join(ckpt::STATE_FILE).exists())
        .collect();
    if dirs.is_empty() {
        bail!("{} holds no checkpoint yet", run.display());
    }
    Ok(dirs)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// `n` images of the generator in eval mode (BatchNorm with running statistics) from the
/// latents of `seed` (the runtime's latent function), truncated to ±`truncation` when given,
/// CHW each, concatenated.
pub fn generate(
    g: &mut Generator,
    seed: u64,
    truncation: Option<f32>,
    n: usize,
    device: &Device,
) -> Result<Vec<f32>> {
    generate_in(g, seed, truncation, n, device, Mode::Eval)
}

/// [`generate`] in `mode`: [`Mode::Train`] normalises each batch of 64 with its own statistics.
fn generate_in(
    g: &mut Generator,
    seed: u64,
    truncation: Option<f32>,
    n: usize,
    device: &Device,
    mode: Mode,
) -> Result<Vec<f32>> {
    let mut z = wgan_models::latent::latents(seed, n, g.z_dim);
    if let Some(psi) = truncation {
        wgan_models::latent::check_truncation(psi, "--truncation").map_err(anyhow::Error::from)?;
        wgan_models::latent::truncate(&mut z, seed, 0, g.z_dim, psi);
    }
    let mut images = Vec::new();
    for chunk in z.chunks(FORWARD_BATCH * g.z_dim) {
        let z = Tensor::from_vec(
            chunk.to_vec(),
            (chunk.len() / g.z_dim, g.z_dim, 1, 1),
            device,
        )?;
        images.extend(g.forward(&z, mode)?.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(images)
}

/// `n` images spread evenly over the data set (image `⌊i·len/n⌋` for `i < n`), concatenated.
fn spread(d: &Dataset, n: usize) -> Result<Vec<f32>> {
    d.gather(&(0..n).map(|i| i * d.len / n).collect::<Vec<_>>())
}

/// Bytes of training images held in memory at once by [`nearest_in`].
const NEAREST_BLOCK_BYTES: usize = 64 << 20;

/// The distance from each image of `queries` to its nearest image of `data`, reading `data` a
/// block at a time (a prepared data set may be larger than memory).
fn nearest_in(queries: &[f32], data: &Dataset) -> Result<Vec<f64>> {
    let dim = data.sample_len();
    let block = (NEAREST_BLOCK_BYTES / (4 * dim)).max(1);
    let mut best = vec![f64::INFINITY; queries.len() / dim];
    for start in (0..data.len).step_by(block) {
        let indices: Vec<usize> = (start..(start + block).min(data.len)).collect();
        let d = nearest_distances(queries, &data.gather(&indices)?, dim)?;
        for (b, v) in best.iter_mut().zip(d) {
            *b = b.min(v);
        }
    }
    Ok(best)
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
