//! Encoding and atomic writes: the bytes go to a temporary file in the destination's
//! directory (named `.<name>.<random>.tmp`, never `*.onnx`), are flushed to disk, and the file
//! is renamed over the destination only when complete. A failure at any point removes the
//! temporary file, so no partial `.onnx` is ever left behind.
//!
//! Destinations are classified by [`wgan_models::output::Destination`]: a symbolic link to a
//! file has the file it points to replaced; an existing character device, FIFO or socket
//! (`/dev/null`, a named pipe) is never renamed over but written in place at the commit (the
//! staged copy then lives in the system's temporary directory, for verification); a directory
//! or block device is an error.

use crate::pb::ModelProto;
use anyhow::{bail, Context, Result};
use prost::Message;
use std::io::Write;
use std::path::Path;
use wgan_models::output::{parent_dir, Destination, OutputFile};

/// The protobuf encoding of a model.
pub fn encode_model(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Cheap checks of a destination before any work: it must name a file in an existing
/// directory, or an existing device or FIFO; never a directory or a block device.
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
    Destination::of(path)?;
    Ok(())
}

/// A complete temporary file waiting for its [`OutputFile::commit`]: beside `dest` (beside the file a link
/// points to), or, for a device or FIFO, in the system's temporary directory.
pub fn stage(dest: &Path, bytes: &[u8]) -> Result<OutputFile> {
    check_output_path(dest)?;
    let mut file = OutputFile::staged(dest)?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", dest.display()))?;
    Ok(file)
}

/// Encodes `model` and writes it to `path` atomically.
pub fn write_model_atomic(model: &ModelProto, path: &Path) -> Result<u64> {
    let bytes = encode_model(model);
    stage(path, &bytes)?.commit()?;
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
        assert!(staged.staged_path().unwrap().exists());
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

    #[cfg(unix)]
    #[test]
    fn links_are_followed_and_fifos_written_in_place() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let model = ModelProto {
            ir_version: 8,
            producer_name: "t".into(),
            ..Default::default()
        };
        // A link to a file: the file is replaced, the link stays.
        let (file, link) = (dir.path().join("real.onnx"), dir.path().join("link.onnx"));
        std::fs::write(&file, b"old").unwrap();
        std::os::unix::fs::symlink("real.onnx", &link).unwrap();
        write_model_atomic(&model, &link).unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&file).unwrap(), encode_model(&model));
        // A FIFO: written through, still a FIFO, nothing staged beside it.
        let fifo = dir.path().join("pipe.onnx");
        wgan_test_support::fs::mkfifo(&fifo);
        let reader = wgan_test_support::fs::drain_fifo(&fifo);
        let staged = stage(&fifo, &encode_model(&model)).unwrap();
        assert!(!staged.staged_path().unwrap().starts_with(dir.path()));
        staged.commit().unwrap();
        assert!(std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo());
        assert_eq!(reader.join().unwrap(), encode_model(&model));
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["link.onnx", "pipe.onnx", "real.onnx"]);
    }
}
