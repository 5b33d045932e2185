//! The WGAN-GP training loop: state, one iteration (n_critic critic steps + one generator
//! step), sampling, checkpoints and resume.

use crate::adam::Adam;
use crate::checkpoints::{self, CheckpointContents};
use crate::config::{TrainConfig, TrainState};
use crate::data::Loader;
use crate::ema::Ema;
use crate::metrics::{self, MetricsRow};
use crate::run_data::{DataPlan, DataRecord};
use crate::{second_order, wgan};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use wgan_models::checkpoint::{self as ckpt, CheckpointHeader, OPTIMIZER_FILE};
use wgan_models::engine::{
    nchw_to_nhwc, to_gradients, BatchStats, CriticEngine, GeneratorEngine, NetWeights,
};
use wgan_models::latent::{latents, Rng};
use wgan_models::{Critic, Generator, Gradients, Mode, Preset};
use wgan_runtime::images::{grid, save_png, BatchShape};

mod persist;
pub use persist::ResumeOptions;

pub use crate::device::{cuda_ordinal, parse_device};
use crate::run_dir::{
    claim_default_run_dir, claim_run_dir, older_checkpoints, run_dir_of, usable_checkpoints,
    RunLock,
};

/// Images in each sample grid.
pub const SAMPLE_COUNT: usize = 64;

/// Images per generator forward when drawing the sample grid.
const SAMPLE_CHUNK: usize = 8;

/// Numbers of one iteration, before they become a [`MetricsRow`].
#[derive(Clone, Copy, Debug)]
pub struct IterationStats {
    pub critic_loss: f64,
    pub wasserstein: f64,
    pub penalty: f64,
    pub grad_norm: f64,
    pub generator_loss: f64,
}

/// How [`Trainer::run`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// All configured steps done.
    Finished,
    /// Stopped on request (Ctrl-C) after saving a checkpoint.
    Interrupted,
}

/// A training run in memory.
pub struct Trainer {
    pub config: TrainConfig,
    pub preset: Preset,
    pub device: Device,
    pub run_dir: PathBuf,
    pub generator: Generator,
    pub critic: Critic,
    pub opt_g: Adam,
    pub opt_c: Adam,
    pub step: u64,
    /// The moving average of the generator, for runs with `--ema`.
    pub ema: Option<Ema>,
    rng: Rng,
    data_seed: u64,
    loader: Loader,
    dataset_description: String,
    data_record: DataRecord,
    /// The threads the engine's kernels run on (`--threads`).
    pool: Arc<rayon::ThreadPool>,
    sample_seed: u64,
    elapsed_secs: f64,
    metrics: Vec<MetricsRow>,
    /// The explicit CPU passes, or `None` to use candle's autograd (other devices).
    engines: Option<Box<Engines>>,
    /// What the user should know about how the run was opened (repairs made on resume).
    pub warnings: Vec<String>,
    /// Held while the run is open: no second process trains in the same directory.
    _lock: RunLock,
}

/// Explicit forward/backward passes for CPU training (see [`wgan_models::engine`]).
struct Engines {
    critic: CriticEngine<f32>,
    generator: GeneratorEngine<f32>,
    /// The generator's weights in engine layout while they are unchanged (they change only
    /// in the generator step's Adam update, which clears this).
    generator_weights: Option<NetWeights<f32>>,
}

impl Engines {
    /// `G(noise)` in training mode (channels-last images) with its batch statistics; the
    /// weights are converted to engine layout once per generator update.
    fn generator_forward(
        &mut self,
        g: &Generator,
        noise: &[f32],
    ) -> Result<(Vec<f32>, Vec<BatchStats>)> {
        if self.generator_weights.is_none() {
            self.generator_weights = Some(NetWeights::from_params(&g.spec, &g.params)?);
        }
        let gw = self.generator_weights.as_ref().expect("set above");
        let (fake, stats) = self.generator.forward_train(gw, noise)?;
        Ok((fake.to_vec(), stats))
    }
}

