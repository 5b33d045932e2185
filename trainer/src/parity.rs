//! `trainer check-device`: one critic step and one generator step computed twice on the same
//! weights and inputs — by the CPU engine (the reference) and by candle's autograd on the
//! chosen device — and every number compared.
//!
//! On a CUDA build this is the CPU/GPU parity check; on the CPU it checks the explicit engine
//! against candle's generic autograd. What is compared: the critic loss, the penalty, the
//! Wasserstein estimate, every critic gradient, the generator loss and every generator
//! gradient, each as `max |device − reference| / max |reference|`.

use crate::second_order;
use crate::wgan;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use wgan_models::engine::{
    nchw_to_nhwc, nhwc_to_nchw, to_gradients, CriticEngine, GeneratorEngine, NetWeights, Real,
};
use wgan_models::latent::Rng;
use wgan_models::{Critic, Generator, Gradients, Mode, Params, Preset};

/// One compared quantity.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub name: String,
    /// `max |reference|` (a scale for the error).
    pub scale: f64,
    /// `max |device − reference| / max |reference|`.
    pub rel_error: f64,
}

fn flat(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_device(&Device::Cpu)?
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1()?)
}

fn compare(name: String, device: &[f64], reference: &[f64]) -> Comparison {
    let scale = reference.iter().fold(0f64, |m, v| m.max(v.abs()));
    let diff = device
        .iter()
        .zip(reference)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    let rel_error = if device.len() != reference.len() {
        f64::INFINITY
    } else if scale > 0.0 {
        diff / scale
    } else {
        diff
    };
    Comparison {
        name,
        scale,
        rel_error,
    }
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_device(&Device::Cpu)?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?)
}

/// Scales the generator's last weight so that its images spread like data (standard
/// deviation 0.5) instead of the near-constant images of DCGAN initialisation, which make
/// every InstanceNorm of the critic divide by almost nothing.
fn condition_like_a_trained_generator<T: Real>(
    preset: &Preset,
    generator: &Generator,
    engine: &mut GeneratorEngine<T>,
    z: &[T],
) -> Result<()> {
    let w = &generator
        .params
        .layers()
        .last()
        .context("a generator has layers")?
        .weight
        .var;
    for _ in 0..3 {
        let gw = NetWeights::from_params(&preset.generator, &generator.params)?;
        let images = engine.forward_train(&gw, z)?.0;
        let n = images.len() as f64;
        let mean = images.iter().map(|&v| v.f64()).sum::<f64>() / n;
        let var = images
            .iter()
            .map(|&v| (v.f64() - mean).powi(2))
            .sum::<f64>()
            / n;
        if !(var > 0.0 && var.is_finite()) {
            bail!("the generator's images are constant; cannot condition the check");
        }
        // tanh flattens large values: a few rounds settle the spread.
        w.set(&(w.as_tensor() * (0.5 / var.sqrt()).min(50.0))?)?;
    }
    Ok(())
}

/// Scales the critic's last weight so that its input gradients on the interpolates have
/// mean norm 1, as in a trained WGAN-GP critic. At DCGAN initialisation the norms are tiny,
/// so the penalty's factor `(‖g‖ − 1)/‖g‖` is huge and amplifies f32 rounding to ~1e-3 in
/// any implementation; at norm 1 the comparison measures the implementations, not that.
/// The input gradient is linear in the last layer's weight (no norm follows it).
fn condition_like_a_trained_critic<T: Real>(
    preset: &Preset,
    critic: &Critic,
    engine: &mut CriticEngine<T>,
    real: &[T],
    fake: &[T],
    eps: &[T],
) -> Result<()> {
    let b = eps.len();
    let per = real.len() / b;
    let x_hat: Vec<T> = real
        .chunks(per)
        .zip(fake.chunks(per))
        .zip(eps)
        .flat_map(|((r, f), &e)| {
            r.iter()
                .zip(f)
                .map(move |(&r, &f)| e * r + (T::one() - e) * f)
        })
        .collect();
    let cw = NetWeights::from_params(&preset.critic, &critic.params)?;
    engine.forward(&cw, &x_hat)?;
    let g = engine.input_gradient(&cw, 0..b, &vec![T::one(); b])?;
    let mean_norm = g
        .chunks(per)
        .map(|gi| gi.iter().map(|&v| v.f64().powi(2)).sum::<f64>().sqrt())
        .sum::<f64>()
        / b as f64;
    if !(mean_norm > 0.0 && mean_norm.is_finite()) {
        bail!("the critic's input gradients vanish; cannot condition the check");
    }
    let w = &critic
        .params
        .layers()
        .last()
        .context("a critic has layers")?
        .weight
        .var;
    w.set(&(w.as_tensor() / mean_norm)?)?;
    Ok(())
}

