//! The explicit passes against candle's autograd through the candle modules (an independent
//! derivation: generic reverse-mode over the ops of [`crate::layers`]), in f64 and in f32.

use super::*;
use crate::latent::Rng;
use crate::nets::{Critic, Generator};
use crate::params::Gradients;
use crate::spec::{preset, ParamRole, Preset};
use crate::Mode;
use candle_core::{DType, Device, Tensor};
use wgan_test_support::numbers::flat;

fn randn<T: Real>(rng: &mut Rng, n: usize, scale: f64, shift: f64) -> Vec<T> {
    (0..n)
        .map(|_| T::of(shift + scale * rng.normal_f32() as f64))
        .collect()
}

/// max |a − b| / max |b|.
fn rel(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// A critic with non-trivial norm affines and biases.
fn critic(p: &Preset, dtype: DType, seed: u64) -> Critic {
    let mut rng = Rng::new(seed);
    let c = Critic::new(p, &mut rng, dtype, &Device::Cpu).unwrap();
    for (info, var) in c.params.iter() {
        let n: usize = info.shape.iter().product();
        let v: Vec<f64> = match info.role {
            ParamRole::ConvWeight => continue,
            ParamRole::NormWeight => randn(&mut rng, n, 0.3, 1.0),
            _ => randn(&mut rng, n, 0.2, 0.0),
        };
        let t = Tensor::from_vec(v, info.shape.as_slice(), &Device::Cpu).unwrap();
        var.set(&t.to_dtype(dtype).unwrap()).unwrap();
    }
    c
}

fn nchw_tensor<T: Real>(x: &[T], n: usize, c: usize, s: usize) -> Tensor {
    let v = nhwc_to_nchw(x, n, c, s * s);
    Tensor::from_vec(v, (n, c, s, s), &Device::Cpu).unwrap()
}

const LAMBDA: f64 = 10.0;
const NORM_EPS: f64 = 1e-16;

/// The engine's gradient of `Σ wᵢ C(xᵢ) + λ·mean_j (‖g_j‖ − 1)²` against candle's autograd
/// of the same objective; returns the worst relative error over scores, input gradients and
/// parameter gradients.
fn critic_against_autograd<T: Real>(preset_name: &str, channels: usize, n: usize) -> f64 {
    let p = preset(preset_name, channels).unwrap();
    let net = critic(&p, T::DTYPE, 7);
    let s = p.image_size;
    let per = channels * s * s;
    let mut rng = Rng::new(99);
    // Rows: n "real", n "fake", n interpolates (the last n carry the penalty).
    let x: Vec<T> = randn(&mut rng, 3 * n * per, 0.6, 0.0);
    let w: Vec<T> = (0..3 * n)
        .map(|i| T::of([-1.0, 1.0, 0.25][i / n] / n as f64 + 0.01 * i as f64))
        .collect();

    // Engine.
    let weights = NetWeights::<T>::from_params(&p.critic, &net.params).unwrap();
    let mut engine = CriticEngine::<T>::new(&p.critic, channels, s).unwrap();
    let mut g_engine = Vec::new();
    let (scores, grads) = engine
        .gradients_with_input_penalty(&weights, &x, &w, 2 * n..3 * n, |g| {
            g_engine = g.iter().map(|v| v.f64()).collect();
            let mut out = vec![T::zero(); g.len()];
            for (gi, oi) in g.chunks(per).zip(out.chunks_mut(per)) {
                let norm = (gi.iter().map(|v| v.f64() * v.f64()).sum::<f64>() + NORM_EPS).sqrt();
                let k = LAMBDA * 2.0 * (norm - 1.0) / norm / n as f64;
                for (o, v) in oi.iter_mut().zip(gi) {
                    *o = T::of(k * v.f64());
                }
            }
            Ok(out)
        })
        .unwrap();
    let grads = to_gradients(&p.critic, &grads, &Device::Cpu).unwrap();

    // candle autograd, channels-first.
    let xt = nchw_tensor(&x, 3 * n, channels, s);
    let wt = Tensor::from_vec(w.clone(), 3 * n, &Device::Cpu).unwrap();
    let scores_ref = net.forward(&xt).unwrap();
    let x_hat = candle_core::Var::from_tensor(&xt.narrow(0, 2 * n, n).unwrap()).unwrap();
    let g = net
        .forward(x_hat.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap()
        .get(x_hat.as_tensor())
        .unwrap()
        .clone();
    let norms = (g.sqr().unwrap().flatten_from(1).unwrap().sum(1).unwrap() + NORM_EPS)
        .unwrap()
        .sqrt()
        .unwrap();
    let penalty = ((norms - 1.0).unwrap().sqr().unwrap().mean_all().unwrap() * LAMBDA).unwrap();
    let objective = ((scores_ref.clone() * &wt).unwrap().sum_all().unwrap() + penalty).unwrap();
    let reference =
        Gradients::from_grad_store(&net.params, &objective.backward().unwrap()).unwrap();

    let mut worst = rel(
        &scores.iter().map(|v| v.f64()).collect::<Vec<_>>(),
        &flat(&scores_ref),
    );
    let g_nchw = nhwc_to_nchw(&g_engine, n, channels, s * s);
    worst = worst.max(rel(&g_nchw, &flat(&g)));
    for ((info, _), (a, b)) in net.params.trainable().zip(grads.0.iter().zip(&reference.0)) {
        let e = rel(&flat(a), &flat(b));
        assert!(e.is_finite(), "{}", info.name);
        eprintln!("{preset_name} {:?} {}: {e:.2e}", T::DTYPE, info.name);
        worst = worst.max(e);
    }
    worst
}

#[test]
fn critic_penalty_gradients_match_autograd_in_f64() {
    let worst = critic_against_autograd::<f64>("tiny", 1, 3);
    assert!(worst < 1e-10, "tiny: worst relative error {worst:e}");
    let worst = critic_against_autograd::<f64>("small", 3, 2);
    assert!(worst < 1e-10, "small: worst relative error {worst:e}");
}

#[test]
fn critic_penalty_gradients_match_autograd_in_f32() {
    let worst = critic_against_autograd::<f32>("small", 1, 4);
    assert!(worst < 1e-5, "small f32: worst relative error {worst:e}");
}

/// The running variance of the BatchNorm in layer `layer`.
fn running_var(net: &Generator, layer: usize) -> &Tensor {
    let norm = net.params.layers()[layer].norm.as_ref().unwrap();
    norm.running.as_ref().unwrap().var.tensor()
}

/// Generator images, batch statistics and the gradient of `⟨R, G(z)⟩` against the candle
/// module in training mode.
fn generator_against_autograd<T: Real>(preset_name: &str, channels: usize, n: usize) -> f64 {
    let p = preset(preset_name, channels).unwrap();
    let mut rng = Rng::new(5);
    let mut net = Generator::new(&p, &mut rng, T::DTYPE, &Device::Cpu).unwrap();
    // A non-zero final bias.
    let b = &net
        .params
        .layers()
        .last()
        .unwrap()
        .bias
        .as_ref()
        .unwrap()
        .var;
    b.set(
        &Tensor::from_vec(
            randn::<T>(&mut rng, channels, 0.1, 0.0),
            channels,
            &Device::Cpu,
        )
        .unwrap(),
    )
    .unwrap();
    let z: Vec<T> = randn(&mut rng, n * p.z_dim, 1.0, 0.0);
    let s = p.image_size;
    let r: Vec<T> = randn(&mut rng, n * channels * s * s, 1.0, 0.0);

    let weights = NetWeights::<T>::from_params(&p.generator, &net.params).unwrap();
    let mut engine = GeneratorEngine::<T>::new(&p.generator, p.z_dim).unwrap();
    let (images, stats) = engine.forward_train(&weights, &z).unwrap();
    let images: Vec<f64> = nhwc_to_nchw(images, n, channels, s * s)
        .iter()
        .map(|v| v.f64())
        .collect();
    let grads = engine.backward(&weights, &r).unwrap();
    let grads = to_gradients(&p.generator, &grads, &Device::Cpu).unwrap();

    let running_before: Vec<Vec<f64>> = stats
        .iter()
        .map(|st| flat(running_var(&net, st.layer)))
        .collect();
    let zt = Tensor::from_vec(z.clone(), (n, p.z_dim, 1, 1), &Device::Cpu).unwrap();
    let out = net.forward(&zt, Mode::Train).unwrap();
    let rt = nchw_tensor(&r, n, channels, s);
    let loss = (out.clone() * rt).unwrap().sum_all().unwrap();
    let reference = Gradients::from_grad_store(&net.params, &loss.backward().unwrap()).unwrap();

    let mut worst = rel(&images, &flat(&out));
    for ((info, _), (a, b)) in net.params.trainable().zip(grads.0.iter().zip(&reference.0)) {
        let e = rel(&flat(a), &flat(b));
        eprintln!("{preset_name} {:?} {}: {e:.2e}", T::DTYPE, info.name);
        worst = worst.max(e);
    }
    // running_var ← 0.9·running + 0.1·batch (unbiased): recover the batch variance.
    for (st, before) in stats.iter().zip(running_before) {
        let after = flat(running_var(&net, st.layer));
        let batch: Vec<f64> = after
            .iter()
            .zip(&before)
            .map(|(a, b)| (a - 0.9 * b) / 0.1)
            .collect();
        worst = worst.max(rel(&st.var_unbiased, &batch));
    }
    worst
}

#[test]
fn generator_gradients_match_autograd() {
    let worst = generator_against_autograd::<f64>("tiny", 1, 3);
    assert!(worst < 1e-10, "tiny f64: {worst:e}");
    let worst = generator_against_autograd::<f64>("small", 3, 2);
    assert!(worst < 1e-10, "small f64: {worst:e}");
    let worst = generator_against_autograd::<f32>("small", 1, 4);
    assert!(worst < 1e-5, "small f32: {worst:e}");
}

#[test]
fn unsupported_layers_are_refused_with_the_layer_named() {
    let p = preset("tiny", 1).unwrap();
    let mut bad = p.critic.clone();
    bad.layers[1].norm = crate::spec::Norm::Batch;
    let err = CriticEngine::<f32>::new(&bad, 1, p.image_size)
        .err()
        .unwrap();
    assert!(err.to_string().contains("critic layer 1"), "{err}");
    let mut bad = p.critic.clone();
    bad.layers[0].activation = crate::spec::Activation::Tanh;
    assert!(CriticEngine::<f32>::new(&bad, 1, p.image_size).is_err());
    assert!(CriticEngine::<f32>::new(&p.critic, 1, p.image_size * 2).is_err());
    assert!(GeneratorEngine::<f32>::new(&p.critic, p.z_dim).is_err());
}

#[test]
fn layout_conversions_round_trip() {
    let x: Vec<f64> = (0..2 * 3 * 5).map(|v| v as f64).collect();
    let y = nchw_to_nhwc(&x, 2, 3, 5);
    // (n 1, position 1, channel 2).
    assert_eq!(y[(5 + 1) * 3 + 2], x[(3 + 2) * 5 + 1]);
    assert_eq!(nhwc_to_nchw(&y, 2, 3, 5), x);
}
