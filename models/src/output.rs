//! Where written files go, and how: atomically for files, in place for devices and pipes.
//!
//! This is the workspace's one output policy: every writer ([`write_atomic`] for checkpoint
//! files, metrics, CSV and JSON; the runtime's PNG and `.npy` writers; the exporter's model
//! writer) decides through [`Destination::of`]:
//!
//! - A path that does not exist yet, or names a regular file, is written **atomically**: to a
//!   temporary file in the same directory ([`temp_path_beside`]), flushed to disk, then renamed
//!   over the path. Readers see the old file or the whole new one, never a part. A symbolic link
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

/// The temporary path an atomic write of `path` goes through: a hidden file in the same
/// directory (so the final rename stays on one file system).
pub fn temp_path_beside(path: &Path) -> Result<PathBuf> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    Ok(dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Writes `bytes` to `path` as [`Destination::of`] says: atomically (temporary file in the same
/// directory, fsync, rename) for a new or regular file, in place for a device, FIFO or socket.
/// Every failure is an error naming `path`; a failed atomic write leaves no temporary file and
/// the old file intact.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let result = match Destination::of(path)? {
        Destination::InPlace(p) => open_in_place(&p).and_then(|mut f| {
            f.write_all(bytes)?;
            f.flush()
        }),
        Destination::Replace(target) => {
            let tmp = temp_path_beside(&target)?;
            let result = (|| -> std::io::Result<()> {
                let mut f = File::create(&tmp)?;
                f.write_all(bytes)?;
                f.sync_all()?;
                std::fs::rename(&tmp, &target)
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result
        }
    };
    result.with_context(|| format!("cannot write {}", path.display()))
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
