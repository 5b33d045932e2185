//! The WGAN-GP training loop: state, one iteration (n_critic critic steps + one generator
//! step), sampling, checkpoints and resume.

use crate::adam::Adam;
use crate::checkpoints::{self, CheckpointContents};
use crate::collective::{agree, broadcast, BatchNormSync, Collective, Single};
use crate::config::{TrainConfig, TrainState};
use crate::data::Loader;
use crate::ema::Ema;
use crate::metrics::{self, MetricsRow};
use crate::run_data::{DataPlan, DataRecord, RunData};
use crate::tensorboard::EventWriter;
use crate::{second_order, wgan};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use wgan_models::checkpoint::{self as ckpt, CheckpointHeader, OPTIMIZER_FILE};
use wgan_models::engine::{
    nchw_to_nhwc, to_gradients, BatchStats, CriticEngine, GeneratorEngine, LayerGrads, NetWeights,
};
use wgan_models::images::{grid, png_bytes, BatchShape};
use wgan_models::latent::{latents, Rng};
use wgan_models::rank_sum::RankSum;
use wgan_models::{Critic, Generator, Gradients, Mode, Preset};

mod persist;
mod setup;
pub use persist::ResumeOptions;
use setup::*;
pub use setup::{check_batch_memory, check_weights_memory};

pub use crate::device::{cuda_ordinal, parse_device, parse_rank_device};
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
    /// The ranks of a data-parallel run ([`Single`] for one process).
    ranks: Arc<dyn Collective>,
    /// Sums over the ranks of candle tensors, for the autograd path (`None`: one process).
    rank_sum: Option<RankSum>,
    /// Held while the run is open (by rank 0): no second process trains in the same directory.
    _lock: Option<RunLock>,
    /// This session's TensorBoard event file (rank 0, opened by [`Trainer::run`]).
    tensorboard: Option<EventWriter>,
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
    /// The engines for `preset` on `device`, when it is the CPU; with several ranks, the
    /// generator's BatchNorm statistics are the whole global batch's.
    fn for_device(
        preset: &Preset,
        device: &Device,
        ranks: &Arc<dyn Collective>,
    ) -> Result<Option<Box<Self>>> {
        if !device.is_cpu() {
            return Ok(None);
        }
        let mut generator = GeneratorEngine::new(&preset.generator, preset.z_dim)?;
        if ranks.size() > 1 {
            generator.synchronise_batchnorm(Some(Arc::new(BatchNormSync(ranks.clone()))));
        }
        Ok(Some(Box::new(Self {
            critic: CriticEngine::new(&preset.critic, preset.channels, preset.image_size)?,
            generator,
            generator_weights: None,
        })))
    }
}

impl Trainer {
    fn normal_vec(&mut self, n: usize) -> Vec<f32> {
        let mut v = vec![0f32; n];
        self.rng.fill_normal(&mut v);
        v
    }

    fn normal(&mut self, shape: &[usize]) -> Result<Tensor> {
        let v = self.normal_vec(shape.iter().product());
        Ok(Tensor::from_vec(v, shape, &self.device)?)
    }

