//! Helpers shared by the workspace-level tests and benches.

use std::path::PathBuf;

/// The workspace binary `name` (`trainer`, `runtime`, `export`) that `cargo test --workspace`
/// builds beside the test executables (`target/<profile>/`). Panics with the command to run
/// when it is missing. A filtered run (`cargo test --test reliability`) does not rebuild other
/// packages' binaries: run `cargo build --workspace` first, or use `scripts/test.sh`.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executables live in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo test --workspace` (scripts/test.sh), which builds every binary",
        path.display()
    );
    path
}