impl Engines {
    /// The engines for `preset` on `device`, when it is the CPU.
    fn for_device(preset: &Preset, device: &Device) -> Result<Option<Box<Self>>> {
        if !device.is_cpu() {
            return Ok(None);
        }
        Ok(Some(Box::new(Self {
            critic: CriticEngine::new(&preset.critic, preset.channels, preset.image_size)?,
            generator: GeneratorEngine::new(&preset.generator, preset.z_dim)?,
            generator_weights: None,
        })))
    }
}

impl Trainer {
    /// Starts a new run in `run_dir`: a new or empty directory (created with its parents).
    /// Nothing is created until the configuration, device and data have been checked.
    pub fn new(config: TrainConfig, run_dir: &Path) -> Result<Self> {
        Self::start(config, || {
            claim_run_dir(run_dir).map(|()| run_dir.to_path_buf())
        })
    }

    /// Starts a new run in a fresh directory `runs/<UTC timestamp>` (with a `-N` suffix when
    /// that name is taken, so runs started in the same second never share a directory).
    pub fn new_in_default_dir(config: TrainConfig) -> Result<Self> {
        Self::start(config, claim_default_run_dir)
    }

    fn start(mut config: TrainConfig, claim: impl FnOnce() -> Result<PathBuf>) -> Result<Self> {
        config.validate()?;
        let preset = config.preset()?;
        config.set_architecture(&preset);
        config.threads = Some(config.threads.unwrap_or_else(crate::data::default_threads));
        let device = parse_device(&config.device)?;
        check_weights_memory(&preset)?;
        check_batch_memory(config.batch_size, &preset, &device)?;
        let plan = DataPlan::new(&config)?;
        // Absolute, so that `trainer resume` finds the data from any working directory.
        if let Some(data) = &config.data {
            config.data = Some(std::fs::canonicalize(data).unwrap_or_else(|_| data.clone()));
        }
        let pool = thread_pool(&config)?;
        let run_dir = claim()?;
        let claimed = ClaimedRunDir::new(&run_dir);
        let lock = RunLock::acquire(&run_dir)?;
        let data = plan.open(
            &config,
            preset.image_size,
            &run_dir,
            crate::progress::decoding("decoding the data set into the run"),
        )?;
        if config.holdout > 0 && data.training.len == 0 {
            bail!("--holdout {} leaves no training images", config.holdout);
        }
        let mut rng = Rng::new(config.seed);
        let generator = Generator::new(&preset, &mut rng, DType::F32, &device)?;
        let critic = Critic::new(&preset, &mut rng, DType::F32, &device)?;
        let opt_g = Adam::new(config.adam, &generator.params)?;
        let opt_c = Adam::new(config.adam, &critic.params)?;
        let ema = config
            .ema
            .map(|decay| Ema::new(decay, &generator))
            .transpose()?;
        let data_seed = rng.next_u64();
        let sample_seed = rng.next_u64();
        let loader = Loader::new(
            data.training.clone(),
            config.batch_size,
            data_seed,
            0,
            config.mirror,
        );
        let engines = Engines::for_device(&preset, &device)?;
        wgan_models::output::write_atomic(
            &run_dir.join("config.json"),
            serde_json::to_string_pretty(&config)?.as_bytes(),
        )?;
        claimed.keep();
        Ok(Self {
            dataset_description: data.training.description.clone(),
            data_record: data.record,
            pool,
            config,
            preset,
            device,
            run_dir,
            generator,
            critic,
            opt_g,
            opt_c,
            step: 0,
            ema,
            rng,
            data_seed,
            loader,
            sample_seed,
            elapsed_secs: 0.0,
            metrics: Vec::new(),
            engines,
            warnings: Vec::new(),
            _lock: lock,
        })
    }

    fn normal_vec(&mut self, n: usize) -> Vec<f32> {
        let mut v = vec![0f32; n];
        self.rng.fill_normal(&mut v);
        v
    }

    fn normal(&mut self, shape: &[usize]) -> Result<Tensor> {
        let v = self.normal_vec(shape.iter().product());
        Ok(Tensor::from_vec(v, shape, &self.device)?)
    }

