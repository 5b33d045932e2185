//! `trainer eval` and `trainer classifier`, run for real: measures against the embedded test
//! digits, argument checks, `--all` with and without the moving average, the classifier.

mod common;

use common::{assert_input_error, stderr, trainer, TINY};
use std::path::Path;

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
