//! MNIST in its original IDX format, gzipped or not.
//!
//! Images file: big-endian `u32` magic `0x00000803`, then count, rows, cols, then
//! `count · rows · cols` bytes (0 = background). Labels file: magic `0x00000801`, count, then
//! `count` bytes. Pixel `v` maps to `v / 127.5 − 1`: background −1 (black), digits +1 (white).

use super::decode::planes_to_sample;
use super::dir_file_names;
use super::idx::{be_u32, maybe_gunzip, read_file};
use super::prepared::{SourceFile, SourceRecord};
use super::source::Unreadable;
use super::source::{channels_text, resize_text, Decoder, Source};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

static EMBEDDED_IMAGES: &[u8] = include_bytes!("../../data/mnist-10k/train-images-idx3-ubyte.gz");
static EMBEDDED_LABELS: &[u8] = include_bytes!("../../data/mnist-10k/train-labels-idx1-ubyte.gz");
const EMBEDDED_NAME: &str = "train-images-idx3-ubyte.gz";
static EMBEDDED_TEST_IMAGES: &[u8] =
    include_bytes!("../../data/mnist-10k/t10k-images-idx3-ubyte.gz");
static EMBEDDED_TEST_LABELS: &[u8] =
    include_bytes!("../../data/mnist-10k/t10k-labels-idx1-ubyte.gz");
const EMBEDDED_TEST_NAME: &str = "t10k-images-idx3-ubyte.gz";

/// `*idx3-ubyte` or `*idx3-ubyte.gz` (also the `train-images.idx3-ubyte` spelling).
pub(crate) fn is_idx3_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    let n = n.strip_suffix(".gz").unwrap_or(&n);
    n.ends_with("idx3-ubyte")
}

/// An images file name inside a directory: `*-images-idx3-ubyte[.gz]` (or `.idx3-ubyte`).
pub(crate) fn is_images_name(name: &str) -> bool {
    is_idx3_name(name) && name.to_ascii_lowercase().contains("images")
}

/// The images file to use in `dir`: the train file if present, else the only images file.
fn find_images_file(dir: &Path) -> Result<PathBuf> {
    let names: Vec<String> = dir_file_names(dir)?
        .into_iter()
        .filter(|n| is_images_name(n))
        .collect();
    if let Some(train) = names
        .iter()
        .find(|n| n.to_ascii_lowercase().starts_with("train"))
    {
        return Ok(dir.join(train));
    }
    match names.as_slice() {
        [] => bail!(
            "directory {} holds no MNIST images file (*-images-idx3-ubyte or \
             *-images-idx3-ubyte.gz): pass the directory that holds it, or the file itself",
            dir.display()
        ),
        [one] => Ok(dir.join(one)),
        many => bail!(
            "directory {} holds several MNIST images files ({}) and none is the train file: \
             pass the one to use as --data",
            dir.display(),
            many.join(", ")
        ),
    }
}

/// The labels file matching `images` (`…-images-idx3-ubyte[.gz]` → `…-labels-idx1-ubyte[.gz]`).
fn labels_file_for(images: &Path) -> Option<PathBuf> {
    let name = images.file_name()?.to_str()?;
    let stem = name.strip_suffix(".gz").unwrap_or(name);
    let base = stem
        .strip_suffix("images-idx3-ubyte")
        .map(|b| format!("{b}labels-idx1-ubyte"))
        .or_else(|| {
            stem.strip_suffix("images.idx3-ubyte")
                .map(|b| format!("{b}labels.idx1-ubyte"))
        })?;
    [format!("{base}.gz"), base]
        .into_iter()
        .map(|n| images.with_file_name(n))
        .find(|p| p.is_file())
}

