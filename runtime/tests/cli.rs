//! The `runtime` binary, run for real in fresh temporary folders.
#![cfg(feature = "cli")]

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use wgan_runtime::npy;

#[cfg(feature = "tract")]
#[test]
fn gen_writes_pngs_a_grid_and_raw_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let stdout = ok(
        d,
        &[
            "gen",
            "--model",
            &tiny(),
            "--n",
            "5",
            "--batch-size",
            "2",
            "--seed",
            "42",
            "--out",
            "imgs",
            "--grid",
            "grid.png",
            "--save-raw",
            "raw.npy",
        ],
    );
    assert!(stdout.contains("5 PNG files"), "{stdout}");
    let mut names: Vec<String> = std::fs::read_dir(d.join("imgs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "00000.png",
            "00001.png",
            "00002.png",
            "00003.png",
            "00004.png"
        ]
    );
    let png = image::open(d.join("imgs/00003.png")).unwrap();
    assert_eq!(
        (png.width(), png.height(), png.color()),
        (16, 16, image::ColorType::L8)
    );
    let grid = image::open(d.join("grid.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (3 * 18 + 2, 2 * 18 + 2));
    // Seed 42's latents are the fixture's, so the raw output is onnxruntime's.
    let raw = npy::read_f32(&d.join("raw.npy")).unwrap();
    let expected = npy::read_f32(&fixture("tiny-gen.out.npy")).unwrap();
    assert_eq!(raw.shape, vec![5, 1, 16, 16]);
    assert!(max_abs_diff(&raw.data, &expected.data) <= 1e-4);
    // PNG bytes are the rounded raw values.
    let px = png.to_luma8().get_pixel(5, 7).0[0];
    assert_eq!(
        px,
        wgan_runtime::images::to_u8(expected.data[3 * 256 + 7 * 16 + 5])
    );
}

#[cfg(feature = "tract")]
#[test]
fn gen_reads_latents_and_streams_large_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let z = fixture("tiny-gen.z.npy").display().to_string();
    ok(
        d,
        &[
            "gen",
            "--model",
            &tiny(),
            "--latents",
            &z,
            "--batch-size",
            "3",
            "--save-raw",
            "raw.npy",
            "-q",
        ],
    );
    let raw = npy::read_f32(&d.join("raw.npy")).unwrap();
    let expected = npy::read_f32(&fixture("tiny-gen.out.npy")).unwrap();
    assert!(max_abs_diff(&raw.data, &expected.data) <= 1e-4);
    // 1000 images in batches of 64: the first five are seed 42's at any batch size.
    ok(
        d,
        &[
            "gen",
            "--model",
            &tiny(),
            "--n",
            "1000",
            "--seed",
            "42",
            "--save-raw",
            "big.npy",
            "--grid",
            "big.png",
            "-q",
        ],
    );
    let big = npy::read_f32(&d.join("big.npy")).unwrap();
    assert_eq!(big.shape, vec![1000, 1, 16, 16]);
    assert!(max_abs_diff(&big.data[..5 * 256], &expected.data) <= 1e-4);
    assert!(d.join("big.png").is_file());
}

#[cfg(feature = "tract")]
#[test]
fn gen_uses_the_embedded_model_by_default() {
    let dir = tempfile::tempdir().unwrap();
    ok(
        dir.path(),
        &["gen", "--n", "4", "--grid", "g.png", "--threads", "1"],
    );
    let g = image::open(dir.path().join("g.png")).unwrap();
    assert_eq!((g.width(), g.height()), (2 * 34 + 2, 2 * 34 + 2));
}

/// The product's first command: `runtime gen --n 64` in an empty folder, no other flag.
#[cfg(feature = "tract")]
#[test]
fn gen_without_output_flags_writes_generated_png() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let stdout = ok(d, &["gen", "--n", "64"]);
    assert!(stdout.contains("wrote grid generated.png"), "{stdout}");
    assert!(stdout.contains("64 images from seed 0"), "{stdout}");
    let g = image::open(d.join("generated.png")).unwrap();
    assert_eq!((g.width(), g.height()), (8 * 34 + 2, 8 * 34 + 2));
    let names: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["generated.png"]);
    // Replaced by the next run; quiet prints nothing. An explicit output flag is the only output.
    ok(d, &["gen", "--model", &tiny(), "--n", "2", "-q"]);
    let g = image::open(d.join("generated.png")).unwrap();
    assert_eq!((g.width(), g.height()), (2 * 18 + 2, 18 + 2));
    std::fs::remove_file(d.join("generated.png")).unwrap();
    ok(
        d,
        &["gen", "--model", &tiny(), "--n", "2", "--save-raw", "r.npy"],
    );
    assert!(!d.join("generated.png").exists());
}

