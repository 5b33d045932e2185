//! One critic step and one generator step against PyTorch goldens written by
//! `scripts/torch_goldens.py` (float64 reference), for two architectures: the `tiny` preset,
//! and a 128×128 architecture of width 4 (z 16) that no preset has, so that the layer lists
//! derived for any size are checked against PyTorch modules built by the script's own
//! derivation. Checked: losses, penalty, Wasserstein estimate, per-sample gradient norms,
//! every parameter's gradient, BatchNorm running statistics, and (tiny) the weights after one
//! Adam step.
//!
//! Both paths are checked: candle's autograd through the candle modules (the path on GPUs)
//! and the explicit CPU engine (the path of CPU training). Each runs twice: in f32 as
//! training runs (relative error ≤ 1e-4), and in f64 (≤ 1e-7; ≤ 1e-6 for the 128×128 golden,
//! which is stored in f32 to stay small, so its own rounding is up to 6e-8). The
//! weights after Adam are compared in f64 only: with β1 = 0 the first step is
//! `lr · g / (|g| + 1e-8)`, which f32 rounding of a gradient entry near 1e-8 legitimately flips.

use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use wgan_models::engine::{
    nchw_to_nhwc, nhwc_to_nchw, to_gradients, CriticEngine, GeneratorEngine, NetWeights, Real,
};
use wgan_models::spec::{Architecture, NetSpec, ParamRole};
use wgan_models::{preset, Critic, Generator, Gradients, Mode, Params, Preset};
use wgan_test_support::numbers::flat;
use wgan_trainer::adam::{Adam, AdamConfig};
use wgan_trainer::wgan;

/// One golden file and the architecture it was written for.
struct Case {
    file: &'static str,
    preset: Preset,
    batch: usize,
    /// Initial weights by [`formula_init`] (not stored), f32 storage, no weights after Adam.
    compact: bool,
}

fn tiny() -> Case {
    Case {
        file: "tiny_step.safetensors",
        preset: preset("tiny", 1).unwrap(),
        batch: 6,
        compact: false,
    }
}

fn custom128() -> Case {
    let arch = Architecture {
        image_size: 128,
        z_dim: 16,
        g_width: 4,
        c_width: 4,
    };
    Case {
        file: "custom128_step.safetensors",
        preset: arch.build(1).unwrap(),
        batch: 2,
        compact: true,
    }
}

impl Case {
    fn load(&self) -> HashMap<String, Tensor> {
        let path = format!("{}/tests/goldens/{}", env!("CARGO_MANIFEST_DIR"), self.file);
        candle_core::safetensors::load(&path, &Device::Cpu)
            .expect("golden file (regenerate with scripts/torch_goldens.py)")
    }

    /// The f64 tolerance: the compact goldens are stored in f32.
    fn f64_tolerance(&self) -> f64 {
        if self.compact {
            1e-6
        } else {
            1e-7
        }
    }
}

/// The initial weights of `torch_goldens.init_formula`: parameter number t (sorted by name),
/// element j gets u = ((7919 j + 104729 t) mod 2003) / 1001 − 1 in f64, rounded to f32;
/// convolutions 0.02 u, norm weights 1 + 0.1 u, norm biases 0.1 u; running statistics 0 / 1.
fn formula_init(spec: &NetSpec) -> HashMap<String, Tensor> {
    let mut infos = spec.params();
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = HashMap::new();
    let mut t = 0usize;
    for info in infos {
        let n: usize = info.shape.iter().product();
        let values: Vec<f32> = match info.role {
            ParamRole::RunningMean => vec![0.0; n],
            ParamRole::RunningVar => vec![1.0; n],
            role => {
                let v = (0..n)
                    .map(|j| {
                        let u = ((7919 * j + 104729 * t) % 2003) as f64 / 1001.0 - 1.0;
                        (match role {
                            ParamRole::NormWeight => 1.0 + 0.1 * u,
                            ParamRole::NormBias => 0.1 * u,
                            _ => 0.02 * u,
                        }) as f32
                    })
                    .collect();
                t += 1;
                v
            }
        };
        let tensor = Tensor::from_vec(values, info.shape.as_slice(), &Device::Cpu).unwrap();
        out.insert(info.name, tensor);
    }
    out
}

