//! The `trainer` command line's arguments: every subcommand's documented flags, and how
//! `train`'s flags layer over a `--config` file.

use crate::config::TrainConfig;
use crate::data::Format;
use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use wgan_models::checkpoint::GeneratorWeights;
use wgan_models::cli::EXIT_STATUS_HELP;
use wgan_models::spec::ArchitectureNumbers;

/// Train a WGAN-GP image generator (Gulrajani et al. 2017) with candle, on CPU or CUDA.
#[derive(Parser, Debug)]
#[command(name = "trainer", version, about, long_about = None, after_help = EXIT_STATUS_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a new training run (defaults: the bundled MNIST digits, preset `small`).
    #[command(after_help = EXIT_STATUS_HELP)]
    Train(Box<TrainArgs>),
    /// Continue a run from its latest checkpoint, exactly as if it had not stopped.
    #[command(after_help = EXIT_STATUS_HELP)]
    Resume(ResumeArgs),
    /// Decode a data set once into a prepared file of 8-bit images (FILE, with FILE.json
    /// beside it: source files, skipped files and why, content fingerprint), which `train
    /// --data FILE` reads without decoding again and in bounded memory, however large.
    #[command(after_help = EXIT_STATUS_HELP)]
    Prepare(PrepareArgs),
    /// Draw a grid of images from a checkpoint's generator.
    #[command(after_help = EXIT_STATUS_HELP)]
    Sample(SampleArgs),
    /// Measure a checkpoint's generator on images it never saw, each number beside the value
    /// real training images get: for digits, the Fréchet distance in a digit classifier's
    /// features, class histogram, coverage and confidence; for any images, the sliced
    /// Wasserstein distance, the critic's Wasserstein estimate, pixel-space MMD² and the
    /// distance to the nearest training image (the default held-out set of a run on the
    /// embedded MNIST is the embedded MNIST test digits).
    #[command(after_help = EXIT_STATUS_HELP)]
    Eval(EvalArgs),
    /// Train the MNIST digit classifier that `eval` uses for its digit measures (FD, class
    /// histogram, coverage, confidence) on the embedded training digits, and report its
    /// accuracy on the embedded test digits. The binary ships one made with the defaults.
    #[command(after_help = EXIT_STATUS_HELP)]
    Classifier(ClassifierArgs),
    /// Check a device: one critic step (with the gradient penalty) and one generator step on
    /// the device through candle's autograd, in f32 and in f64, against the CPU engine in f64
    /// on the same weights and inputs; prints every relative error, fails above tolerance.
    #[command(after_help = EXIT_STATUS_HELP)]
    CheckDevice(CheckDeviceArgs),
    /// Print the shell completion script for trainer (bash, zsh, fish, elvish, powershell).
    #[command(after_help = EXIT_STATUS_HELP)]
    Completions(wgan_models::cli::CompletionsArgs),
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct CheckDeviceArgs {
    /// cpu, cuda or cuda:N. On cpu this checks the CPU engine against candle's autograd.
    #[arg(long, default_value = "cpu", value_parser = device_spec)]
    pub device: String,
    /// Architecture: one of the presets.
    #[arg(long, default_value = "dcgan64", value_parser = preset_names())]
    pub preset: String,
    /// Image channels: 1 or 3.
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Seed of the weights and inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Largest accepted relative error of the device's f32 step against the f64 reference
    /// (1e-3 allows TF32 matrix products on a GPU); a quantity within 10× of the CPU engine's
    /// own f32 error also passes. In f64 the device must agree to 1e-9.
    #[arg(long, default_value_t = 1e-3)]
    pub tolerance: f64,
    /// Run the autograd step through the device-neutral tensor-op forms even on the CPU (the
    /// code a GPU runs, minus its kernels), to check that path on a machine without a GPU.
    #[arg(long)]
    pub generic_ops: bool,
    /// Also check the sums over the ranks that data-parallel GPU training runs on: this
    /// process alone in an NCCL communicator on the device, the generator's training forward
    /// and backward with synchronised BatchNorm against the same without it. Needs a GPU and a
    /// trainer built with `--features nccl`.
    #[arg(long)]
    pub nccl: bool,
}

