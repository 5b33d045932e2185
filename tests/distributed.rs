//! Exact data parallelism, with ranks as threads of this process (the in-process collective;
//! `trainer/tests/mpi.rs` runs the same through `mpirun`): K ranks × B/K give the run one
//! process gives with batch B, up to the order of sums, because each rank takes its part of
//! the same sample, latent and ε streams, the gradients are averaged, and BatchNorm is
//! synchronised. Without the synchronisation the runs part (so the agreement is not a given),
//! and a checkpoint of K ranks resumes in one process.

use candle_core::{DType, Device, Tensor};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use wgan_models::Mode;
use wgan_trainer::collective::local::Local;
use wgan_trainer::collective::Collective;
use wgan_trainer::config::TrainConfig;
use wgan_trainer::train::{ResumeOptions, Trainer};

fn config(preset: &str, steps: u64) -> TrainConfig {
    TrainConfig {
        preset: preset.into(),
        steps,
        batch_size: 16,
        n_critic: 2,
        sample_every: 1000,
        checkpoint_every: 2,
        seed: 11,
        threads: Some(1),
        ..TrainConfig::default()
    }
}

/// Every generator and critic value, in parameter order.
fn params(t: &Trainer) -> Vec<f32> {
    let mut out = Vec::new();
    for p in [&t.generator.params, &t.critic.params] {
        for (_, var) in p.iter() {
            out.extend(
                var.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            );
        }
    }
    out
}

/// G(z) in eval mode (running statistics) for fixed latents.
fn images(t: &mut Trainer) -> Vec<f32> {
    let z = wgan_models::latent::latents(99, 8, t.preset.z_dim);
    let z = Tensor::from_vec(z, (8, t.preset.z_dim, 1, 1), &Device::Cpu).unwrap();
    t.generator
        .forward(&z, Mode::Eval)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// ‖a − b‖ / ‖b‖ (Euclidean). A single component can differ by more: Adam's first steps
/// (β₁ = 0) move a weight by about lr·sign(g), so a gradient component within f32 rounding of
/// zero can step either way in runs whose sums are ordered differently.
fn relative(a: &[f32], b: &[f32]) -> f64 {
    wgan_test_support::relative_l2(a, b)
}

fn one_process(cfg: TrainConfig, dir: &Path) -> Trainer {
    let mut t = Trainer::new(cfg, dir).unwrap();
    t.run(&AtomicBool::new(false), |_| {}).unwrap();
    t
}

/// Runs `cfg` on `ranks` in-process ranks (run folder `dir`, written by rank 0) and returns
/// each rank's trainer after the run.
fn ranks(cfg: TrainConfig, dir: &Path, k: usize, synchronised: bool) -> Vec<Trainer> {
    let group = Local::group(k);
    std::thread::scope(|s| {
        let handles: Vec<_> = group
            .into_iter()
            .map(|c: Arc<dyn Collective>| {
                let cfg = cfg.clone();
                s.spawn(move || {
                    let mut t = Trainer::new_on(cfg, Some(dir), c).unwrap();
                    if !synchronised {
                        t.unsynchronise_batchnorm_for_tests();
                    }
                    t.run(&AtomicBool::new(false), |_| {}).unwrap();
                    // Trainers hold thread pools and data; hand back what the test reads.
                    t
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn two_ranks_of_eight_train_as_one_process_of_sixteen() {
    let tmp = tempfile::tempdir().unwrap();
    for preset in ["tiny", "small"] {
        let one = one_process(config(preset, 3), &tmp.path().join(format!("{preset}-1")));
        let two = ranks(
            config(preset, 3),
            &tmp.path().join(format!("{preset}-2")),
            2,
            true,
        );
        let (a, b) = (params(&two[0]), params(&two[1]));
        assert_eq!(a, b, "{preset}: the ranks' parameters are bit-identical");
        let d = relative(&a, &params(&one));
        eprintln!("{preset}: 2 ranks × 8 vs 1 × 16 after 3 iterations: {d:.2e} relative");
        assert!(d <= 1e-5, "{preset}: {d:e}");
        // Only rank 0 wrote the run folder, as one process would.
        let dir = tmp.path().join(format!("{preset}-2"));
        assert!(dir.join("checkpoints/step_000002/state.json").is_file());
        assert_eq!(
            std::fs::read_to_string(dir.join("metrics.csv"))
                .unwrap()
                .lines()
                .count(),
            4
        );
    }
}

#[test]
fn without_synchronised_batchnorm_the_runs_part() {
    let tmp = tempfile::tempdir().unwrap();
    let mut one = one_process(config("tiny", 3), &tmp.path().join("one"));
    let mut synced = ranks(config("tiny", 3), &tmp.path().join("synced"), 2, true);
    let mut apart = ranks(config("tiny", 3), &tmp.path().join("apart"), 2, false);
    let want = images(&mut one);
    let d_synced = relative(&images(&mut synced[0]), &want);
    let d_apart = relative(&images(&mut apart[0]), &want);
    eprintln!(
        "G(z) against one process: synchronised {d_synced:.2e}, per-rank statistics {d_apart:.2e}"
    );
    assert!(
        d_apart >= 100.0 * d_synced.max(1e-7),
        "synchronised {d_synced:e}, per-rank statistics {d_apart:e}"
    );
}

#[test]
fn a_checkpoint_of_two_ranks_resumes_in_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    let one = one_process(config("tiny", 4), &tmp.path().join("straight"));
    let dir = tmp.path().join("split");
    drop(ranks(config("tiny", 2), &dir, 2, true));
    let mut t = Trainer::resume(
        &dir,
        &ResumeOptions {
            steps: Some(4),
            ..Default::default()
        },
    )
    .unwrap();
    t.run(&AtomicBool::new(false), |_| {}).unwrap();
    let d = relative(&params(&t), &params(&one));
    eprintln!("2 ranks to step 2, then 1 process to step 4, against 1 process: {d:.2e}");
    assert!(d <= 1e-5, "{d:e}");
    // And the reverse: a one-process checkpoint resumed on two ranks.
    let dir1 = tmp.path().join("one-then-two");
    drop(one_process(config("tiny", 2), &dir1));
    let group = Local::group(2);
    let resumed: Vec<Vec<f32>> = std::thread::scope(|s| {
        let hs: Vec<_> = group
            .into_iter()
            .map(|c| {
                let dir1 = dir1.clone();
                s.spawn(move || {
                    let options = ResumeOptions {
                        steps: Some(4),
                        ..Default::default()
                    };
                    let mut t = Trainer::resume_on(&dir1, &options, c).unwrap();
                    t.run(&AtomicBool::new(false), |_| {}).unwrap();
                    params(&t)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(resumed[0], resumed[1]);
    let d = relative(&resumed[0], &params(&one));
    assert!(d <= 1e-5, "{d:e}");
}
