//! Data sets: every source is decoded once into 8-bit images and then read by index.
//!
//! Sources ([`Format`]), each a [`source::Source`]:
//! - `folder`: a directory of image files (png, jpg/jpeg, gif, bmp, tif/tiff, webp), walked
//!   recursively;
//! - `zip`: a zip archive of image files (CelebA's `img_align_celeba.zip`);
//! - `mnist`: the original IDX files (gzipped or not);
//! - `cifar10`: the CIFAR-10 binary version (`data_batch_*.bin`, `test_batch.bin`);
//! - `prepared`: a file written by `trainer prepare` ([`prepared`]), already decoded;
//! - `auto`: picks one of the above from what the path holds.
//!
//! Every image goes through [`decode`]: alpha onto white, the shorter side resized to the
//! image size and the centre cropped, converted to 1 or 3 channels, rounded to 8 bits.
//! Files that cannot be decoded (or claim absurd sizes) are skipped, counted and named.
//!
//! Decoded images are kept as bytes ([`Dataset`]): in memory for small sets, in a prepared
//! file for anything else ([`prepare_file`]), read image by image with positioned reads, so
//! that a data set larger than RAM trains in bounded memory. Values leave as `2v/255 − 1` in
//! [-1, 1] (0 is −1, black). Nothing here depends on candle.

mod archive;
mod cifar;
pub mod decode;
mod folder;
mod idx;
mod loader;
mod mnist;
mod prepare;
pub mod prepared;
mod sidecar;
pub mod source;
pub mod split;
mod store;
#[cfg(test)]
pub(crate) mod test_util;

pub use loader::{stream_indices, stream_position, Loader};
pub use prepared::{Fingerprint, PreparedFile, Sidecar};
pub use store::Dataset;

use anyhow::{bail, Context, Result};
use prepared::{PreparedWriter, SourceRecord};
use source::Source;
use std::path::Path;
use store::{Info, Store};

/// Data set format selection.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Decide from the path: a prepared file, a zip archive, MNIST IDX files, CIFAR-10 `.bin`
    /// batches, else a folder of images.
    Auto,
    /// A directory of image files, searched recursively.
    Folder,
    /// A zip archive of image files.
    Zip,
    /// MNIST IDX files (`*-images-idx3-ubyte[.gz]`), a file or the directory holding it.
    Mnist,
    /// CIFAR-10 binary batches (`data_batch_*.bin`), a file or the directory holding them.
    Cifar10,
    /// A prepared data set written by `trainer prepare` (with its `.json` sidecar).
    Prepared,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Auto => "auto",
            Format::Folder => "folder",
            Format::Zip => "zip",
            Format::Mnist => "mnist",
            Format::Cifar10 => "cifar10",
            Format::Prepared => "prepared",
        })
    }
}

/// Threads that train and decode when none are asked for: rayon's default, every core unless
/// `RAYON_NUM_THREADS` says otherwise.
pub fn default_threads() -> usize {
    rayon::current_num_threads()
}

/// Checks that `path` exists, with a message naming it.
fn check_exists(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("data path {} does not exist", path.display())
        }
        Err(e) => bail!("cannot read data path {}: {e}", path.display()),
    }
}

/// The format `format` resolves to for `path` (`auto` detected).
pub fn resolve_format(path: &Path, format: Format) -> Result<Format> {
    check_exists(path)?;
    match format {
        Format::Auto => detect(path),
        f => Ok(f),
    }
}

/// Lists the source at `path` in `format` (not `prepared`), without decoding it.
pub fn open_source(path: &Path, format: Format) -> Result<Box<dyn Source>> {
    Ok(match resolve_format(path, format)? {
        Format::Folder => Box::new(folder::FolderSource::open(path)?),
        Format::Zip => Box::new(archive::ZipSource::open(path)?),
        Format::Mnist => Box::new(mnist::IdxSource::open(path)?),
        Format::Cifar10 => Box::new(cifar::CifarSource::open(path)?),
        Format::Prepared => bail!(
            "{} is already a prepared data set: train on it directly",
            path.display()
        ),
        Format::Auto => unreachable!("resolve_format never answers Auto"),
    })
}

