//! Exact data parallelism, with ranks as threads of this process (the in-process collective;
//! `trainer/tests/mpi.rs` runs the same through `mpirun`): K ranks × B/K give the run one
//! process gives with batch B, up to the order of sums, because each rank takes its part of
//! the same sample, latent and ε streams, the gradients are averaged, and BatchNorm is
//! synchronised. Without the synchronisation the runs part (so the agreement is not a given),
//! and a checkpoint of K ranks resumes in one process. Both step paths are checked: the CPU
//! engine's, and candle's autograd (the GPU's path, whose sums over the ranks are a candle
//! op: here on host buffers, on GPUs through NCCL).

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

/// Which code computes the steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Steps {
    /// The CPU engine's explicit passes (what training on the CPU uses).
    Engine,
    /// candle's autograd (what training on a GPU uses), here on the CPU.
    Autograd,
}

fn one_process(cfg: TrainConfig, dir: &Path, steps: Steps) -> Trainer {
    let mut t = Trainer::new(cfg, dir).unwrap();
    if steps == Steps::Autograd {
        t.use_autograd_for_tests();
    }
    t.run(&AtomicBool::new(false), |_| {}).unwrap();
    t
}

/// Runs `cfg` on `ranks` in-process ranks (run folder `dir`, written by rank 0) and returns
/// each rank's trainer after the run.
fn ranks(cfg: TrainConfig, dir: &Path, k: usize, synchronised: bool, steps: Steps) -> Vec<Trainer> {
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
                    if steps == Steps::Autograd {
                        t.use_autograd_for_tests();
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

/// 2 ranks × 8 against 1 process × 16, `tiny` and `small`, 3 iterations, on `steps`.
///
/// On candle's autograd, Adam's ε is 1e-5 instead of 1e-8. With β₁ = 0 Adam's first steps
/// move a weight by about lr·g/(|g| + ε), which is ±lr for any |g| ≫ ε: on `small` a few
/// gradient components are near 1e-6, within the f32 rounding of the batch's sums, and their
/// sign (so a step of ±1e-4) follows the order of those sums, which a split batch changes in
/// candle's GEMMs (the CPU engine's sums happen to keep it). The gradients themselves agree
/// to f32 rounding (about 1e-6; `trainer check-device --preset small`). With ε = 1e-5 the step
/// is a smooth function of such gradients and the runs agree to 2e-6 (2.1e-4 with 1e-8).
fn two_ranks_of_eight_against_one_process_of_sixteen(steps: Steps) {
    let tmp = tempfile::tempdir().unwrap();
    for preset in ["tiny", "small"] {
        let mut cfg = config(preset, 3);
        if steps == Steps::Autograd {
            cfg.adam.eps = 1e-5;
        }
        let one = one_process(cfg.clone(), &tmp.path().join(format!("{preset}-1")), steps);
        let two = ranks(cfg, &tmp.path().join(format!("{preset}-2")), 2, true, steps);
        let (a, b) = (params(&two[0]), params(&two[1]));
        assert_eq!(a, b, "{preset}: the ranks' parameters are bit-identical");
        let d = relative(&a, &params(&one));
        eprintln!(
            "{preset}, {steps:?}: 2 ranks × 8 vs 1 × 16 after 3 iterations: {d:.2e} relative"
        );
        assert!(d <= 1e-5, "{preset}, {steps:?}: {d:e}");
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
fn two_ranks_of_eight_train_as_one_process_of_sixteen() {
    two_ranks_of_eight_against_one_process_of_sixteen(Steps::Engine);
}

#[test]
fn on_candle_autograd_two_ranks_of_eight_train_as_one_process_of_sixteen() {
    two_ranks_of_eight_against_one_process_of_sixteen(Steps::Autograd);
}

/// G(z) of fixed latents after 3 iterations, 2 ranks with and without synchronised BatchNorm,
/// against one process: the per-rank statistics must part by 100× the synchronised difference.
fn without_synchronised_batchnorm_the_runs_part_on(steps: Steps) {
    let tmp = tempfile::tempdir().unwrap();
    let mut one = one_process(config("tiny", 3), &tmp.path().join("one"), steps);
    let mut synced = ranks(
        config("tiny", 3),
        &tmp.path().join("synced"),
        2,
        true,
        steps,
    );
    let mut apart = ranks(
        config("tiny", 3),
        &tmp.path().join("apart"),
        2,
        false,
        steps,
    );
    let want = images(&mut one);
    let d_synced = relative(&images(&mut synced[0]), &want);
    let d_apart = relative(&images(&mut apart[0]), &want);
    eprintln!(
        "{steps:?}: G(z) against one process: synchronised {d_synced:.2e}, per-rank statistics {d_apart:.2e}"
    );
    assert!(
        d_apart >= 100.0 * d_synced.max(1e-7),
        "{steps:?}: synchronised {d_synced:e}, per-rank statistics {d_apart:e}"
    );
}

#[test]
fn without_synchronised_batchnorm_the_runs_part() {
    without_synchronised_batchnorm_the_runs_part_on(Steps::Engine);
}

#[test]
fn on_candle_autograd_without_synchronised_batchnorm_the_runs_part() {
    without_synchronised_batchnorm_the_runs_part_on(Steps::Autograd);
}

#[test]
fn a_checkpoint_of_two_ranks_resumes_in_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    let one = one_process(
        config("tiny", 4),
        &tmp.path().join("straight"),
        Steps::Engine,
    );
    let dir = tmp.path().join("split");
    drop(ranks(config("tiny", 2), &dir, 2, true, Steps::Engine));
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
    drop(one_process(config("tiny", 2), &dir1, Steps::Engine));
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
