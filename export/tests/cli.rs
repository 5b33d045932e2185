//! The `export` binary, run for real in a fresh temp dir: a good export, and each bad input
//! giving exactly one `error:` line on stderr, exit status 2 and no `.onnx` left behind.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn export_bin() -> &'static str {
    env!("CARGO_BIN_EXE_export")
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
    assert_eq!(o.status.code(), Some(2), "{args:?}\n{}", show(&o));
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: expected one stderr line\n{}",
        show(&o)
    );
    assert!(lines[0].starts_with("error: "), "{}", show(&o));
    let after = files(cwd);
    let new: Vec<&PathBuf> = after.iter().filter(|p| !before.contains(p)).collect();
    assert!(new.is_empty(), "{args:?} left files behind: {new:?}");
    assert!(o.stdout.is_empty(), "{}", show(&o));
    lines[0].to_string()
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
    for bin in [
        env!("CARGO_BIN_EXE_export"),
        env!("CARGO_BIN_EXE_wgan-export"),
    ] {
        let o = Command::new(bin).args(["onnx", "--help"]).output().unwrap();
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
            assert!(help.contains(flag), "{bin}: {flag} missing from\n{help}");
        }
        assert!(
            help.contains("shell builtin") && help.contains("wgan-export"),
            "{help}"
        );
        let o = Command::new(bin).arg("--version").output().unwrap();
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
    let state = std::fs::read_to_string(d.join("state.json"))
        .unwrap()
        .replace("\"tiny\"", "\"small\"");
    std::fs::write(d.join("state.json"), state).unwrap();
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
