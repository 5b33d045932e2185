//! Resuming continues a run exactly: on CPU, N steps straight and N/2 + resume + N/2 give
//! bit-identical weights (the generator's moving average included), optimiser state and
//! metrics.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use wgan_trainer::config::TrainConfig;
use wgan_trainer::train::{ResumeOptions, RunEnd, Trainer};

fn config(steps: u64) -> TrainConfig {
    TrainConfig {
        preset: "tiny".into(),
        steps,
        batch_size: 8,
        n_critic: 5,
        sample_every: 2,
        checkpoint_every: 2,
        seed: 5,
        ema: Some(0.9),
        ..TrainConfig::default()
    }
}

fn files(dir: &Path) -> HashMap<String, Vec<u8>> {
    let ck = wgan_models::checkpoint::resolve(dir).unwrap();
    [
        "generator.safetensors",
        "generator_ema.safetensors",
        "critic.safetensors",
        "optimizer.safetensors",
    ]
    .iter()
    .map(|f| (f.to_string(), std::fs::read(ck.join(f)).unwrap()))
    .collect()
}

#[test]
fn straight_and_resumed_runs_are_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let never = AtomicBool::new(false);
    let straight = tmp.path().join("straight");
    let mut t = Trainer::new(config(4), &straight).unwrap();
    assert_eq!(t.run(&never, |_| {}).unwrap(), RunEnd::Finished);

    let split = tmp.path().join("split");
    let mut t = Trainer::new(config(2), &split).unwrap();
    t.run(&never, |_| {}).unwrap();
    drop(t);
    let mut t = Trainer::resume(
        &split,
        &ResumeOptions {
            steps: Some(4),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(t.step, 2);
    t.run(&never, |_| {}).unwrap();

    let (a, b) = (files(&straight), files(&split));
    for name in a.keys() {
        assert!(
            a[name] == b[name],
            "{name} differs between the straight and the resumed run"
        );
    }
    let state = |d: &Path| {
        let ck = wgan_models::checkpoint::resolve(d).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(ck.join("state.json")).unwrap()).unwrap();
        (
            v["step"].clone(),
            v["rng_state"].clone(),
            v["data_cursor"].clone(),
        )
    };
    assert_eq!(state(&straight), state(&split));
    let metrics = |d: &Path| {
        let text = std::fs::read_to_string(d.join("metrics.csv")).unwrap();
        // Everything but the timing column.
        text.lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(metrics(&straight), metrics(&split));
    assert_eq!(metrics(&split).len(), 5, "header + 4 rows");
    assert!(
        straight.join("samples/step_000004.png").exists() && straight.join("losses.png").exists()
    );
}

#[test]
fn an_interrupted_run_checkpoints_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut t = Trainer::new(config(3), &dir).unwrap();
    let stop = AtomicBool::new(false);
    let end = t
        .run(&stop, |r| {
            if r.step == 1 {
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        })
        .unwrap();
    assert_eq!(end, RunEnd::Interrupted);
    drop(t);
    let t = Trainer::resume(&dir, &ResumeOptions::default()).unwrap();
    assert_eq!(t.step, 1);
    assert_eq!(t.metrics().len(), 1);
}