/// Validated header and pixels of an IDX images file: (count, rows, cols, pixels).
fn parse_images<'a>(b: &'a [u8], name: &str) -> Result<(usize, usize, usize, &'a [u8])> {
    if b.len() < 4 {
        bail!(
            "{name} is not an MNIST images file: it has {} bytes, fewer than the 16-byte IDX header",
            b.len()
        );
    }
    let magic = be_u32(b, 0);
    if magic != IMAGES_MAGIC {
        let hint = if magic == LABELS_MAGIC {
            " (that is a labels file: pass the *-images-idx3-ubyte file)"
        } else {
            ""
        };
        bail!(
            "{name} is not an MNIST images file: magic number is 0x{magic:08x}, expected \
             0x{IMAGES_MAGIC:08x} (unsigned bytes, 3 dimensions){hint}"
        );
    }
    if b.len() < 16 {
        bail!(
            "{name} is truncated: it has {} bytes, fewer than the 16-byte IDX header",
            b.len()
        );
    }
    let (n, rows, cols) = (
        be_u32(b, 1) as usize,
        be_u32(b, 2) as usize,
        be_u32(b, 3) as usize,
    );
    if n == 0 || rows == 0 || cols == 0 {
        bail!("{name} holds no pixels: header says {n} images of {rows}×{cols}");
    }
    let pixels = &b[16..];
    let want = n.checked_mul(rows).and_then(|v| v.checked_mul(cols));
    match want {
        Some(want) if want == pixels.len() => Ok((n, rows, cols, pixels)),
        Some(want) if want > pixels.len() => bail!(
            "{name} is truncated: header says {n} images of {rows}×{cols} ({want} bytes), file has \
             {} after its 16-byte header",
            pixels.len()
        ),
        Some(want) => bail!(
            "{name} is not a valid MNIST images file: header says {n} images of {rows}×{cols} \
             ({want} bytes), but the file has {} bytes after its 16-byte header",
            pixels.len()
        ),
        None => bail!(
            "{name} is not a valid MNIST images file: header says {n} images of {rows}×{cols}"
        ),
    }
}

/// Validates an IDX labels file against the image count.
fn check_labels(b: &[u8], name: &str, images: usize) -> Result<()> {
    if b.len() < 8 {
        bail!(
            "{name} is not an MNIST labels file: it has {} bytes, fewer than the 8-byte header",
            b.len()
        );
    }
    let magic = be_u32(b, 0);
    if magic != LABELS_MAGIC {
        bail!(
            "{name} is not an MNIST labels file: magic number is 0x{magic:08x}, expected \
             0x{LABELS_MAGIC:08x}"
        );
    }
    let n = be_u32(b, 1) as usize;
    if n != images {
        bail!("{name} has {n} labels but the images file has {images} images: they do not belong together");
    }
    if b.len() - 8 != n {
        bail!("{name} is truncated or damaged: header says {n} labels, file has {} bytes after its header", b.len() - 8);
    }
    Ok(())
}

/// MNIST digits from IDX bytes: every record a grey `rows`×`cols` image.
pub(crate) struct IdxSource {
    pixels: Vec<u8>,
    n: usize,
    rows: usize,
    cols: usize,
    labels: Option<Vec<u8>>,
    /// The images file's name in item names (`name#index`) and descriptions.
    name: String,
    /// How the description shows the source.
    shown: String,
    /// `mnist` or `embedded`.
    kind: &'static str,
    path: PathBuf,
    files: Vec<SourceFile>,
}

impl IdxSource {
    /// Parses an images file's bytes and, when given, its labels file's.
    fn parse(images: Vec<u8>, labels: Option<(Vec<u8>, String)>, name: &str) -> Result<Self> {
        let (n, rows, cols, _) = parse_images(&images, name)?;
        if let Some((l, lname)) = &labels {
            check_labels(l, lname, n)?;
        }
        let mut pixels = images;
        pixels.drain(..16);
        Ok(Self {
            pixels,
            n,
            rows,
            cols,
            labels: labels.map(|(mut l, _)| {
                l.drain(..8);
                l
            }),
            name: String::new(),
            shown: String::new(),
            kind: "mnist",
            path: PathBuf::new(),
            files: Vec::new(),
        })
    }

