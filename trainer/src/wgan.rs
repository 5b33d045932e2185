//! The WGAN-GP objectives (Gulrajani et al. 2017, Algorithm 1).

use candle_core::{Result, Tensor, Var};
use wgan_models::engine::{CriticEngine, LayerGrads, NetWeights, Real};

/// Epsilon inside the square root of the per-sample gradient norm: keeps the norm's
/// derivative finite where the gradient is zero, and is small enough that a zero gradient
/// still gives a penalty of exactly λ in f32.
pub const GP_NORM_EPS: f64 = 1e-16;

/// The critic objective of one step and its parts.
pub struct CriticObjective {
    /// `mean C(fake) − mean C(real) + penalty`: minimised by the critic.
    pub loss: Tensor,
    /// `λ · mean((‖∇x̂ C(x̂)‖₂ − 1)²)`.
    pub penalty: Tensor,
    /// `mean C(real) − mean C(fake)`, the Wasserstein estimate.
    pub wasserstein: Tensor,
    /// Per-sample gradient norms `‖∇x̂ C(x̂)‖₂`, `[N]`.
    pub grad_norms: Tensor,
}

/// Per-sample interpolates `x̂ = ε·real + (1 − ε)·fake` with `eps` of shape `[N, 1, 1, 1]`,
/// as a fresh leaf variable (the penalty differentiates with respect to it).
pub fn interpolate(real: &Tensor, fake: &Tensor, eps: &Tensor) -> Result<Var> {
    let one_minus = eps.affine(-1.0, 1.0)?;
    let x_hat = (real.broadcast_mul(eps)? + fake.broadcast_mul(&one_minus)?)?;
    Var::from_tensor(&x_hat.detach())
}

/// Gradient penalty `λ · mean((‖∇x̂ critic(x̂)‖₂ − 1)²)` and the per-sample norms. The norm of
/// each sample is taken over all its non-batch dimensions. Needs second-order gradients on the
/// calling thread (see [`crate::second_order`]) for its own gradient to be right.
pub fn gradient_penalty(
    critic: impl Fn(&Tensor) -> Result<Tensor>,
    x_hat: &Var,
    lambda: f64,
) -> Result<(Tensor, Tensor)> {
    let scores = critic(x_hat.as_tensor())?;
    let grads = scores.sum_all()?.backward()?;
    let g = match grads.get(x_hat.as_tensor()) {
        Some(g) => g.clone(),
        None => x_hat.as_tensor().zeros_like()?,
    };
    let norms = (g.sqr()?.flatten_from(1)?.sum(1)? + GP_NORM_EPS)?.sqrt()?;
    let penalty = ((norms.clone() - 1.0)?.sqr()?.mean_all()? * lambda)?;
    Ok((penalty, norms))
}

/// The critic objective for one batch: `real` and `fake` `[N, C, H, W]` (fake detached from
/// the generator), interpolation weights `eps` `[N, 1, 1, 1]` drawn from U[0, 1].
pub fn critic_objective(
    critic: impl Fn(&Tensor) -> Result<Tensor>,
    real: &Tensor,
    fake: &Tensor,
    eps: &Tensor,
    lambda: f64,
) -> Result<CriticObjective> {
    let fake = fake.detach();
    let c_real = critic(real)?.mean_all()?;
    let c_fake = critic(&fake)?.mean_all()?;
    let x_hat = interpolate(real, &fake, eps)?;
    let (penalty, grad_norms) = gradient_penalty(&critic, &x_hat, lambda)?;
    let loss = ((&c_fake - &c_real)? + &penalty)?;
    let wasserstein = (c_real - c_fake)?;
    Ok(CriticObjective {
        loss,
        penalty,
        wasserstein,
        grad_norms,
    })
}

/// Values of one critic objective, for metrics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CriticValues {
    /// `mean C(fake) − mean C(real) + penalty`.
    pub loss: f64,
    pub penalty: f64,
    /// `mean C(real) − mean C(fake)`.
    pub wasserstein: f64,
    /// Mean over the batch of `‖∇x̂ C(x̂)‖₂`.
    pub grad_norm_mean: f64,
}

