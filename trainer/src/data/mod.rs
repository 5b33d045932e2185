//! Data sets and the background batch loader.
//!
//! Every format is decoded into one [`Dataset`]: plain `f32` images, CHW row-major, values in
//! [-1, 1], all of the same `channels` (1 or 3) and `size`×`size`. Nothing here depends on candle;
//! the training loop turns a batch into a tensor.
//!
//! Formats ([`Format`]):
//! - `folder`: a directory of image files (png, jpg/jpeg, gif, bmp, tif/tiff, webp), walked
//!   recursively; alpha is composited onto white; the shorter side is resized to `size` and the
//!   centre cropped. Files that cannot be decoded are skipped and counted.
//! - `mnist`: the original IDX files (gzipped or not).
//! - `cifar10`: the CIFAR-10 binary version (`data_batch_*.bin`, `test_batch.bin`).
//! - `auto`: picks one of the above from what the path holds.
//!
//! Conversions shared by all formats: RGB → grey is luma `0.299 R + 0.587 G + 0.114 B`, grey → RGB
//! replicates the value; pixel `v ∈ [0, 1]` maps to `2v − 1` (so 0 is −1, black).

mod cifar;
mod folder;
mod loader;
mod mnist;
mod pixels;

pub use loader::{epoch_permutation, stream_indices, Loader};
pub(crate) use pixels::*;

use anyhow::{bail, Context, Result};
use std::path::Path;

/// Data set format selection.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Decide from the path: MNIST IDX files, CIFAR-10 `.bin` batches, else a folder of images.
    Auto,
    /// A directory of image files, searched recursively.
    Folder,
    /// MNIST IDX files (`*-images-idx3-ubyte[.gz]`), a file or the directory holding it.
    Mnist,
    /// CIFAR-10 binary batches (`data_batch_*.bin`), a file or the directory holding them.
    Cifar10,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Auto => "auto",
            Format::Folder => "folder",
            Format::Mnist => "mnist",
            Format::Cifar10 => "cifar10",
        })
    }
}

/// A decoded data set, in memory.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// `len · channels · size · size` values, each image CHW row-major, values in [-1, 1].
    pub images: Vec<f32>,
    pub len: usize,
    pub channels: usize,
    pub size: usize,
    /// One line: format, path, image count, e.g. "MNIST IDX train-images-idx3-ubyte.gz (9000
    /// images, 28×28 → 32×32, 1 channel)".
    pub description: String,
    /// Files or records that could not be decoded and were skipped.
    pub skipped: usize,
    /// Class label of each image, where the format carries them (MNIST with its labels file).
    pub labels: Option<Vec<u8>>,
}

impl Dataset {
    /// Values per image: `channels · size · size`.
    pub fn sample_len(&self) -> usize {
        self.channels * self.size * self.size
    }

    /// Image `i` (CHW, values in [-1, 1]). Panics if `i >= len`.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.sample_len();
        &self.images[i * n..(i + 1) * n]
    }
}

/// Loads `path` (file or directory) in `format`, converted to `channels` (1 or 3) and resized to
/// `size`×`size`.
pub fn load(path: &Path, format: Format, channels: usize, size: usize) -> Result<Dataset> {
    check_shape(channels, size)?;
    match std::fs::metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("data path {} does not exist", path.display())
        }
        Err(e) => bail!("cannot read data path {}: {e}", path.display()),
    }
    let format = match format {
        Format::Auto => detect(path)?,
        f => f,
    };
    match format {
        Format::Folder => folder::load(path, channels, size),
        Format::Mnist => mnist::load(path, channels, size),
        Format::Cifar10 => cifar::load(path, channels, size),
        Format::Auto => unreachable!("detect never answers Auto"),
    }
}

/// The MNIST subset embedded in the binary (`trainer/data/mnist-10k/train-images-idx3-ubyte.gz`
/// and its labels: 9000 digits), used when no `--data` is given.
pub fn embedded_mnist(channels: usize, size: usize) -> Result<Dataset> {
    check_shape(channels, size)?;
    mnist::embedded(channels, size)
}

/// The MNIST test digits embedded in the binary (`t10k-images-idx3-ubyte.gz` and its labels:
/// 1000 digits, none of them in [`embedded_mnist`]): the held-out set of `trainer eval`.
pub fn embedded_mnist_test(channels: usize, size: usize) -> Result<Dataset> {
    check_shape(channels, size)?;
    mnist::embedded_test(channels, size)
}