    /// The MNIST images file at `path` (or the train file of the directory `path`), with its
    /// labels file when there is one beside it.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let images_path = if path.is_dir() {
            find_images_file(path)?
        } else {
            path.to_path_buf()
        };
        let images_path = std::fs::canonicalize(&images_path).unwrap_or(images_path);
        let shown = images_path.display().to_string();
        let images = read_file(&images_path)?;
        let labels_path = labels_file_for(&images_path);
        let labels = match &labels_path {
            Some(p) => Some((read_file(p)?, p.display().to_string())),
            None => None,
        };
        let mut source = Self::parse(images, labels, &shown)?;
        let file_name = |p: &Path| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        };
        source.name = file_name(&images_path);
        source.shown = shown;
        source.files = std::iter::once(&images_path)
            .chain(labels_path.as_ref())
            .map(|p| SourceFile::of(p, file_name(p)))
            .collect::<Result<_>>()?;
        source.files.sort_by(|a, b| a.name.cmp(&b.name));
        source.path = images_path;
        Ok(source)
    }

    /// One split of the digits embedded in the binary (`train`: 9000 digits, `t10k`: 1000).
    pub(crate) fn embedded(split: Split) -> Result<Self> {
        let (images, labels, file, described) = match split {
            Split::Train => (
                EMBEDDED_IMAGES,
                EMBEDDED_LABELS,
                EMBEDDED_NAME,
                "embedded 9000-digit subset",
            ),
            Split::Test => (
                EMBEDDED_TEST_IMAGES,
                EMBEDDED_TEST_LABELS,
                EMBEDDED_TEST_NAME,
                "embedded 1000-digit test subset",
            ),
        };
        let images = maybe_gunzip(images, &format!("embedded {file}"))?;
        let labels_name = format!("embedded {}", file.replace("images-idx3", "labels-idx1"));
        let labels = maybe_gunzip(labels, &labels_name)?;
        let mut source = Self::parse(images, Some((labels, labels_name)), file)?;
        source.name = file.to_string();
        source.shown = format!("{file} ({described})");
        source.kind = "embedded";
        Ok(source)
    }
}

/// Which embedded split.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Split {
    Train,
    Test,
}

struct IdxDecoder<'a>(&'a IdxSource);

impl Decoder for IdxDecoder<'_> {
    fn decode(
        &mut self,
        i: usize,
        channels: usize,
        size: usize,
        out: &mut [u8],
    ) -> Result<(), Unreadable> {
        let s = self.0;
        let plane = s.rows * s.cols;
        let px = &s.pixels[i * plane..(i + 1) * plane];
        planes_to_sample(s.cols, s.rows, [px, px, px], channels, size, out);
        Ok(())
    }
}

impl Source for IdxSource {
    fn len(&self) -> usize {
        self.n
    }

    fn name(&self, i: usize) -> String {
        format!("{}#{i}", self.name)
    }

