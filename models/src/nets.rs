//! The generator and the critic, built from a [`Preset`]'s layer specs.

use crate::engine::BatchStats;
use crate::latent::Rng;
use crate::layers::{self, Mode};
use crate::params::{Param, Params};
use crate::rank_sum::RankSum;
use crate::spec::{LayerTensors, NetSpec, Norm, Preset};
use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use std::path::Path;

/// The generator: `z` `[N, z_dim, 1, 1]` → image `[N, C, H, W]` in [-1, 1].
pub struct Generator {
    pub spec: NetSpec,
    pub z_dim: usize,
    pub params: Params,
    /// The ranks over which BatchNorm in training mode takes its statistics (`None`: this
    /// process's batch), see [`Generator::synchronise_batchnorm`].
    batch_norm_ranks: Option<RankSum>,
}

/// The critic: image `[N, C, H, W]` → score `[N]`.
pub struct Critic {
    pub spec: NetSpec,
    pub params: Params,
}

/// A layer's convolution weight and optional bias.
fn conv_of(layer: &LayerTensors<Param>) -> (&Tensor, Option<&Tensor>) {
    (
        layer.weight.tensor(),
        layer.bias.as_ref().map(Param::tensor),
    )
}

impl Generator {
    /// A freshly initialised generator (DCGAN initialisation, deterministic in `rng`).
    pub fn new(preset: &Preset, rng: &mut Rng, dtype: DType, device: &Device) -> Result<Self> {
        let params = Params::init(&preset.generator, rng, dtype, device)?;
        Ok(Self::from_params(
            preset.generator.clone(),
            preset.z_dim,
            params,
        ))
    }

    /// Loads weights saved by [`Params::save`] (or a PyTorch `state_dict` in safetensors).
    pub fn load(preset: &Preset, path: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let params = Params::load(&preset.generator, path, dtype, device)?;
        Ok(Self::from_params(
            preset.generator.clone(),
            preset.z_dim,
            params,
        ))
    }

    /// A generator of `spec` with these weights (BatchNorm on this process's batch).
    pub fn from_params(spec: NetSpec, z_dim: usize, params: Params) -> Self {
        Self {
            spec,
            z_dim,
            params,
            batch_norm_ranks: None,
        }
    }

    /// Makes BatchNorm in training mode normalise with the statistics of the whole batch of a
    /// data-parallel run, whose ranks each hold an equal part (PyTorch's SyncBatchNorm), or
    /// again with this process's batch (`None`). The running statistics follow the same.
    pub fn synchronise_batchnorm(&mut self, ranks: Option<RankSum>) {
        self.batch_norm_ranks = ranks;
    }

    /// Runs the generator. In [`Mode::Train`] BatchNorm normalises with batch statistics and
    /// updates its running statistics (as a PyTorch module in `train()` mode does).
    pub fn forward(&mut self, z: &Tensor, mode: Mode) -> Result<Tensor> {
        let (_, zd, h, w) = z.dims4()?;
        if (zd, h, w) != (self.z_dim, 1, 1) {
            bail!(
                "generator input has shape {:?}, expected [N, {}, 1, 1]",
                z.dims(),
                self.z_dim
            );
        }
        // Channels-last inside the network: [N, z, 1, 1] and [N, 1, 1, z] share one layout.
        let mut x = z.reshape((z.dim(0)?, 1, 1, zd))?;
        let mut tracked = false;
        for (l, tensors) in self.spec.layers.iter().zip(self.params.layers()) {
            let (wt, b) = conv_of(tensors);
            x = layers::convolution(&x, l, wt, b)?;
            let norm = tensors.norm.as_ref();
            if let (Norm::Batch, Some(n), Some(running)) =
                (l.norm, norm, norm.and_then(|n| n.running.as_ref()))
            {
                let (g, beta) = (n.weight.tensor(), n.bias.tensor());
                let (rm, rv) = (&running.mean.var, &running.var.var);
                x = match mode {
                    Mode::Train => {
                        let (y, stats) =
                            layers::batch_norm_train(&x, g, beta, self.batch_norm_ranks.as_ref())?;
                        rm.set(&layers::running_update(rm.as_tensor(), &stats.mean)?)?;
                        rv.set(&layers::running_update(
                            rv.as_tensor(),
                            &stats.var_unbiased,
                        )?)?;
                        tracked = true;
                        y
                    }
                    Mode::Eval => {
                        layers::batch_norm_eval(&x, g, beta, rm.as_tensor(), rv.as_tensor())?
                    }
                };
            }
            x = layers::activation(&x, l.activation)?;
        }
        if tracked {
            self.params.batches_tracked += 1;
        }
        Ok(x.permute((0, 3, 1, 2))?.contiguous()?)
    }
}

impl Generator {
    /// Folds the batch statistics of an explicit training forward
    /// ([`crate::engine::GeneratorEngine::forward_train`]) into the running statistics, as
    /// [`Generator::forward`] in [`Mode::Train`] does.
    pub fn apply_batch_stats(&mut self, stats: &[BatchStats]) -> Result<()> {
        for s in stats {
            let running = self
                .params
                .layers()
                .get(s.layer)
                .and_then(|l| l.norm.as_ref())
                .and_then(|n| n.running.as_ref());
            let Some(running) = running else {
                bail!(
                    "batch statistics for layer {}, which has no BatchNorm",
                    s.layer
                )
            };
            for (param, batch) in [(&running.mean, &s.mean), (&running.var, &s.var_unbiased)] {
                let t = param.tensor();
                let batch = Tensor::from_vec(batch.clone(), batch.len(), t.device())?
                    .to_dtype(t.dtype())?;
                param.var.set(&layers::running_update(t, &batch)?)?;
            }
        }
        if !stats.is_empty() {
            self.params.batches_tracked += 1;
        }
        Ok(())
    }
}

impl Critic {
    /// A freshly initialised critic.
    pub fn new(preset: &Preset, rng: &mut Rng, dtype: DType, device: &Device) -> Result<Self> {
        Ok(Self {
            spec: preset.critic.clone(),
            params: Params::init(&preset.critic, rng, dtype, device)?,
        })
    }

    /// Loads weights saved by [`Params::save`].
    pub fn load(preset: &Preset, path: &Path, dtype: DType, device: &Device) -> Result<Self> {
        Ok(Self {
            spec: preset.critic.clone(),
            params: Params::load(&preset.critic, path, dtype, device)?,
        })
    }

    /// Scores a batch: `[N, C, H, W]` → `[N]`. The critic has no BatchNorm, so scores of
    /// different samples are independent (required by the per-sample gradient penalty).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = x.permute((0, 2, 3, 1))?;
        for (l, tensors) in self.spec.layers.iter().zip(self.params.layers()) {
            let (wt, b) = conv_of(tensors);
            h = layers::convolution(&h, l, wt, b)?;
            if let (Norm::Instance, Some(n)) = (l.norm, &tensors.norm) {
                h = layers::instance_norm(&h, n.weight.tensor(), n.bias.tensor())?;
            }
            h = layers::activation(&h, l.activation)?;
        }
        h.flatten_from(1)?.squeeze(1)
    }
}