/// The critic objective of [`critic_objective`] and its parameter gradients through the
/// explicit engine (no autograd): `real` and `fake` channels-last `[B, H, W, C]`, `eps` `[B]`.
/// Returns the values, the per-sample gradient norms and the gradients layer by layer.
pub fn critic_objective_explicit<T: Real>(
    engine: &mut CriticEngine<T>,
    weights: &NetWeights<T>,
    real: &[T],
    fake: &[T],
    eps: &[T],
    lambda: f64,
) -> anyhow::Result<(CriticValues, Vec<f64>, Vec<LayerGrads<T>>)> {
    let b = eps.len();
    if b == 0 || real.len() != fake.len() || !real.len().is_multiple_of(b) {
        anyhow::bail!(
            "critic step: {} real and {} fake values for {b} samples",
            real.len(),
            fake.len()
        );
    }
    let per = real.len() / b;
    // Rows: real, fake, interpolates x̂ = ε·real + (1 − ε)·fake.
    let mut x = Vec::with_capacity(3 * real.len());
    x.extend_from_slice(real);
    x.extend_from_slice(fake);
    for ((r, f), &e) in real.chunks(per).zip(fake.chunks(per)).zip(eps) {
        let one_minus = T::one() - e;
        x.extend(r.iter().zip(f).map(|(&r, &f)| r * e + f * one_minus));
    }
    let inv_b = 1.0 / b as f64;
    let mut w = vec![T::of(-inv_b); b];
    w.extend(std::iter::repeat_n(T::of(inv_b), b));
    w.extend(std::iter::repeat_n(T::zero(), b));
    let mut norms = Vec::with_capacity(b);
    let (scores, grads) =
        engine.gradients_with_input_penalty(weights, &x, &w, 2 * b..3 * b, |g| {
            // Φ(g) = λ·mean((‖g‖ − 1)²): ∂Φ/∂gᵢ = (2λ/B)·(‖gᵢ‖ − 1)/‖gᵢ‖ · gᵢ.
            let mut gbar = vec![T::zero(); g.len()];
            for (gi, out) in g.chunks(per).zip(gbar.chunks_mut(per)) {
                let sq: f64 = gi.iter().map(|v| v.f64() * v.f64()).sum();
                let norm = (sq + GP_NORM_EPS).sqrt();
                norms.push(norm);
                let k = T::of(2.0 * lambda * inv_b * (norm - 1.0) / norm);
                for (o, &v) in out.iter_mut().zip(gi) {
                    *o = k * v;
                }
            }
            Ok(gbar)
        })?;
    let mean = |s: &[T]| s.iter().map(|v| v.f64()).sum::<f64>() * inv_b;
    let (c_real, c_fake) = (mean(&scores[..b]), mean(&scores[b..2 * b]));
    let penalty = lambda * norms.iter().map(|n| (n - 1.0).powi(2)).sum::<f64>() * inv_b;
    let values = CriticValues {
        loss: c_fake - c_real + penalty,
        penalty,
        wasserstein: c_real - c_fake,
        grad_norm_mean: norms.iter().sum::<f64>() * inv_b,
    };
    Ok((values, norms, grads))
}

/// The generator objective `−mean C(fake)` through the explicit engine, and its gradient with
/// respect to `fake` (channels-last `[B, H, W, C]`).
pub fn generator_objective_explicit<T: Real>(
    engine: &mut CriticEngine<T>,
    weights: &NetWeights<T>,
    fake: &[T],
) -> anyhow::Result<(f64, Vec<T>)> {
    let scores = engine.forward(weights, fake)?;
    let b = scores.len();
    let loss = -scores.iter().map(|v| v.f64()).sum::<f64>() / b as f64;
    let upstream = vec![T::of(-1.0 / b as f64); b];
    let grad = engine.input_gradient(weights, 0..b, &upstream)?.to_vec();
    Ok((loss, grad))
}

