//! Temporary folders, FIFOs and private copies of device nodes, for the tests of the output
//! policy (atomic files; devices and FIFOs written in place).

use std::path::{Path, PathBuf};

/// A new, empty folder under the system's temporary directory (the test removes it).
pub fn tempdir() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "wgan-test-{}-{}",
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

/// Whether `path` is (still) a character device, not followed through links.
#[cfg(unix)]
pub fn is_char_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device())
}

/// A private copy of the character device `real` (e.g. `/dev/full`) in `dir`, made with
/// `mknod` where that is allowed (as root, on a file system without `nodev`), so a broken
/// writer replaces the copy rather than the system's node. Otherwise `real` itself, which a
/// writer without root's rights cannot replace.
#[cfg(unix)]
pub fn device_like(dir: &Path, real: &str) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata(real).unwrap().rdev();
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    let copy = dir.join(Path::new(real).file_name().unwrap());
    let made = std::process::Command::new("mknod")
        .arg(&copy)
        .args(["c", &major.to_string(), &minor.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if made && std::fs::OpenOptions::new().write(true).open(&copy).is_ok() {
        copy
    } else {
        let _ = std::fs::remove_file(&copy);
        PathBuf::from(real)
    }
}
