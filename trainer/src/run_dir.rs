//! Run directories: claiming a new one (`--out` or `runs/<UTC time>`), locking one while a
//! process trains in it, and finding a checkpoint's run and its sibling checkpoints.

use crate::checkpoints;
use anyhow::{bail, Context, Result};
use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use wgan_models::checkpoint as ckpt;

/// The other checkpoints of the run that holds checkpoint `dir`, newest first, as one line
/// (`None` when there are none).
pub fn older_checkpoints(dir: &Path) -> Option<String> {
    usable_checkpoints(&run_dir_of(dir), Some(dir))
}

/// The checkpoints of the run in `run_dir` that look complete (they hold a `state.json`),
/// newest first, except `broken`, as one line (`None` when there are none).
pub fn usable_checkpoints(run_dir: &Path, broken: Option<&Path>) -> Option<String> {
    let others: Vec<String> = checkpoints::list(&run_dir.join(ckpt::CHECKPOINTS_DIR))
        .ok()?
        .into_iter()
        .rev()
        .filter(|d| Some(d.as_path()) != broken && d.join(ckpt::STATE_FILE).is_file())
        .map(|d| d.display().to_string())
        .collect();
    (!others.is_empty()).then(|| others.join(", "))
}

/// The run directory of a checkpoint directory (`RUN/checkpoints/step_N` → `RUN`).
pub fn run_dir_of(checkpoint_dir: &Path) -> PathBuf {
    checkpoint_dir
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Claims `dir` for a new run: creates it (and its parents) or takes an existing empty
/// directory. The claim itself is the exclusive creation of `dir/checkpoints`, so two runs
/// started at once never share a directory. Refuses a file and any non-empty directory,
/// saying what it holds.
pub fn claim_run_dir(dir: &Path) -> Result<()> {
    wgan_models::output::check_not_an_input("--out", dir, &[])?;
    if dir.exists() && !dir.is_dir() {
        bail!(
            "--out {} names an existing file; choose a directory path",
            dir.display()
        );
    }
    if dir.join(LOCK_FILE).exists() {
        // Says who trains in it, if anyone; the lock is released again at once.
        RunLock::acquire(dir)?;
    }
    if dir.is_dir() {
        let occupied = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some();
        if occupied {
            let latest = dir.join(ckpt::CHECKPOINTS_DIR).join(ckpt::LATEST_FILE);
            if latest.exists() {
                bail!(
                    "{} already holds a run: continue it with `trainer resume --checkpoint {}` or choose another --out",
                    dir.display(),
                    dir.display()
                );
            }
            if dir.join(wgan_models::checkpoint::CONFIG_JSON).exists() {
                bail!(
                    "{} holds a run that stopped before its first checkpoint (nothing to resume): delete it or choose another --out",
                    dir.display()
                );
            }
            bail!(
                "--out {} is a directory that is not empty; choose a new or empty directory",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create run directory {}", dir.display()))?;
    match std::fs::create_dir(dir.join(ckpt::CHECKPOINTS_DIR)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{} was claimed by another run that started at the same time; choose another --out",
            dir.display()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot create run directory {}", dir.display())),
    }
}

/// Claims `runs/<UTC timestamp>`, or `…-2`, `…-3`, … when taken.
pub fn claim_default_run_dir() -> Result<PathBuf> {
    let base = default_run_dir_name();
    for i in 1..1000 {
        let dir = if i == 1 {
            base.clone()
        } else {
            PathBuf::from(format!("{}-{i}", base.display()))
        };
        if dir.exists() {
            continue;
        }
        match claim_run_dir(&dir) {
            Ok(()) => return Ok(dir),
            // Taken between the check and the claim: try the next name.
            Err(_) if dir.join(ckpt::CHECKPOINTS_DIR).exists() => continue,
            Err(e) => return Err(e),
        }
    }
    bail!("cannot find a free run directory name under runs/; pass --out")
}

/// `runs/YYYYMMDD-HHMMSS` in UTC, for the current time.
pub fn default_run_dir_name() -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    PathBuf::from(format!(
        "runs/{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    ))
}

/// The lock file of a run directory.
pub const LOCK_FILE: &str = ".lock";

/// An exclusive advisory lock on a run directory (`RUN/.lock`, which holds the owner's pid),
/// held while a process trains in it. The operating system releases it when the process ends,
/// however it ends, so a crash never leaves a run locked.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes the lock of `run_dir`, or fails at once naming the process that holds it.
    pub fn acquire(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the run's lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another process".to_string(),
                    pid => format!("process {pid}"),
                };
                bail!(
                    "{} is in use: {holder} is training in it; wait for it to finish or stop it (Ctrl-C or SIGTERM saves a checkpoint), then try again",
                    run_dir.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| write!(file, "{}", std::process::id()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self { _file: file })
    }
}

/// Removes what processes killed while writing left in `run_dir`: temporary checkpoint
/// folders (`checkpoints/.step_NNNNNN.tmp-PID`) and temporary files of atomic writes
/// (`.<name>.<random>.tmp`, see `wgan_models::output`) in the run, `checkpoints/` and
/// `samples/`. Call it only while holding the run's [`RunLock`]: then nothing else is
/// writing there. Returns how many were removed.
pub fn remove_stale_temps(run_dir: &Path) -> Result<usize> {
    let mut removed = 0;
    for dir in [
        run_dir.to_path_buf(),
        run_dir.join(ckpt::CHECKPOINTS_DIR),
        run_dir.join(wgan_models::checkpoint::SAMPLES_DIR),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let result = if name.starts_with(".step_") && name.contains(".tmp-") && path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else if wgan_models::output::is_temp_name(&name) && path.is_file() {
                std::fs::remove_file(&path)
            } else {
                continue;
            };
            result.with_context(|| format!("removing the leftover {}", path.display()))?;
            removed += 1;
        }
    }
    Ok(removed)
}
