//! The output policy's temporary files: their names (`.<name>.<pid>.<random>.tmp`), the
//! registry of those this process is writing (removed when a signal ends it), and the removal
//! of those that writers which no longer run left behind.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use tempfile::NamedTempFile;

/// Whether a file name is one of [`OutputFile`]'s temporary names (`.<name>.<random>.tmp`).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp") && name.len() > ".x.tmp".len()
}

/// Longest file name the file systems take (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// `name` shortened (at a character boundary) so that a temporary name for it made by a
/// process whose id has `pid_digits` digits, `.<name>.<pid>.<6 random>.tmp`, fits in
/// [`NAME_MAX`] bytes.
pub(super) fn shortened(name: &str, pid_digits: usize) -> &str {
    let room = NAME_MAX - (1 + 1 + pid_digits + 1 + 6 + 4);
    let mut end = name.len().min(room);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// The start of this process's temporary names for `name`: `.<name>.<pid>.` (see
/// [`shortened`]).
pub fn temp_prefix(name: &std::ffi::OsStr) -> String {
    let pid = std::process::id().to_string();
    format!(".{}.{pid}.", shortened(&name.to_string_lossy(), pid.len()))
}

/// Whether a process with this id is running (`/proc/<pid>` exists).
fn process_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Temporaries left in a folder by processes that no longer run, by the name part of their
/// temporary name; each folder is listed once per process.
type Stale = std::collections::HashMap<PathBuf, std::collections::HashMap<String, Vec<PathBuf>>>;
static STALE: Mutex<Option<Stale>> = Mutex::new(None);

/// The temporaries in `dir` named `.<head>.<pid>.<random>.tmp` whose process is gone, by head.
fn scan_stale(dir: &Path) -> std::collections::HashMap<String, Vec<PathBuf>> {
    let mut found: std::collections::HashMap<String, Vec<PathBuf>> = Default::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        // `.<shortened name>.<pid>.<random>.tmp`; the random part has no dots.
        let Some(rest) = file.strip_prefix('.').and_then(|f| f.strip_suffix(".tmp")) else {
            continue;
        };
        let mut fields = rest.rsplitn(3, '.');
        let (Some(_random), Some(pid), Some(head)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        match pid.parse::<u32>() {
            Ok(pid) if pid != std::process::id() && !process_alive(pid) => found
                .entry(format!("{head}\u{0}{}", pid.to_string().len()))
                .or_default()
                .push(entry.path()),
            _ => {}
        }
    }
    found
}

/// Removes, in `dir`, the temporary files and folders for `name` that a process which no
/// longer runs left behind (killed with SIGKILL, or by a power cut): names
/// `.<name>.<pid>.<random>.tmp` whose pid is not running. Returns how many went.
pub fn remove_stale_temps_of(dir: &Path, name: &std::ffi::OsStr) -> usize {
    let name = name.to_string_lossy();
    let mut cache = STALE.lock().unwrap_or_else(|e| e.into_inner());
    let found = cache
        .get_or_insert_with(Default::default)
        .entry(dir.to_path_buf())
        .or_insert_with(|| scan_stale(dir));
    let mut removed = 0;
    for digits in 1..=10 {
        let key = format!("{}\u{0}{digits}", shortened(&name, digits));
        for path in found.remove(&key).unwrap_or_default() {
            let gone = match path.is_dir() {
                true => std::fs::remove_dir_all(&path),
                false => std::fs::remove_file(&path),
            };
            removed += gone.is_ok() as usize;
        }
    }
    removed
}

/// A hidden temporary file `.<name>.<pid>.<random>.tmp` in `dir` (see [`temp_prefix`]),
/// created like `File::create` does (mode 0666 less the umask; tempfile's default would be
/// 0600), and registered for removal on a signal in the same step ([`create_registered`]).
pub(super) fn temp_file_in(
    dir: &Path,
    name: &std::ffi::OsStr,
) -> std::io::Result<(NamedTempFile, TempRegistration)> {
    remove_stale_temps_of(dir, name);
    let prefix = temp_prefix(name);
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    create_registered(|| builder.tempfile_in(dir), |f| f.path().to_path_buf())
}

/// Temporary files and folders this process is writing, removed by [`remove_temp_files`].
static LIVE_TEMPS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn live_temps() -> MutexGuard<'static, Vec<PathBuf>> {
    LIVE_TEMPS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records a temporary file or folder of this process until dropped, so that a signal that
/// ends the process removes it ([`remove_temp_files`], called by [`crate::signals`]). Every
/// [`OutputFile`] holds one; the trainer's temporary checkpoint folders do too.
#[derive(Debug)]
pub struct TempRegistration(PathBuf);

impl TempRegistration {
    /// Registers an existing `path`. A temporary made by this process should rather be
    /// created through [`create_registered`], so that no signal can fall between its creation
    /// and its registration.
    pub fn new(path: &Path) -> Self {
        live_temps().push(path.to_path_buf());
        Self(path.to_path_buf())
    }
}

/// Creates a temporary with `create` and registers the path `path_of` names, under the
/// registry's lock: a signal's clean-up ([`remove_temp_files_and_exit`]) takes the same lock,
/// so it either runs before the temporary exists or removes it, and no temporary can be made
/// after it.
pub fn create_registered<T>(
    create: impl FnOnce() -> std::io::Result<T>,
    path_of: impl FnOnce(&T) -> PathBuf,
) -> std::io::Result<(T, TempRegistration)> {
    let mut live = live_temps();
    let made = create()?;
    let path = path_of(&made);
    live.push(path.clone());
    Ok((made, TempRegistration(path)))
}

impl Drop for TempRegistration {
    fn drop(&mut self) {
        let mut live = live_temps();
        if let Some(i) = live.iter().rposition(|p| *p == self.0) {
            live.swap_remove(i);
        }
    }
}

fn remove_all(live: &mut Vec<PathBuf>) {
    // Newest first: files inside a temporary folder go before the folder.
    for path in live.drain(..).rev() {
        if path.is_dir() {
            // A folder being filled may gain an entry between the listing and the removal:
            // try again.
            for _ in 0..3 {
                if std::fs::remove_dir_all(&path).is_ok() || !path.exists() {
                    break;
                }
            }
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Removes every registered temporary file and folder; errors are ignored.
pub fn remove_temp_files() {
    remove_all(&mut live_temps());
}

/// Removes every registered temporary and exits with `code`, holding the registry's lock to
/// the end: a thread that is about to create a temporary waits, so none appears after the
/// clean-up (for a process ending on a signal).
pub fn remove_temp_files_and_exit(code: i32) -> ! {
    let mut live = live_temps();
    remove_all(&mut live);
    std::process::exit(code)
}

/// [`remove_temp_files_and_exit`] for a thread that may itself hold the registry's lock (an
/// allocation failed inside [`create_registered`]): the temporaries are removed when the lock
/// is free, and the process exits either way, never waiting on itself.
pub fn try_remove_temp_files_and_exit(code: i32) -> ! {
    match LIVE_TEMPS.try_lock() {
        Ok(mut live) => {
            remove_all(&mut live);
            std::process::exit(code)
        }
        Err(std::sync::TryLockError::Poisoned(p)) => {
            remove_all(&mut p.into_inner());
            std::process::exit(code)
        }
        Err(std::sync::TryLockError::WouldBlock) => std::process::exit(code),
    }
}