#[cfg(all(unix, feature = "tract"))]
use wgan_test_support::fs::{device_like, drain_fifo, mkfifo};

#[cfg(all(unix, feature = "tract"))]
fn file_type(path: &Path) -> std::fs::FileType {
    std::fs::symlink_metadata(path).unwrap().file_type()
}

/// Devices and FIFOs given as --grid or --save-raw are written in place, never replaced by a
/// regular file; a device that refuses the bytes (`/dev/full`) is a one-line error. FIFOs come
/// first and the system's own `/dev/null` last, so that a writer that renames over its target
/// fails the test on a private node before it can touch `/dev`.
#[cfg(all(unix, feature = "tract"))]
#[test]
fn devices_and_fifos_are_written_in_place() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = tiny();
    let common = ["gen", "--model", &t, "--n", "3", "--seed", "42", "-q"];
    let with = |extra: &[&str]| -> Vec<String> {
        common.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    ok(d, &args(&with(&["--grid", "g.png", "--save-raw", "r.npy"])));
    let (grid, raw) = (
        std::fs::read(d.join("g.png")).unwrap(),
        std::fs::read(d.join("r.npy")).unwrap(),
    );

    // FIFOs get the same bytes as files, and stay FIFOs.
    let (gp, rp) = (d.join("grid.fifo"), d.join("raw.fifo"));
    mkfifo(&gp);
    mkfifo(&rp);
    let (gr, rr) = (drain_fifo(&gp), drain_fifo(&rp));
    ok(
        d,
        &args(&with(&["--grid", "grid.fifo", "--save-raw", "raw.fifo"])),
    );
    assert!(file_type(&gp).is_fifo() && file_type(&rp).is_fifo());
    assert!(gr.join().unwrap() == grid, "the grid FIFO got other bytes");
    assert!(rr.join().unwrap() == raw, "the raw FIFO got other bytes");

    let dev = d.join("dev");
    std::fs::create_dir(&dev).unwrap();
    let (null, full) = (
        device_like(&dev, "/dev/null"),
        device_like(&dev, "/dev/full"),
    );
    let null = null.display().to_string();
    ok(d, &args(&with(&["--grid", &null, "--save-raw", &null])));
    assert!(
        file_type(Path::new(&null)).is_char_device(),
        "{null} was replaced"
    );
    for flag in ["--grid", "--save-raw"] {
        let full = full.display().to_string();
        fails(
            d,
            &args(&with(&[flag, &full])),
            &format!("cannot write {full}: No space left on device"),
        );
        assert!(
            file_type(Path::new(&full)).is_char_device(),
            "{full} was replaced"
        );
    }
    ok(
        d,
        &args(&with(&["--grid", "/dev/null", "--save-raw", "/dev/null"])),
    );
    assert!(file_type(Path::new("/dev/null")).is_char_device());
    // A folder is refused before the model runs.
    fails(
        d,
        &args(&with(&["--grid", "dev"])),
        "cannot write dev: it is a folder",
    );
    let mut names: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["dev", "g.png", "grid.fifo", "r.npy", "raw.fifo"]);
}

#[test]
fn info_prints_the_contract_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(dir.path(), &["info", &tiny()]);
    assert!(
        out.contains("contract:   z [N, 8, 1, 1] → image [N, 1, 16, 16] (f32)"),
        "{out}"
    );
    assert!(
        out.contains("wgan.preset") && out.contains("= tiny"),
        "{out}"
    );
    assert!(
        out.contains("wgan.output_range") && out.contains("-1,1"),
        "{out}"
    );
    assert!(out.contains("ConvTranspose ×3"), "{out}");
    assert!(
        out.contains(&format!(
            "native set: {} (a chain",
            wgan_runtime::native::ops::names()
        )) && out.contains(&wgan_runtime::native::fold::names()),
        "{out}"
    );
    let foreign = fixture("foreign-rgb.onnx").display().to_string();
    let out = ok(dir.path(), &["info", &foreign]);
    assert!(
        out.contains("input [2, 6, 1, 1] → output [2, 3, 8, 8]"),
        "{out}"
    );
    assert!(out.contains("note:       input is named 'input'"), "{out}");
    assert!(out.contains("metadata:   none"), "{out}");
    let out = ok(dir.path(), &["info"]);
    assert!(
        out.contains("embedded mnist-small.onnx") && out.contains("[N, 1, 32, 32]"),
        "{out}"
    );
}