/// Weights and inputs of one check, fixed in f64 (each run casts them to its precision).
pub struct Setup {
    preset: Preset,
    batch: usize,
    generator: HashMap<String, Tensor>,
    critic: HashMap<String, Tensor>,
    /// `[B, C, H, W]`.
    real: Vec<f64>,
    z_critic: Vec<f64>,
    z_gen: Vec<f64>,
    eps: Vec<f64>,
}

/// The penalty weight of the check.
const LAMBDA: f64 = 10.0;

impl Setup {
    /// DCGAN-initialised networks from `seed`, conditioned as after training (see
    /// [`condition_like_a_trained_generator`] and [`condition_like_a_trained_critic`]), and
    /// seeded inputs.
    pub fn new(preset: &Preset, batch: usize, seed: u64) -> Result<Self> {
        if batch == 0 {
            bail!("--batch-size must be at least 1");
        }
        let (c, s, zd) = (preset.channels, preset.image_size, preset.z_dim);
        let hw = s * s;
        let mut rng = Rng::new(seed);
        let cpu = Device::Cpu;
        let g = Generator::new(preset, &mut rng, DType::F64, &cpu)?;
        let cr = Critic::new(preset, &mut rng, DType::F64, &cpu)?;
        let mut draw = |n: usize| -> Vec<f64> {
            let mut v = vec![0f32; n];
            rng.fill_normal(&mut v);
            v.into_iter().map(f64::from).collect()
        };
        let real: Vec<f64> = draw(batch * c * hw).iter().map(|v| v.tanh()).collect();
        let z_critic = draw(batch * zd);
        let z_gen = draw(batch * zd);
        let eps: Vec<f64> = draw(batch).iter().map(|v| 0.5 + 0.5 * v.tanh()).collect();
        let mut ge = GeneratorEngine::<f64>::new(&preset.generator, zd)?;
        let mut ce = CriticEngine::<f64>::new(&preset.critic, c, s)?;
        condition_like_a_trained_generator(preset, &g, &mut ge, &z_critic)?;
        let gw = NetWeights::from_params(&preset.generator, &g.params)?;
        let fake = ge.forward_train(&gw, &z_critic)?.0.to_vec();
        let real_nhwc = nchw_to_nhwc(&real, batch, c, hw);
        condition_like_a_trained_critic(preset, &cr, &mut ce, &real_nhwc, &fake, &eps)?;
        Ok(Self {
            preset: preset.clone(),
            batch,
            generator: g.params.state_dict()?,
            critic: cr.params.state_dict()?,
            real,
            z_critic,
            z_gen,
            eps,
        })
    }

    fn networks(&self, dtype: DType, device: &Device) -> Result<(Generator, Critic)> {
        let p = &self.preset;
        Ok((
            Generator::from_params(
                p.generator.clone(),
                p.z_dim,
                Params::from_tensors(&p.generator, self.generator.clone(), 0, dtype, device)?,
            ),
            Critic {
                spec: p.critic.clone(),
                params: Params::from_tensors(&p.critic, self.critic.clone(), 0, dtype, device)?,
            },
        ))
    }
}

fn cast<T: Real>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::of(x)).collect()
}

/// Every compared quantity of one run, named, as f64 values (images NCHW, gradients in
/// PyTorch layout).
pub type StepNumbers = Vec<(String, Vec<f64>)>;

fn numbers(
    fake: Vec<f64>,
    critic: [f64; 3],
    critic_grads: &[(String, Vec<f64>)],
    gen_loss: f64,
    gen_grads: &[(String, Vec<f64>)],
) -> StepNumbers {
    let mut out = vec![
        ("generator images (critic step)".to_string(), fake),
        ("critic loss".to_string(), vec![critic[0]]),
        ("gradient penalty".to_string(), vec![critic[1]]),
        ("Wasserstein estimate".to_string(), vec![critic[2]]),
    ];
    out.extend(
        critic_grads
            .iter()
            .map(|(n, g)| (format!("critic grad {n}"), g.clone())),
    );
    out.push(("generator loss".to_string(), vec![gen_loss]));
    out.extend(
        gen_grads
            .iter()
            .map(|(n, g)| (format!("generator grad {n}"), g.clone())),
    );
    out
}