    fn decoder(&self) -> Result<Box<dyn Decoder + '_>> {
        Ok(Box::new(IdxDecoder(self)))
    }

    fn labels(&self) -> Option<&[u8]> {
        self.labels.as_deref()
    }

    fn record(&self) -> SourceRecord {
        SourceRecord {
            kind: self.kind.into(),
            path: self.path.clone(),
            files: self.files.clone(),
        }
    }

    fn describe(&self, count: usize, channels: usize, size: usize) -> String {
        format!(
            "MNIST IDX {} ({count} images, {}, {})",
            self.shown,
            resize_text(self.cols, self.rows, size),
            channels_text(channels)
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::data::test_util::*;
    use crate::data::{embedded_mnist, load, Format};

    fn err(r: anyhow::Result<crate::data::Dataset>) -> String {
        match r {
            Ok(d) => panic!("expected an error, loaded {}", d.description),
            Err(e) => format!("{e:#}"),
        }
    }

    /// Pixel `p` of image `i`: a value that identifies both.
    fn px(i: usize, p: usize) -> u8 {
        ((i * 31 + p * 7) % 256) as u8
    }

    #[test]
    fn plain_and_gzipped_idx_files_load_identically() {
        let dir = tempfile::tempdir().unwrap();
        let raw = idx_images(5, 4, 4, px);
        write(&dir.path().join("plain/train-images-idx3-ubyte"), &raw);
        write(
            &dir.path().join("plain/train-labels-idx1-ubyte"),
            &idx_labels(5),
        );
        write(
            &dir.path().join("gz/train-images-idx3-ubyte.gz"),
            &gzip(&raw),
        );
        write(
            &dir.path().join("gz/train-labels-idx1-ubyte.gz"),
            &gzip(&idx_labels(5)),
        );
        let a = load(&dir.path().join("plain"), Format::Auto, 1, 4).unwrap();
        let b = load(&dir.path().join("gz"), Format::Mnist, 1, 4).unwrap();
        let c = load(
            &dir.path().join("gz/train-images-idx3-ubyte.gz"),
            Format::Auto,
            1,
            4,
        )
        .unwrap();
        assert_eq!((a.len, a.channels, a.size, a.skipped), (5, 1, 4, 0));
        assert_eq!(a.images().unwrap(), b.images().unwrap());
        assert_eq!(a.images().unwrap(), c.images().unwrap());
        for i in 0..5 {
            for p in 0..16 {
                assert_eq!(a.image(i).unwrap()[p], px(i, p) as f32 / 127.5 - 1.0);
            }
        }
        assert!(a.description.starts_with("MNIST IDX") && a.description.contains("5 images"));
        // Three channels replicate grey.
        let rgb = load(&dir.path().join("plain"), Format::Mnist, 3, 4).unwrap();
        let im = rgb.image(2).unwrap();
        assert_eq!(&im[..16], &im[16..32]);
        assert_eq!(&im[..16], &im[32..]);
        assert_eq!(&im[..16], a.image(2).unwrap());
    }

    #[test]
    fn directory_picks_train_or_the_only_images_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(
            &d.join("t10k-images-idx3-ubyte"),
            &idx_images(2, 3, 3, |_, _| 0),
        );
        let only = load(d, Format::Auto, 1, 3).unwrap();
        assert_eq!(only.len, 2);
        write(
            &d.join("train-images-idx3-ubyte.gz"),
            &gzip(&idx_images(7, 3, 3, |_, _| 255)),
        );
        let train = load(d, Format::Auto, 1, 3).unwrap();
        assert_eq!(train.len, 7);
        assert!(train.images().unwrap().iter().all(|&v| v == 1.0));
        // No images file in a directory, explicit mnist format.
        let empty = tempfile::tempdir().unwrap();
        write(&empty.path().join("readme.txt"), b"x");
        assert!(err(load(empty.path(), Format::Mnist, 1, 3)).contains("holds no MNIST images file"));
    }

    #[test]
    fn truncated_and_wrong_magic_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut raw = idx_images(3, 28, 28, px);
        raw.truncate(16 + 1234);
        write(&d.join("a/train-images-idx3-ubyte"), &raw);
        let e = err(load(&d.join("a"), Format::Auto, 1, 28));
        assert!(
            e.contains("train-images-idx3-ubyte is truncated")
                && e.contains("3 images of 28×28 (2352 bytes)")
                && e.contains("1234"),
            "{e}"
        );
        // The same, gzipped.
        write(&d.join("b/train-images-idx3-ubyte.gz"), &gzip(&raw));
        assert!(err(load(&d.join("b"), Format::Auto, 1, 28)).contains("is truncated"));
        // A truncated gzip stream.
        let gz = gzip(&idx_images(3, 28, 28, px));
        write(&d.join("c/train-images-idx3-ubyte.gz"), &gz[..gz.len() / 2]);
        let e = err(load(&d.join("c"), Format::Auto, 1, 28));
        assert!(
            e.contains("not a valid gzip file") && e.contains("train-images-idx3-ubyte.gz"),
            "{e}"
        );
        // Wrong magic: a labels file passed as images.
        write(&d.join("d/train-images-idx3-ubyte"), &idx_labels(3));
        let e = err(load(
            &d.join("d/train-images-idx3-ubyte"),
            Format::Mnist,
            1,
            28,
        ));
        assert!(
            e.contains("magic number is 0x00000801") && e.contains("labels file"),
            "{e}"
        );
        // Too short for a header.
        write(&d.join("e/x-images-idx3-ubyte"), b"\0\0\x08\x03\0\0");
        assert!(err(load(&d.join("e"), Format::Auto, 1, 28)).contains("16-byte IDX header"));
        // Extra bytes after the pixels.
        let mut long = idx_images(1, 2, 2, px);
        long.push(0);
        write(&d.join("f/train-images-idx3-ubyte"), &long);
        assert!(
            err(load(&d.join("f"), Format::Auto, 1, 2)).contains("longer than its IDX header says")
        );
    }

    #[test]
    fn labels_are_validated_when_present() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(&d.join("train-images-idx3-ubyte"), &idx_images(4, 2, 2, px));
        write(&d.join("train-labels-idx1-ubyte.gz"), &gzip(&idx_labels(5)));
        let e = err(load(d, Format::Auto, 1, 2));
        assert!(
            e.contains("train-labels-idx1-ubyte.gz has 5 labels") && e.contains("4 images"),
            "{e}"
        );
        write(
            &d.join("train-labels-idx1-ubyte.gz"),
            &gzip(&idx_images(4, 2, 2, px)),
        );
        let e = err(load(d, Format::Auto, 1, 2));
        assert!(
            e.contains("not an MNIST labels file") && e.contains("0x00000803"),
            "{e}"
        );
        write(&d.join("train-labels-idx1-ubyte.gz"), &gzip(&idx_labels(4)));
        assert_eq!(load(d, Format::Auto, 1, 2).unwrap().len, 4);
    }

    #[test]
    fn resize_28_to_32_keeps_range_and_background() {
        let dir = tempfile::tempdir().unwrap();
        // A white 8×8 square in the middle of a black 28×28 image.
        let raw = idx_images(2, 28, 28, |_, p| {
            let (y, x) = (p / 28, p % 28);
            if (10..18).contains(&x) && (10..18).contains(&y) {
                255
            } else {
                0
            }
        });
        write(&dir.path().join("train-images-idx3-ubyte"), &raw);
        let d = load(dir.path(), Format::Mnist, 1, 32).unwrap();
        assert_eq!((d.len, d.size), (2, 32));
        assert!(d.description.contains("28×28 → 32×32"), "{}", d.description);
        let im = d.image(0).unwrap();
        assert_eq!(im[0], -1.0);
        assert!(im[16 * 32 + 16] > 0.999, "{}", im[16 * 32 + 16]);
        assert!(im.iter().all(|v| (-1.0..=1.0).contains(v)));
    }

    #[test]
    fn embedded_mnist_is_the_9000_digit_subset() {
        let d = embedded_mnist(1, 32).unwrap();
        assert_eq!((d.len, d.channels, d.size, d.skipped), (9000, 1, 32, 0));
        assert_eq!(d.images().unwrap().len(), 9000 * 32 * 32);
        assert!(d.images().unwrap().iter().all(|v| (-1.0..=1.0).contains(v)));
        let mean = d.images().unwrap().iter().map(|&v| v as f64).sum::<f64>()
            / d.images().unwrap().len() as f64;
        assert!((-0.9..-0.7).contains(&mean), "mean {mean}");
        assert!(d.description.contains("9000 images") && d.description.contains("28×28 → 32×32"));
        // Digits reach full white somewhere; the corners are background.
        assert!(d.images().unwrap().iter().any(|&v| v > 0.99));
        assert_eq!(d.image(0).unwrap()[0], -1.0);
        let d28 = embedded_mnist(3, 28).unwrap();
        assert_eq!(d28.images().unwrap().len(), 9000 * 3 * 28 * 28);
    }
}