/// What preparing a source produced.
pub struct PrepareReport {
    pub count: usize,
    /// The skipped items with the reason.
    pub skipped: Vec<prepared::Skipped>,
    pub fingerprint: Fingerprint,
    pub description: String,
}

impl PrepareReport {
    /// One warning line about the skipped items (`None` when none were), naming the first few.
    pub fn skipped_warning(&self) -> Option<String> {
        skipped_warning(&self.skipped, self.count + self.skipped.len())
    }
}

fn skipped_warning(skipped: &[prepared::Skipped], total: usize) -> Option<String> {
    if skipped.is_empty() {
        return None;
    }
    let first: Vec<String> = skipped
        .iter()
        .take(3)
        .map(|s| format!("{}: {}", s.name, s.reason))
        .collect();
    Some(format!(
        "skipped {} of {total} images that could not be decoded (first: {})",
        skipped.len(),
        first.join("; ")
    ))
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

/// The description of a prepared set: the source's line, with the skipped count.
fn description(
    source: &dyn Source,
    count: usize,
    skipped: usize,
    channels: usize,
    size: usize,
) -> String {
    let mut d = source.describe(count, channels, size);
    if skipped > 0 {
        // "… 1 channel)" → "… 1 channel, 3 undecodable files skipped)"
        d.pop();
        d.push_str(&format!(", {skipped} undecodable files skipped)"));
    }
    d
}

/// Decodes `source` into the prepared file `out` and its sidecar, on `threads` threads;
/// `progress` sees (items done, items). Fails when no image could be decoded.
pub fn prepare_file(
    source: &dyn Source,
    channels: usize,
    size: usize,
    threads: usize,
    out: &Path,
    mut progress: impl FnMut(usize, usize),
) -> Result<PrepareReport> {
    check_shape(channels, size)?;
    let mut writer = PreparedWriter::create(out, channels, size)?;
    let total = source.len();
    let decoded = prepare::decode_all(
        source,
        channels,
        size,
        threads,
        |s| writer.push(s),
        |done| progress(done, total),
    )?;
    let count = writer.count();
    if count == 0 {
        bail!(
            "{} contains no decodable images: all {total} failed to decode (first: {})",
            source.record().path.display(),
            decoded
                .skipped
                .first()
                .map_or(String::new(), |s| format!("{}: {}", s.name, s.reason))
        );
    }
    let (_, fingerprint) = writer.finish(decoded.labels.as_deref())?;
    let description = description(source, count, decoded.skipped.len(), channels, size);
    let sidecar = Sidecar::new(
        channels,
        size,
        count,
        decoded.labels.is_some(),
        fingerprint,
        description.clone(),
        source.record(),
        decoded.skipped.clone(),
        decoded.names,
    );
    sidecar.write(out)?;
    Ok(PrepareReport {
        count,
        skipped: decoded.skipped,
        fingerprint,
        description,
    })
}

/// Decodes `source` into memory (after checking that its bytes fit), on `threads` threads.
pub fn prepare_memory(
    source: &dyn Source,
    channels: usize,
    size: usize,
    threads: usize,
) -> Result<(Dataset, Vec<String>)> {
    use wgan_models::limits;
    check_shape(channels, size)?;
    let sample_len = channels * size * size;
    let what = format!(
        "the decoded data set ({} images of {sample_len} bytes)",
        source.len()
    );
    let bytes = limits::count(&what, &[source.len(), sample_len])?;
    limits::check_memory(
        &what,
        bytes as u64,
        "prepare it into a file with `trainer prepare` and pass that file",
    )?;
    let mut pixels = Vec::with_capacity(bytes);
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let decoded = prepare::decode_all(
        source,
        channels,
        size,
        threads,
        |s| {
            hasher.update(s);
            pixels.extend_from_slice(s);
            Ok(())
        },
        |_| {},
    )?;
    let count = pixels.len() / sample_len;
    if count == 0 {
        bail!(
            "{} contains no decodable images: all {} failed to decode (first: {})",
            source.record().path.display(),
            source.len(),
            decoded
                .skipped
                .first()
                .map_or(String::new(), |s| format!("{}: {}", s.name, s.reason))
        );
    }
    if let Some(w) = skipped_warning(&decoded.skipped, source.len()) {
        eprintln!("warning: {w}");
    }
    if let Some(l) = &decoded.labels {
        hasher.update(l);
    }
    pixels.shrink_to_fit();
    let description = description(source, count, decoded.skipped.len(), channels, size);
    let data = Dataset::new(
        Store::Memory(pixels),
        Info {
            count,
            channels,
            size,
            description,
            skipped: decoded.skipped.len(),
            labels: decoded.labels,
            fingerprint: Fingerprint(hasher.digest128()),
        },
    );
    Ok((data, decoded.names))
}

/// An opened prepared file as a data set, with its sidecar.
pub struct OpenedPrepared {
    pub data: Dataset,
    pub sidecar: Sidecar,
}

/// Opens the prepared file `path`: checks its layout and sidecar, verifies its content against
/// the fingerprint (positioned reads, flat memory), and that its images are
/// `channels` × `size`² when those are given.
pub fn open_prepared(path: &Path, shape: Option<(usize, usize)>) -> Result<OpenedPrepared> {
    let file = PreparedFile::open(path)?;
    let sidecar = file.check_sidecar()?;
    if let Some((channels, size)) = shape {
        if (file.channels, file.size) != (channels, size) {
            bail!(
                "{} holds images of {} channel(s) at {}×{}, and this run needs {channels} at {size}×{size}: train with --channels {} --image-size {} to use it as it is, or prepare the data again with --channels {channels} --image-size {size}",
                path.display(),
                file.channels,
                file.size,
                file.size,
                file.channels,
                file.size
            );
        }
    }
    file.verify()?;
    let (channels, size, count) = (file.channels, file.size, file.count);
    let labels = file.labels.clone();
    let fingerprint = file.fingerprint;
    let data = Dataset::new(
        Store::File(file),
        Info {
            count,
            channels,
            size,
            description: sidecar.description.clone(),
            skipped: sidecar.skipped.len(),
            labels,
            fingerprint,
        },
    );
    Ok(OpenedPrepared { data, sidecar })
}

/// Loads `path` in `format` as images of `channels` × `size`²: a prepared file is opened
/// (and must have that shape); any other source is decoded into memory.
pub fn load(path: &Path, format: Format, channels: usize, size: usize) -> Result<Dataset> {
    check_shape(channels, size)?;
    match resolve_format(path, format)? {
        Format::Prepared => Ok(open_prepared(path, Some((channels, size)))?.data),
        f => {
            let source = open_source(path, f)?;
            Ok(prepare_memory(source.as_ref(), channels, size, default_threads())?.0)
        }
    }
}

/// The MNIST subset embedded in the binary (`trainer/data/mnist-10k/train-images-idx3-ubyte.gz`
/// and its labels: 9000 digits), used when no `--data` is given, with each image's name.
pub fn embedded_mnist_named(channels: usize, size: usize) -> Result<(Dataset, Vec<String>)> {
    let source = mnist::IdxSource::embedded(mnist::Split::Train)?;
    prepare_memory(&source, channels, size, default_threads())
}

/// [`embedded_mnist_named`] without the names.
pub fn embedded_mnist(channels: usize, size: usize) -> Result<Dataset> {
    Ok(embedded_mnist_named(channels, size)?.0)
}

/// The MNIST test digits embedded in the binary (`t10k-images-idx3-ubyte.gz` and its labels:
/// 1000 digits, none of them in [`embedded_mnist`]): the held-out set of `trainer eval`.
pub fn embedded_mnist_test(channels: usize, size: usize) -> Result<Dataset> {
    let source = mnist::IdxSource::embedded(mnist::Split::Test)?;
    Ok(prepare_memory(&source, channels, size, default_threads())?.0)
}

/// What the sidecar of the embedded digits would record.
pub fn embedded_record() -> SourceRecord {
    SourceRecord {
        kind: "embedded".into(),
        path: Default::default(),
        files: Vec::new(),
    }
}

/// Which format `auto` picks for `path` (which must exist).
pub fn detect(path: &Path) -> Result<Format> {
    let accepted = "accepted: a prepared data set (trainer prepare), a directory of images \
                    (png, jpg, gif, bmp, tiff, webp), a zip archive of images, MNIST IDX \
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
    if prepared::is_prepared(path) {
        return Ok(Format::Prepared);
    }
    if archive::is_zip(path) {
        return Ok(Format::Zip);
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