    /// This rank's part of the next real batch, `[B/K, C, H, W]`.
    fn real_batch(&mut self) -> Result<Tensor> {
        let (_, b) = self.my_part(self.config.batch_size);
        let (c, s) = (self.preset.channels, self.preset.image_size);
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

    /// This rank's part of a global batch of `b_all`: its first index and its size.
    fn my_part(&self, b_all: usize) -> (usize, usize) {
        let b = b_all / self.ranks.size();
        (self.ranks.rank() * b, b)
    }

    fn critic_step_explicit(&mut self, e: &mut Engines) -> Result<wgan::CriticValues> {
        let (b_all, z, c) = (
            self.config.batch_size,
            self.preset.z_dim,
            self.preset.channels,
        );
        let (first, b) = self.my_part(b_all);
        let hw = self.preset.image_size * self.preset.image_size;
        let real = nchw_to_nhwc(&self.loader.next_batch()?, b, c, hw);
        // The latents and interpolation weights of the whole global batch are drawn on every
        // rank (the same stream as one process), and each takes its part.
        let noise_all = self.normal_vec(b_all * z);
        let noise = &noise_all[first * z..(first + b) * z];
        let (fake, stats) = e.generator_forward(&self.generator, noise)?;
        self.generator.apply_batch_stats(&stats)?;
        let eps_all: Vec<f32> = (0..b_all).map(|_| self.rng.uniform_f32()).collect();
        let eps = &eps_all[first..first + b];
        let cw = NetWeights::from_params(&self.critic.spec, &self.critic.params)?;
        let (values, _, mut grads) = wgan::critic_objective_explicit(
            &mut e.critic,
            &cw,
            &real,
            &fake,
            eps,
            self.config.lambda_gp,
        )?;
        let values = self.average_values(values);
        self.average_gradients(&mut grads);
        let grads = to_gradients(&self.critic.spec, &grads, &self.device)?;
        self.opt_c.step(&self.critic.params, &grads)?;
        Ok(values)
    }

    /// The global batch's means from each rank's means of its equal part: their average.
    fn average_values(&self, v: wgan::CriticValues) -> wgan::CriticValues {
        let k = self.ranks.size();
        if k == 1 {
            return v;
        }
        let mut x = [v.loss, v.wasserstein, v.penalty, v.grad_norm_mean];
        self.ranks.sum_f64(&mut x);
        let [loss, wasserstein, penalty, grad_norm_mean] = x.map(|s| s / k as f64);
        wgan::CriticValues {
            loss,
            wasserstein,
            penalty,
            grad_norm_mean,
        }
    }

    /// The global batch's gradients from each rank's gradients of the mean over its part:
    /// their average over the ranks, the same on every rank.
    fn average_gradients(&self, grads: &mut [LayerGrads<f32>]) {
        let k = self.ranks.size();
        if k == 1 {
            return;
        }
        let mut weights: Vec<f32> = grads
            .iter()
            .flat_map(|g| g.weight.iter().copied())
            .collect();
        let small = |g: &LayerGrads<f32>| -> Vec<f64> {
            [&g.bias, &g.gamma, &g.beta]
                .into_iter()
                .flatten()
                .flat_map(|v| v.iter().copied())
                .collect()
        };
        let mut rest: Vec<f64> = grads.iter().flat_map(small).collect();
        self.ranks.sum_f32(&mut weights);
        self.ranks.sum_f64(&mut rest);
        let (inv32, inv64) = (1.0 / k as f32, 1.0 / k as f64);
        let (mut w, mut r) = (weights.into_iter(), rest.into_iter());
        for g in grads.iter_mut() {
            for v in g.weight.iter_mut() {
                *v = w.next().expect("as many as taken") * inv32;
            }
            for part in [&mut g.bias, &mut g.gamma, &mut g.beta]
                .into_iter()
                .flatten()
            {
                for v in part.iter_mut() {
                    *v = r.next().expect("as many as taken") * inv64;
                }
            }
        }
    }

    fn critic_step_autograd(&mut self) -> Result<wgan::CriticValues> {
        second_order::check_current_thread()?;
        let (b_all, z) = (self.config.batch_size, self.preset.z_dim);
        let (first, b) = self.my_part(b_all);
        let real = self.real_batch()?;
        // As on the explicit path: the whole global batch's latents and ε, and this rank's part.
        let noise = self.normal(&[b_all, z, 1, 1])?.narrow(0, first, b)?;
        let fake = self.generator.forward(&noise, Mode::Train)?.detach();
        let eps: Vec<f32> = (0..b_all).map(|_| self.rng.uniform_f32()).collect();
        let eps = Tensor::from_vec(eps[first..first + b].to_vec(), (b, 1, 1, 1), &self.device)?;
        let critic = &self.critic;
        let obj = wgan::critic_objective(
            |x| critic.forward(x),
            &real,
            &fake,
            &eps,
            self.config.lambda_gp,
        )?;
        let grads = Gradients::from_grad_store(&self.critic.params, &obj.loss.backward()?)?;
        let grads = self.average_tensor_gradients(grads)?;
        self.opt_c.step(&self.critic.params, &grads)?;
        Ok(self.average_values(wgan::CriticValues {
            loss: obj.loss.to_scalar::<f32>()? as f64,
            penalty: obj.penalty.to_scalar::<f32>()? as f64,
            wasserstein: obj.wasserstein.to_scalar::<f32>()? as f64,
            grad_norm_mean: obj.grad_norms.mean_all()?.to_scalar::<f32>()? as f64,
        }))
    }

    /// [`Trainer::average_gradients`] for candle's autograd: each rank's gradients (of the
    /// mean over its part) averaged over the ranks in one sum over the ranks of all of them.
    fn average_tensor_gradients(&self, grads: Gradients) -> Result<Gradients> {
        let Some(sum) = &self.rank_sum else {
            return Ok(grads);
        };
        let flat = grads
            .0
            .iter()
            .map(Tensor::flatten_all)
            .collect::<candle_core::Result<Vec<_>>>()?;
        let total = (sum.sum(&Tensor::cat(&flat, 0)?)? / sum.ranks() as f64)?;
        let mut offset = 0;
        let mut averaged = Vec::with_capacity(grads.0.len());
        for g in &grads.0 {
            let n = g.elem_count();
            averaged.push(total.narrow(0, offset, n)?.reshape(g.shape())?);
            offset += n;
        }
        Ok(Gradients(averaged))
    }

    /// The generator step: fresh latents, loss `−mean C(G(z))`, one Adam step.
    pub fn generator_step(&mut self) -> Result<f64> {
        if let Some(mut engines) = self.engines.take() {
            let r = self.generator_step_explicit(&mut engines);
            self.engines = Some(engines);
            return r;
        }
        let (b_all, z) = (self.config.batch_size, self.preset.z_dim);
        let (first, b) = self.my_part(b_all);
        let noise = self.normal(&[b_all, z, 1, 1])?.narrow(0, first, b)?;
        let fake = self.generator.forward(&noise, Mode::Train)?;
        let critic = &self.critic;
        let loss = wgan::generator_loss(|x| critic.forward(x), &fake)?;
        let grads = Gradients::from_grad_store(&self.generator.params, &loss.backward()?)?;
        let grads = self.average_tensor_gradients(grads)?;
        self.opt_g.step(&self.generator.params, &grads)?;
        self.average_loss(loss.to_scalar::<f32>()? as f64)
    }

    /// The global batch's mean loss from each rank's mean over its equal part.
    fn average_loss(&self, loss: f64) -> Result<f64> {
        let mut loss = [loss];
        self.ranks.sum_f64(&mut loss);
        Ok(loss[0] / self.ranks.size() as f64)
    }

    fn generator_step_explicit(&mut self, e: &mut Engines) -> Result<f64> {
        let (b_all, z) = (self.config.batch_size, self.preset.z_dim);
        let (first, b) = self.my_part(b_all);
        let noise_all = self.normal_vec(b_all * z);
        let noise = &noise_all[first * z..(first + b) * z];
        let (fake, stats) = e.generator_forward(&self.generator, noise)?;
        self.generator.apply_batch_stats(&stats)?;
        let cw = NetWeights::from_params(&self.critic.spec, &self.critic.params)?;
        let (loss, grad_fake) = wgan::generator_objective_explicit(&mut e.critic, &cw, &fake)?;
        let gw = e.generator_weights.as_ref().expect("converted above");
        let mut grads = e.generator.backward(gw, &grad_fake)?;
        self.average_gradients(&mut grads);
        let grads = to_gradients(&self.generator.spec, &grads, &self.device)?;
        e.generator_weights = None;
        self.opt_g.step(&self.generator.params, &grads)?;
        self.average_loss(loss)
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
        let metrics_path = self.run_dir.join(ckpt::METRICS_CSV);
        let plot_path = self.run_dir.join(ckpt::LOSSES_PNG);
        // Rank 0 alone writes the run's files; every rank computes the same step.
        let lead = self.ranks.rank() == 0;
        if lead && self.config.tensorboard && self.tensorboard.is_none() {
            // A resumed session's file starts at its first step: TensorBoard drops what an
            // earlier session wrote from there on.
            let first = (self.step > 0).then_some(self.step + 1);
            let dir = self.run_dir.join(crate::tensorboard::TENSORBOARD_DIR);
            self.tensorboard = Some(EventWriter::create(&dir, first)?);
        }
        while self.step < self.config.steps {
            if self.stop_requested(stop) {
                if lead {
                    self.save_checkpoint()?;
                    self.save_samples()?;
                    metrics::plot(&plot_path, &self.metrics)?;
                }
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
            self.metrics.push(row);
            on_step(&row);
            if !lead {
                continue;
            }
            metrics::append_csv(&metrics_path, row)?;
            if let Some(tb) = self.tensorboard.as_mut() {
                let values: Vec<(String, f64)> = row
                    .columns()
                    .into_iter()
                    .map(|(name, v)| (format!("train/{name}"), v))
                    .collect();
                tb.scalars(self.step, &values)?;
            }
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

    /// Whether to stop now: `stop` set on any rank (a signal reaches some ranks first, or
    /// only one), agreed by all, so that every rank stops at the same step.
    fn stop_requested(&self, stop: &AtomicBool) -> bool {
        let mut flag = [stop.load(Ordering::SeqCst) as u8 as f64];
        self.ranks.sum_f64(&mut flag);
        flag[0] > 0.0
    }

    /// The ranks this run trains on.
    pub fn ranks(&self) -> &Arc<dyn Collective> {
        &self.ranks
    }

    /// Test-only: the generator's BatchNorm normalises with each rank's own statistics, as
    /// without SyncBatchNorm (to show that the synchronised run's agreement is not a given).
    #[doc(hidden)]
    pub fn unsynchronise_batchnorm_for_tests(&mut self) {
        if let Some(e) = self.engines.as_mut() {
            e.generator.synchronise_batchnorm(None);
        }
        self.generator.synchronise_batchnorm(None);
    }

    /// Test-only: the steps run on candle's autograd (the GPU's path) on the CPU too, in
    /// place of the explicit engines, so that its data parallelism can be checked here.
    #[doc(hidden)]
    pub fn use_autograd_for_tests(&mut self) {
        self.engines = None;
    }
}
