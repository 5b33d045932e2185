//! The `trainer` binary, run for real in fresh temporary directories.

mod common;

use common::{stderr, trainer};
use std::path::Path;
use std::process::{Command, Output};

/// Exit code 2, one `error:` line (a usage error: clap's whole message), no panic.
fn assert_input_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    // A usage error is clap's whole message (naming the argument, ending in a pointer to --help); any
    // other error is one line.
    let usage = err.contains("try '--help'");
    assert!(
        (usage || lines.len() == 1) && lines[0].starts_with("error:"),
        "expected one error line or a usage error, got: {err}"
    );
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
}

const TINY: &[&str] = &[
    "train",
    "--preset",
    "tiny",
    "--batch-size",
    "4",
    "--n-critic",
    "2",
];

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
        Command::new(env!("CARGO_BIN_EXE_trainer"))
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
}

/// Copies the embedded MNIST training files into `dir`.
fn copy_mnist_training_files(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-10k");
    for f in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"] {
        std::fs::copy(mnist.join(f), dir.join(f)).unwrap();
    }
}

#[test]
fn eval_measures_a_run_against_the_embedded_test_digits() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let o = trainer(d, &[TINY, &["--steps", "2", "--out", "run"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let eval = |extra: &[&str]| {
        let o = trainer(
            d,
            &[&["eval", "--checkpoint", "run", "--n", "200"], extra].concat(),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    let json = eval(&["--json"]);
    let r: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(r["n"], 200);
    assert_eq!(r["step"], 2);
    assert_eq!(r["training_len"], 9000);
    assert!(r["held_out"].as_str().unwrap().contains("t10k"), "{json}");
    let f = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k} in {json}"));
    for k in [
        "critic_held_out",
        "critic_training",
        "kernel_sigma2",
        "mmd2_generated",
        "mmd2_training",
        "nearest_generated",
        "nearest_held_out",
    ] {
        assert!(f(k).is_finite(), "{k} in {json}");
    }
    // A generator after two steps is far from the digits, much farther than training digits
    // are from the held-out ones, and the embedded test digits are not training digits.
    assert!(
        f("mmd2_generated") > 5.0 * f("mmd2_training").abs(),
        "{json}"
    );
    assert!(f("nearest_generated") > f("nearest_held_out"), "{json}");
    assert_eq!(r["held_out_in_training"], 0);
    assert_eq!(r["weights"], "raw");
    assert!(r.get("truncation").is_none(), "{json}");
    // Truncation is recorded and changes what is measured.
    let t: serde_json::Value =
        serde_json::from_str(&eval(&["--json", "--truncation", "0.5"])).unwrap();
    assert_eq!(t["truncation"], 0.5);
    assert_ne!(t["mmd2_generated"], r["mmd2_generated"]);
    assert_eq!(t["mmd2_training"], r["mmd2_training"]);
    assert!(eval(&["--truncation", "0.5"]).contains("truncation 0.5"));
    // Digit measures: two steps of training make one blurry class; training digits cover all.
    let digits = |set: &str, k: &str| r["digits"][set][k].as_f64().unwrap();
    assert!(
        digits("generated", "fd") > 10.0 * digits("training", "fd"),
        "{json}"
    );
    assert_eq!(digits("training", "classes_covered"), 10.0);
    assert!(digits("generated", "classes_covered") < 10.0, "{json}");
    assert!(digits("training", "kl_uniform") < 0.05, "{json}");
    assert!(digits("training", "confidence") > 0.95, "{json}");
    // Sliced Wasserstein distance on the 16×16 images: one pyramid level.
    assert_eq!(r["swd"]["resolutions"], serde_json::json!([16]));
    assert!(
        r["swd"]["generated_mean"].as_f64().unwrap()
            > 3.0 * r["swd"]["training_mean"].as_f64().unwrap(),
        "{json}"
    );
    // The same seed gives the same numbers; the table carries them too.
    assert_eq!(eval(&["--json"]), json);
    let table = eval(&[]);
    assert!(table.contains("pixel MMD²"), "{table}");
    assert!(table.contains("FD to held-out digits"), "{table}");
    assert!(table.contains("sliced Wasserstein"), "{table}");
    assert!(
        table.contains(&format!("{:.5}", f("mmd2_generated"))),
        "{table}"
    );
    assert!(!table.contains("warning"), "{table}");
}

#[test]
fn eval_checks_its_arguments_and_spots_training_images_among_the_held_out() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    copy_mnist_training_files(&d.join("digits"));
    let o = trainer(
        d,
        &[TINY, &["--steps", "1", "--data", "digits", "--out", "run"]].concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for (args, needle) in [
        (&["--n", "1"][..], "--n must be between 2 and 5000"),
        (&["--n", "5001"][..], "--n must be between 2 and 5000"),
        (&[][..], "pass held-out images"),
        (&["--data", "nowhere"][..], "nowhere does not exist"),
        (&["--truncation", "0"][..], "must be at least 0.01"),
    ] {
        let o = trainer(d, &[&["eval", "--checkpoint", "run"], args].concat());
        assert_input_error(&o, needle);
    }
    let o = trainer(d, &["eval", "--checkpoint", "missing"]);
    assert_input_error(&o, "missing does not exist");
    // Held-out images that are the training images: every one is found, and the table warns.
    let o = trainer(
        d,
        &[
            "eval",
            "--checkpoint",
            "run",
            "--data",
            "digits",
            "--n",
            "50",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("warning: 50 of 50 held-out images are also in the training set"),
        "{out}"
    );
}

#[test]
fn eval_all_measures_every_checkpoint_with_and_without_the_moving_average() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let o = trainer(
        d,
        &[
            TINY,
            &[
                "--steps",
                "2",
                "--checkpoint-every",
                "1",
                "--ema",
                "0.9",
                "--out",
                "run",
            ],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d
        .join("run/checkpoints/step_000002/generator_ema.safetensors")
        .exists());
    let all = |extra: &[&str]| {
        let o = trainer(
            d,
            &[
                &["eval", "--checkpoint", "run", "--all", "--n", "100"],
                extra,
            ]
            .concat(),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    let rows = |name: &str| -> Vec<Vec<String>> {
        std::fs::read_to_string(d.join("run").join(name))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(String::from).collect())
            .collect()
    };
    // Default: the moving average, one row and one table per checkpoint.
    let tables = all(&[]);
    assert_eq!(
        tables.matches("| FD to held-out digits").count(),
        2,
        "{tables}"
    );
    assert!(tables.contains("moving-average generator"), "{tables}");
    let ema = rows("eval.csv");
    assert_eq!(ema.len(), 2);
    assert_eq!((ema[0][0].as_str(), ema[0][1].as_str()), ("1", "ema"));
    assert_eq!((ema[1][0].as_str(), ema[1][1].as_str()), ("2", "ema"));
    assert!(d.join("run/eval.png").exists());
    // The raw weights go to their own files; the reference columns are the same data.
    let json = all(&["--weights", "raw", "--json"]);
    let reports: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(reports.as_array().unwrap().len(), 2);
    assert_eq!(reports[1]["weights"], "raw");
    let raw = rows("eval-raw.csv");
    assert!(d.join("run/eval-raw.png").exists());
    assert_eq!(raw[1][1], "raw");
    assert_ne!(
        raw[1][2], ema[1][2],
        "raw and averaged generators give the same FD"
    );
    assert_eq!(
        raw[1][3], ema[1][3],
        "the real-digit floor depends on the data only"
    );
    // Sampling chooses the same way.
    let o = trainer(
        d,
        &[
            "sample",
            "--checkpoint",
            "run",
            "--n",
            "4",
            "--weights",
            "ema",
            "--out",
            "s.png",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("ema generator"), "{}", stderr(&o));
    // Resuming keeps averaging.
    let o = trainer(d, &["resume", "run", "--steps", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d
        .join("run/checkpoints/step_000003/generator_ema.safetensors")
        .exists());
}

#[test]
fn moving_average_and_classifier_arguments_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for bad in ["0", "1", "1.5", "-0.1", "nan"] {
        let o = trainer(
            d,
            &[TINY, &["--steps", "1", "--ema", bad, "--out", "x"]].concat(),
        );
        assert_input_error(&o, "--ema must be a decay between 0 and 1");
        assert!(!d.join("x").exists(), "--ema {bad} left a run folder");
    }
    let o = trainer(d, &[TINY, &["--steps", "1", "--out", "run"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let o = trainer(d, &["eval", "--checkpoint", "run", "--weights", "ema"]);
    assert_input_error(&o, "has no moving average of the generator");
    let o = trainer(d, &["eval", "--checkpoint", "run", "--weights", "best"]);
    assert_input_error(&o, "unknown weights 'best'");
    let o = trainer(
        d,
        &[
            "sample",
            "--checkpoint",
            "run",
            "--weights",
            "ema",
            "--out",
            "a.png",
        ],
    );
    assert_input_error(&o, "has no moving average of the generator");
    let o = trainer(
        d,
        &[
            "eval",
            "--checkpoint",
            "run/checkpoints/step_000001",
            "--all",
        ],
    );
    assert_input_error(&o, "is not a run directory");
    let o = trainer(d, &["classifier", "--out", "clf.bin"]);
    assert_input_error(&o, "name the file *.safetensors");
    let o = trainer(
        d,
        &["classifier", "--out", "clf.safetensors", "--epochs", "0"],
    );
    assert_input_error(&o, "--epochs and --batch-size must be at least 1");
}

#[test]
fn one_epoch_of_classifier_training_is_written_and_judged() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let o = trainer(
        d,
        &[
            "classifier",
            "--out",
            "clf.safetensors",
            "--epochs",
            "1",
            "--batch-size",
            "256",
        ],
    );
    let err = stderr(&o);
    assert!(err.contains("epoch  1/1 · loss"), "{err}");
    assert!(d.join("clf.safetensors").exists(), "{err}");
    // One short epoch is not enough for the 98 % the measures need: the command says so.
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("below the 98 %"), "{err}");
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
