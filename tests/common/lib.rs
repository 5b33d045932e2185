//! Helpers of the workspace-level tests (`tests/*.rs`): running the binaries in a folder,
//! signals, resource limits, tiny runs and what they leave behind. The helpers every package
//! shares (finding the binaries, the exit-2 assertions, numbers, fixtures) are
//! `wgan_test_support`'s, re-exported here.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
pub use wgan_test_support::{assert_input_error, assert_one_error_line, binary, stderr, text};

/// Runs `bin args` in `cwd` and waits for it.
pub fn run(bin: &str, args: &[&str], cwd: &Path) -> Output {
    Command::new(binary(bin))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// Runs `bin args` in `cwd` and asserts that it succeeded.
pub fn run_ok(bin: &str, args: &[&str], cwd: &Path) -> Output {
    let o = run(bin, args, cwd);
    assert!(o.status.success(), "{bin} {args:?}: {}", stderr(&o));
    o
}

/// A tiny run of `steps` steps with a checkpoint every step, in `dir`.
pub fn tiny_run(dir: &Path, steps: u64) {
    let o = run(
        "trainer",
        &[
            "train",
            "--preset",
            "tiny",
            "--steps",
            &steps.to_string(),
            "--checkpoint-every",
            "1",
            "--out",
            dir.to_str().unwrap(),
        ],
        dir.parent().unwrap(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A `.npy` file of f32 `shape` with `data_bytes` zero bytes of data and dtype `descr`.
pub fn npy(path: &Path, descr: &str, shape: &str, data_bytes: usize) {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(std::iter::repeat_n(0u8, data_bytes));
    std::fs::write(path, bytes).unwrap();
}

/// Every file or folder under `dir` whose name marks it as temporary.
pub fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(".tmp") {
                out.push(e.path());
            }
            if e.path().is_dir() && !e.path().is_symlink() {
                stack.push(e.path());
            }
        }
    }
    out
}

/// Starts `bin args` in `cwd` with stdout and stderr piped.
pub fn spawn(bin: &str, args: &[&str], cwd: &Path) -> Child {
    Command::new(binary(bin))
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Sends `sig` to `child`.
pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Waits (at most `limit`) until `cond` holds.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out after {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The step `checkpoints/latest` of `run` names.
pub fn latest_step(run: &Path) -> Option<u64> {
    let latest = std::fs::read_to_string(run.join("checkpoints/latest")).ok()?;
    latest.trim().strip_prefix("step_")?.parse().ok()
}

/// The bytes of the files of `run`'s latest checkpoint.
pub fn checkpoint_bytes(run: &Path) -> Vec<(String, Vec<u8>)> {
    let ck = wgan_models::checkpoint::resolve(run).unwrap();
    [
        "generator.safetensors",
        "critic.safetensors",
        "optimizer.safetensors",
    ]
    .iter()
    .map(|f| (f.to_string(), std::fs::read(ck.join(f)).unwrap()))
    .collect()
}

/// `trainer train` of the `tiny` preset, seed 3, without samples.
pub const TRAIN: &[&str] = &[
    "train",
    "--preset",
    "tiny",
    "--seed",
    "3",
    "--sample-every",
    "1000",
];

/// Runs `bin args` with a file-size limit of `bytes` (as `ulimit -f`).
pub fn run_with_file_limit(bin: &str, args: &[&str], cwd: &Path, bytes: u64) -> Output {
    run_with_limit(bin, args, cwd, libc::RLIMIT_FSIZE, bytes)
}

/// Runs `bin args` with its address space limited to `bytes` (`ulimit -v`).
pub fn run_with_address_limit(bin: &str, args: &[&str], cwd: &Path, bytes: u64) -> Output {
    run_with_limit(bin, args, cwd, libc::RLIMIT_AS, bytes)
}

/// Runs `bin args` with resource limit `resource` (soft and hard) set to `bytes`.
fn run_with_limit(
    bin: &str,
    args: &[&str],
    cwd: &Path,
    resource: libc::__rlimit_resource_t,
    bytes: u64,
) -> Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(binary(bin));
    cmd.args(args).current_dir(cwd);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(resource, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().unwrap()
}
