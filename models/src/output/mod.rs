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

mod temps;
use tempfile::NamedTempFile;
use temps::temp_file_in;
pub use temps::{
    create_registered, is_temp_name, remove_stale_temps_of, remove_temp_files,
    remove_temp_files_and_exit, temp_prefix, try_remove_temp_files_and_exit, TempRegistration,
};

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
        let (file, registration) = temp_file_in(&tmp_dir, name)
            .with_context(|| format!("cannot write {}", path.display()))?;
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

/// `path` made absolute with its links resolved: the path itself when it exists, else its
/// nearest existing ancestor resolved and the rest appended.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let mut rest = Vec::new();
    let mut base = path;
    loop {
        match (base.file_name(), base.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                let parent = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                if let Ok(p) = std::fs::canonicalize(parent) {
                    let mut out = p;
                    out.extend(rest.iter().rev());
                    return out;
                }
                base = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Whether `dir` is a checkpoint folder (it holds a `state.json`, or it sits in a run's
/// `checkpoints/` folder) or a run's `checkpoints/` folder itself.
fn is_checkpoint_folder(dir: &Path) -> bool {
    let checkpoints = crate::checkpoint::CHECKPOINTS_DIR;
    dir.join(crate::checkpoint::STATE_FILE).is_file()
        || dir
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == checkpoints)
        || (dir.file_name().is_some_and(|n| n == checkpoints)
            && dir.join(crate::checkpoint::LATEST_FILE).exists())
}

/// Whether `dir` is a run folder: it holds `checkpoints/latest`.
fn is_run_folder(dir: &Path) -> bool {
    dir.join(crate::checkpoint::CHECKPOINTS_DIR)
        .join(crate::checkpoint::LATEST_FILE)
        .exists()
}

/// Refuses an output path (`flag`) that is one of the command's inputs, lies inside an input
/// folder (where it would become an input of the next run), replaces a file of a run folder
/// (`metrics.csv`, `config.json`, …) or lies in a checkpoint folder, before anything is
/// written: an export must never destroy the checkpoint it reads. Paths are compared after
/// resolving links, so `./x`, `a/../x` and a link to `x` are the same file.
pub fn check_not_an_input(flag: &str, out: &Path, inputs: &[&Path]) -> Result<()> {
    let target = resolved(out);
    for input in inputs {
        let input_path = resolved(input);
        if target == input_path {
            bail!(
                "{flag} {} is the input {}: choose another output path (it would be overwritten)",
                out.display(),
                input.display()
            );
        }
        if input_path.is_dir() && target.starts_with(&input_path) {
            bail!(
                "{flag} {} is inside the input folder {}: write it elsewhere (there it would {} an input)",
                out.display(),
                input.display(),
                if target.exists() { "replace" } else { "become" }
            );
        }
    }
    if let Some(parent) = target.parent() {
        if is_run_folder(parent) && target.is_file() {
            bail!(
                "{flag} {} would replace a file of the run {}: choose another output path",
                out.display(),
                parent.display()
            );
        }
    }
    let mut dir = target.parent();
    while let Some(d) = dir {
        if is_checkpoint_folder(d) {
            bail!(
                "{flag} {} is inside the checkpoint folder {}: write outputs elsewhere (a checkpoint is only written by the trainer)",
                out.display(),
                d.display()
            );
        }
        dir = d.parent();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wgan_test_support::fs::*;

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

    #[test]
    fn outputs_that_would_replace_inputs_or_enter_checkpoints_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ckpt = d.join("run/checkpoints/step_000002");
        std::fs::create_dir_all(&ckpt).unwrap();
        std::fs::write(ckpt.join("state.json"), "{}").unwrap();
        std::fs::write(ckpt.join("generator.safetensors"), "w").unwrap();
        std::fs::write(d.join("model.onnx"), "m").unwrap();
        let check = |out: &Path| check_not_an_input("--out", out, &[&ckpt, &d.join("model.onnx")]);
        let e = check(&ckpt.join("state.json")).unwrap_err().to_string();
        assert!(e.contains("is inside the input folder"), "{e}");
        let e = check(&ckpt.join("new.onnx")).unwrap_err().to_string();
        assert!(e.contains("is inside the input folder"), "{e}");
        // Another checkpoint of the run, not an input of this command, is refused all the same.
        let other = d.join("run/checkpoints/step_000001");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("state.json"), "{}").unwrap();
        let e = check(&other.join("new.onnx")).unwrap_err().to_string();
        assert!(e.contains("inside the checkpoint folder"), "{e}");
        let e = check(&d.join("run/checkpoints/step_000001/../step_000001/x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("checkpoint folder"), "{e}");
        let e = check(&d.join("./model.onnx")).unwrap_err().to_string();
        assert!(e.contains("is the input"), "{e}");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(d.join("model.onnx"), d.join("link.onnx")).unwrap();
            assert!(check(&d.join("link.onnx")).is_err());
        }
        assert!(check(&d.join("fresh.onnx")).is_ok());
        std::fs::write(d.join("run/checkpoints/latest"), "step_000002").unwrap();
        std::fs::write(d.join("run/metrics.csv"), "step").unwrap();
        let e = check(&d.join("run/checkpoints/latest"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("checkpoint folder"), "{e}");
        let e = check(&d.join("run/metrics.csv")).unwrap_err().to_string();
        assert!(e.contains("would replace a file of the run"), "{e}");
        assert!(check(&d.join("run/export.onnx")).is_ok());
        assert!(check(&d.join("no/such/folder/x.onnx")).is_ok());
    }

    #[test]
    fn temporaries_of_dead_processes_are_removed_and_long_names_fit() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A process that no longer runs: pid 4194304 is above Linux's pid_max.
        let dead = d.join(".model.onnx.4194304.abc123.tmp");
        std::fs::write(&dead, "partial").unwrap();
        let alive = d.join(format!(".model.onnx.{}.abc124.tmp", 1));
        std::fs::write(&alive, "init's").unwrap();
        let other = d.join(".other.onnx.4194304.abc125.tmp");
        std::fs::write(&other, "another output's").unwrap();
        write_atomic(&d.join("model.onnx"), b"new").unwrap();
        assert!(
            !dead.exists(),
            "the dead process's temporary of this output is removed"
        );
        assert!(alive.exists() && other.exists(), "others are kept");
        // A 255-byte name (NAME_MAX) is written: its temporary name is shortened to fit.
        let long = "n".repeat(251) + ".png";
        assert_eq!(long.len(), 255);
        write_atomic(&d.join(&long), b"x").unwrap();
        assert_eq!(std::fs::read(d.join(&long)).unwrap(), b"x");
        let prefix = temp_prefix(std::ffi::OsStr::new(&long));
        assert!(prefix.len() + 6 + 4 <= 255, "{}", prefix.len());
        let e = "é".repeat(200);
        assert!(temp_prefix(std::ffi::OsStr::new(&e)).len() + 10 <= 255);
    }
}
