//! The `export` binary, run for real in a fresh temp dir: a good export, and each bad input
//! giving one `error:` line on stderr (a usage error: clap's whole message), exit status 2 and
//! no `.onnx` left behind.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
#[cfg(unix)]
use wgan_test_support::fs::{drain_fifo, mkfifo};

fn export_bin() -> PathBuf {
    binary("export")
}

fn run(cwd: &Path, args: &[&str]) -> Output {
    Command::new(export_bin())
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("run export")
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Runs a failing export and checks the failure contract; returns the error line.
fn fails(cwd: &Path, args: &[&str]) -> String {
    let before: Vec<PathBuf> = files(cwd);
    let o = run(cwd, args);
    assert_input_error(&o, "");
    let stderr = stderr(&o);
    let line = stderr.lines().next().unwrap_or_default().to_string();
    let after = files(cwd);
    let new: Vec<&PathBuf> = after.iter().filter(|p| !before.contains(p)).collect();
    assert!(new.is_empty(), "{args:?} left files behind: {new:?}");
    assert!(o.stdout.is_empty(), "{}", show(&o));
    line
}

#[test]
fn exports_a_run_directory_with_verify_and_test_data() {
    let tmp = tempfile::tempdir().unwrap();
    let (run_dir, _) = make_run_dir(tmp.path(), "tiny", 1, 3);
    let o = run(
        tmp.path(),
        &[
            "onnx",
            "--checkpoint",
            run_dir.to_str().unwrap(),
            "--out",
            "g.onnx",
            "--verify",
            "--test-data",
            "--seed",
            "7",
        ],
    );
    assert!(o.status.success(), "{}", show(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    println!("{stdout}");
    assert!(stdout.contains("wrote g.onnx"), "{stdout}");
    assert!(
        stdout.contains("ConvTranspose×3")
            && stdout.contains("Relu×2")
            && stdout.contains("Tanh×1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("verify: tract vs candle, seed 7") && stdout.contains(": ok"),
        "{stdout}"
    );
    assert!(stdout.contains("step_000010"), "{stdout}");
    assert!(tmp.path().join("g.onnx").is_file());
    for f in ["input_0.pb", "output_0.pb"] {
        assert!(tmp.path().join("test_data_set_0").join(f).is_file(), "{f}");
    }
    let (name, dims, _) =
        wgan_export::test_data::read_f32_tensor(&tmp.path().join("test_data_set_0/output_0.pb"))
            .unwrap();
    assert_eq!((name.as_str(), dims), ("image", vec![4, 1, 16, 16]));
    // Only the model and the test data: no temporary files left.
    let mut names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["g.onnx", "run", "test_data_set_0"]);

    // Again, over the existing file, with BatchNorm kept and a fixed batch.
    let o = run(
        tmp.path(),
        &[
            "onnx",
            "--checkpoint",
            run_dir.to_str().unwrap(),
            "--out",
            "g.onnx",
            "--keep-bn",
            "--batch",
            "2",
            "--verify",
        ],
    );
    assert!(o.status.success(), "{}", show(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("BatchNormalization×2")
            && stdout.contains("batch 2")
            && stdout.contains("BatchNorm kept"),
        "{stdout}"
    );
}

#[test]
fn both_binary_names_work_and_help_explains_the_flags() {
    for bin in [binary("export"), binary("wgan-export")] {
        let o = Command::new(&bin)
            .args(["onnx", "--help"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", show(&o));
        let help = String::from_utf8_lossy(&o.stdout);
        for flag in [
            "--checkpoint",
            "--out",
            "--opset",
            "--batch",
            "--fold-bn",
            "--keep-bn",
            "--verify",
            "--test-data",
            "--seed",
            "--samples",
        ] {
            assert!(
                help.contains(flag),
                "{}: {flag} missing from\n{help}",
                bin.display()
            );
        }
        assert!(
            help.contains("shell builtin") && help.contains("wgan-export"),
            "{help}"
        );
        let o = Command::new(&bin).arg("--version").output().unwrap();
        assert!(
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains(env!("CARGO_PKG_VERSION"))
        );
    }
    // A usage error is exit status 2 too.
    let o = Command::new(export_bin())
        .args(["onnx", "--out", "x.onnx"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
}

#[test]
fn bad_inputs_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let good = root.join("good");
    make_checkpoint(&good, "tiny", 1, 1);
    let good = good.to_str().unwrap();

    // Missing checkpoint.
    let e = fails(root, &["onnx", "--checkpoint", "nope", "--out", "g.onnx"]);
    assert!(e.contains("nope does not exist"), "{e}");

    // A directory that is not a checkpoint.
    std::fs::create_dir(root.join("empty")).unwrap();
    let e = fails(root, &["onnx", "--checkpoint", "empty", "--out", "g.onnx"]);
    assert!(e.contains("is neither a checkpoint"), "{e}");

    // A run directory whose `latest` names a missing checkpoint.
    std::fs::create_dir_all(root.join("badrun/checkpoints")).unwrap();
    std::fs::write(root.join("badrun/checkpoints/latest"), "step_000001").unwrap();
    let e = fails(root, &["onnx", "--checkpoint", "badrun", "--out", "g.onnx"]);
    assert!(e.contains("not a checkpoint"), "{e}");

    // A corrupted and a truncated safetensors file.
    let copy = |name: &str| -> PathBuf {
        let d = root.join(name);
        std::fs::create_dir(&d).unwrap();
        for f in ["generator.safetensors", "state.json"] {
            std::fs::copy(Path::new(good).join(f), d.join(f)).unwrap();
        }
        d
    };
    let d = copy("corrupt");
    std::fs::write(
        d.join("generator.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all",
    )
    .unwrap();
    let e = fails(
        root,
        &["onnx", "--checkpoint", "corrupt", "--out", "g.onnx"],
    );
    assert!(e.contains("not a valid safetensors"), "{e}");
    let d = copy("truncated");
    let bytes = std::fs::read(d.join("generator.safetensors")).unwrap();
    std::fs::write(
        d.join("generator.safetensors"),
        &bytes[..bytes.len() * 2 / 3],
    )
    .unwrap();
    let e = fails(
        root,
        &["onnx", "--checkpoint", "truncated", "--out", "g.onnx"],
    );
    assert!(e.contains("not a valid safetensors"), "{e}");
    let d = copy("nogen");
    std::fs::remove_file(d.join("generator.safetensors")).unwrap();
    let e = fails(root, &["onnx", "--checkpoint", "nogen", "--out", "g.onnx"]);
    assert!(e.contains("generator.safetensors"), "{e}");

    // Tensors that do not match the preset: state.json says `small`, the weights are `tiny`'s.
    let d = copy("mismatch");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("state.json")).unwrap()).unwrap();
    for (key, value) in [
        ("preset", serde_json::json!("small")),
        ("image_size", serde_json::json!(32)),
        ("z_dim", serde_json::json!(100)),
        ("g_width", serde_json::json!(32)),
        ("c_width", serde_json::json!(64)),
    ] {
        state[key] = value;
    }
    std::fs::write(d.join("state.json"), state.to_string()).unwrap();
    let e = fails(
        root,
        &["onnx", "--checkpoint", "mismatch", "--out", "g.onnx"],
    );
    assert!(e.contains("does not match the architecture"), "{e}");

    // A broken state.json and an unknown preset.
    let d = copy("badstate");
    std::fs::write(d.join("state.json"), "{\"format_version\": 1, \"preset\"").unwrap();
    let e = fails(
        root,
        &["onnx", "--checkpoint", "badstate", "--out", "g.onnx"],
    );
    assert!(e.contains("not a valid checkpoint state"), "{e}");
    let d = copy("badpreset");
    let state = std::fs::read_to_string(d.join("state.json"))
        .unwrap()
        .replace("\"tiny\"", "\"huge\"");
    std::fs::write(d.join("state.json"), state).unwrap();
    let e = fails(
        root,
        &["onnx", "--checkpoint", "badpreset", "--out", "g.onnx"],
    );
    assert!(e.contains("unknown preset 'huge'"), "{e}");

    // Unwritable output paths.
    let e = fails(
        root,
        &["onnx", "--checkpoint", good, "--out", "no/such/dir/g.onnx"],
    );
    assert!(e.contains("does not exist"), "{e}");
    let e = fails(root, &["onnx", "--checkpoint", good, "--out", "empty"]);
    assert!(e.contains("is a directory"), "{e}");
    std::fs::write(root.join("afile"), "x").unwrap();
    let e = fails(
        root,
        &["onnx", "--checkpoint", good, "--out", "afile/g.onnx"],
    );
    assert!(e.contains("does not exist"), "{e}");
    // A directory nobody can create files in (even root cannot in /proc).
    let e = fails(
        root,
        &[
            "onnx",
            "--checkpoint",
            good,
            "--out",
            "/proc/wgan-export-test.onnx",
        ],
    );
    assert!(
        e.contains("cannot write /proc/wgan-export-test.onnx"),
        "{e}"
    );

    // Unknown opsets.
    for opset in ["12", "22"] {
        let e = fails(
            root,
            &[
                "onnx",
                "--checkpoint",
                good,
                "--out",
                "g.onnx",
                "--opset",
                opset,
            ],
        );
        assert_eq!(e, format!("error: unknown opset {opset}: supported 13–21"));
    }
    // --samples that contradicts a fixed batch.
    let e = fails(
        root,
        &[
            "onnx",
            "--checkpoint",
            good,
            "--out",
            "g.onnx",
            "--batch",
            "2",
            "--samples",
            "3",
        ],
    );
    assert!(e.contains("--samples 3"), "{e}");

    // A failed export leaves an existing model untouched.
    let o = run(root, &["onnx", "--checkpoint", good, "--out", "g.onnx"]);
    assert!(o.status.success(), "{}", show(&o));
    let before = std::fs::read(root.join("g.onnx")).unwrap();
    fails(
        root,
        &["onnx", "--checkpoint", "truncated", "--out", "g.onnx"],
    );
    assert_eq!(std::fs::read(root.join("g.onnx")).unwrap(), before);
}

/// Usage errors are clap's whole message (the workspace's CLI convention): the bad or missing
/// argument named, a pointer to `--help`, exit status 2.
#[test]
fn usage_errors_name_the_argument_for_both_names() {
    let tmp = tempfile::tempdir().unwrap();
    for bin in [binary("export"), binary("wgan-export")] {
        let cases: [(&[&str], &[&str]); 5] = [
            (
                &["onnx", "--out", "x.onnx"],
                &[
                    "the following required arguments were not provided",
                    "--checkpoint <DIR|RUN_DIR>",
                ],
            ),
            (
                &["onnx", "--checkpoint", "c", "--out", "o", "--batch", "zero"],
                &["invalid value 'zero' for '--batch <dynamic|N>'"],
            ),
            (
                &["onnx", "--checkpoint", "c", "--out", "o", "--opset", "x"],
                &["invalid value 'x' for '--opset <N>'"],
            ),
            (
                &["onnx", "--frobnicate"],
                &["unexpected argument '--frobnicate'"],
            ),
            (&["frobnicate"], &["unrecognized subcommand 'frobnicate'"]),
        ];
        for (args, needles) in cases {
            let o = Command::new(&bin)
                .current_dir(tmp.path())
                .args(args)
                .output()
                .unwrap();
            assert_eq!(
                o.status.code(),
                Some(2),
                "{} {args:?}\n{}",
                bin.display(),
                show(&o)
            );
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert!(
                stderr.starts_with("error: ")
                    && needles.iter().all(|n| stderr.contains(n))
                    && stderr.contains("try '--help'"),
                "{} {args:?}: {needles:?}\n{}",
                bin.display(),
                show(&o)
            );
            assert!(o.stdout.is_empty(), "{}", show(&o));
        }
        for args in [&["--help"][..], &["onnx", "--help"], &["--version"]] {
            let o = Command::new(&bin).args(args).output().unwrap();
            assert_eq!(
                o.status.code(),
                Some(0),
                "{} {args:?}\n{}",
                bin.display(),
                show(&o)
            );
            assert!(!o.stdout.is_empty() && o.stderr.is_empty(), "{}", show(&o));
        }
    }
}

/// Exports with each opset class through the binary and checks the IR version, the opset and
/// `onnx.checker.check_model(full_check=True)` in Python.
#[test]
fn the_ir_version_follows_the_opset() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("ckpt");
    make_checkpoint(&ckpt, "tiny", 1, 5);
    let mut jobs = Vec::new();
    for (opset, ir) in [
        (None, 8),
        (Some("13"), 8),
        (Some("19"), 9),
        (Some("21"), 10),
    ] {
        let out = format!("g{}.onnx", opset.unwrap_or("default"));
        let mut args = vec![
            "onnx",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--out",
            &out,
        ];
        if let Some(o) = opset {
            args.extend(["--opset", o]);
        }
        let o = run(tmp.path(), &args);
        assert!(o.status.success(), "{}", show(&o));
        let opset = opset.unwrap_or("17");
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            stdout.contains(&format!("opset {opset} (IR {ir})")),
            "{stdout}"
        );
        jobs.push(format!("({:?}, {opset}, {ir})", tmp.path().join(out)));
    }
    let script = format!(
        "import onnx\n\
         for path, opset, ir in [{}]:\n\
         \x20   onnx.checker.check_model(path, full_check=True)\n\
         \x20   m = onnx.load(path)\n\
         \x20   assert m.ir_version == ir, (path, m.ir_version, ir)\n\
         \x20   assert [(o.domain, o.version) for o in m.opset_import] == [('', opset)], m.opset_import\n\
         \x20   print(path, 'IR', m.ir_version, 'opset', opset, 'full_check ok')\n",
        jobs.join(", ")
    );
    let o = Command::new(python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    println!("{}", String::from_utf8_lossy(&o.stdout));
}

/// Devices and FIFOs are written in place, never replaced by a regular file; a device that
/// refuses the bytes (`/dev/full`) is a one-line error. The FIFO comes first and the system's
/// own `/dev/null` last, so that a writer that renames over its target fails the test on a
/// private node before it can touch `/dev`.
#[cfg(unix)]
#[test]
fn devices_and_fifos_are_written_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let ckpt = root.join("ckpt");
    make_checkpoint(&ckpt, "tiny", 1, 2);
    let ckpt = ckpt.to_str().unwrap();
    let o = run(root, &["onnx", "--checkpoint", ckpt, "--out", "g.onnx"]);
    assert!(o.status.success(), "{}", show(&o));
    let want = std::fs::read(root.join("g.onnx")).unwrap();

    // A FIFO gets the same bytes as the file, and stays a FIFO.
    let fifo = root.join("pipe.onnx");
    mkfifo(&fifo);
    let reader = drain_fifo(&fifo);
    let o = run(
        root,
        &[
            "onnx",
            "--checkpoint",
            ckpt,
            "--out",
            "pipe.onnx",
            "--verify",
        ],
    );
    assert!(o.status.success(), "{}", show(&o));
    {
        use std::os::unix::fs::FileTypeExt;
        let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(kind.is_fifo(), "the FIFO was replaced: {kind:?}");
    }
    assert!(reader.join().unwrap() == want, "the FIFO got other bytes");

    let dev = root.join("dev");
    std::fs::create_dir(&dev).unwrap();
    let (null, full) = (
        device_like(&dev, "/dev/null"),
        device_like(&dev, "/dev/full"),
    );
    for target in [&null, &PathBuf::from("/dev/null")] {
        let o = run(
            root,
            &[
                "onnx",
                "--checkpoint",
                ckpt,
                "--out",
                target.to_str().unwrap(),
                "--verify",
            ],
        );
        assert!(o.status.success(), "{}", show(&o));
        assert!(is_char_device(target), "{} was replaced", target.display());
    }
    let e = fails(
        root,
        &[
            "onnx",
            "--checkpoint",
            ckpt,
            "--out",
            full.to_str().unwrap(),
        ],
    );
    assert!(
        e.contains(&format!("cannot write {}", full.display()))
            && e.contains("No space left on device"),
        "{e}"
    );
    assert!(is_char_device(&full), "{} was replaced", full.display());
    // A test-data set has no place beside a device.
    let e = fails(
        root,
        &[
            "onnx",
            "--checkpoint",
            ckpt,
            "--out",
            null.to_str().unwrap(),
            "--test-data",
        ],
    );
    assert!(e.contains("is a device or pipe"), "{e}");
    assert!(!dev.join("test_data_set_0").exists());
    // Nothing staged was left beside the targets.
    let mut names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["ckpt", "dev", "g.onnx", "pipe.onnx"]);
}

#[test]
fn exports_the_moving_average_when_the_run_kept_one() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    make_checkpoint(&d.join("plain"), "tiny", 1, 3);
    fails(
        d,
        &[
            "onnx",
            "--checkpoint",
            "plain",
            "--out",
            "x.onnx",
            "--weights",
            "ema",
        ],
    );
    let ck = d.join("averaged");
    make_checkpoint(&ck, "tiny", 1, 3);
    perturbed_generator("tiny", 1, 4)
        .params
        .save(&ck.join(wgan_models::checkpoint::GENERATOR_EMA_FILE))
        .unwrap();
    let export = |out: &str, extra: &[&str]| {
        let o = run(
            d,
            &[
                &["onnx", "--checkpoint", "averaged", "--out", out, "--verify"],
                extra,
            ]
            .concat(),
        );
        assert!(o.status.success(), "{}", show(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let auto = export("auto.onnx", &[]);
    assert!(auto.contains("(moving-average weights)"), "{auto}");
    let ema = export("ema.onnx", &["--weights", "ema"]);
    assert!(ema.contains("(moving-average weights)"), "{ema}");
    let raw = export("raw.onnx", &["--weights", "raw"]);
    assert!(!raw.contains("moving-average"), "{raw}");
    let bytes = |f: &str| std::fs::read(d.join(f)).unwrap();
    assert_eq!(bytes("auto.onnx"), bytes("ema.onnx"));
    assert_ne!(bytes("auto.onnx"), bytes("raw.onnx"));
    let line = fails(
        d,
        &[
            "onnx",
            "--checkpoint",
            "averaged",
            "--out",
            "y.onnx",
            "--weights",
            "best",
        ],
    );
    assert!(line.contains("unknown weights 'best'"), "{line}");
}
