//! The WGAN-GP objectives (Gulrajani et al. 2017, Algorithm 1).

use candle_core::{Result, Tensor, Var};

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

/// The generator objective `−mean C(G(z))` for generated images `fake` (not detached).
pub fn generator_loss(critic: impl Fn(&Tensor) -> Result<Tensor>, fake: &Tensor) -> Result<Tensor> {
    critic(fake)?.mean_all()?.neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use wgan_models::{preset, Critic};
    use wgan_runtime::latent::Rng;

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