#[cfg(feature = "tract")]
#[test]
fn bench_prints_a_latency_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(
        dir.path(),
        &[
            "bench",
            "--model",
            &tiny(),
            "--batch-sizes",
            "1,4",
            "--iters",
            "3",
        ],
    );
    let rows: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.contains("median ms"))
        .skip(1)
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows[1].trim_start().starts_with('4'), "{out}");
}

#[test]
fn help_documents_every_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(dir.path(), &["gen", "--help"]);
    for flag in [
        "--model",
        "--n",
        "--batch-size",
        "--seed",
        "--out",
        "--grid",
        "--backend",
        "--provider",
        "--threads",
        "--latents",
        "--save-raw",
        "--ort-lib",
        "--require-provider",
        "--interpolate",
        "--frames",
        "--gif",
        "--frame-ms",
        "--truncation",
    ] {
        assert!(out.contains(flag), "gen --help lacks {flag}:\n{out}");
    }
    assert!(
        out.contains("generated.png"),
        "gen --help does not say where the default grid goes:\n{out}"
    );
    assert!(ok(dir.path(), &["bench", "--help"]).contains("--batch-sizes"));
    assert!(ok(dir.path(), &["--help"]).contains("Exit status"));
}

#[test]
fn bad_model_files_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bytes = std::fs::read(fixture("tiny-gen.onnx")).unwrap();
    std::fs::write(d.join("empty.onnx"), b"").unwrap();
    std::fs::write(d.join("truncated.onnx"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(d.join("text.onnx"), "this is not a model\n").unwrap();
    let classifier = fixture("classifier.onnx").display().to_string();
    for cmd in ["gen", "bench"] {
        let extra: &[&str] = if cmd == "gen" {
            &["--grid", "g.png"]
        } else {
            &["--iters", "1"]
        };
        let run = |model: &str, needle: &str| {
            let mut args = vec![cmd, "--model", model];
            args.extend_from_slice(extra);
            fails(d, &args, needle);
        };
        run("missing.onnx", "cannot read model missing.onnx");
        run("empty.onnx", "is empty (0 bytes)");
        run("truncated.onnx", "not an ONNX model");
        run("text.onnx", "not an ONNX model");
        run(
            &classifier,
            "model input 'x' has shape [N, 784]; a generator takes z as [N, z_dim, 1, 1]",
        );
    }
    fails(
        d,
        &["info", "missing.onnx"],
        "cannot read model missing.onnx",
    );
    fails(d, &["info", "truncated.onnx"], "not an ONNX model");
    fails(d, &["info", &classifier], "a generator takes z");
}

#[test]
fn bad_arguments_and_outputs_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = tiny();
    fails(
        d,
        &["gen", "--model", &t, "--n", "0", "--grid", "g.png"],
        "--n must be at least 1",
    );
    fails(
        d,
        &["gen", "--model", &t, "--batch-size", "0", "--grid", "g.png"],
        "--batch-size must be at least 1",
    );
    fails(
        d,
        &["gen", "--model", &t, "--threads", "0", "--grid", "g.png"],
        "--threads must be at least 1",
    );
    fails(
        d,
        &["gen", "--model", &t, "--n", "many", "--grid", "g.png"],
        "invalid value 'many'",
    );
    fails(
        d,
        &[
            "gen",
            "--model",
            &t,
            "--backend",
            "torch",
            "--grid",
            "g.png",
        ],
        "invalid value 'torch' for '--backend <BACKEND>'",
    );
    fails(
        d,
        &[
            "gen",
            "--model",
            &t,
            "--provider",
            "cuda",
            "--grid",
            "g.png",
        ],
        "need --backend ort",
    );
    fails(
        d,
        &[
            "gen",
            "--model",
            &t,
            "--provider",
            "rocm",
            "--grid",
            "g.png",
        ],
        "invalid value 'rocm' for '--provider <PROVIDER>'",
    );
    fails(d, &["frobnicate"], "unrecognized subcommand");
    // Unwritable outputs: a folder under a regular file, a grid in a missing folder.
    std::fs::write(d.join("file"), b"x").unwrap();
    fails(
        d,
        &["gen", "--model", &t, "--out", "file/sub"],
        "cannot create output folder file/sub",
    );
    fails(
        d,
        &["gen", "--model", &t, "--grid", "missing/g.png"],
        "folder missing does not exist",
    );
    fails(
        d,
        &["gen", "--model", &t, "--save-raw", "file/raw.npy"],
        "cannot write file/raw.npy",
    );
    // Fixed formats: a JPEG name would get PNG bytes.
    fails(
        d,
        &["gen", "--model", &t, "--grid", "g.jpg"],
        "--grid writes .png files, but g.jpg ends in .jpg",
    );
    fails(
        d,
        &["gen", "--model", &t, "--save-raw", "raw.bin"],
        "--save-raw writes .npy files",
    );
    assert!(!d.join("g.png").exists() && !d.join("g.jpg").exists());
}