    fn real_batch(&mut self) -> Result<Tensor> {
        let (b, c, s) = (
            self.config.batch_size,
            self.preset.channels,
            self.preset.image_size,
        );
        Ok(Tensor::from_vec(
            self.loader.next_batch()?,
            (b, c, s, s),
            &self.device,
        )?)
    }

    /// Whether steps run on the explicit engine (CPU) rather than candle's autograd.
    pub fn uses_explicit_engine(&self) -> bool {
        self.engines.is_some()
    }

    /// The critic half of an iteration (`n_critic` steps); returns the mean critic loss,
    /// Wasserstein estimate, penalty and gradient norm. On candle's autograd (non-CPU
    /// devices) the calling thread must compute second-order gradients (it checks, see
    /// [`second_order`]).
    pub fn critic_steps(&mut self) -> Result<(f64, f64, f64, f64)> {
        let mut sums = (0.0, 0.0, 0.0, 0.0);
        for _ in 0..self.config.n_critic {
            let v = match self.engines.take() {
                Some(mut engines) => {
                    let v = self.critic_step_explicit(&mut engines);
                    self.engines = Some(engines);
                    v?
                }
                None => self.critic_step_autograd()?,
            };
            sums.0 += v.loss;
            sums.1 += v.wasserstein;
            sums.2 += v.penalty;
            sums.3 += v.grad_norm_mean;
        }
        let n = self.config.n_critic as f64;
        Ok((sums.0 / n, sums.1 / n, sums.2 / n, sums.3 / n))
    }

    fn critic_step_explicit(&mut self, e: &mut Engines) -> Result<wgan::CriticValues> {
        let (b, z, c) = (
            self.config.batch_size,
            self.preset.z_dim,
            self.preset.channels,
        );
        let hw = self.preset.image_size * self.preset.image_size;
        let real = nchw_to_nhwc(&self.loader.next_batch()?, b, c, hw);
        let noise = self.normal_vec(b * z);
        let (fake, stats) = e.generator_forward(&self.generator, &noise)?;
        self.generator.apply_batch_stats(&stats)?;
        let eps: Vec<f32> = (0..b).map(|_| self.rng.uniform_f32()).collect();
        let cw = NetWeights::from_params(&self.critic.spec, &self.critic.params)?;
        let (values, _, grads) = wgan::critic_objective_explicit(
            &mut e.critic,
            &cw,
            &real,
            &fake,
            &eps,
            self.config.lambda_gp,
        )?;
        let grads = to_gradients(&self.critic.spec, &grads, &self.device)?;
        self.opt_c.step(&self.critic.params, &grads)?;
        Ok(values)
    }

    fn critic_step_autograd(&mut self) -> Result<wgan::CriticValues> {
        second_order::check_current_thread()?;
        let (b, z) = (self.config.batch_size, self.preset.z_dim);
        let real = self.real_batch()?;
        let noise = self.normal(&[b, z, 1, 1])?;
        let fake = self.generator.forward(&noise, Mode::Train)?.detach();
        let eps: Vec<f32> = (0..b).map(|_| self.rng.uniform_f32()).collect();
        let eps = Tensor::from_vec(eps, (b, 1, 1, 1), &self.device)?;
        let critic = &self.critic;
        let obj = wgan::critic_objective(
            |x| critic.forward(x),
            &real,
            &fake,
            &eps,
            self.config.lambda_gp,
        )?;
        let grads = Gradients::from_grad_store(&self.critic.params, &obj.loss.backward()?)?;
        self.opt_c.step(&self.critic.params, &grads)?;
        Ok(wgan::CriticValues {
            loss: obj.loss.to_scalar::<f32>()? as f64,
            penalty: obj.penalty.to_scalar::<f32>()? as f64,
            wasserstein: obj.wasserstein.to_scalar::<f32>()? as f64,
            grad_norm_mean: obj.grad_norms.mean_all()?.to_scalar::<f32>()? as f64,
        })
    }

