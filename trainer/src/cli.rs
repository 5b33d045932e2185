//! The `trainer` command line: `train`, `resume`, `sample`, `eval`, `classifier` and
//! `check-device`. The file is long because it holds every subcommand's documented arguments;
//! each handler only checks arguments, calls the module that does the work (`train`, `eval`,
//! `classifier`, `parity`) and prints.

use crate::config::TrainConfig;
use crate::data::Format;
use crate::metrics::MetricsRow;
use crate::train::{parse_device, RunEnd, Trainer};
use anyhow::{bail, Context, Result};
use candle_core::DType;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use wgan_models::checkpoint::GeneratorWeights;
use wgan_models::cli::EXIT_STATUS_HELP;
use wgan_models::outln;
use wgan_models::spec::ArchitectureNumbers;
use wgan_runtime::images::{grid, save_png, BatchShape};

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
    /// Architecture: dcgan64, small or tiny.
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
    fn config(&self) -> Result<TrainConfig> {
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
fn device_spec(spec: &str) -> Result<String, String> {
    crate::train::cuda_ordinal(spec).map(|_| spec.to_string())
}

/// The flag a first SIGINT (Ctrl-C), SIGTERM or SIGHUP sets: the run then saves a checkpoint
/// after the current iteration and exits 0. A second one exits at once (see
/// `wgan_models::signals`).
fn stop_flag() -> Arc<AtomicBool> {
    wgan_models::signals::graceful_stop(
        "saving a checkpoint after this iteration (send it again, e.g. Ctrl-C, to quit now)",
        "exiting without a checkpoint",
    )
}

fn progress(trainer: &Trainer) -> ProgressBar {
    let pb = if std::io::stderr().is_terminal() {
        ProgressBar::new(trainer.config.steps)
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:24} {pos}/{len} · ETA {eta} · {msg}",
        )
        .expect("valid template"),
    );
    pb.set_position(trainer.step);
    pb.reset_eta();
    pb
}

/// Iterations per second, or seconds per iteration when slower than one per second.
fn rate(sec_per_iter: f64) -> String {
    if sec_per_iter > 0.0 && sec_per_iter < 1.0 {
        format!("{:.1} it/s", 1.0 / sec_per_iter)
    } else {
        format!("{sec_per_iter:.2} s/it")
    }
}

fn drive(mut trainer: Trainer) -> Result<()> {
    let run_dir = trainer.run_dir.clone();
    let stop = stop_flag();
    if trainer.ranks().rank() > 0 {
        // Rank 0 speaks for the run; the others train quietly (errors still print).
        return trainer.run(&stop, |_| {}).map(drop);
    }
    for w in &trainer.warnings {
        eprintln!("warning: {w}");
    }
    let ranks = match trainer.ranks().size() {
        1 => String::new(),
        _ => format!(" · {}", trainer.ranks().describe()),
    };
    eprintln!(
        "run {} · preset {} · {} · device {}{ranks} · steps {}→{}",
        run_dir.display(),
        trainer.preset.name,
        trainer.state().header.dataset,
        trainer.config.device,
        trainer.step,
        trainer.config.steps
    );
    let pb = progress(&trainer);
    let plain = pb.is_hidden();
    let every = trainer.config.sample_every;
    let result = trainer.run(&stop, |r: &MetricsRow| {
        let msg = format!(
            "{} · W {:.3} · GP {:.3} · D {:.3} · G {:.3}",
            rate(r.sec_per_iter),
            r.wasserstein,
            r.penalty,
            r.critic_loss,
            r.generator_loss
        );
        if plain && (r.step.is_multiple_of(every) || r.step == 1) {
            eprintln!("step {} · {msg}", r.step);
        }
        pb.set_message(msg);
        pb.set_position(r.step);
    });
    pb.finish_and_clear();
    match result? {
        RunEnd::Finished => eprintln!(
            "done: {} step{}; samples, checkpoints, metrics.csv and losses.png in {}",
            trainer.step,
            if trainer.step == 1 { "" } else { "s" },
            run_dir.display()
        ),
        RunEnd::Interrupted => eprintln!(
            "stopped at step {}; checkpoint {} saved. Continue with: trainer resume --checkpoint {}",
            trainer.step,
            run_dir
                .join(wgan_models::checkpoint::CHECKPOINTS_DIR)
                .join(crate::checkpoints::dir_name(trainer.step))
                .display(),
            run_dir.display()
        ),
    }
    Ok(())
}