#[test]
fn bad_latent_files_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = tiny();
    npy::write_f32(&d.join("shape.npy"), &[5, 7, 1, 1], &[0.0; 35]).unwrap();
    npy::write_f32(&d.join("flat.npy"), &[5, 8], &[0.0; 40]).unwrap();
    let mut f64_file = std::fs::read(d.join("flat.npy")).unwrap();
    let at = f64_file.windows(3).position(|w| w == b"<f4").unwrap();
    f64_file[at..at + 3].copy_from_slice(b"<f8");
    f64_file.extend_from_slice(&[0u8; 160]);
    std::fs::write(d.join("f64.npy"), f64_file).unwrap();
    std::fs::write(d.join("junk.npy"), b"junk").unwrap();
    let gen = |z: &str, needle: &str| {
        fails(
            d,
            &["gen", "--model", &t, "--latents", z, "--grid", "g.png"],
            needle,
        )
    };
    gen(
        "shape.npy",
        "have shape [5, 7, 1, 1]; the model takes [N, 8, 1, 1]",
    );
    gen(
        "flat.npy",
        "have shape [5, 8]; the model takes [N, 8, 1, 1]",
    );
    gen(
        "f64.npy",
        "holds float64 values ('<f8'); expected float32 ('<f4')",
    );
    gen("junk.npy", "no .npy magic number");
    // Non-finite values: the first one is named by flat index, latent and component.
    let mut z = vec![0.5f32; 3 * 8];
    z[11] = f32::NAN;
    z[20] = f32::INFINITY;
    npy::write_f32(&d.join("nan.npy"), &[3, 8, 1, 1], &z).unwrap();
    gen(
        "nan.npy",
        "latents nan.npy hold NaN at index 11 (latent 1, component 3); latents must be finite",
    );
    z[11] = 0.0;
    npy::write_f32(&d.join("inf.npy"), &[3, 8, 1, 1], &z).unwrap();
    gen("inf.npy", "hold inf at index 20 (latent 2, component 4)");
    z[20] = f32::NEG_INFINITY;
    z[0] = f32::NEG_INFINITY;
    npy::write_f32(&d.join("ninf.npy"), &[3, 8, 1, 1], &z).unwrap();
    gen("ninf.npy", "hold -inf at index 0 (latent 0, component 0)");
    // Also with the default output: nothing is written.
    fails(
        d,
        &["gen", "--model", &t, "--latents", "nan.npy"],
        "hold NaN at index 11",
    );
    assert!(!d.join("g.png").exists() && !d.join("generated.png").exists());
    gen("none.npy", "cannot read none.npy");
    fails(
        d,
        &[
            "gen",
            "--model",
            &t,
            "--latents",
            "shape.npy",
            "--n",
            "3",
            "--grid",
            "g.png",
        ],
        "cannot be used with",
    );
}

#[cfg(not(feature = "ort"))]
#[test]
fn ort_backend_missing_from_the_build_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    fails(
        dir.path(),
        &[
            "gen",
            "--model",
            &tiny(),
            "--backend",
            "ort",
            "--grid",
            "g.png",
        ],
        "rebuild with `--features ort`",
    );
    fails(
        dir.path(),
        &["bench", "--backend", "ort"],
        "the ort backend is not compiled into this build",
    );
}