fn sub(g: &HashMap<String, Tensor>, prefix: &str) -> HashMap<String, Tensor> {
    g.iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|n| (n.to_string(), v.clone())))
        .collect()
}

/// max|a − b| relative to max|b| (absolute below 1e-12 reference scale), at most `tol`.
fn compare(tol: f64, what: &str, got: &Tensor, want: &Tensor) -> f64 {
    let (a, b) = (flat(got), flat(want));
    assert_eq!(a.len(), b.len(), "{what}: size");
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs()));
    let rel = if scale < 1e-12 { diff } else { diff / scale };
    assert!(
        rel <= tol,
        "{what}: relative error {rel:e} (max diff {diff:e}, scale {scale:e})"
    );
    rel
}

fn grad_or_zero(grads: &candle_core::backprop::GradStore, t: &Tensor) -> Tensor {
    grads
        .get(t)
        .cloned()
        .unwrap_or_else(|| t.zeros_like().unwrap())
}

#[test]
fn one_critic_and_one_generator_step_match_pytorch_in_f32() {
    for case in [tiny(), custom128()] {
        let worst = step_against_goldens(&case, DType::F32, 1e-4);
        eprintln!(
            "{} f32: worst relative error against PyTorch {worst:.2e}",
            case.file
        );
    }
}

#[test]
fn one_critic_and_one_generator_step_match_pytorch_in_f64() {
    for case in [tiny(), custom128()] {
        let worst = step_against_goldens(&case, DType::F64, case.f64_tolerance());
        eprintln!(
            "{} f64: worst relative error against PyTorch {worst:.2e}",
            case.file
        );
    }
}

fn step_against_goldens(case: &Case, dtype: DType, tol: f64) -> f64 {
    let compare = |what: &str, got: &Tensor, want: &Tensor| compare(tol, what, got, want);
    let adam_checked = dtype == DType::F64 && !case.compact;
    let g = case.load();
    let f32t = |k: &str| g[k].to_dtype(dtype).unwrap();
    let (mut generator, critic) = golden_nets(case, &g, dtype);
    let cfg = AdamConfig::default();
    let mut opt_c = Adam::new(cfg, &critic.params).unwrap();
    let mut opt_g = Adam::new(cfg, &generator.params).unwrap();
    let mut worst: f64 = 0.0;

    // Critic step.
    let fake = generator
        .forward(&f32t("in.z_critic"), Mode::Train)
        .unwrap()
        .detach();
    worst = worst.max(compare("fake", &fake, &g["out.fake"]));
    let (real, eps) = (f32t("in.real"), f32t("in.eps"));
    let obj = wgan::critic_objective(|x| critic.forward(x), &real, &fake, &eps, 10.0).unwrap();
    for (name, t) in [
        ("critic_loss", &obj.loss),
        ("penalty", &obj.penalty),
        ("wasserstein", &obj.wasserstein),
    ] {
        worst = worst.max(compare(
            name,
            &t.reshape(1).unwrap(),
            &g[&format!("out.{name}")],
        ));
    }
    worst = worst.max(compare("grad_norm", &obj.grad_norms, &g["out.grad_norm"]));
    compare("c_real", &critic.forward(&real).unwrap(), &g["out.c_real"]);
    let grads = obj.loss.backward().unwrap();
    for (info, var) in critic.params.trainable() {
        let want = &g[&format!("out.critic_grad.{}", info.name)];
        worst = worst.max(compare(
            &format!("critic grad {}", info.name),
            &grad_or_zero(&grads, var.as_tensor()),
            want,
        ));
    }
    opt_c
        .step(
            &critic.params,
            &Gradients::from_grad_store(&critic.params, &grads).unwrap(),
        )
        .unwrap();
    if adam_checked {
        check_critic_after_adam(&compare, &critic, &g);
    }

    // Generator step (against the updated critic).
    let fake = generator.forward(&f32t("in.z_gen"), Mode::Train).unwrap();
    let loss = wgan::generator_loss(|x| critic.forward(x), &fake).unwrap();
    worst = worst.max(compare(
        "gen_loss",
        &loss.reshape(1).unwrap(),
        &g["out.gen_loss"],
    ));
    let grads = loss.backward().unwrap();
    for (info, var) in generator.params.trainable() {
        let want = &g[&format!("out.gen_grad.{}", info.name)];
        worst = worst.max(compare(
            &format!("generator grad {}", info.name),
            &grad_or_zero(&grads, var.as_tensor()),
            want,
        ));
    }
    opt_g
        .step(
            &generator.params,
            &Gradients::from_grad_store(&generator.params, &grads).unwrap(),
        )
        .unwrap();
    check_generator_after_step(&compare, &generator, &g, adam_checked);
    let tracked = g["out.gen_running.net.0.1.num_batches_tracked"]
        .flatten_all()
        .unwrap()
        .to_vec1::<i64>()
        .unwrap()[0];
    assert_eq!(generator.params.batches_tracked, tracked);
    worst
}