/// The generator objective `−mean C(G(z))` for generated images `fake` (not detached).
pub fn generator_loss(critic: impl Fn(&Tensor) -> Result<Tensor>, fake: &Tensor) -> Result<Tensor> {
    critic(fake)?.mean_all()?.neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use wgan_models::latent::Rng;
    use wgan_models::{preset, Critic};

    fn tensor(rng: &mut Rng, shape: &[usize], dtype: DType, f: impl Fn(&mut Rng) -> f32) -> Tensor {
        let v: Vec<f32> = (0..shape.iter().product()).map(|_| f(rng)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    }

    /// The penalty's gradient with respect to every kind of critic weight against central
    /// finite differences, in f64. Fails if second-order gradients are off (candle then
    /// returns a gradient for the first conv only, and a wrong one).
    #[test]
    fn penalty_gradient_matches_finite_differences() {
        let p = preset("tiny", 1).unwrap();
        let mut rng = Rng::new(11);
        let critic = Critic::new(&p, &mut rng, DType::F64, &Device::Cpu).unwrap();
        // Non-trivial InstanceNorm affine parameters and biases.
        for (info, var) in critic.params.iter() {
            if !matches!(info.role, wgan_models::spec::ParamRole::ConvWeight) {
                let t = tensor(&mut rng, &info.shape, DType::F64, |r| {
                    0.5 + 0.3 * r.normal_f32()
                });
                var.set(&t).unwrap();
            }
        }
        let (n, s) = (3, p.image_size);
        let real = tensor(&mut rng, &[n, 1, s, s], DType::F64, |r| {
            2.0 * r.uniform_f32() - 1.0
        });
        let fake = tensor(&mut rng, &[n, 1, s, s], DType::F64, |r| {
            2.0 * r.uniform_f32() - 1.0
        });
        let eps = tensor(&mut rng, &[n, 1, 1, 1], DType::F64, |r| r.uniform_f32());
        let penalty = |c: &Critic| {
            let x_hat = interpolate(&real, &fake, &eps).unwrap();
            gradient_penalty(|x| c.forward(x), &x_hat, 10.0).unwrap().0
        };
        let grads = penalty(&critic).backward().unwrap();
        let h = 1e-6;
        let mut checked = 0;
        let mut worst: f64 = 0.0;
        for (info, var) in critic.params.trainable() {
            let analytic: Vec<f64> = match grads.get(var.as_tensor()) {
                Some(g) => g.flatten_all().unwrap().to_vec1().unwrap(),
                None => vec![0.0; info.shape.iter().product()],
            };
            let base: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            for k in 0..4 {
                let idx = (rng.below(base.len() as u64) as usize + k) % base.len();
                let eval = |delta: f64| {
                    let mut v = base.clone();
                    v[idx] += delta;
                    var.set(&Tensor::from_vec(v, info.shape.as_slice(), &Device::Cpu).unwrap())
                        .unwrap();
                    penalty(&critic).to_scalar::<f64>().unwrap()
                };
                let numeric = (eval(h) - eval(-h)) / (2.0 * h);
                var.set(
                    &Tensor::from_vec(base.clone(), info.shape.as_slice(), &Device::Cpu).unwrap(),
                )
                .unwrap();
                let a = analytic[idx];
                let err = (a - numeric).abs() / numeric.abs().max(a.abs()).max(1e-3);
                worst = worst.max(err);
                assert!(
                    err < 1e-4,
                    "{}[{idx}]: analytic {a:e}, finite difference {numeric:e}",
                    info.name
                );
                checked += 1;
            }
        }
        assert!(checked >= 24, "checked {checked}");
        eprintln!("penalty gradient: worst relative error {worst:.2e} over {checked} entries");
    }

    #[test]
    fn zero_input_gradient_gives_exactly_lambda() {
        let x = Var::from_tensor(&Tensor::ones((4, 1, 8, 8), DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        // A critic whose output does not depend on its input.
        let constant = |x: &Tensor| (x.flatten_from(1)?.sum(1)? * 0.0)? + 3.0;
        let (penalty, norms) = gradient_penalty(constant, &x, 10.0).unwrap();
        assert_eq!(penalty.to_scalar::<f32>().unwrap(), 10.0);
        assert!(norms.to_vec1::<f32>().unwrap().iter().all(|&n| n < 1e-6));
        // The same through the real critic architecture with every weight zero.
        let p = preset("tiny", 1).unwrap();
        let critic = Critic::new(&p, &mut Rng::new(1), DType::F32, &Device::Cpu).unwrap();
        for (_, var) in critic.params.iter() {
            var.set(&var.as_tensor().zeros_like().unwrap()).unwrap();
        }
        let x = Var::from_tensor(&Tensor::ones((2, 1, 16, 16), DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        let (penalty, _) = gradient_penalty(|t| critic.forward(t), &x, 10.0).unwrap();
        assert_eq!(penalty.to_scalar::<f32>().unwrap(), 10.0);
    }

    #[test]
    fn unit_norm_gradient_gives_zero_and_scales_with_lambda() {
        // c(x) = <w, x> with ‖w‖ = 1 per sample: the gradient norm is exactly 1.
        let n = 3 * 4 * 4;
        let w: Vec<f32> = (0..n)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 } / (n as f32).sqrt())
            .collect();
        let w = Tensor::from_vec(w, (1, 3, 4, 4), &Device::Cpu).unwrap();
        let linear = |x: &Tensor| x.broadcast_mul(&w)?.flatten_from(1)?.sum(1);
        let x = Var::from_tensor(&Tensor::ones((5, 3, 4, 4), DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        let (penalty, norms) = gradient_penalty(linear, &x, 10.0).unwrap();
        assert!(penalty.to_scalar::<f32>().unwrap().abs() < 1e-10);
        for v in norms.to_vec1::<f32>().unwrap() {
            assert!((v - 1.0).abs() < 1e-6);
        }
        // Doubling w doubles the norm: penalty λ·(2 − 1)² = λ.
        let double = |x: &Tensor| linear(x)? * 2.0;
        let (penalty, _) = gradient_penalty(double, &x, 7.0).unwrap();
        assert!((penalty.to_scalar::<f32>().unwrap() - 7.0).abs() < 1e-5);
    }

    #[test]
    fn second_order_is_on_for_tests_and_the_probe_sees_it() {
        // Guard: the finite-difference test above is meaningless if this is ever lost.
        assert!(crate::second_order::current_thread_keeps_graphs().unwrap());
    }
}
