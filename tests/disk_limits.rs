//! Disks at the binaries' boundary (see docs/reliability.md): file-size limits during a
//! checkpoint and an export, and a full disk, are write errors that keep the previous files.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use wgan_gp::*;

#[test]
fn file_size_limits_are_write_errors_and_keep_the_previous_files() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let r = d.join("run");
    tiny_run(&r, 2);
    let kept = checkpoint_bytes(&r);
    // A checkpoint larger than the limit: exit 2 with the reason, step 2 intact and resumable.
    let o = run_with_file_limit(
        "trainer",
        &[
            "resume",
            "--checkpoint",
            r.to_str().unwrap(),
            "--steps",
            "4",
        ],
        d,
        4096,
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("File too large"), "{err}");
    assert_eq!(err.matches("File too large").count(), 1, "{err}");
    assert_eq!(latest_step(&r), Some(2));
    assert!(checkpoint_bytes(&r) == kept);
    assert_eq!(leftovers(&r), Vec::<PathBuf>::new());

    // An export over the limit leaves the previous model as it was.
    let onnx = d.join("g.onnx");
    std::fs::write(&onnx, b"previous").unwrap();
    let o = run_with_file_limit(
        "export",
        &[
            "onnx",
            "--checkpoint",
            r.to_str().unwrap(),
            "--out",
            onnx.to_str().unwrap(),
        ],
        d,
        4096,
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("File too large"), "{err}");
    assert_eq!(std::fs::read(&onnx).unwrap(), b"previous");
    assert_eq!(leftovers(d), Vec::<PathBuf>::new());
}

#[test]
fn a_full_disk_is_a_write_error_and_keeps_the_previous_files() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let r = d.join("run");
    tiny_run(&r, 2);
    // A small tmpfs, when this process may mount one (root in a privileged environment).
    let disk = d.join("disk");
    std::fs::create_dir(&disk).unwrap();
    let mounted = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=64k",
            "tmpfs",
            disk.to_str().unwrap(),
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!(
            "skipped the tmpfs part: cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN); /dev/full cases of the bad-input table cover the error path"
        );
        return;
    }
    let unmount = |p: &Path| {
        let _ = Command::new("umount").arg(p).status();
    };
    let onnx = disk.join("g.onnx");
    std::fs::write(&onnx, b"previous").unwrap();
    // Fill the disk, leaving too little for the model.
    let filler = disk.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 60 * 1024]);
    let o = run(
        "export",
        &[
            "onnx",
            "--checkpoint",
            r.to_str().unwrap(),
            "--out",
            onnx.to_str().unwrap(),
        ],
        d,
    );
    let err = stderr(&o);
    let previous = std::fs::read(&onnx).unwrap();
    let left = leftovers(&disk);
    unmount(&disk);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(err.matches("No space left on device").count(), 1, "{err}");
    assert_eq!(previous, b"previous");
    assert_eq!(left, Vec::<PathBuf>::new());
}