    /// The generator step: fresh latents, loss `−mean C(G(z))`, one Adam step.
    pub fn generator_step(&mut self) -> Result<f64> {
        if let Some(mut engines) = self.engines.take() {
            let r = self.generator_step_explicit(&mut engines);
            self.engines = Some(engines);
            return r;
        }
        let (b, z) = (self.config.batch_size, self.preset.z_dim);
        let noise = self.normal(&[b, z, 1, 1])?;
        let fake = self.generator.forward(&noise, Mode::Train)?;
        let critic = &self.critic;
        let loss = wgan::generator_loss(|x| critic.forward(x), &fake)?;
        let grads = Gradients::from_grad_store(&self.generator.params, &loss.backward()?)?;
        self.opt_g.step(&self.generator.params, &grads)?;
        Ok(loss.to_scalar::<f32>()? as f64)
    }

    fn generator_step_explicit(&mut self, e: &mut Engines) -> Result<f64> {
        let noise = self.normal_vec(self.config.batch_size * self.preset.z_dim);
        let (fake, stats) = e.generator_forward(&self.generator, &noise)?;
        self.generator.apply_batch_stats(&stats)?;
        let cw = NetWeights::from_params(&self.critic.spec, &self.critic.params)?;
        let (loss, grad_fake) = wgan::generator_objective_explicit(&mut e.critic, &cw, &fake)?;
        let gw = e.generator_weights.as_ref().expect("converted above");
        let grads = e.generator.backward(gw, &grad_fake)?;
        let grads = to_gradients(&self.generator.spec, &grads, &self.device)?;
        e.generator_weights = None;
        self.opt_g.step(&self.generator.params, &grads)?;
        Ok(loss)
    }

    /// One iteration: `n_critic` critic steps and one generator step. On the CPU both run on
    /// the calling thread through the explicit engines; on other devices the critic steps
    /// run on a fresh thread where candle's second-order gradients are on. Fails, naming the
    /// step, if a loss is not finite.
    pub fn iteration(&mut self) -> Result<IterationStats> {
        let pool = Arc::clone(&self.pool);
        pool.install(|| self.iteration_on_this_pool())
    }

    fn iteration_on_this_pool(&mut self) -> Result<IterationStats> {
        let critic = if self.uses_explicit_engine() {
            Ok(self.critic_steps())
        } else {
            self.critic_steps_on_second_order_thread()
        };
        let (critic_loss, wasserstein, penalty, grad_norm) = match critic {
            Ok(r) => r?,
            Err(_) => bail!("the critic step panicked at step {}", self.step + 1),
        };
        let generator_loss = self.generator_step()?;
        let step = self.step + 1;
        if let Some(ema) = &mut self.ema {
            ema.update(&self.generator, step)?;
        }
        for (name, v) in [
            ("critic loss", critic_loss),
            ("gradient penalty", penalty),
            ("generator loss", generator_loss),
        ] {
            if !v.is_finite() {
                bail!(
                    "training diverged at step {step}: the {name} is {v}; {}",
                    self.checkpoint_kept()
                );
            }
        }
        self.step = step;
        Ok(IterationStats {
            critic_loss,
            wasserstein,
            penalty,
            grad_norm,
            generator_loss,
        })
    }

    /// Critic steps on candle's autograd, on a fresh thread where second-order gradients are
    /// on (see [`second_order`]).
    fn critic_steps_on_second_order_thread(
        &mut self,
    ) -> std::thread::Result<Result<(f64, f64, f64, f64)>> {
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("critic".into())
                .spawn_scoped(s, || self.critic_steps())
                .expect("spawning the critic thread")
                .join()
        })
    }

    /// Metrics rows so far (including those of earlier sessions of a resumed run).
    pub fn metrics(&self) -> &[MetricsRow] {
        &self.metrics
    }

    /// Trains until `config.steps`, writing metrics, samples and checkpoints. Stops early,
    /// after a checkpoint, when `stop` becomes true. `on_step` sees each iteration's row.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        mut on_step: impl FnMut(&MetricsRow),
    ) -> Result<RunEnd> {
        let metrics_path = self.run_dir.join("metrics.csv");
        let plot_path = self.run_dir.join("losses.png");
        while self.step < self.config.steps {
            if stop.load(Ordering::SeqCst) {
                self.save_checkpoint()?;
                self.save_samples()?;
                metrics::plot(&plot_path, &self.metrics)?;
                return Ok(RunEnd::Interrupted);
            }
            let t0 = Instant::now();
            let stats = self.iteration()?;
            let secs = t0.elapsed().as_secs_f64();
            self.elapsed_secs += secs;
            let row = MetricsRow {
                step: self.step,
                critic_loss: stats.critic_loss,
                wasserstein: stats.wasserstein,
                penalty: stats.penalty,
                grad_norm: stats.grad_norm,
                generator_loss: stats.generator_loss,
                sec_per_iter: secs,
            };
            metrics::append_csv(&metrics_path, row)?;
            self.metrics.push(row);
            on_step(&row);
            let last = self.step == self.config.steps;
            if self.step.is_multiple_of(self.config.sample_every) || last {
                self.save_samples()?;
                metrics::plot(&plot_path, &self.metrics)?;
            }
            if self.step.is_multiple_of(self.config.checkpoint_every) || last {
                self.save_checkpoint()?;
            }
        }
        Ok(RunEnd::Finished)
    }
}