fn named_grads(params: &Params, grads: &Gradients) -> Result<Vec<(String, Vec<f64>)>> {
    params
        .trainable()
        .zip(&grads.0)
        .map(|((info, _), g)| Ok((info.name.clone(), flat(g)?)))
        .collect()
}

/// Both steps on the CPU engine in precision `T`.
pub fn engine_step<T: Real>(setup: &Setup) -> Result<StepNumbers> {
    let p = &setup.preset;
    let (b, c, s, zd) = (setup.batch, p.channels, p.image_size, p.z_dim);
    let hw = s * s;
    let (g, cr) = setup.networks(T::DTYPE, &Device::Cpu)?;
    let mut ge = GeneratorEngine::<T>::new(&p.generator, zd)?;
    let mut ce = CriticEngine::<T>::new(&p.critic, c, s)?;
    let gw = NetWeights::from_params(&p.generator, &g.params)?;
    let cw = NetWeights::from_params(&p.critic, &cr.params)?;
    let fake = ge
        .forward_train(&gw, &cast::<T>(&setup.z_critic))?
        .0
        .to_vec();
    let real = nchw_to_nhwc(&cast::<T>(&setup.real), b, c, hw);
    let (v, _, cgrads) = wgan::critic_objective_explicit(
        &mut ce,
        &cw,
        &real,
        &fake,
        &cast::<T>(&setup.eps),
        LAMBDA,
    )?;
    let cgrads = to_gradients(&p.critic, &cgrads, &Device::Cpu)?;
    let fake_gen = ge.forward_train(&gw, &cast::<T>(&setup.z_gen))?.0.to_vec();
    let (gen_loss, grad_fake) = wgan::generator_objective_explicit(&mut ce, &cw, &fake_gen)?;
    let ggrads = to_gradients(&p.generator, &ge.backward(&gw, &grad_fake)?, &Device::Cpu)?;
    Ok(numbers(
        nhwc_to_nchw(&fake, b, c, hw)
            .iter()
            .map(|v| v.f64())
            .collect(),
        [v.loss, v.penalty, v.wasserstein],
        &named_grads(&cr.params, &cgrads)?,
        gen_loss,
        &named_grads(&g.params, &ggrads)?,
    ))
}

/// Both steps through candle's autograd on `device` in `dtype` (the training path on
/// devices other than the CPU). The critic step runs on a thread with second-order
/// gradients on (checked).
pub fn autograd_step(setup: &Setup, dtype: DType, device: &Device) -> Result<StepNumbers> {
    let p = &setup.preset;
    let (b, c, s, zd) = (setup.batch, p.channels, p.image_size, p.z_dim);
    let (mut g, cr) = setup.networks(dtype, device)?;
    let tensor = |v: &[f64], shape: &[usize]| -> Result<Tensor> {
        Ok(Tensor::from_vec(v.to_vec(), shape, &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(device)?)
    };
    let real = tensor(&setup.real, &[b, c, s, s])?;
    let zc = tensor(&setup.z_critic, &[b, zd, 1, 1])?;
    let eps = tensor(&setup.eps, &[b, 1, 1, 1])?;
    let fake = g.forward(&zc, Mode::Train)?.detach();
    let (critic, cgrads) = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("critic".into())
            .spawn_scoped(scope, || -> Result<_> {
                second_order::check_current_thread()?;
                let obj = wgan::critic_objective(|x| cr.forward(x), &real, &fake, &eps, LAMBDA)?;
                let grads = Gradients::from_grad_store(&cr.params, &obj.loss.backward()?)?;
                Ok((
                    [
                        scalar(&obj.loss)?,
                        scalar(&obj.penalty)?,
                        scalar(&obj.wasserstein)?,
                    ],
                    named_grads(&cr.params, &grads)?,
                ))
            })
            .context("starting the critic thread")?
            .join()
            .map_err(|_| anyhow::anyhow!("the critic step panicked"))?
    })?;
    let zg = tensor(&setup.z_gen, &[b, zd, 1, 1])?;
    let fake_gen = g.forward(&zg, Mode::Train)?;
    let gen_loss = wgan::generator_loss(|x| cr.forward(x), &fake_gen)?;
    let ggrads = Gradients::from_grad_store(&g.params, &gen_loss.backward()?)?;
    Ok(numbers(
        flat(&fake)?,
        critic,
        &cgrads,
        scalar(&gen_loss)?,
        &named_grads(&g.params, &ggrads)?,
    ))
}

