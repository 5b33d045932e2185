//! TensorBoard event files read back by TensorBoard's own `EventAccumulator` (the `tensorboard`
//! package in the test environment's .venv): the exact scalars of `metrics.csv`, the sample
//! grids' PNG bytes, `eval --all`'s measures, and a resumed run with no step shown twice.

mod common;

use common::{stderr, trainer};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use wgan_trainer::config::TrainConfig;
use wgan_trainer::train::{ResumeOptions, Trainer};

/// The Python with `tensorboard` (`wgan_test_support::python`).
fn python() -> PathBuf {
    wgan_test_support::python::python("tensorboard.backend.event_processing.event_accumulator")
}

/// What TensorBoard's `EventAccumulator` reads from `dir`: `{"scalars": {tag: [[step, value]]},
/// "images": {tag: [[step, width, height, hex of the PNG]]}, "raw_steps": {tag: [steps of every
/// event in every file, before purging]}}`.
fn read_events(dir: &Path) -> serde_json::Value {
    const SCRIPT: &str = r#"
import glob, json, os, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "images": 0})
acc.Reload()
tags = acc.Tags()
raw = {}
for f in sorted(glob.glob(os.path.join(sys.argv[1], "events.out.tfevents.*"))):
    for e in EventFileLoader(f).Load():
        for v in e.summary.value:
            raw.setdefault(v.tag, []).append(e.step)
print(json.dumps({
    "scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
    "images": {t: [[e.step, e.width, e.height, e.encoded_image_string.hex()] for e in acc.Images(t)]
               for t in tags["images"]},
    "raw_steps": raw,
}))
"#;
    let o = Command::new(python())
        .args(["-c", SCRIPT])
        .arg(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `(step, value)` pairs of a tag. TensorBoard's values are f32 (`simple_value`); as JSON
/// they are doubles, exact, but the JSON parser rounds some in the last bit of an f64, never of
/// an f32.
fn scalars(events: &serde_json::Value, tag: &str) -> Vec<(u64, f32)> {
    events["scalars"][tag]
        .as_array()
        .unwrap_or_else(|| panic!("no scalars {tag} in {events}"))
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap() as f32))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn tensorboard_reads_the_runs_scalars_images_and_eval_measures() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let train = [
        "train",
        "--preset",
        "tiny",
        "--batch-size",
        "4",
        "--n-critic",
        "1",
        "--steps",
        "4",
        "--sample-every",
        "2",
        "--checkpoint-every",
        "2",
        "--out",
        "run",
    ];
    let o = trainer(d, &train);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = d.join("run");
    let events = read_events(&run.join("tensorboard"));
    // Every column of metrics.csv, every step, the exact value (as f32, TensorBoard's type).
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 4);
    for (c, name) in header.iter().enumerate().skip(1) {
        let want: Vec<(u64, f32)> = rows.iter().map(|r| (r[0] as u64, r[c] as f32)).collect();
        assert_eq!(scalars(&events, &format!("train/{name}")), want, "{name}");
    }
    // The sample grids, byte for byte, at the steps they were drawn.
    let images = events["images"]["samples"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{images:?}");
    for (img, step) in images.iter().zip([2u64, 4]) {
        let png = std::fs::read(run.join(format!("samples/step_{step:06}.png"))).unwrap();
        let decoded = image::load_from_memory(&png).unwrap();
        assert_eq!(img[0], step);
        assert_eq!(
            (img[1].as_u64().unwrap(), img[2].as_u64().unwrap()),
            (decoded.width() as u64, decoded.height() as u64)
        );
        assert_eq!(img[3].as_str().unwrap(), hex(&png), "step {step}");
    }
    // eval --all: a run of its own, one point per checkpoint, the values of eval.csv.
    for _ in 0..2 {
        // Twice: the second replaces the first, nothing doubles.
        let o = trainer(d, &["eval", "--checkpoint", "run", "--all", "--n", "64"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let eval = read_events(&run.join("tensorboard/eval"));
    let csv = std::fs::read_to_string(run.join("eval.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    let mut measured = 0;
    for (c, name) in header.iter().enumerate().skip(2) {
        let want: Vec<(u64, f32)> = rows
            .iter()
            .filter(|r| !r[c].is_empty())
            .map(|r| (r[0].parse().unwrap(), r[c].parse::<f64>().unwrap() as f32))
            .collect();
        if want.is_empty() {
            assert!(eval["scalars"].get(format!("eval/{name}")).is_none());
            continue;
        }
        assert_eq!(scalars(&eval, &format!("eval/{name}")), want, "{name}");
        measured += 1;
    }
    assert!(measured >= 6, "{eval}");
    assert_eq!(
        std::fs::read_dir(run.join("tensorboard/eval"))
            .unwrap()
            .count(),
        1,
        "one event file per eval name"
    );
    // Off by flag: no folder.
    let off = [
        "train",
        "--preset",
        "tiny",
        "--batch-size",
        "4",
        "--steps",
        "1",
        "--no-tensorboard",
        "--out",
        "quiet",
    ];
    let o = trainer(d, &off);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!d.join("quiet/tensorboard").exists());
    assert!(std::fs::read_to_string(d.join("quiet/config.toml"))
        .unwrap()
        .contains("tensorboard = false"));
}

#[test]
fn a_resumed_run_shows_each_step_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let config = TrainConfig {
        preset: "tiny".into(),
        steps: 4,
        batch_size: 4,
        n_critic: 1,
        sample_every: 1,
        checkpoint_every: 2,
        ..TrainConfig::default()
    };
    // A session that dies after logging step 3, whose last checkpoint is step 2.
    let mut t = Trainer::new(config, &dir).unwrap();
    let stop = AtomicBool::new(false);
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        t.run(&stop, |r| assert!(r.step < 4, "the process dies at step 4"))
    }));
    assert!(crashed.is_err());
    drop(t);
    let mut t = Trainer::resume(&dir, &ResumeOptions::default()).unwrap();
    assert_eq!(t.step, 2);
    t.run(&stop, |_| {}).unwrap();
    let events = read_events(&dir.join("tensorboard"));
    // The files hold step 3 twice (the dead session's and the resumed one's) ...
    let raw: Vec<u64> = events["raw_steps"]["train/critic_loss"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    assert_eq!(raw, [1, 2, 3, 3, 4]);
    // ... and TensorBoard shows each step once, the resumed session's from step 3 on.
    let csv = wgan_trainer::metrics::read_csv(&dir.join("metrics.csv"), u64::MAX).unwrap();
    let want: Vec<(u64, f32)> = csv.iter().map(|r| (r.step, r.critic_loss as f32)).collect();
    assert_eq!(scalars(&events, "train/critic_loss"), want);
    assert_eq!(want.len(), 4);
    let image_steps: Vec<u64> = events["images"]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[0].as_u64().unwrap())
        .collect();
    assert_eq!(image_steps, [1, 2, 3, 4]);
}
