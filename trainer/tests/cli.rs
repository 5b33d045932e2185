//! The `trainer` binary, run for real in fresh temporary directories.

mod common;

use common::{assert_input_error, binary, stderr, trainer, TINY};
use std::path::Path;
use std::process::Command;

#[test]
fn trains_samples_and_resumes_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let o = trainer(
        d,
        &[
            TINY,
            &["--steps", "2", "--sample-every", "1", "--out", "run"],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [
        "config.json",
        "metrics.csv",
        "losses.png",
        "samples/step_000001.png",
        "samples/step_000002.png",
    ] {
        assert!(d.join("run").join(f).exists(), "missing {f}");
    }
    let latest = std::fs::read_to_string(d.join("run/checkpoints/latest")).unwrap();
    assert_eq!(latest.trim(), "step_000002");

    let o = trainer(d, &["resume", "run", "--steps", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(d.join("run/metrics.csv"))
            .unwrap()
            .lines()
            .count(),
        4
    );

    let o = trainer(
        d,
        &[
            "sample",
            "--checkpoint",
            "run",
            "--n",
            "6",
            "--seed",
            "3",
            "--out",
            "grid.png",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let grid = image::open(d.join("grid.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (3 * 18 + 2, 2 * 18 + 2));
}

#[test]
fn bad_input_is_one_clear_line_and_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir(d.join("empty")).unwrap();
    std::fs::create_dir(d.join("texts")).unwrap();
    std::fs::write(d.join("texts/a.txt"), "not an image").unwrap();
    std::fs::write(d.join("file"), "x").unwrap();
    std::fs::write(d.join("bad-images-idx3-ubyte"), [0u8, 0, 8, 1, 0, 0, 0, 1]).unwrap();
    let mut truncated = vec![0u8, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 28, 0, 0, 0, 28];
    truncated.extend([0u8; 100]);
    std::fs::write(d.join("short-images-idx3-ubyte"), truncated).unwrap();

    let cases: &[(&[&str], &str)] = &[
        (&["--data", "missing"], "does not exist"),
        (&["--data", "empty"], "empty"),
        (&["--data", "texts"], "no decodable images"),
        (&["--data", "bad-images-idx3-ubyte"], "magic"),
        (&["--data", "short-images-idx3-ubyte"], "truncated"),
        (
            &["--preset", "resnet"],
            "invalid value 'resnet' for '--preset <PRESET>'",
        ),
        (&["--steps", "0"], "--steps"),
        (&["--batch-size", "0"], "--batch-size"),
        (&["--out", "file"], "existing file"),
        (&["--device", "tpu"], "unknown device"),
        (
            &["--image-size", "48"],
            "image size 48 is not a power of two",
        ),
        (&["--image-size", "512"], "from 16 to 256"),
        (&["--image-size", "8"], "image size 8"),
        (&["--width", "0"], "width of 0"),
        (&["--c-width", "0"], "width of 0 leaves the critic"),
        (&["--z-dim", "0"], "latent size 0"),
        // Refused before anything is allocated, saying how much it needs.
        (
            &["--image-size", "256", "--width", "60000"],
            "use a smaller --width",
        ),
    ];
    for (extra, needle) in cases {
        // The base arguments minus any flag the case sets itself.
        let mut args = vec!["train"];
        for pair in TINY[1..].chunks(2) {
            if !extra.contains(&pair[0]) {
                args.extend_from_slice(pair);
            }
        }
        args.extend_from_slice(extra);
        let o = trainer(d, &args);
        assert_input_error(&o, needle);
    }
    // Nothing was overwritten.
    assert_eq!(std::fs::read_to_string(d.join("file")).unwrap(), "x");
    // Usage errors name the flag.
    assert_input_error(&trainer(d, &[TINY, &["--steps", "-3"]].concat()), "--steps");
    assert_input_error(&trainer(d, &[TINY, &["--bogus"]].concat()), "--bogus");
    // A run that could not start leaves no directory behind.
    for (flag, value) in [
        ("--data", "missing"),
        ("--device", "tpu"),
        ("--preset", "resnet"),
    ] {
        let o = trainer(d, &[TINY, &[flag, value, "--out", "never"]].concat());
        assert_eq!(o.status.code(), Some(2));
        assert!(
            !d.join("never").exists(),
            "{flag} {value} left a run directory"
        );
    }
    // A directory holding other files is not taken over.
    std::fs::create_dir(d.join("mine")).unwrap();
    std::fs::write(d.join("mine/metrics.csv"), "precious").unwrap();
    assert_input_error(
        &trainer(d, &[TINY, &["--out", "mine"]].concat()),
        "not empty",
    );
    assert_eq!(
        std::fs::read_to_string(d.join("mine/metrics.csv")).unwrap(),
        "precious"
    );

    assert_input_error(&trainer(d, &["resume", "empty"]), "neither a checkpoint");
    assert_input_error(&trainer(d, &["resume", "nowhere"]), "does not exist");
    assert_input_error(
        &trainer(d, &["sample", "--checkpoint", "empty", "--out", "g.png"]),
        "neither a checkpoint",
    );
}

#[test]
fn any_image_size_and_width_trains_and_records_its_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // No --preset: the flags change the default preset's numbers.
    let o = trainer(
        d,
        &[
            "train",
            "--image-size",
            "128",
            "--width",
            "2",
            "--c-width",
            "3",
            "--z-dim",
            "12",
            "--batch-size",
            "2",
            "--n-critic",
            "1",
            "--steps",
            "2",
            "--out",
            "run",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("preset custom"), "{}", stderr(&o));
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.join("run/checkpoints/step_000002/state.json")).unwrap(),
    )
    .unwrap();
    for (key, want) in [
        ("preset", serde_json::json!("custom")),
        ("image_size", serde_json::json!(128)),
        ("z_dim", serde_json::json!(12)),
        ("g_width", serde_json::json!(2)),
        ("c_width", serde_json::json!(3)),
    ] {
        assert_eq!(state[key], want, "state.json {key}");
        assert_eq!(state["config"][key], want, "config {key}");
    }
    let config = std::fs::read_to_string(d.join("run/config.json")).unwrap();
    assert!(config.contains("\"image_size\": 128"), "{config}");
    // Sampling and resuming read the numbers back.
    let o = trainer(
        d,
        &[
            "sample",
            "--checkpoint",
            "run",
            "--n",
            "4",
            "--out",
            "g.png",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let png = image::open(d.join("g.png")).unwrap();
    assert!(png.width() >= 2 * 128, "a 2×2 grid of 128×128 images");
    let o = trainer(d, &["resume", "run", "--steps", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Eval measures 128×128 images (digits resized for the classifier, four SWD levels).
    let o = trainer(d, &["eval", "--checkpoint", "run", "--n", "4", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        report["swd"]["resolutions"],
        serde_json::json!([128, 64, 32, 16])
    );
    assert!(report["digits"]["generated"]["fd"].as_f64().unwrap() > 0.0);
    // The numbers of a preset are that preset.
    let o = trainer(
        d,
        &[TINY, &["--image-size", "16", "--steps", "1", "--out", "t"]].concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("preset tiny"), "{}", stderr(&o));
}

#[test]
fn corrupted_checkpoints_are_reported_not_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let o = trainer(d, &[TINY, &["--steps", "1", "--out", "run"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let ck = d.join("run/checkpoints/step_000001");
    let g = ck.join("generator.safetensors");
    let bytes = std::fs::read(&g).unwrap();
    std::fs::write(&g, &bytes[..bytes.len() / 3]).unwrap();
    assert_input_error(
        &trainer(d, &["resume", "run", "--steps", "2"]),
        "not a valid safetensors",
    );
    std::fs::write(ck.join("state.json"), "{ not json").unwrap();
    assert_input_error(&trainer(d, &["resume", "run", "--steps", "2"]), "state");
    // A run directory already holding a run is not overwritten by `train`.
    assert_input_error(
        &trainer(d, &[TINY, &["--steps", "1", "--out", "run"]].concat()),
        "already holds a run",
    );
}

#[test]
fn cuda_without_the_feature_says_how_to_get_it() {
    if cfg!(feature = "cuda") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    assert_input_error(
        &trainer(tmp.path(), &[TINY, &["--device", "cuda"]].concat()),
        "--features cuda",
    );
}

#[test]
fn sample_checks_its_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let o = trainer(d, &[TINY, &["--steps", "1", "--out", "run"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let sample = |extra: &[&str]| trainer(d, &[&["sample", "--checkpoint", "run"], extra].concat());
    assert_input_error(&sample(&["--n", "0", "--out", "g.png"]), "--n");
    assert_input_error(&sample(&["--n", "100000000", "--out", "g.png"]), "--n");
    assert_input_error(&sample(&["--n", "-4", "--out", "g.png"]), "--n");
    assert_input_error(&sample(&["--out", "g.jpg"]), "PNG");
    assert_input_error(
        &sample(&["--truncation", "0", "--out", "g.png"]),
        "at least 0.01",
    );
    assert_input_error(
        &sample(&["--truncation", "-2", "--out", "g.png"]),
        "at least 0.01",
    );
    assert!(!d.join("g.png").exists() && !d.join("g.jpg").exists());
    // More images than one generator batch.
    let o = sample(&["--n", "70", "--out", "g.png"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d.join("g.png").exists());
}

#[test]
fn a_run_that_diverges_before_its_first_checkpoint_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let o = trainer(
        d,
        &[TINY, &["--steps", "2", "--lr", "1e30", "--out", "run"]].concat(),
    );
    // After the run's header line, one error line.
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: training diverged at step 1"),
        "{err}"
    );
    assert!(last.contains("no checkpoint had been written"), "{err}");
    assert_input_error(
        &trainer(d, &["resume", "run"]),
        "before its first checkpoint",
    );
    assert_input_error(
        &trainer(d, &[TINY, &["--steps", "1", "--out", "run"]].concat()),
        "before its first checkpoint",
    );
}

#[test]
fn runs_started_together_get_their_own_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let spawn = |seed: &str| {
        Command::new(binary("trainer"))
            .args([TINY, &["--steps", "1", "--seed", seed]].concat())
            .current_dir(d)
            .env_remove("CANDLE_GRAD_DO_NOT_DETACH")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children: Vec<_> = ["1", "2", "3"].into_iter().map(spawn).collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let runs: Vec<_> = std::fs::read_dir(d.join("runs")).unwrap().collect();
    assert_eq!(runs.len(), 3, "each run in its own directory");
    for r in runs {
        let r = r.unwrap().path();
        let rows = std::fs::read_to_string(r.join("metrics.csv")).unwrap();
        assert_eq!(rows.lines().count(), 2, "{}: {rows}", r.display());
    }
}

#[test]
fn resume_finds_relative_data_from_another_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir(d.join("work")).unwrap();
    std::fs::create_dir(d.join("work/digits")).unwrap();
    let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-10k");
    for f in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"] {
        std::fs::copy(mnist.join(f), d.join("work/digits").join(f)).unwrap();
    }
    let o = trainer(
        &d.join("work"),
        &[TINY, &["--steps", "1", "--data", "digits", "--out", "run"]].concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = trainer(d, &["resume", "work/run", "--steps", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn check_device_on_the_cpu_agrees_with_the_engine() {
    let tmp = tempfile::tempdir().unwrap();
    let o = trainer(
        tmp.path(),
        &["check-device", "--preset", "small", "--batch-size", "4"],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}{}", out, stderr(&o));
    assert!(out.contains("critic grad disc.2.0.weight"), "{out}");
    assert!(out.contains("ok: cpu agrees"), "{out}");
    // The forms a GPU runs (generic tensor ops), checked on the CPU.
    let o = trainer(
        tmp.path(),
        &[
            "check-device",
            "--preset",
            "small",
            "--batch-size",
            "4",
            "--generic-ops",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}{}", out, stderr(&o));
    assert!(out.contains("autograd through generic tensor ops"), "{out}");
    assert!(out.contains("ok: cpu agrees"), "{out}");
    assert_input_error(
        &trainer(tmp.path(), &["check-device", "--batch-size", "0"]),
        "--batch-size",
    );
    // The NCCL check needs the `nccl` build (and a GPU); this one is neither.
    assert_input_error(
        &trainer(tmp.path(), &["check-device", "--preset", "tiny", "--nccl"]),
        "--features nccl",
    );
}

/// The workspace's CLI conventions: a missing required argument is named (clap's whole
/// message, exit 2) and every `--help` states the exit statuses.
#[test]
fn usage_errors_name_the_argument_and_help_states_exit_statuses() {
    let tmp = tempfile::tempdir().unwrap();
    let o = trainer(tmp.path(), &["sample", "--out", "g.png"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("error: ")
            && err.contains("the following required arguments were not provided")
            && err.contains("--checkpoint <")
            && err.contains("Usage:"),
        "{err}"
    );
    // `resume` takes the run like every other command (`--checkpoint`), or positionally.
    let o = trainer(tmp.path(), &["resume"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--checkpoint <RUN_DIR>"),
        "{}",
        stderr(&o)
    );
    assert_input_error(
        &trainer(tmp.path(), &["resume", "--checkpoint", "nowhere"]),
        "does not exist",
    );
    for args in [&["--help"][..], &["train", "--help"], &["eval", "--help"]] {
        let o = trainer(tmp.path(), args);
        let help = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(
            help.contains("Exit status: 0 on success, 2 on any error"),
            "{help}"
        );
    }
}
