//! Adam (Kingma & Ba) with state that can be saved in a checkpoint. Same arithmetic as
//! `torch.optim.Adam` (L2 weight decay added to the gradient, bias corrections folded as
//! PyTorch folds them), so runs match PyTorch step for step.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use wgan_models::{Gradients, Params};

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
        // Separate storage for each moment: the CPU update writes them in place.
        let exp_avg_sq = exp_avg
            .iter()
            .map(Tensor::zeros_like)
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            config,
            step: 0,
            names,
            exp_avg,
            exp_avg_sq,
        })
    }

    /// One update from `grads` (one per trainable tensor, in [`Params::trainable`] order).
    pub fn step(&mut self, params: &Params, grads: &Gradients) -> Result<()> {
        if grads.0.len() != self.names.len() {
            bail!(
                "{} gradients for {} trainable tensors",
                grads.0.len(),
                self.names.len()
            );
        }
        let c = self.config;
        self.step += 1;
        let bc1 = 1.0 - c.beta1.powi(self.step as i32);
        let bc2_sqrt = (1.0 - c.beta2.powi(self.step as i32)).sqrt();
        let update = Update {
            beta1: c.beta1,
            beta2: c.beta2,
            step_size: c.lr / bc1,
            bc2_sqrt,
            eps: c.eps,
        };
        for (i, (info, var)) in params.trainable().enumerate() {
            debug_assert_eq!(info.name, self.names[i]);
            let p = var.as_tensor();
            let mut g = grads.0[i].to_dtype(p.dtype())?.to_device(p.device())?;
            if g.dims() != p.dims() {
                bail!(
                    "gradient of {} has shape {:?}, expected {:?}",
                    info.name,
                    g.dims(),
                    p.dims()
                );
            }
            if c.weight_decay != 0.0 {
                g = (g + (p.detach() * c.weight_decay)?)?;
            }
            let (m, v) = (&self.exp_avg[i], &self.exp_avg_sq[i]);
            if fused::applies(&[p, &g, m, v]) {
                fused::step(p, &g, m, v, &update)?;
            } else {
                let (m, v) = update.with_tensor_ops(var, &g, m, v)?;
                self.exp_avg[i] = m;
                self.exp_avg_sq[i] = v;
            }
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

/// The scalars of one Adam update: `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
/// `p ← p − step_size · m / (√v / bc2_sqrt + eps)`.
#[derive(Clone, Copy, Debug)]
struct Update {
    beta1: f64,
    beta2: f64,
    /// `lr / (1 − β₁ᵗ)`.
    step_size: f64,
    /// `√(1 − β₂ᵗ)`.
    bc2_sqrt: f64,
    eps: f64,
}

impl Update {
    /// The update with candle tensor ops (any device): returns the new moments.
    fn with_tensor_ops(
        &self,
        var: &candle_core::Var,
        g: &Tensor,
        m: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let m = ((m * self.beta1)? + (g * (1.0 - self.beta1))?)?;
        let v = ((v * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
        let denom = ((v.sqrt()? / self.bc2_sqrt)? + self.eps)?;
        let update = (m.div(&denom)? * self.step_size)?;
        var.set(&(var.as_tensor().detach() - update)?)?;
        Ok((m, v))
    }
}

/// The same update in place, in three fused passes, for contiguous CPU tensors: no
/// temporaries (the tensor-op form allocates eight per tensor, which for `dcgan64`'s
/// generator cost more than its backward pass).
mod fused {
    use super::Update;
    use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout, Tensor, WithDType};

    /// Whether every tensor is a contiguous f32 or f64 CPU tensor of one dtype.
    pub fn applies(ts: &[&Tensor]) -> bool {
        let dtype = ts[0].dtype();
        ts.iter().all(|t| {
            t.device().is_cpu()
                && t.dtype() == dtype
                && t.is_contiguous()
                && matches!(dtype, candle_core::DType::F32 | candle_core::DType::F64)
        })
    }

    pub fn step(
        p: &Tensor,
        g: &Tensor,
        m: &Tensor,
        v: &Tensor,
        u: &Update,
    ) -> candle_core::Result<()> {
        m.inplace_op2(
            g,
            &Moment {
                keep: u.beta1,
                square: false,
            },
        )?;
        v.inplace_op2(
            g,
            &Moment {
                keep: u.beta2,
                square: true,
            },
        )?;
        p.inplace_op3(m, v, &Step(*u))
    }

    fn slice<'a, T: WithDType>(s: &'a [T], l: &Layout) -> &'a [T] {
        &s[l.start_offset()..l.start_offset() + l.shape().elem_count()]
    }

    fn slice_mut<'a, T: WithDType>(s: &'a mut [T], l: &Layout) -> &'a mut [T] {
        &mut s[l.start_offset()..l.start_offset() + l.shape().elem_count()]
    }

    /// `x ← keep·x + (1 − keep)·g` (or `g²` with `square`).
    struct Moment {
        keep: f64,
        square: bool,
    }

    impl Moment {
        fn apply<T: WithDType>(&self, x: &mut [T], g: &[T]) {
            let (keep, take) = (T::from_f64(self.keep), T::from_f64(1.0 - self.keep));
            for (x, &g) in x.iter_mut().zip(g) {
                let g = if self.square { g * g } else { g };
                *x = *x * keep + g * take;
            }
        }
    }

    impl InplaceOp2 for Moment {
        fn name(&self) -> &'static str {
            "adam-moment"
        }

        fn cpu_fwd(
            &self,
            s1: &mut CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
        ) -> candle_core::Result<()> {
            match (s1, s2) {
                (CpuStorage::F32(x), CpuStorage::F32(g)) => {
                    self.apply(slice_mut(x, l1), slice(g, l2))
                }
                (CpuStorage::F64(x), CpuStorage::F64(g)) => {
                    self.apply(slice_mut(x, l1), slice(g, l2))
                }
                _ => candle_core::bail!("adam-moment: f32 or f64 tensors of one dtype"),
            }
            Ok(())
        }
    }

    trait Sqrt {
        fn sqrt(self) -> Self;
    }

    impl Sqrt for f32 {
        fn sqrt(self) -> Self {
            f32::sqrt(self)
        }
    }

    impl Sqrt for f64 {
        fn sqrt(self) -> Self {
            f64::sqrt(self)
        }
    }

    /// `p ← p − step_size · m / (√v / bc2_sqrt + eps)`.
    struct Step(Update);

    impl Step {
        fn apply<T: WithDType + Sqrt>(&self, p: &mut [T], m: &[T], v: &[T]) {
            let u = &self.0;
            let (lr, inv_bc2, eps) = (
                T::from_f64(u.step_size),
                T::from_f64(1.0 / u.bc2_sqrt),
                T::from_f64(u.eps),
            );
            for ((p, &m), &v) in p.iter_mut().zip(m).zip(v) {
                *p -= m / (v.sqrt() * inv_bc2 + eps) * lr;
            }
        }
    }

    impl InplaceOp3 for Step {
        fn name(&self) -> &'static str {
            "adam-step"
        }

        fn cpu_fwd(
            &self,
            s1: &mut CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
            s3: &CpuStorage,
            l3: &Layout,
        ) -> candle_core::Result<()> {
            match (s1, s2, s3) {
                (CpuStorage::F32(p), CpuStorage::F32(m), CpuStorage::F32(v)) => {
                    self.apply(slice_mut(p, l1), slice(m, l2), slice(v, l3))
                }
                (CpuStorage::F64(p), CpuStorage::F64(m), CpuStorage::F64(v)) => {
                    self.apply(slice_mut(p, l1), slice(m, l2), slice(v, l3))
                }
                _ => candle_core::bail!("adam-step: f32 or f64 tensors of one dtype"),
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    /// The fused in-place update and the tensor-op form agree over several steps (the
    /// PyTorch goldens check the arithmetic itself).
    #[test]
    fn fused_update_matches_tensor_ops() {
        let u = |t: u64| {
            let c = AdamConfig::default();
            Update {
                beta1: 0.5,
                beta2: c.beta2,
                step_size: c.lr / (1.0 - 0.5f64.powi(t as i32)),
                bc2_sqrt: (1.0 - c.beta2.powi(t as i32)).sqrt(),
                eps: c.eps,
            }
        };
        let dev = Device::Cpu;
        let p0 = Tensor::randn(0f32, 1.0, (7, 5), &dev).unwrap();
        let (pa, pb) = (
            Var::from_tensor(&p0).unwrap(),
            Var::from_tensor(&p0.copy().unwrap()).unwrap(),
        );
        let zeros = p0.zeros_like().unwrap();
        let (ma, va) = (zeros.copy().unwrap(), zeros.copy().unwrap());
        let (mut mb, mut vb) = (zeros.copy().unwrap(), zeros.copy().unwrap());
        for t in 1..=4 {
            let g = Tensor::randn(0f32, 1.0, (7, 5), &dev).unwrap();
            assert!(fused::applies(&[pa.as_tensor(), &g, &ma, &va]));
            fused::step(pa.as_tensor(), &g, &ma, &va, &u(t)).unwrap();
            (mb, vb) = u(t).with_tensor_ops(&pb, &g, &mb, &vb).unwrap();
        }
        let diff = |a: &Tensor, b: &Tensor| {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert!(diff(&ma, &mb) < 1e-6 && diff(&va, &vb) < 1e-6);
        let moved = diff(pa.as_tensor(), &p0);
        assert!(moved > 1e-5, "the update moved the parameters by {moved}");
        assert!(diff(pa.as_tensor(), pb.as_tensor()) < 1e-3 * moved);
    }

    /// `Adam::step` on a real network equals the textbook update computed here (its moments
    /// must not share storage, since the CPU update writes them in place).
    #[test]
    fn step_matches_the_textbook_update() {
        let p = wgan_models::preset("tiny", 1).unwrap();
        let mut rng = wgan_models::latent::Rng::new(3);
        let critic = wgan_models::Critic::new(&p, &mut rng, DType::F64, &Device::Cpu).unwrap();
        let config = AdamConfig {
            beta1: 0.5,
            ..AdamConfig::default()
        };
        let mut adam = Adam::new(config, &critic.params).unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let mut params: Vec<Vec<f64>> = critic.params.trainable().map(|(_, v)| flat(v)).collect();
        let mut m: Vec<Vec<f64>> = params.iter().map(|p| vec![0.0; p.len()]).collect();
        let mut v = m.clone();
        for t in 1..=3 {
            let grads: Vec<Tensor> = critic
                .params
                .trainable()
                .map(|(_, var)| var.randn_like(0.0, 1.0).unwrap())
                .collect();
            for (i, g) in grads.iter().enumerate() {
                let g = flat(g);
                for j in 0..g.len() {
                    m[i][j] = 0.5 * m[i][j] + 0.5 * g[j];
                    v[i][j] = 0.9 * v[i][j] + 0.1 * g[j] * g[j];
                    let (mh, vh) = (
                        m[i][j] / (1.0 - 0.5f64.powi(t)),
                        v[i][j] / (1.0 - 0.9f64.powi(t)),
                    );
                    params[i][j] -= 1e-4 * mh / (vh.sqrt() + 1e-8);
                }
            }
            adam.step(&critic.params, &Gradients(grads)).unwrap();
        }
        for ((info, var), want) in critic.params.trainable().zip(&params) {
            for (a, b) in flat(var).iter().zip(want) {
                assert!((a - b).abs() < 1e-12, "{}: {a} vs {b}", info.name);
            }
        }
    }
}
