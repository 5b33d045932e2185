//! `config.toml` and `trainer train --config`, run for real: a run trained again bit for bit,
//! flags over the file's keys, bad files refused.

mod common;

use common::{assert_input_error, stderr, trainer, TINY};
use std::path::Path;

/// The bytes of every file in a checkpoint folder but its `state.json` (which names the run).
fn checkpoint_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// metrics.csv without its timing column.
fn losses(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string())
        .collect()
}

#[test]
fn config_toml_trains_a_run_again_bit_for_bit_and_flags_override_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let o = trainer(
        d,
        &[
            TINY,
            &[
                "--steps",
                "2",
                "--seed",
                "9",
                "--lr",
                "0.0003",
                "--ema",
                "0.9",
                "--z-dim",
                "7",
                "--holdout",
                "10",
                "--out",
                "run",
            ],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let toml = std::fs::read_to_string(d.join("run/config.toml")).unwrap();
    for line in [
        "seed = 9",
        "lr = 0.0003",
        "ema = 0.9",
        "z_dim = 7",
        "holdout = 10",
    ] {
        assert!(toml.contains(line), "{line} missing from:\n{toml}");
    }

    let o = trainer(
        d,
        &["train", "--config", "run/config.toml", "--out", "again"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (a, b) = (d.join("run"), d.join("again"));
    let step = "checkpoints/step_000002";
    let files = checkpoint_files(&a.join(step));
    assert_eq!(files.len(), 4, "generator, EMA, critic, optimizer");
    assert!(files == checkpoint_files(&b.join(step)), "weights differ");
    assert_eq!(losses(&a), losses(&b));
    assert_eq!(
        toml,
        std::fs::read_to_string(b.join("config.toml")).unwrap()
    );

    // A flag overrides the file's key; the rest stays the file's.
    let o = trainer(
        d,
        &[
            "train",
            "--config",
            "run/config.toml",
            "--steps",
            "1",
            "--out",
            "short",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let short = std::fs::read_to_string(d.join("short/config.toml")).unwrap();
    assert!(
        short.contains("steps = 1\n") && short.contains("seed = 9"),
        "{short}"
    );
    // Another preset takes that preset's numbers, not the file's.
    let o = trainer(
        d,
        &[
            "train",
            "--config",
            "run/config.toml",
            "--preset",
            "small",
            "--steps",
            "1",
            "--batch-size",
            "2",
            "--out",
            "other",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let other = std::fs::read_to_string(d.join("other/config.toml")).unwrap();
    assert!(other.contains("z_dim = 100\n"), "{other}");

    // Bad files: one clear line, exit 2, no run folder.
    std::fs::write(d.join("typo.toml"), "steps = 2\nbatchsize = 4\n").unwrap();
    std::fs::write(d.join("type.toml"), "steps = \"two\"\n").unwrap();
    std::fs::write(d.join("adam.toml"), "[adam]\nbeta = 0.5\n").unwrap();
    std::fs::write(d.join("broken.toml"), "steps = [\n").unwrap();
    for (file, needle) in [
        (
            "typo.toml",
            "unknown key 'batchsize'; did you mean 'batch_size'?",
        ),
        ("type.toml", "invalid type"),
        ("adam.toml", "unknown key 'adam.beta'"),
        ("broken.toml", "not valid TOML"),
        ("missing.toml", "missing.toml"),
        ("run", "run"),
    ] {
        let o = trainer(d, &["train", "--config", file, "--out", "never"]);
        assert_input_error(&o, needle);
        assert!(!d.join("never").exists(), "{file} left a run folder");
    }
}
