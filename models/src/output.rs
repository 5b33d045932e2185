//! Where written files go, and how: atomically for files, in place for devices and pipes.
//!
//! This is the workspace's one output policy: every writer ([`write_atomic`] for checkpoint
//! files, metrics, CSV, JSON, plots, safetensors and PNGs; the runtime's streaming `.npy`
//! writer and the exporter's model writer on [`OutputFile`]) decides
//! through [`Destination::of`]:
//!
//! - A path that does not exist yet, or names a regular file, is written **atomically**: to a
//!   temporary file in the same directory ([`OutputFile`], a `tempfile` named
//!   `.<name>.<random>.tmp`), flushed to disk, then renamed over the path. Readers see the old file or the whole new one, never a part. A symbolic link
//!   to a regular file is followed: the file it points to is replaced and the link stays.
//! - An existing character device, FIFO or socket (`/dev/null`, `/dev/stdout`, a named pipe) is
//!   opened and written **in place** ([`open_in_place`]). It is never renamed over: that would
//!   replace the device node itself with a regular file. Such a write is not atomic, and a failed
//!   write (`/dev/full`: no space left on the device, a pipe whose reader went away) is an error.
//! - A directory or a block device is an error, before anything is written.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use tempfile::NamedTempFile;

/// How a path is written (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Written to a temporary file beside this path, then renamed over it. For a symbolic link
    /// to a regular file this is the file the link points to.
    Replace(PathBuf),
    /// An existing character device, FIFO or socket, opened and written directly.
    InPlace(PathBuf),
}

impl Destination {
    /// Classifies `path`. Errors (one line, naming the path) when it is a directory or a block
    /// device. A path that cannot be inspected (missing, or under something that is not a
    /// directory) is a [`Destination::Replace`]: creating the temporary file then reports why.
    pub fn of(path: &Path) -> Result<Destination> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(_) => return Ok(Destination::Replace(path.to_path_buf())),
        };
        let kind = meta.file_type();
        if kind.is_dir() {
            bail!("cannot write {}: it is a folder", path.display());
        }
        if kind.is_file() {
            let is_link = std::fs::symlink_metadata(path)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            let target = match is_link {
                true => std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
                false => path.to_path_buf(),
            };
            return Ok(Destination::Replace(target));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if kind.is_block_device() {
                bail!(
                    "cannot write {}: it is a block device (refusing to write over a disk)",
                    path.display()
                );
            }
        }
        // Character devices, FIFOs, sockets and anything else that is not a file.
        Ok(Destination::InPlace(path.to_path_buf()))
    }

    /// The path that is finally written (the renamed-over file or the device).
    pub fn path(&self) -> &Path {
        match self {
            Destination::Replace(p) | Destination::InPlace(p) => p,
        }
    }

    /// Whether the destination is written in place (not atomically).
    pub fn is_in_place(&self) -> bool {
        matches!(self, Destination::InPlace(_))
    }
}

/// Opens an existing device, FIFO or socket for writing, without creating or truncating
/// anything. Opening a FIFO waits until it has a reader, as any Unix writer does.
pub fn open_in_place(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new().write(true).open(path)
}

/// The directory a file path lives in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Whether a file name is one of [`OutputFile`]'s temporary names (`.<name>.<random>.tmp`).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp") && name.len() > ".x.tmp".len()
}

/// A hidden temporary file `.<name>.<random>.tmp` in `dir`, created like `File::create` does
/// (mode 0666 less the umask; tempfile's default would be 0600). Removed when dropped.
fn temp_file_in(dir: &Path, name: &std::ffi::OsStr) -> std::io::Result<NamedTempFile> {
    let prefix = format!(".{}.", name.to_string_lossy());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
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
    pub fn new(path: &Path) -> Self {
        live_temps().push(path.to_path_buf());
        Self(path.to_path_buf())
    }
}

impl Drop for TempRegistration {
    fn drop(&mut self) {
        let mut live = live_temps();
        if let Some(i) = live.iter().rposition(|p| *p == self.0) {
            live.swap_remove(i);
        }
    }
}

