//! Training-step time: one critic step (generator forward, critic on real, fake and
//! interpolates, double backward for the penalty, Adam) and one generator step, for the
//! `small` and `dcgan64` presets at batch 64 on the CPU.
//!
//! `cargo bench --bench train_step` (set `RAYON_NUM_THREADS` to pin the thread count;
//! `WGAN_BENCH_BATCH` to change the batch size).

use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;
use wgan_trainer::config::TrainConfig;
use wgan_trainer::train::Trainer;

fn batch() -> usize {
    std::env::var("WGAN_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

fn trainer(preset: &str, dir: &std::path::Path) -> Trainer {
    let config = TrainConfig {
        preset: preset.into(),
        batch_size: batch(),
        n_critic: 1,
        ..TrainConfig::default()
    };
    Trainer::new(config, dir).expect("trainer")
}

fn bench(c: &mut Criterion) {
    assert!(
        wgan_trainer::second_order::current_thread_keeps_graphs().unwrap(),
        "run through cargo so that .cargo/config.toml sets CANDLE_GRAD_DO_NOT_DETACH"
    );
    let mut group = c.benchmark_group("train_step");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20));
    for preset in ["small", "dcgan64"] {
        let dir = tempfile::tempdir().unwrap();
        let mut t = trainer(preset, &dir.path().join("run"));
        let b = batch();
        group.bench_function(format!("{preset}/batch{b}/critic_step"), |bench| {
            bench.iter(|| t.critic_steps().unwrap())
        });
        group.bench_function(format!("{preset}/batch{b}/generator_step"), |bench| {
            bench.iter(|| t.generator_step().unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