fn prepare(args: &PrepareArgs) -> Result<()> {
    use crate::data;
    if !(wgan_models::spec::MIN_IMAGE_SIZE..=wgan_models::spec::MAX_IMAGE_SIZE)
        .contains(&args.image_size)
        || !args.image_size.is_power_of_two()
    {
        bail!(
            "--image-size {} is not a power of two from {} to {} (the sizes the trainer builds)",
            args.image_size,
            wgan_models::spec::MIN_IMAGE_SIZE,
            wgan_models::spec::MAX_IMAGE_SIZE
        );
    }
    if args.channels != 1 && args.channels != 3 {
        bail!("--channels must be 1 or 3");
    }
    if let Some(t) = args.threads {
        wgan_models::limits::check_threads("--threads", t)?;
    }
    wgan_models::output::check_not_an_input("--out", &args.out, &[&args.data])?;
    let source = data::open_source(&args.data, args.format)?;
    let threads = args.threads.unwrap_or_else(data::default_threads);
    let t0 = std::time::Instant::now();
    let report = data::prepare_file(
        source.as_ref(),
        args.channels,
        args.image_size,
        threads,
        &args.out,
        crate::progress::decoding("preparing"),
    )?;
    let secs = t0.elapsed().as_secs_f64();
    if let Some(w) = report.skipped_warning() {
        eprintln!("warning: {w}");
    }
    let bytes = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    outln!(
        "wrote {} ({}, {}) and its sidecar {}: {}",
        args.out.display(),
        wgan_models::limits::human(bytes),
        report.fingerprint,
        data::prepared::sidecar_path(&args.out).display(),
        report.description
    )?;
    outln!(
        "{} images in {secs:.1} s ({:.0} images/s, {threads} thread{}); train on it with: trainer train --data {} --image-size {} --channels {}",
        report.count + report.skipped.len(),
        (report.count + report.skipped.len()) as f64 / secs.max(1e-9),
        if threads == 1 { "" } else { "s" },
        args.out.display(),
        args.image_size,
        args.channels
    )?;
    Ok(())
}

/// Most images `trainer sample` draws into one grid.
const MAX_SAMPLES: usize = 10_000;

/// `--truncation`, when given, checked before any work.
fn check_truncation(truncation: Option<f32>) -> Result<()> {
    match truncation {
        Some(psi) => {
            wgan_models::latent::check_truncation(psi, "--truncation").map_err(anyhow::Error::msg)
        }
        None => Ok(()),
    }
}

fn sample(args: &SampleArgs) -> Result<()> {
    if args.n == 0 || args.n > MAX_SAMPLES {
        bail!(
            "--n must be between 1 and {MAX_SAMPLES} (one grid); for more images use `runtime gen`"
        );
    }
    require_extension(&args.out, "png", "the grid is written as PNG")?;
    check_truncation(args.truncation)?;
    let dir = wgan_models::checkpoint::resolve(&args.checkpoint)?;
    wgan_models::output::check_not_an_input("--out", &args.out, &[&dir])?;
    let device = parse_device(&args.device)?;
    let mut loaded = wgan_models::checkpoint::load_generator(
        &args.checkpoint,
        args.weights,
        DType::F32,
        &device,
    )?;
    let images = crate::eval::generate(
        &mut loaded.generator,
        args.seed,
        args.truncation,
        args.n,
        &device,
    )?;
    let header = &loaded.header;
    let p = header.preset()?;
    let shape = BatchShape {
        n: args.n,
        channels: p.channels,
        height: p.image_size,
        width: p.image_size,
    };
    save_png(&grid(&images, shape, None)?, &args.out)?;
    eprintln!(
        "wrote {} ({} images, step {}, {} generator, seed {}{})",
        args.out.display(),
        args.n,
        header.step,
        loaded.weights_name(),
        args.seed,
        args.truncation
            .map(|psi| format!(", truncation {psi}"))
            .unwrap_or_default()
    );
    Ok(())
}