#[cfg(feature = "ort")]
mod ort {
    use super::*;

    #[test]
    fn gen_with_ort_matches_onnxruntime() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let lib = ort_lib();
        let args = [
            "gen",
            "--model",
            &tiny(),
            "--backend",
            "ort",
            "--n",
            "5",
            "--seed",
            "42",
            "--save-raw",
            "raw.npy",
        ];
        // Through ORT_DYLIB_PATH, then through --ort-lib.
        ok_env(d, &args, &[("ORT_DYLIB_PATH", &lib)]);
        let raw = npy::read_f32(&d.join("raw.npy")).unwrap();
        let expected = npy::read_f32(&fixture("tiny-gen.out.npy")).unwrap();
        assert!(max_abs_diff(&raw.data, &expected.data) <= 1e-4);
        let mut with_flag = args.to_vec();
        with_flag.extend(["--ort-lib", &lib]);
        let out = ok(d, &with_flag);
        assert!(out.contains("onnxruntime from"), "{out}");
        let bench = ok(
            d,
            &[
                "bench",
                "--model",
                &tiny(),
                "--backend",
                "ort",
                "--ort-lib",
                &lib,
                "--batch-sizes",
                "2",
                "--iters",
                "2",
            ],
        );
        assert!(bench.contains("median ms"), "{bench}");
    }

    #[test]
    fn missing_onnxruntime_library_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let t = tiny();
        fails(
            d,
            &["gen", "--model", &t, "--backend", "ort", "--grid", "g.png"],
            "ONNX Runtime library not found: install the onnxruntime wheel",
        );
        fails(
            d,
            &[
                "gen",
                "--model",
                &t,
                "--backend",
                "ort",
                "--ort-lib",
                "nope.so",
                "--grid",
                "g.png",
            ],
            "nope.so does not exist (from --ort-lib)",
        );
        fails_env(
            d,
            &["gen", "--model", &t, "--backend", "ort", "--grid", "g.png"],
            &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")],
            "from ORT_DYLIB_PATH",
        );
        std::fs::write(d.join("fake.so"), b"not a library").unwrap();
        fails(
            d,
            &[
                "gen",
                "--model",
                &t,
                "--backend",
                "ort",
                "--ort-lib",
                "fake.so",
                "--grid",
                "g.png",
            ],
            "cannot load ONNX Runtime",
        );
    }

    #[test]
    fn required_provider_that_is_missing_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let lib = ort_lib();
        let args = [
            "gen",
            "--model",
            &tiny(),
            "--backend",
            "ort",
            "--ort-lib",
            &lib,
            "--provider",
            "tensorrt,cuda",
            "--grid",
            "g.png",
        ];
        let out = runtime(dir.path(), &args, &[]);
        let err = text(&out.stderr);
        if out.status.success() && !err.contains("warning:") {
            return; // A GPU build on a GPU machine: both registered.
        }
        assert!(out.status.success(), "{err}");
        assert!(
            err.contains("warning: execution provider tensorrt not used"),
            "{err}"
        );
        let mut required = args.to_vec();
        required.push("--require-provider");
        fails(
            dir.path(),
            &required,
            "execution provider tensorrt is required",
        );
    }
}

/// The workspace's CLI conventions: a usage error names the argument (clap's whole message,
/// exit 2), every `--help` states the exit statuses, and a reader that closes the pipe early
/// (`runtime info | head -1`) ends the binary quietly with status 0, not a panic.
#[test]
fn usage_errors_help_and_closed_pipes_follow_the_conventions() {
    let tmp = tempfile::tempdir().unwrap();
    let out = runtime(tmp.path(), &["gen", "--n"], &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("'--n <N>'") && err.contains("try '--help'"),
        "{err}"
    );
    for args in [&["--help"][..], &["gen", "--help"], &["info", "--help"]] {
        let help = ok(tmp.path(), args);
        assert!(
            help.contains("Exit status: 0 on success, 2 on any error"),
            "{help}"
        );
    }

    let mut child = Command::new(binary("runtime"))
        .arg("info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before the binary has printed anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "stderr: {}", text(&out.stderr));
}