#[test]
fn the_cpu_training_engine_matches_pytorch_in_f32() {
    for case in [tiny(), custom128()] {
        let worst = engine_step_against_goldens::<f32>(&case, 1e-4);
        eprintln!(
            "{} engine f32: worst relative error against PyTorch {worst:.2e}",
            case.file
        );
    }
}

#[test]
fn the_cpu_training_engine_matches_pytorch_in_f64() {
    for case in [tiny(), custom128()] {
        let worst = engine_step_against_goldens::<f64>(&case, case.f64_tolerance());
        eprintln!(
            "{} engine f64: worst relative error against PyTorch {worst:.2e}",
            case.file
        );
    }
}

/// The same two steps through the explicit CPU engine, the path `trainer train` takes on the
/// CPU: channels-last buffers, hand-derived first- and second-order passes.
fn engine_step_against_goldens<T: Real>(case: &Case, tol: f64) -> f64 {
    let compare = |what: &str, got: &Tensor, want: &Tensor| compare(tol, what, got, want);
    let dtype = T::DTYPE;
    let adam_checked = dtype == DType::F64 && !case.compact;
    let g = case.load();
    let p = &case.preset;
    let dev = Device::Cpu;
    let (b, c, s) = (case.batch, p.channels, p.image_size);
    let hw = s * s;
    let values = |k: &str| -> Vec<T> { flat(&g[k]).into_iter().map(T::of).collect() };
    let tensor = |v: Vec<f64>, shape: &[usize]| Tensor::from_vec(v, shape, &dev).unwrap();
    let (mut generator, critic) = golden_nets(case, &g, dtype);
    assert_eq!(flat(&g["in.eps"]).len(), b, "golden batch size");
    let cfg = AdamConfig::default();
    let mut opt_c = Adam::new(cfg, &critic.params).unwrap();
    let mut opt_g = Adam::new(cfg, &generator.params).unwrap();
    let mut ge = GeneratorEngine::<T>::new(&p.generator, p.z_dim).unwrap();
    let mut ce = CriticEngine::<T>::new(&p.critic, c, s).unwrap();
    let mut worst: f64 = 0.0;

    // Critic step.
    let gw = NetWeights::<T>::from_params(&p.generator, &generator.params).unwrap();
    let (fake, stats) = ge.forward_train(&gw, &values("in.z_critic")).unwrap();
    let fake = fake.to_vec();
    generator.apply_batch_stats(&stats).unwrap();
    let fake_nchw: Vec<f64> = nhwc_to_nchw(&fake, b, c, hw)
        .iter()
        .map(|v| v.f64())
        .collect();
    worst = worst.max(compare(
        "fake",
        &tensor(fake_nchw, &[b, c, s, s]),
        &g["out.fake"],
    ));
    let real = nchw_to_nhwc(&values("in.real"), b, c, hw);
    let cw = NetWeights::<T>::from_params(&p.critic, &critic.params).unwrap();
    let (v, norms, grads) =
        wgan::critic_objective_explicit(&mut ce, &cw, &real, &fake, &values("in.eps"), 10.0)
            .unwrap();
    for (name, x) in [
        ("critic_loss", v.loss),
        ("penalty", v.penalty),
        ("wasserstein", v.wasserstein),
    ] {
        worst = worst.max(compare(
            name,
            &tensor(vec![x], &[1]),
            &g[&format!("out.{name}")],
        ));
    }
    worst = worst.max(compare(
        "grad_norm",
        &tensor(norms, &[b]),
        &g["out.grad_norm"],
    ));
    let grads = to_gradients(&p.critic, &grads, &dev).unwrap();
    for ((info, _), got) in critic.params.trainable().zip(&grads.0) {
        let want = &g[&format!("out.critic_grad.{}", info.name)];
        worst = worst.max(compare(&format!("critic grad {}", info.name), got, want));
    }
    opt_c.step(&critic.params, &grads).unwrap();
    if adam_checked {
        check_critic_after_adam(&compare, &critic, &g);
    }

    // Generator step (against the updated critic).
    let (fake, stats) = ge.forward_train(&gw, &values("in.z_gen")).unwrap();
    let fake = fake.to_vec();
    generator.apply_batch_stats(&stats).unwrap();
    let cw = NetWeights::<T>::from_params(&p.critic, &critic.params).unwrap();
    let (loss, grad_fake) = wgan::generator_objective_explicit(&mut ce, &cw, &fake).unwrap();
    worst = worst.max(compare(
        "gen_loss",
        &tensor(vec![loss], &[1]),
        &g["out.gen_loss"],
    ));
    let grads = to_gradients(&p.generator, &ge.backward(&gw, &grad_fake).unwrap(), &dev).unwrap();
    for ((info, _), got) in generator.params.trainable().zip(&grads.0) {
        let want = &g[&format!("out.gen_grad.{}", info.name)];
        worst = worst.max(compare(&format!("generator grad {}", info.name), got, want));
    }
    opt_g.step(&generator.params, &grads).unwrap();
    check_generator_after_step(&compare, &generator, &g, adam_checked);
    worst
}

