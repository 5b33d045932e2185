//! An exponential moving average of the generator's weights (`train --ema DECAY`; Yazıcı et
//! al. 2019, "The unusual effectiveness of averaging in GAN training").
//!
//! After generator step `t` (1, 2, …) every tensor of the average, BatchNorm running
//! statistics included, becomes `d_t · average + (1 − d_t) · generator` with
//! `d_t = min(DECAY, (1 + t) / (10 + t))`: the warm-up of TensorFlow's
//! `ExponentialMovingAverage(num_updates=t)`, so the random initial weights are forgotten after a
//! few dozen steps instead of weighing `DECAY^t` for thousands. The average starts as a copy of
//! the initial generator. It is saved in every checkpoint (`generator_ema.safetensors`) and
//! restored on resume, so a resumed run averages exactly as an uninterrupted one.

use anyhow::Result;
use candle_core::{DType, Device};
use std::path::Path;
use wgan_models::{Generator, Params, Preset};

/// The averaged generator.
pub struct Ema {
    pub decay: f64,
    pub generator: Generator,
}

impl Ema {
    /// An average that starts at `g`'s current weights.
    pub fn new(decay: f64, g: &Generator) -> Result<Self> {
        let copies = g
            .params
            .iter()
            .map(|(info, var)| Ok((info.name.clone(), var.as_tensor().copy()?)))
            .collect::<Result<_>>()?;
        let device = g.params.iter().next().map(|(_, v)| v.device().clone());
        let params = Params::from_tensors(
            &g.spec,
            copies,
            g.params.batches_tracked,
            DType::F32,
            &device.unwrap_or(Device::Cpu),
        )?;
        Ok(Self {
            decay,
            generator: Generator::from_params(g.spec.clone(), g.z_dim, params),
        })
    }

    /// The average saved in a checkpoint.
    pub fn load(decay: f64, preset: &Preset, path: &Path, device: &Device) -> Result<Self> {
        Ok(Self {
            decay,
            generator: Generator::load(preset, path, DType::F32, device)?,
        })
    }

    /// The decay used after generator step `step` (1-based).
    pub fn decay_at(&self, step: u64) -> f64 {
        let t = step as f64;
        self.decay.min((1.0 + t) / (10.0 + t))
    }

    /// Moves the average towards `g` after generator step `step`.
    pub fn update(&mut self, g: &Generator, step: u64) -> Result<()> {
        let d = self.decay_at(step);
        for ((_, avg), (_, cur)) in self.generator.params.iter().zip(g.params.iter()) {
            let next = (avg.as_tensor().affine(d, 0.0)? + cur.as_tensor().affine(1.0 - d, 0.0)?)?;
            avg.set(&next)?;
        }
        self.generator.params.batches_tracked = g.params.batches_tracked;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wgan_models::latent::Rng;

    fn values(g: &Generator) -> Vec<Vec<f32>> {
        g.params
            .iter()
            .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
            .collect()
    }

    #[test]
    fn the_average_follows_the_formula_and_does_not_alias_the_generator() {
        let preset = wgan_models::preset("tiny", 1).unwrap();
        let mut rng = Rng::new(3);
        let g0 = Generator::new(&preset, &mut rng, DType::F32, &Device::Cpu).unwrap();
        let mut ema = Ema::new(0.999, &g0).unwrap();
        let g1 = Generator::new(&preset, &mut rng, DType::F32, &Device::Cpu).unwrap();
        // Changing the generator does not change the average's copy.
        for ((_, a), (_, b)) in g0.params.iter().zip(g1.params.iter()) {
            a.set(b.as_tensor()).unwrap();
        }
        let start = values(&ema.generator);
        assert_ne!(start, values(&g0));
        ema.update(&g0, 1).unwrap();
        let d = 2.0 / 11.0;
        assert_eq!(ema.decay_at(1), d);
        assert_eq!(ema.decay_at(100_000), 0.999);
        for ((a, b), c) in start.iter().zip(values(&g0)).zip(values(&ema.generator)) {
            for ((&a, &b), &c) in a.iter().zip(&b).zip(&c) {
                let want = d * a as f64 + (1.0 - d) * b as f64;
                assert!((c as f64 - want).abs() < 1e-6, "{c} vs {want}");
            }
        }
    }
}
