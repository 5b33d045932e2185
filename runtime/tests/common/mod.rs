//! Helpers for the tests that run the `runtime` binary: fixtures, running it in a folder, and
//! asserting success or a one-line error with exit 2 (`wgan_test_support`'s contract).
#![allow(dead_code, unused_imports)] // each test file uses its own subset

pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
pub use wgan_test_support::{assert_input_error, binary, max_abs_diff, text};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Runs the binary in `dir` without ORT_DYLIB_PATH unless `env` sets it.
pub fn runtime(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(binary("runtime"));
    cmd.args(args).current_dir(dir).env_remove("ORT_DYLIB_PATH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("runs the runtime binary")
}

pub fn ok(dir: &Path, args: &[&str]) -> String {
    ok_env(dir, args, &[])
}

pub fn ok_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = runtime(dir, args, env);
    assert!(
        out.status.success(),
        "runtime {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Asserts exit code 2 with one `error:` line (or, for a usage error, clap's whole message) containing `needle`, and no panic.
pub fn fails(dir: &Path, args: &[&str], needle: &str) {
    fails_env(dir, args, &[], needle)
}

pub fn fails_env(dir: &Path, args: &[&str], env: &[(&str, &str)], needle: &str) {
    assert_input_error(&runtime(dir, args, env), needle);
}

pub fn tiny() -> String {
    fixture("tiny-gen.onnx").display().to_string()
}

/// The onnxruntime shared library the ort tests load: ORT_DYLIB_PATH, else the one in the
/// workspace's .venv.
#[cfg(feature = "ort")]
pub fn ort_lib() -> String {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return p.to_string_lossy().into_owned();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/lib");
    let lib = std::fs::read_dir(&venv).ok().and_then(|dirs| {
        dirs.flatten().find_map(|py| {
            let capi = py.path().join("site-packages/onnxruntime/capi");
            std::fs::read_dir(capi)
                .ok()?
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so"))
                })
        })
    });
    lib.map(|p| p.display().to_string()).unwrap_or_else(|| {
        panic!(
            "ONNX Runtime's library is missing: run `eval \"$(scripts/test-env.sh)\"` from the workspace root \
             (it installs the onnxruntime wheel into .venv and sets ORT_DYLIB_PATH)"
        )
    })
}