/// Which format `auto` picks for `path` (which must exist).
pub fn detect(path: &Path) -> Result<Format> {
    let accepted = "accepted: a directory of images (png, jpg, gif, bmp, tiff, webp), MNIST IDX \
                    files (*-images-idx3-ubyte[.gz], or their directory) or CIFAR-10 binary \
                    batches (data_batch_*.bin / test_batch.bin, or their directory); or choose \
                    the format with --format";
    if path.is_dir() {
        let names = dir_file_names(path)?;
        if names.iter().any(|n| mnist::is_images_name(n)) {
            return Ok(Format::Mnist);
        }
        if names.iter().any(|n| cifar::is_batch_name(n)) {
            return Ok(Format::Cifar10);
        }
        return Ok(Format::Folder);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if mnist::is_idx3_name(&name) {
        return Ok(Format::Mnist);
    }
    if name.to_ascii_lowercase().ends_with(".bin") {
        return Ok(Format::Cifar10);
    }
    bail!(
        "cannot tell the format of data file {}: {accepted}",
        path.display()
    )
}

/// Names of the plain files (or links to them) directly inside `dir`.
pub(crate) fn dir_file_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list data directory {}", dir.display()))?;
    for entry in entries {
        let entry =
            entry.with_context(|| format!("cannot list data directory {}", dir.display()))?;
        if entry.path().is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn check_shape(channels: usize, size: usize) -> Result<()> {
    if channels != 1 && channels != 3 {
        bail!("images must have 1 or 3 channels, not {channels}");
    }
    if size == 0 || size > 4096 {
        bail!("image size must be between 1 and 4096 pixels, not {size}");
    }
    Ok(())
}

/// "1 channel" / "3 channels".
pub(crate) fn channels_text(channels: usize) -> String {
    if channels == 1 {
        "1 channel".to_string()
    } else {
        format!("{channels} channels")
    }
}

/// "28×28" or "28×28 → 32×32" when resized.
pub(crate) fn resize_text(w: usize, h: usize, size: usize) -> String {
    if w == size && h == size {
        format!("{w}×{h}")
    } else {
        format!("{w}×{h} → {size}×{size}")
    }
}

/// The zeroed buffer of `n` decoded samples of `sample_len` values, after checking that it fits
/// in the memory available (a data set's header can claim any count).
pub(crate) fn image_buffer(n: usize, sample_len: usize) -> Result<Vec<f32>> {
    use wgan_models::limits;
    let what = format!("the decoded data set ({n} images of {sample_len} values)");
    let values = limits::count(&what, &[n, sample_len])?;
    limits::check_memory(
        &what,
        limits::bytes(&what, values, 4)?,
        "use fewer images or a smaller preset",
    )?;
    Ok(vec![0f32; values])
}

#[cfg(test)]
pub(crate) mod test_util {
    use std::io::Write;
    use std::path::Path;

    /// An IDX images file: `n` images of `rows`×`cols`, pixel `(i, p)` = `pixel(i, p)`.
    pub fn idx_images(
        n: usize,
        rows: usize,
        cols: usize,
        pixel: impl Fn(usize, usize) -> u8,
    ) -> Vec<u8> {
        let mut v = vec![0, 0, 8, 3];
        for d in [n, rows, cols] {
            v.extend_from_slice(&(d as u32).to_be_bytes());
        }
        for i in 0..n {
            for p in 0..rows * cols {
                v.push(pixel(i, p));
            }
        }
        v
    }

    /// An IDX labels file with `n` labels.
    pub fn idx_labels(n: usize) -> Vec<u8> {
        let mut v = vec![0, 0, 8, 1];
        v.extend_from_slice(&(n as u32).to_be_bytes());
        v.extend((0..n).map(|i| (i % 10) as u8));
        v
    }

    pub fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    pub fn write(path: &Path, bytes: &[u8]) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, bytes).unwrap();
    }

    /// A small dataset whose image `i` is filled with `i as f32`.
    pub fn numbered(len: usize, channels: usize, size: usize) -> super::Dataset {
        let n = channels * size * size;
        super::Dataset {
            images: (0..len)
                .flat_map(|i| std::iter::repeat_n(i as f32, n))
                .collect(),
            len,
            channels,
            size,
            description: format!("{len} numbered images"),
            skipped: 0,
            labels: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    fn err(r: Result<Dataset>) -> String {
        match r {
            Ok(d) => panic!("expected an error, loaded {}", d.description),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn missing_path_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope");
        for f in [Format::Auto, Format::Folder, Format::Mnist, Format::Cifar10] {
            let e = err(load(&p, f, 1, 8));
            assert!(e.contains("does not exist") && e.contains("nope"), "{e}");
        }
    }

    #[test]
    fn bad_channels_and_size_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(err(load(dir.path(), Format::Folder, 2, 8)).contains("1 or 3 channels"));
        assert!(err(load(dir.path(), Format::Folder, 3, 0)).contains("image size"));
        assert!(embedded_mnist(4, 32).is_err());
    }

    #[test]
    fn auto_detects_each_format() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mnist_dir = d.join("m");
        write(&mnist_dir.join("train-images-idx3-ubyte.gz"), b"x");
        let cifar_dir = d.join("c");
        write(&cifar_dir.join("data_batch_1.bin"), b"x");
        let test_only = d.join("t");
        write(&test_only.join("test_batch.bin"), b"x");
        let img_dir = d.join("i");
        write(&img_dir.join("a.png"), b"x");
        write(&d.join("f/t10k-images-idx3-ubyte"), b"x");
        write(&d.join("f/batch.bin"), b"x");
        write(&d.join("f/picture.png"), b"x");
        assert_eq!(detect(&mnist_dir).unwrap(), Format::Mnist);
        assert_eq!(detect(&cifar_dir).unwrap(), Format::Cifar10);
        assert_eq!(detect(&test_only).unwrap(), Format::Cifar10);
        assert_eq!(detect(&img_dir).unwrap(), Format::Folder);
        assert_eq!(
            detect(&d.join("f/t10k-images-idx3-ubyte")).unwrap(),
            Format::Mnist
        );
        assert_eq!(detect(&d.join("f/batch.bin")).unwrap(), Format::Cifar10);
        let e = format!("{:#}", detect(&d.join("f/picture.png")).unwrap_err());
        assert!(e.contains("picture.png") && e.contains("accepted"), "{e}");
    }

    #[test]
    fn format_names_match_cli_and_json() {
        use clap::ValueEnum;
        for f in Format::value_variants() {
            let cli = f.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(cli, f.to_string());
            assert_eq!(serde_json::to_string(f).unwrap(), format!("\"{cli}\""));
            let back: Format = serde_json::from_str(&format!("\"{cli}\"")).unwrap();
            assert_eq!(back, *f);
        }
    }
}
