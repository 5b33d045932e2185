//! Encoding and atomic writes: the bytes go to a temporary file in the destination's
//! directory (named `.<name>.<random>.tmp`, never `*.onnx`), are flushed to disk, and the file
//! is renamed over the destination only when complete. A failure at any point removes the
//! temporary file, so no partial `.onnx` is ever left behind.

use crate::pb::ModelProto;
use anyhow::{bail, Context, Result};
use prost::Message;
use std::io::Write;
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

/// The protobuf encoding of a model.
pub fn encode_model(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// The directory a file path lives in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Cheap checks of a destination before any work: it must name a file in an existing
/// directory.
pub fn check_output_path(path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        bail!("the output path is empty");
    }
    if path.is_dir() {
        bail!(
            "output {} is a directory; give a file name such as {}",
            path.display(),
            path.join("generator.onnx").display()
        );
    }
    if path.file_name().is_none() {
        bail!("output {} does not name a file", path.display());
    }
    let dir = parent_dir(path);
    if !dir.is_dir() {
        bail!(
            "cannot write {}: directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    Ok(())
}

/// A complete, flushed temporary file waiting for [`commit`].
pub struct Staged(NamedTempFile);

impl Staged {
    /// Where the staged bytes are (for verification before the commit).
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// Writes `bytes` to a temporary file beside `dest` and flushes it.
pub fn stage(dest: &Path, bytes: &[u8]) -> Result<Staged> {
    check_output_path(dest)?;
    let dir = parent_dir(dest);
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Like a file created by `File::create` under the usual umask (tempfile defaults to 0600).
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let mut file = builder
        .tempfile_in(&dir)
        .with_context(|| format!("cannot write {}", dest.display()))?;
    file.write_all(bytes)
        .and_then(|_| file.as_file().sync_all())
        .with_context(|| format!("cannot write {}", dest.display()))?;
    Ok(Staged(file))
}

/// Renames a staged file over `dest`.
pub fn commit(staged: Staged, dest: &Path) -> Result<()> {
    staged
        .0
        .persist(dest)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", dest.display()))?;
    Ok(())
}

/// Encodes `model` and writes it to `path` atomically.
pub fn write_model_atomic(model: &ModelProto, path: &Path) -> Result<u64> {
    let bytes = encode_model(model);
    commit(stage(path, &bytes)?, path)?;
    Ok(bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let model = ModelProto {
            ir_version: 8,
            producer_name: "t".into(),
            ..Default::default()
        };
        let path = dir.path().join("m.onnx");
        let n = write_model_atomic(&model, &path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), encode_model(&model));
        assert_eq!(n as usize, encode_model(&model).len());
        // A dropped stage leaves nothing; the old file stays intact.
        let staged = stage(&path, b"partial").unwrap();
        assert!(staged.path().exists());
        drop(staged);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["m.onnx"]);
        assert_eq!(std::fs::read(&path).unwrap(), encode_model(&model));
        // Bad destinations.
        let err = write_model_atomic(&model, dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a directory"), "{err}");
        let err = write_model_atomic(&model, &dir.path().join("no/such/m.onnx"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }
}