/// Checks, before anything is allocated, that a training batch fits in the memory available:
/// on the CPU a lower bound of the engines' buffers, on a GPU the host's share (the loader's
/// batches). The CPU bound: the critic's activations of the real, generated and interpolated
/// rows, each kept in several forms for the second-order pass, and the generator's. Measured
/// peak memory grows by 8.7 MB per sample for `dcgan64` (1 channel) and 1.9 MB for `small`;
/// these coefficients give about 80 % of that, so only batches that cannot fit are refused.
pub fn check_batch_memory(batch_size: usize, preset: &Preset, device: &Device) -> Result<()> {
    use wgan_models::limits;
    let image = preset.channels * preset.image_size * preset.image_size;
    let per_sample = match device.is_cpu() {
        true => {
            3 * image
                + 12 * preset.critic.activation_values(preset.image_size)
                + preset.generator.activation_values(1)
        }
        false => 2 * image,
    };
    let what = format!("training with --batch-size {batch_size}");
    let values = limits::count(&what, &[batch_size, per_sample])?;
    limits::check_memory(
        &what,
        limits::bytes(&what, values, 4)?,
        "use a smaller --batch-size",
    )
}

/// Copies of every weight a run holds: the weights, their gradients, Adam's two moments, the
/// engines' layout copies and a moving average.
const WEIGHT_COPIES: usize = 6;

/// Checks, before the networks are built, that their weights and what training keeps beside
/// them fit in the memory available, saying how much they need.
pub fn check_weights_memory(preset: &Preset) -> Result<()> {
    use wgan_models::limits;
    let what = format!(
        "the networks of {} ({} weights)",
        preset.architecture(),
        preset.parameter_count()
    );
    let values = limits::count(&what, &[preset.parameter_count(), WEIGHT_COPIES])?;
    limits::check_memory(
        &what,
        limits::bytes(&what, values, 4)?,
        "use a smaller --width (or --g-width / --c-width)",
    )
}

/// The pool of `config.threads` threads the engine's kernels run on.
fn thread_pool(config: &TrainConfig) -> Result<Arc<rayon::ThreadPool>> {
    let threads = config.threads.unwrap_or_else(crate::data::default_threads);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("train-{i}"))
        .build()
        .with_context(|| format!("cannot start {threads} training threads (--threads)"))?;
    Ok(Arc::new(pool))
}

/// A run folder just claimed for a new run: removed again (with what setting up the run put in
/// it) unless [`ClaimedRunDir::keep`] is called, also when a signal ends the process while the
/// data set is decoded into it.
struct ClaimedRunDir {
    dir: PathBuf,
    registration: Option<wgan_models::output::TempRegistration>,
}

impl ClaimedRunDir {
    fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            registration: Some(wgan_models::output::TempRegistration::new(dir)),
        }
    }

    /// The run is set up: the folder stays.
    fn keep(mut self) {
        self.registration = None;
    }
}

impl Drop for ClaimedRunDir {
    fn drop(&mut self) {
        if self.registration.take().is_some() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