fn eval(args: &EvalArgs) -> Result<()> {
    use crate::eval::{self, EvalOptions, HeldOut};
    check_truncation(args.truncation)?;
    let options = EvalOptions {
        held_out: match &args.data {
            Some(p) => HeldOut::Path(p, args.format),
            None => HeldOut::Default,
        },
        n: args.n,
        seed: args.seed,
        truncation: args.truncation,
        device: &args.device,
        weights: args.weights,
        batchnorm: args.batchnorm,
    };
    if !args.all {
        let report = eval::evaluate(&args.checkpoint, &options)?;
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&report)?)?;
        } else {
            outln!("{}", eval::table(&report).trim_end())?;
        }
        return Ok(());
    }
    let run = eval::evaluate_run(&args.checkpoint, &options, |i, total, report, seconds| {
        eprintln!(
            "[{i}/{total}] step {} · {} · {seconds:.1} s",
            report.step,
            eval::headline(report)
        );
        if !args.json {
            outln!("{}", eval::table(report))?;
        }
        Ok(())
    })?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&run.reports)?)?;
    }
    eprintln!(
        "wrote {} and {} ({} checkpoints)",
        run.csv.display(),
        run.png.display(),
        run.reports.len()
    );
    Ok(())
}

/// An error unless `out` ends in `.ext` (any case), saying `why` and what to name the file.
fn require_extension(out: &Path, ext: &str, why: &str) -> Result<()> {
    if !out.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext)) {
        bail!("--out {}: {why}; name the file *.{ext}", out.display());
    }
    Ok(())
}

fn classifier(args: &ClassifierArgs) -> Result<()> {
    use crate::classifier::{train, TrainSettings, MIN_ACCURACY};
    require_extension(
        &args.out,
        "safetensors",
        "the weights are written as safetensors",
    )?;
    let settings = TrainSettings {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
    };
    let t0 = std::time::Instant::now();
    let mut accuracy = 0.0;
    let model = train(settings, |r| {
        accuracy = r.held_out_accuracy;
        eprintln!(
            "epoch {:>2}/{} · loss {:.4} · held-out accuracy {:.2} % · {:.0} s",
            r.epoch,
            args.epochs,
            r.train_loss,
            100.0 * r.held_out_accuracy,
            t0.elapsed().as_secs_f64()
        );
    })?;
    model.save(&args.out)?;
    eprintln!(
        "wrote {} · accuracy on the 1000 held-out test digits {:.2} %",
        args.out.display(),
        100.0 * accuracy
    );
    if accuracy < MIN_ACCURACY {
        bail!(
            "held-out accuracy {:.2} % is below the {:.0} % the digit measures need; train longer (--epochs) or with another --seed",
            100.0 * accuracy,
            100.0 * MIN_ACCURACY
        );
    }
    Ok(())
}