#[derive(Args, Debug)]
pub struct ClassifierArgs {
    /// Where to write the weights (safetensors), e.g. trainer/assets/mnist-classifier.safetensors.
    #[arg(long)]
    pub out: PathBuf,
    /// Passes over the 9,000 training digits.
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Peak Adam learning rate (cosine decay to 0).
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// Seed of initialisation, data order, shifts and dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct TrainArgs {
    /// A configuration file (TOML; every run folder holds its own as config.toml): its keys
    /// replace the defaults, and the flags below replace its keys. `trainer train --config
    /// RUN/config.toml --out NEW` trains RUN again, bit for bit.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Training data: a prepared data set (`trainer prepare`), an image folder (searched
    /// recursively), a zip archive of images, an MNIST IDX file or directory, or CIFAR-10
    /// binary batches. Anything but a prepared file is decoded once, into the run folder
    /// (RUN/data.u8), which resume and eval then read. Default: the MNIST subset built into
    /// this binary.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Data format; `auto` (default) detects it from the path.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Architecture (default small): dcgan64 (64×64, widths 64/64), small (32×32, widths
    /// 32/64), tiny (16×16, for tests). The flags below change its numbers.
    #[arg(long, value_parser = preset_names())]
    pub preset: Option<String>,
    /// Image side in pixels: a power of two from 16 to 256 (default: the preset's). The
    /// networks gain one block per doubling.
    #[arg(long, value_name = "PIXELS")]
    pub image_size: Option<usize>,
    /// Width of both networks (the reference's features_g and features_d): the generator's
    /// layer at side s has width·size/s channels, the critic's width·size/(2s).
    #[arg(long)]
    pub width: Option<usize>,
    /// Width of the generator alone (overrides --width).
    #[arg(long)]
    pub g_width: Option<usize>,
    /// Width of the critic alone (overrides --width).
    #[arg(long)]
    pub c_width: Option<usize>,
    /// Length of the latent vector (default: the preset's).
    #[arg(long)]
    pub z_dim: Option<usize>,
    /// Image channels: 1 (grey, default) or 3 (RGB).
    #[arg(long)]
    pub channels: Option<usize>,
    /// Generator steps, each preceded by --n-critic critic steps (default 2000).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Images per batch, each critic and generator step (default 64); with several ranks,
    /// the global batch.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Critic steps per generator step (default 5).
    #[arg(long)]
    pub n_critic: Option<usize>,
    /// Gradient-penalty weight λ (default 10).
    #[arg(long)]
    pub lambda_gp: Option<f64>,
    /// Adam learning rate, both networks (default 0.0001).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Adam β₁, the decay of the first moment (default 0, as WGAN-GP).
    #[arg(long)]
    pub beta1: Option<f64>,
    /// Adam β₂, the decay of the second moment (default 0.9).
    #[arg(long)]
    pub beta2: Option<f64>,
    /// L2 weight decay added to the gradients (default 0, as WGAN-GP).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Seed of initialisation, latents, interpolation weights and data order (default 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run directory. Default: runs/<UTC timestamp>.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write samples/step_NNNNNN.png every N generator steps (default 100).
    #[arg(long)]
    pub sample_every: Option<u64>,
    /// Write a checkpoint every N generator steps, and always at the end (default 500).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Checkpoints to keep on disk (default 3).
    #[arg(long)]
    pub keep_checkpoints: Option<usize>,
    /// cpu (default), cuda or cuda:N (CUDA needs a build with `--features cuda`).
    #[arg(long, value_parser = device_spec)]
    pub device: Option<String>,
    /// Also keep an exponential moving average of the generator's weights with this decay
    /// (e.g. 0.999): saved in every checkpoint, drawn in the sample grids, and the generator
    /// that `sample`, `eval` and `export` use unless told `--weights raw`.
    #[arg(long, value_name = "DECAY")]
    pub ema: Option<f64>,
    /// Keep N images out of training, chosen by a hash of their names: `eval` measures the
    /// generator on them by default (default 0).
    #[arg(long, value_name = "N")]
    pub holdout: Option<usize>,
    /// Seed of the hash that chooses the held-out images (default 0).
    #[arg(long)]
    pub holdout_seed: Option<u64>,
    /// Also train on every image mirrored left to right (each epoch shows each image once
    /// each way round).
    #[arg(long)]
    pub mirror: bool,
    /// Threads for training and decoding (default: every core, or RAYON_NUM_THREADS). Runs
    /// with the same count are bit-identical.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Write no TensorBoard event files (by default RUN/tensorboard/ holds the losses per
    /// step, the sample grids and `eval --all`'s measures, for `tensorboard --logdir`).
    #[arg(long)]
    pub no_tensorboard: bool,
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct ResumeArgs {
    /// Run directory (or one of its checkpoint directories), as `--checkpoint` in the other
    /// commands; the positional form `trainer resume RUN_DIR` is accepted too.
    #[arg(long, value_name = "RUN_DIR", required_unless_present = "run_dir")]
    pub checkpoint: Option<PathBuf>,
    /// The run directory, positionally (the same as --checkpoint).
    #[arg(value_name = "RUN_DIR", conflicts_with = "checkpoint", hide = true)]
    pub run_dir: Option<PathBuf>,
    /// New total number of generator steps (default: the run's own).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Device to continue on (default: the run's own).
    #[arg(long, value_parser = device_spec)]
    pub device: Option<String>,
    /// Threads to continue on (default: the run's own; another count changes the rounding).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Continue on the data as it is now where it changed since the checkpoint (files added,
    /// removed or modified, another prepared file); the order of samples from there on then
    /// differs from the run's. Without it such a resume is refused.
    #[arg(long)]
    pub allow_data_change: bool,
}

#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// The images: a folder (searched recursively), a zip archive, MNIST IDX files or CIFAR-10
    /// binary batches.
    #[arg(long)]
    pub data: PathBuf,
    /// Format of --data; `auto` detects it from the path.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Side of the prepared images: the shorter side of each image is resized to it and the
    /// centre cropped.
    #[arg(long, value_name = "PIXELS")]
    pub image_size: usize,
    /// Channels of the prepared images: 1 (grey) or 3 (RGB).
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// The prepared file to write (its sidecar is written beside it as FILE.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Decoding threads (default: every core, or RAYON_NUM_THREADS).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct SampleArgs {
    /// Checkpoint directory, or a run directory (its latest checkpoint).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Number of images.
    #[arg(long, default_value_t = 64)]
    pub n: usize,
    /// Latent seed: the same seed gives the same images in the trainer and the runtime.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output PNG grid (`.png`).
    #[arg(long)]
    pub out: PathBuf,
    /// cpu, cuda or cuda:N (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu", value_parser = device_spec)]
    pub device: String,
    /// Which generator: auto (the moving average when the run kept one, else the trained
    /// weights), ema or raw.
    #[arg(long, default_value = "auto")]
    pub weights: GeneratorWeights,
    /// Truncation ψ of the latents (as `runtime gen --truncation`): components beyond ±ψ are
    /// drawn again until within it; at least 0.01.
    #[arg(long, value_name = "PSI")]
    pub truncation: Option<f32>,
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct EvalArgs {
    /// Checkpoint directory, or a run directory (its latest checkpoint; with --all, every
    /// checkpoint).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Evaluate every checkpoint of the run directory and write eval.csv and eval.png (the
    /// measures against the step) into it (eval-raw.* with --weights raw on a run with a
    /// moving average; -batchnorm-batch added with --batchnorm batch).
    #[arg(long)]
    pub all: bool,
    /// Which generator: auto (the moving average when the run kept one, else the trained
    /// weights), ema or raw.
    #[arg(long, default_value = "auto")]
    pub weights: GeneratorWeights,
    /// Held-out images, in any format `train --data` reads, converted to the run's shape.
    /// Default for a run on the embedded MNIST: the 1000 embedded MNIST test digits; other
    /// runs must name theirs.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Format of --data; `auto` detects it from the path.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Images in each compared set: generated, held-out and training (at most the held-out
    /// count; 2 to 5000).
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// Seed of the generated images' latents and of the sliced Wasserstein distance's patches
    /// and directions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Truncation ψ of the generated images' latents (as `runtime gen --truncation`), to
    /// measure what it does.
    #[arg(long, value_name = "PSI")]
    pub truncation: Option<f32>,
    /// BatchNorm statistics the generator draws with: running (saved with the weights, what
    /// an exported model computes) or batch (each batch of 64 normalised with its own, as a
    /// PyTorch generator left in train() mode samples).
    #[arg(long, value_enum, default_value_t = crate::eval::BatchNormStats::Running)]
    pub batchnorm: crate::eval::BatchNormStats,
    /// Print the results as JSON (one object; an array with --all) instead of tables.
    #[arg(long)]
    pub json: bool,
    /// cpu, cuda or cuda:N, for the networks (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu", value_parser = device_spec)]
    pub device: String,
}

impl TrainArgs {
    /// The run's configuration: the defaults, then the `--config` file's keys, then the flags
    /// given on the command line.
    pub fn config(&self) -> Result<TrainConfig> {
        let mut c = match &self.config {
            Some(path) => crate::config_file::read(path)?,
            None => TrainConfig::default(),
        };
        fn set<T: Clone>(field: &mut T, flag: &Option<T>) {
            if let Some(v) = flag {
                *field = v.clone();
            }
        }
        if let Some(p) = &self.preset {
            // Another preset: its numbers, less those given below.
            c.preset = p.clone();
            c.numbers = ArchitectureNumbers::default();
        }
        let n = &mut c.numbers;
        for (field, flag) in [
            (&mut n.image_size, self.image_size),
            (&mut n.z_dim, self.z_dim),
            (&mut n.g_width, self.g_width.or(self.width)),
            (&mut n.c_width, self.c_width.or(self.width)),
        ] {
            if flag.is_some() {
                *field = flag;
            }
        }
        if self.data.is_some() {
            c.data = self.data.clone();
        }
        set(&mut c.format, &self.format);
        set(&mut c.channels, &self.channels);
        set(&mut c.steps, &self.steps);
        set(&mut c.batch_size, &self.batch_size);
        set(&mut c.n_critic, &self.n_critic);
        set(&mut c.lambda_gp, &self.lambda_gp);
        set(&mut c.adam.lr, &self.lr);
        set(&mut c.adam.beta1, &self.beta1);
        set(&mut c.adam.beta2, &self.beta2);
        set(&mut c.adam.weight_decay, &self.weight_decay);
        set(&mut c.seed, &self.seed);
        set(&mut c.sample_every, &self.sample_every);
        set(&mut c.checkpoint_every, &self.checkpoint_every);
        set(&mut c.keep_checkpoints, &self.keep_checkpoints);
        set(&mut c.device, &self.device);
        if self.ema.is_some() {
            c.ema = self.ema;
        }
        set(&mut c.holdout, &self.holdout);
        set(&mut c.holdout_seed, &self.holdout_seed);
        if self.mirror {
            c.mirror = true;
        }
        if self.threads.is_some() {
            c.threads = self.threads;
        }
        if self.no_tensorboard {
            c.tensorboard = false;
        }
        Ok(c)
    }
}

/// `--preset`: one of [`wgan_models::PRESETS`], checked while parsing.
fn preset_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(
        wgan_models::PRESETS
            .iter()
            .map(|p| clap::builder::PossibleValue::new(p.name).help(p.about)),
    )
}

/// `--device`: `cpu`, `cuda` or `cuda:N`, checked while parsing (whether the build and the
/// machine have that device is checked when it is opened).
fn device_spec(spec: &str) -> Result<String, crate::device::UnknownDevice> {
    crate::train::cuda_ordinal(spec).map(|_| spec.to_string())
}
