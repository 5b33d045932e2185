//! Adam (Kingma & Ba) with state that can be saved in a checkpoint. Same arithmetic as
//! `torch.optim.Adam` (L2 weight decay added to the gradient, bias corrections folded as
//! PyTorch folds them), so runs match PyTorch step for step.

use anyhow::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use wgan_models::Params;

/// Hyper-parameters. Defaults are the WGAN-GP paper's: lr 1e-4, betas (0.0, 0.9), no decay.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-4,
            beta1: 0.0,
            beta2: 0.9,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Adam over the trainable tensors of one network.
pub struct Adam {
    pub config: AdamConfig,
    /// Steps taken (PyTorch's `state['step']`).
    pub step: u64,
    names: Vec<String>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
}

impl Adam {
    /// Zero moments for every trainable tensor of `params`.
    pub fn new(config: AdamConfig, params: &Params) -> Result<Self> {
        let mut names = Vec::new();
        let mut exp_avg = Vec::new();
        for (info, var) in params.trainable() {
            names.push(info.name.clone());
            exp_avg.push(var.as_tensor().zeros_like()?);
        }
        let exp_avg_sq = exp_avg.clone();
        Ok(Self {
            config,
            step: 0,
            names,
            exp_avg,
            exp_avg_sq,
        })
    }

    /// One update from `grads`. A tensor with no gradient in `grads` (the objective does not
    /// depend on it) is updated as if its gradient were zero, as PyTorch does for a zero grad.
    pub fn step(&mut self, params: &Params, grads: &GradStore) -> Result<()> {
        let c = self.config;
        self.step += 1;
        let bc1 = 1.0 - c.beta1.powi(self.step as i32);
        let bc2_sqrt = (1.0 - c.beta2.powi(self.step as i32)).sqrt();
        for (i, (info, var)) in params.trainable().enumerate() {
            debug_assert_eq!(info.name, self.names[i]);
            let p = var.as_tensor();
            let mut g = match grads.get(p) {
                Some(g) => g.detach(),
                None => p.zeros_like()?,
            };
            if c.weight_decay != 0.0 {
                g = (g + (p.detach() * c.weight_decay)?)?;
            }
            let m = ((&self.exp_avg[i] * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            let v = ((&self.exp_avg_sq[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let denom = ((v.sqrt()? / bc2_sqrt)? + c.eps)?;
            let update = (m.div(&denom)? * (c.lr / bc1))?;
            var.set(&(p.detach() - update)?)?;
            self.exp_avg[i] = m;
            self.exp_avg_sq[i] = v;
        }
        Ok(())
    }

    /// The moments as named tensors (`{prefix}.{param}.exp_avg`, `….exp_avg_sq`) plus the step
    /// count (`{prefix}.step`, i64), for `optimizer.safetensors`.
    pub fn state_tensors(&self, prefix: &str) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, name) in self.names.iter().enumerate() {
            out.insert(
                format!("{prefix}.{name}.exp_avg"),
                self.exp_avg[i]
                    .to_dtype(DType::F32)?
                    .to_device(&Device::Cpu)?,
            );
            out.insert(
                format!("{prefix}.{name}.exp_avg_sq"),
                self.exp_avg_sq[i]
                    .to_dtype(DType::F32)?
                    .to_device(&Device::Cpu)?,
            );
        }
        out.insert(
            format!("{prefix}.step"),
            Tensor::new(&[self.step as i64], &Device::Cpu)?,
        );
        Ok(out)
    }

    /// Restores what [`Adam::state_tensors`] saved; every moment must be present with the
    /// shape of its parameter.
    pub fn load_state(
        &mut self,
        prefix: &str,
        tensors: &HashMap<String, Tensor>,
        params: &Params,
    ) -> Result<()> {
        let get = |key: String| {
            tensors
                .get(&key)
                .with_context(|| format!("optimizer state has no tensor {key}"))
        };
        let step = get(format!("{prefix}.step"))?
            .to_dtype(DType::I64)?
            .flatten_all()?
            .get(0)?
            .to_scalar::<i64>()?;
        if step < 0 {
            bail!("optimizer state {prefix}.step is negative ({step})");
        }
        self.step = step as u64;
        for (i, (info, var)) in params.trainable().enumerate() {
            for (slot, suffix) in [(0, "exp_avg"), (1, "exp_avg_sq")] {
                let t = get(format!("{prefix}.{}.{suffix}", info.name))?;
                if t.dims() != var.dims() {
                    bail!(
                        "optimizer state {prefix}.{}.{suffix} has shape {:?}, expected {:?}",
                        info.name,
                        t.dims(),
                        var.dims()
                    );
                }
                let t = t.to_dtype(var.dtype())?.to_device(var.device())?;
                if slot == 0 {
                    self.exp_avg[i] = t;
                } else {
                    self.exp_avg_sq[i] = t;
                }
            }
        }
        Ok(())
    }
}