fn check_device(args: &CheckDeviceArgs) -> Result<()> {
    use crate::parity::{autograd_step, engine_step, errors, Setup};
    if args.tolerance.is_nan() || args.tolerance <= 0.0 {
        bail!("--tolerance must be positive");
    }
    let preset = wgan_models::preset(&args.preset, args.channels)?;
    let device = parse_device(&args.device)?;
    crate::train::check_batch_memory(args.batch_size, &preset, &candle_core::Device::Cpu)?;
    let setup = Setup::new(&preset, args.batch_size, args.seed)?;
    let reference = engine_step::<f64>(&setup)?;
    wgan_models::use_generic_ops_on_cpu(args.generic_ops);
    let cpu32 = errors(&engine_step::<f32>(&setup)?, &reference);
    let dev32 = errors(&autograd_step(&setup, DType::F32, &device)?, &reference);
    let dev64 = errors(&autograd_step(&setup, DType::F64, &device)?, &reference);
    let path = if args.generic_ops || !device.is_cpu() {
        "generic tensor ops"
    } else {
        "CPU custom ops"
    };
    outln!(
        "{}, batch {}, seed {}, autograd through {path}: relative errors against the CPU engine in f64\n",
        preset.name, args.batch_size, args.seed
    )?;
    let d = &args.device;
    outln!("| quantity | max abs | CPU engine f32 | {d} autograd f32 | {d} autograd f64 |")?;
    outln!("|---|---|---|---|---|")?;
    for ((a, b), c) in cpu32.iter().zip(&dev32).zip(&dev64) {
        outln!(
            "| {} | {:.3e} | {:.1e} | {:.1e} | {:.1e} |",
            a.name,
            a.scale,
            a.rel_error,
            b.rel_error,
            c.rel_error
        )?;
    }
    let worst = |rows: &[crate::parity::Comparison]| {
        rows.iter()
            .max_by(|a, b| a.rel_error.total_cmp(&b.rel_error))
            .cloned()
            .expect("at least one comparison")
    };
    let (w32, w64, wcpu) = (worst(&dev32), worst(&dev64), worst(&cpu32));
    outln!(
        "\nworst: {d} f64 {:.1e} ({}), {d} f32 {:.1e} ({}), CPU engine f32 {:.1e} ({})",
        w64.rel_error,
        w64.name,
        w32.rel_error,
        w32.name,
        wcpu.rel_error,
        wcpu.name
    )?;
    if w64.rel_error.is_nan() || w64.rel_error > F64_PARITY {
        bail!(
            "in f64, {} on {d} differs from the CPU engine by {:.1e} (relative), above {F64_PARITY:.0e}: the two implementations disagree",
            w64.name,
            w64.rel_error
        );
    }
    // In f32 a quantity passes within --tolerance, or within 10× of what the CPU engine's own
    // f32 rounding gives on it (some gradients are ill-conditioned in any f32 implementation).
    let failed = dev32
        .iter()
        .zip(&cpu32)
        .find(|(d, c)| !(d.rel_error <= args.tolerance || d.rel_error <= 10.0 * c.rel_error));
    if let Some((d32, c32)) = failed {
        bail!(
            "in f32, {} on {d} differs by {:.1e} (relative), above --tolerance {:.0e} and 10× the CPU engine's f32 error ({:.1e})",
            d32.name,
            d32.rel_error,
            args.tolerance,
            c32.rel_error
        );
    }
    outln!(
        "ok: {d} agrees with the CPU engine (f64 within {F64_PARITY:.0e}, f32 within tolerance)"
    )?;
    Ok(())
}

/// Largest relative error accepted between two f64 implementations of one step.
const F64_PARITY: f64 = 1e-9;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => {
            let ranks = crate::collective::from_environment()?;
            drive(Trainer::new_on(args.config()?, args.out.as_deref(), ranks)?)
        }
        Command::Resume(args) => {
            let run = args
                .checkpoint
                .or(args.run_dir)
                .context("resume needs the run: --checkpoint RUN_DIR")?;
            check_exists(&run)?;
            let options = crate::train::ResumeOptions {
                steps: args.steps,
                device: args.device,
                threads: args.threads,
                allow_data_change: args.allow_data_change,
            };
            let ranks = crate::collective::from_environment()?;
            drive(Trainer::resume_on(&run, &options, ranks)?)
        }
        Command::Prepare(args) => prepare(&args),
        Command::Sample(args) => sample(&args),
        Command::Eval(args) => eval(&args),
        Command::Classifier(args) => classifier(&args),
        Command::CheckDevice(args) => check_device(&args),
        Command::Completions(args) => Ok(wgan_models::cli::print_completions::<Cli>(&args)?),
    }
}

fn check_exists(p: &Path) -> Result<()> {
    if !p.exists() {
        bail!("{} does not exist", p.display());
    }
    Ok(())
}

/// Entry point of the binary: sets up second-order gradients (see
/// [`crate::second_order`]), then parses arguments and runs them under the workspace's CLI
/// conventions ([`wgan_models::cli`]: exit 0 on success, 2 with an `error:` message on any
/// error).
pub fn main() -> ExitCode {
    crate::second_order::pin_first_order_on_this_thread();
    crate::second_order::enable_for_new_threads();
    wgan_models::cli::main(run)
}