/// Removes every registered temporary file and folder (for a process about to exit on a
/// signal); errors are ignored.
pub fn remove_temp_files() {
    for path in live_temps().drain(..) {
        if path.is_dir() {
            let _ = std::fs::remove_dir_all(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// A file being written under the output policy: to a temporary file that [`OutputFile::commit`]
/// flushes to disk and renames over the target, or, for a device, FIFO or socket, straight
/// into it. Dropped without a commit, it removes its temporary file and leaves the target as
/// it was. Every error names the path as given.
pub struct OutputFile {
    /// The path as given, for messages.
    path: PathBuf,
    inner: Inner,
}

enum Inner {
    /// A temporary file, renamed over the destination at commit (or, for a device, copied
    /// into it then).
    Staged {
        file: NamedTempFile,
        dest: Destination,
        registration: TempRegistration,
    },
    /// An open device, FIFO or socket.
    Direct(File),
}

impl OutputFile {
    /// Starts writing `path`: a temporary file beside the target for a new or regular file
    /// (beside the file a link points to), the device itself for a device, FIFO or socket.
    pub fn create(path: &Path) -> Result<Self> {
        let inner = match Destination::of(path)? {
            Destination::InPlace(device) => Inner::Direct(
                open_in_place(&device)
                    .with_context(|| format!("cannot write {}", path.display()))?,
            ),
            dest => Self::stage(path, dest)?,
        };
        Ok(Self {
            path: path.to_path_buf(),
            inner,
        })
    }

    /// Like [`OutputFile::create`], but always through a temporary file (for a device, FIFO or
    /// socket one in the system's temporary directory, copied in at the commit), so that the
    /// complete bytes can be read back from [`OutputFile::staged_path`] before they go out.
    pub fn staged(path: &Path) -> Result<Self> {
        let inner = Self::stage(path, Destination::of(path)?)?;
        Ok(Self {
            path: path.to_path_buf(),
            inner,
        })
    }

    fn stage(path: &Path, dest: Destination) -> Result<Inner> {
        let target = dest.path();
        let name = target
            .file_name()
            .with_context(|| format!("{} does not name a file", path.display()))?;
        let tmp_dir = match dest {
            Destination::Replace(_) => parent_dir(target).to_path_buf(),
            Destination::InPlace(_) => std::env::temp_dir(),
        };
        let file = temp_file_in(&tmp_dir, name)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let registration = TempRegistration::new(file.path());
        Ok(Inner::Staged {
            file,
            dest,
            registration,
        })
    }

    /// The temporary file the bytes are staged in (`None` when writing a device directly).
    pub fn staged_path(&self) -> Option<&Path> {
        match &self.inner {
            Inner::Staged { file, .. } => Some(file.path()),
            Inner::Direct(_) => None,
        }
    }

    /// Flushes the bytes to disk and puts them in place: renames the temporary file over the
    /// target, or copies it into the device. A failure (no space left, a pipe without reader,
    /// a file-size limit) is an error naming the path; the old file is then intact.
    pub fn commit(self) -> Result<()> {
        let Self { path, inner } = self;
        match inner {
            Inner::Direct(mut f) => f.flush(),
            Inner::Staged {
                file,
                dest,
                registration: _registration,
            } => (|| -> std::io::Result<()> {
                file.as_file().sync_all()?;
                match dest {
                    Destination::Replace(target) => {
                        file.persist(&target).map_err(|e| e.error).map(drop)
                    }
                    Destination::InPlace(device) => {
                        let mut out = open_in_place(&device)?;
                        std::io::copy(&mut file.reopen()?, &mut out)?;
                        out.flush()
                    }
                }
            })(),
        }
        .with_context(|| format!("cannot write {}", path.display()))
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.inner {
            Inner::Staged { file, .. } => file.write(buf),
            Inner::Direct(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.inner {
            Inner::Staged { file, .. } => file.flush(),
            Inner::Direct(f) => f.flush(),
        }
    }
}

/// Writes `bytes` to `path` as [`Destination::of`] says: atomically (temporary file in the same
/// directory, fsync, rename) for a new or regular file, in place for a device, FIFO or socket.
/// Every failure is an error naming `path`; a failed atomic write leaves no temporary file and
/// the old file intact.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut out = OutputFile::create(path)?;
    out.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    out.commit()
}

/// Temporary folders and FIFOs for unit tests (this crate's, and others' through the
/// `test-support` feature).
#[cfg(any(test, feature = "test-support"))]
pub mod test_support {
    use std::path::{Path, PathBuf};

    /// A new, empty folder under the system's temporary directory (the test removes it).
    pub fn tempdir() -> PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "wgan-output-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Makes a FIFO at `path`.
    #[cfg(unix)]
    pub fn mkfifo(path: &Path) {
        let made = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("runs mkfifo");
        assert!(made.success(), "mkfifo {}", path.display());
    }

    /// Reads the FIFO at `path` to its end on a thread; join for the bytes.
    #[cfg(unix)]
    pub fn drain_fifo(path: &Path) -> std::thread::JoinHandle<Vec<u8>> {
        use std::io::Read;
        let path = path.to_path_buf();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            std::fs::File::open(path)
                .unwrap()
                .read_to_end(&mut got)
                .unwrap();
            got
        })
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempdir();
        let p = dir.join("a.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert!(write_atomic(&dir.join("missing/x.bin"), b"x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn folders_are_refused() {
        let dir = tempdir();
        let e = write_atomic(&dir, b"x").unwrap_err().to_string();
        assert_eq!(e, format!("cannot write {}: it is a folder", dir.display()));
        assert!(dir.is_dir());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn links_to_files_are_followed() {
        let dir = tempdir();
        let (file, link) = (dir.join("real.bin"), dir.join("link.bin"));
        std::fs::write(&file, b"old").unwrap();
        std::os::unix::fs::symlink("real.bin", &link).unwrap();
        assert_eq!(
            Destination::of(&link).unwrap(),
            Destination::Replace(std::fs::canonicalize(&file).unwrap())
        );
        write_atomic(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&file).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn fifos_are_written_in_place() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempdir();
        let fifo = dir.join("pipe");
        mkfifo(&fifo);
        assert_eq!(
            Destination::of(&fifo).unwrap(),
            Destination::InPlace(fifo.clone())
        );
        let reader = drain_fifo(&fifo);
        write_atomic(&fifo, b"through the pipe").unwrap();
        let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(kind.is_fifo(), "the FIFO was replaced: {kind:?}");
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        // Nothing was left beside it.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
