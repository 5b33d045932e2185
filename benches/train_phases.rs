//! Where a training iteration's time goes, phase by phase, on the CPU engines: prints a
//! table of median milliseconds per phase for one critic step and one generator step.
//!
//! `cargo bench --bench train_phases` (`WGAN_BENCH_PRESETS=small,dcgan64`,
//! `WGAN_BENCH_BATCH=64`, `WGAN_BENCH_REPS=5`; `RAYON_NUM_THREADS` sets the threads).
//!
//! Phases of a critic step: generator forward (training mode), critic forward over real,
//! fake and interpolates (3B rows), the adjoint pass (input gradients of the B
//! interpolates), the whole penalty gradient (forward, adjoint, its reverse and the
//! backward), weight conversion and Adam. Of a generator step: generator forward, critic
//! forward and input gradient, generator backward, Adam.

use candle_core::{DType, Device};
use std::time::Instant;
use wgan_models::engine::{to_gradients, CriticEngine, GeneratorEngine, NetWeights};
use wgan_models::latent::Rng;
use wgan_models::{preset, Critic, Generator};
use wgan_trainer::adam::{Adam, AdamConfig};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// Median seconds of `reps` runs of `f` after one warm-up run.
fn median(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn normal(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut v = vec![0f32; n];
    rng.fill_normal(&mut v);
    v
}

fn phases(name: &str, b: usize, reps: usize) -> Vec<(String, f64)> {
    let p = preset(name, 1).expect("preset");
    let mut rng = Rng::new(1);
    let dev = Device::Cpu;
    let g = Generator::new(&p, &mut rng, DType::F32, &dev).unwrap();
    let c = Critic::new(&p, &mut rng, DType::F32, &dev).unwrap();
    let mut ge = GeneratorEngine::<f32>::new(&p.generator, p.z_dim).unwrap();
    let mut ce = CriticEngine::<f32>::new(&p.critic, p.channels, p.image_size).unwrap();
    let mut opt_c = Adam::new(AdamConfig::default(), &c.params).unwrap();
    let mut opt_g = Adam::new(AdamConfig::default(), &g.params).unwrap();
    let per = p.channels * p.image_size * p.image_size;
    let z = normal(&mut rng, b * p.z_dim);
    let x: Vec<f32> = normal(&mut rng, 3 * b * per)
        .iter()
        .map(|v| v.tanh())
        .collect();
    let w: Vec<f32> = (0..3 * b)
        .map(|i| [-1.0, 1.0, 0.0][i / b] / b as f32)
        .collect();
    let mut rows = Vec::new();
    let mut row = |label: &str, secs: f64| rows.push((label.to_string(), secs));

    let gw = NetWeights::<f32>::from_params(&p.generator, &g.params).unwrap();
    let cw = NetWeights::<f32>::from_params(&p.critic, &c.params).unwrap();
    row(
        "weights → engine layout (G + C)",
        median(reps, || {
            NetWeights::<f32>::from_params(&p.generator, &g.params).unwrap();
            NetWeights::<f32>::from_params(&p.critic, &c.params).unwrap();
        }),
    );
    row(
        "G forward (train mode)",
        median(reps, || {
            ge.forward_train(&gw, &z).unwrap();
        }),
    );
    row(
        "C forward, 3B rows",
        median(reps, || {
            ce.forward(&cw, &x).unwrap();
        }),
    );
    let ones = vec![1f32; b];
    row(
        "C forward + adjoint (∇x̂ C)",
        median(reps, || {
            ce.forward(&cw, &x).unwrap();
            ce.input_gradient(&cw, 2 * b..3 * b, &ones).unwrap();
        }),
    );
    let mut grads = None;
    row(
        "C penalty gradient (fwd, adjoint, reverse, bwd)",
        median(reps, || {
            let (_, gr) = ce
                .gradients_with_input_penalty(&cw, &x, &w, 2 * b..3 * b, |g| {
                    Ok(g.iter().map(|v| 0.1 * v).collect())
                })
                .unwrap();
            grads = Some(gr);
        }),
    );
    let cg = grads.unwrap();
    row(
        "C gradients → tensors + Adam",
        median(reps, || {
            let t = to_gradients(&p.critic, &cg, &dev).unwrap();
            opt_c.step(&c.params, &t).unwrap();
        }),
    );
    let fake = ge.forward_train(&gw, &z).unwrap().0.to_vec();
    let up = vec![-1.0 / b as f32; b];
    row(
        "G step: C forward + input gradient, B rows",
        median(reps, || {
            ce.forward(&cw, &fake).unwrap();
            ce.input_gradient(&cw, 0..b, &up).unwrap();
        }),
    );
    ce.forward(&cw, &fake).unwrap();
    let gi = ce.input_gradient(&cw, 0..b, &up).unwrap().to_vec();
    let mut ggrads = None;
    row(
        "G backward",
        median(reps, || {
            ggrads = Some(ge.backward(&gw, &gi).unwrap());
        }),
    );
    let gg = ggrads.unwrap();
    row(
        "G gradients → tensors + Adam",
        median(reps, || {
            let t = to_gradients(&p.generator, &gg, &dev).unwrap();
            opt_g.step(&g.params, &t).unwrap();
        }),
    );
    rows
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let presets = env_or("WGAN_BENCH_PRESETS", "small,dcgan64");
    let b: usize = env_or("WGAN_BENCH_BATCH", "64")
        .parse()
        .expect("WGAN_BENCH_BATCH");
    let reps: usize = env_or("WGAN_BENCH_REPS", "5")
        .parse()
        .expect("WGAN_BENCH_REPS");
    println!(
        "median ms of {reps} runs, batch {b}, {} threads\n",
        rayon::current_num_threads()
    );
    for name in presets.split(',') {
        println!("| {name} phase | ms |\n|---|---|");
        for (label, secs) in phases(name, b, reps) {
            println!("| {label} | {:.1} |", secs * 1e3);
        }
        println!();
    }
}
