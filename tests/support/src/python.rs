//! The test environment's Python (`scripts/test-env.sh` makes it): tests that compare against
//! onnxruntime, TensorBoard or scipy find it here and fail, never skip, when it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A Python that can `import` `modules` (comma-separated, as in Python): `WGAN_TEST_PYTHON`,
/// else the workspace's `.venv/bin/python`. Panics with the command that makes one when
/// neither can.
pub fn python(modules: &str) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/support lives two levels below the workspace root");
    let candidates: Vec<PathBuf> = std::env::var_os("WGAN_TEST_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([workspace.join(".venv/bin/python")])
        .collect();
    for p in &candidates {
        let ok = Command::new(p)
            .args(["-c", &format!("import {modules}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return p.clone();
        }
    }
    panic!(
        "no Python that imports {modules} (tried {candidates:?}); run `eval \"$(scripts/test-env.sh)\"` \
         from the workspace root to create .venv and set WGAN_TEST_PYTHON"
    );
}