/// `max |x − reference| / max |reference|` per quantity.
pub fn errors(x: &StepNumbers, reference: &StepNumbers) -> Vec<Comparison> {
    x.iter()
        .zip(reference)
        .map(|((name, a), (_, b))| compare(name.clone(), a, b))
        .collect()
}

/// Largest relative error accepted between two f64 implementations of one step.
pub const F64_PARITY: f64 = 1e-9;

/// The comparison with the largest relative error (NaN counts as largest).
pub fn worst(rows: &[Comparison]) -> Comparison {
    rows.iter()
        .max_by(|a, b| a.rel_error.total_cmp(&b.rel_error))
        .cloned()
        .expect("at least one comparison")
}

/// Why [`judge`] fails a device: the first quantity beyond its bound.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Disagreement {
    /// In f64 the device's autograd and the CPU engine differ: the implementations disagree.
    #[error("in f64, {quantity} on {device} differs from the CPU engine by {rel_error:.1e} (relative), above {F64_PARITY:.0e}: the two implementations disagree")]
    F64 {
        quantity: String,
        device: String,
        rel_error: f64,
    },
    /// In f32 beyond `--tolerance` and beyond 10× the CPU engine's own f32 error.
    #[error("in f32, {quantity} on {device} differs by {rel_error:.1e} (relative), above --tolerance {tolerance:.0e} and 10× the CPU engine's f32 error ({cpu_rel_error:.1e})")]
    F32 {
        quantity: String,
        device: String,
        rel_error: f64,
        tolerance: f64,
        cpu_rel_error: f64,
    },
}

/// `check-device`'s rule on one step's comparisons (`cpu32`: the CPU engine in f32; `dev32`,
/// `dev64`: autograd on `device`; each against the CPU engine in f64): every f64 quantity
/// within [`F64_PARITY`], and every f32 quantity within `tolerance` or within 10× of what the
/// CPU engine's own f32 rounding gives on it (some gradients are ill-conditioned in any f32
/// implementation). The error names the first quantity that fails.
pub fn judge(
    cpu32: &[Comparison],
    dev32: &[Comparison],
    dev64: &[Comparison],
    tolerance: f64,
    device: &str,
) -> std::result::Result<(), Disagreement> {
    let w64 = worst(dev64);
    if w64.rel_error.is_nan() || w64.rel_error > F64_PARITY {
        return Err(Disagreement::F64 {
            quantity: w64.name,
            device: device.to_string(),
            rel_error: w64.rel_error,
        });
    }
    let failed = dev32
        .iter()
        .zip(cpu32)
        .find(|(d, c)| !(d.rel_error <= tolerance || d.rel_error <= 10.0 * c.rel_error));
    match failed {
        Some((d32, c32)) => Err(Disagreement::F32 {
            quantity: d32.name.clone(),
            device: device.to_string(),
            rel_error: d32.rel_error,
            tolerance,
            cpu_rel_error: c32.rel_error,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod judge_tests {
    use super::*;

    fn rows(errors: &[f64]) -> Vec<Comparison> {
        errors
            .iter()
            .enumerate()
            .map(|(i, &rel_error)| Comparison {
                name: format!("q{i}"),
                scale: 1.0,
                rel_error,
            })
            .collect()
    }

    #[test]
    fn f64_must_agree_and_f32_within_tolerance_or_its_own_rounding() {
        let cpu = rows(&[1e-7, 1e-4]);
        assert!(judge(
            &cpu,
            &rows(&[1e-6, 5e-4]),
            &rows(&[1e-12, 1e-10]),
            1e-5,
            "cuda"
        )
        .is_ok());
        let e = judge(
            &cpu,
            &rows(&[1e-6, 5e-4]),
            &rows(&[1e-12, 1e-8]),
            1e-5,
            "cuda",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("in f64, q1 on cuda"), "{e}");
        assert!(judge(&cpu, &rows(&[0.0]), &rows(&[f64::NAN]), 1e-5, "cuda").is_err());
        let e = judge(&cpu, &rows(&[2e-5, 5e-4]), &rows(&[0.0, 0.0]), 1e-5, "cuda")
            .unwrap_err()
            .to_string();
        assert!(e.contains("in f32, q0 on cuda differs by 2.0e-5"), "{e}");
    }
}