/// The case's generator and critic with the goldens' initial weights.
fn golden_nets(case: &Case, g: &HashMap<String, Tensor>, dtype: DType) -> (Generator, Critic) {
    let dev = Device::Cpu;
    let p = &case.preset;
    let init = |spec: &NetSpec, prefix: &str| match case.compact {
        true => formula_init(spec),
        false => sub(g, prefix),
    };
    let generator = Generator::from_params(
        p.generator.clone(),
        p.z_dim,
        Params::from_tensors(&p.generator, init(&p.generator, "init.G."), 0, dtype, &dev).unwrap(),
    );
    let critic = Critic {
        spec: p.critic.clone(),
        params: Params::from_tensors(&p.critic, init(&p.critic, "init.C."), 0, dtype, &dev)
            .unwrap(),
    };
    (generator, critic)
}

/// The critic's weights after its Adam step against PyTorch's.
fn check_critic_after_adam(
    compare: &dyn Fn(&str, &Tensor, &Tensor) -> f64,
    critic: &Critic,
    g: &HashMap<String, Tensor>,
) {
    for (info, var) in critic.params.trainable() {
        compare(
            &format!("critic after Adam {}", info.name),
            var.as_tensor(),
            &g[&format!("out.critic_after_adam.{}", info.name)],
        );
    }
}

/// The generator's BatchNorm running statistics after its step against PyTorch's, and, when
/// `adam_checked`, its weights after Adam.
fn check_generator_after_step(
    compare: &dyn Fn(&str, &Tensor, &Tensor) -> f64,
    generator: &Generator,
    g: &HashMap<String, Tensor>,
    adam_checked: bool,
) {
    for (info, var) in generator.params.iter() {
        let key = if info.role.trainable() {
            format!("out.gen_after_adam.{}", info.name)
        } else {
            format!("out.gen_running.{}", info.name)
        };
        if adam_checked || !info.role.trainable() {
            compare(
                &format!("generator after step {}", info.name),
                var.as_tensor(),
                &g[&key],
            );
        }
    }
}
