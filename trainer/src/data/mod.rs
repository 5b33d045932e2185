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

pub use loader::{epoch_permutation, stream_indices, Loader};

use anyhow::{bail, Context, Result};
use image::imageops::FilterType;
use image::{ImageBuffer, Rgb};
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

/// RGB image, values in [0, 1].
pub(crate) type RgbF = ImageBuffer<Rgb<f32>, Vec<f32>>;

/// The dimensions after resizing `w`×`h` so that the shorter side is `size`.
fn fitted_dims(w: u32, h: u32, size: u32) -> (u32, u32) {
    let scaled = |long: u32, short: u32| -> u32 {
        // Round to nearest; never below `size` so the crop fits.
        let v = (long as u64 * size as u64 + short as u64 / 2) / short as u64;
        (v.min(u32::MAX as u64) as u32).max(size)
    };
    if w <= h {
        (size, scaled(h, w))
    } else {
        (scaled(w, h), size)
    }
}

/// Resizes so that the shorter side is `size` (Triangle filter: bilinear when enlarging, an
/// area-like average when shrinking; it never overshoots), then crops the centre `size`×`size`.
///
/// Goes through `DynamicImage`'s non-generic methods so that the resampling runs as compiled
/// (optimised) in the `image` crate even in a debug build of this crate.
pub(crate) fn fit_square(img: RgbF, size: usize) -> RgbF {
    let (w, h) = img.dimensions();
    let s = size as u32;
    if (w, h) == (s, s) {
        return img;
    }
    let (nw, nh) = fitted_dims(w, h, s);
    let mut dynamic = image::DynamicImage::ImageRgb32F(img);
    if (nw, nh) != (w, h) {
        dynamic = dynamic.resize_exact(nw, nh, FilterType::Triangle);
    }
    if (nw, nh) != (s, s) {
        dynamic = dynamic.crop_imm((nw - s) / 2, (nh - s) / 2, s, s);
    }
    dynamic.into_rgb32f()
}

/// `v` clamped to [-1, 1] (NaN becomes −1). A macro rather than a call: the pixel loops below
/// must stay fast in unoptimised (debug) builds of this crate.
macro_rules! to_unit_range {
    ($v:expr) => {{
        let v: f32 = $v;
        if v > 1.0 {
            1.0
        } else if v >= -1.0 {
            v
        } else {
            -1.0
        }
    }};
}

/// The body of [`write_pixels`] and [`write_pixels_u8`]: plain indexed loops, no iterator or
/// method calls per pixel (they cost ~10× in debug builds).
macro_rules! write_pixels_body {
    ($src:expr, $div:expr, $stride:expr, $channels:expr, $out:expr) => {{
        let (src, stride, channels, out) = ($src, $stride, $channels, $out);
        let div: f32 = $div;
        let plane = src.len() / stride;
        assert!(
            (stride == 3 || stride == 4)
                && (channels == 1 || channels == 3)
                && out.len() == plane * channels,
            "write_pixels: bad buffer sizes"
        );
        let alpha = stride == 4;
        let (mut i, mut k) = (0usize, 0usize);
        while i < plane {
            let mut r = src[k] as f32 / div;
            let mut g = src[k + 1] as f32 / div;
            let mut b = src[k + 2] as f32 / div;
            if alpha {
                let a = src[k + 3] as f32 / div;
                let a = if a > 1.0 {
                    1.0
                } else if a >= 0.0 {
                    a
                } else {
                    0.0
                };
                let white = 1.0 - a;
                r = r * a + white;
                g = g * a + white;
                b = b * a + white;
            }
            if channels == 1 {
                // Luma 0.299 R + 0.587 G + 0.114 B, arranged to be exact for grey pixels.
                out[i] = to_unit_range!(2.0 * (g + 0.299 * (r - g) + 0.114 * (b - g)) - 1.0);
            } else {
                out[i] = to_unit_range!(2.0 * r - 1.0);
                out[plane + i] = to_unit_range!(2.0 * g - 1.0);
                out[2 * plane + i] = to_unit_range!(2.0 * b - 1.0);
            }
            i += 1;
            k += stride;
        }
    }};
}

/// Writes pixels (`stride` values each, in [0, 1]: RGB, or RGBA with straight alpha composited
/// onto white) into `out` as one CHW sample of `channels` planes with values `2v − 1` clamped to
/// [-1, 1]. One channel is the luma. `out.len()` must be `channels · pixels`.
pub(crate) fn write_pixels(src: &[f32], stride: usize, channels: usize, out: &mut [f32]) {
    write_pixels_body!(src, 1.0, stride, channels, out)
}

/// [`write_pixels`] for 8-bit pixels (`v / 255` in [0, 1]).
pub(crate) fn write_pixels_u8(src: &[u8], stride: usize, channels: usize, out: &mut [f32]) {
    write_pixels_body!(src, 255.0, stride, channels, out)
}

/// Straight-alpha RGBA (values in [0, 1]) composited onto white, as an RGB image.
pub(crate) fn composite_onto_white(w: u32, h: u32, rgba: &[f32]) -> RgbF {
    let n = rgba.len() / 4;
    let mut rgb = vec![0f32; n * 3];
    let (mut i, mut k) = (0usize, 0usize);
    while i < n * 3 {
        let a = rgba[k + 3];
        let a = if a > 1.0 {
            1.0
        } else if a >= 0.0 {
            a
        } else {
            0.0
        };
        let white = 1.0 - a;
        rgb[i] = rgba[k] * a + white;
        rgb[i + 1] = rgba[k + 1] * a + white;
        rgb[i + 2] = rgba[k + 2] * a + white;
        i += 3;
        k += 4;
    }
    RgbF::from_raw(w, h, rgb).expect("buffer has w·h·3 values")
}

/// Three 8-bit planes (or one grey plane used three times) interleaved into an RGB image with
/// values in [0, 1].
pub(crate) fn rgb_from_planes(w: u32, h: u32, r: &[u8], g: &[u8], b: &[u8]) -> RgbF {
    let n = r.len();
    let mut rgb = vec![0f32; n * 3];
    let mut i = 0usize;
    while i < n {
        rgb[3 * i] = r[i] as f32 / 255.0;
        rgb[3 * i + 1] = g[i] as f32 / 255.0;
        rgb[3 * i + 2] = b[i] as f32 / 255.0;
        i += 1;
    }
    RgbF::from_raw(w, h, rgb).expect("buffer has w·h·3 values")
}

/// Turns an RGB image (values in [0, 1], any size) into one sample: resized and centre-cropped
/// to `size`, converted to `channels`, written to `out`. (Grey after resizing equals resizing
/// the grey: both are linear and the Triangle filter does not overshoot.)
pub(crate) fn rgb_to_sample(img: RgbF, channels: usize, size: usize, out: &mut [f32]) {
    write_pixels(fit_square(img, size).as_raw(), 3, channels, out);
}

/// Fills `images` (samples of `sample_len` values) on all cores: `f(i, out)` writes sample `i`
/// into `out` and its answers are returned in sample order.
pub(crate) fn par_fill<R, F>(images: &mut [f32], sample_len: usize, f: F) -> Vec<R>
where
    R: Send,
    F: Fn(usize, &mut [f32]) -> R + Sync,
{
    use std::sync::Mutex;
    let n = images.len() / sample_len.max(1);
    let threads = std::thread::available_parallelism()
        .map(|t| t.get())
        .unwrap_or(1)
        .min(n.max(1));
    // Contiguous blocks in one queue shared by the workers; several blocks per worker so that
    // uneven costs (large and small files) even out.
    let per = n.div_ceil(threads * 8).max(1);
    let blocks: Mutex<Vec<(usize, &mut [f32])>> = Mutex::new(
        images
            .chunks_mut(per * sample_len)
            .enumerate()
            .map(|(k, c)| (k * per, c))
            .rev()
            .collect(),
    );
    let work = || {
        let mut answers = Vec::new();
        loop {
            let job = blocks.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some((first, block)) = job else { break };
            for (k, out) in block.chunks_mut(sample_len).enumerate() {
                answers.push((first + k, f(first + k, out)));
            }
        }
        answers
    };
    let parts: Vec<Vec<(usize, R)>> = if threads <= 1 {
        vec![work()]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads).map(|_| scope.spawn(work)).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    };
    let mut slots: Vec<Option<R>> = (0..n).map(|_| None).collect();
    for (i, r) in parts.into_iter().flatten() {
        slots[i] = Some(r);
    }
    slots
        .into_iter()
        .map(|r| r.expect("every sample was processed"))
        .collect()
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

    /// 40×20 RGB image: columns 0..10 red, 10..30 green, 30..40 blue.
    fn stripes(w: u32, h: u32) -> RgbF {
        RgbF::from_fn(w, h, |x, y| {
            let (x, _) = if w >= h { (x, y) } else { (y, x) };
            let long = w.max(h);
            if x < long / 4 {
                Rgb([1.0, 0.0, 0.0])
            } else if x < 3 * long / 4 {
                Rgb([0.0, 1.0, 0.0])
            } else {
                Rgb([0.0, 0.0, 1.0])
            }
        })
    }

    #[test]
    fn centre_crop_without_resize_is_exact() {
        // 20×10 → shorter side already 10: crop columns 5..15, all green.
        let mut out = vec![0f32; 3 * 10 * 10];
        rgb_to_sample(stripes(20, 10), 3, 10, &mut out);
        let (r, g, b) = (&out[..100], &out[100..200], &out[200..]);
        assert!(r.iter().all(|&v| v == -1.0));
        assert!(g.iter().all(|&v| v == 1.0));
        assert!(b.iter().all(|&v| v == -1.0));
        // Asymmetric pattern: a 12×8 image whose pixel value encodes its column; crop keeps 2..10.
        let img = RgbF::from_fn(12, 8, |x, _| Rgb([x as f32 / 11.0, 0.0, 0.0]));
        let mut out = vec![0f32; 3 * 64];
        rgb_to_sample(img, 3, 8, &mut out);
        for y in 0..8 {
            for x in 0..8 {
                let want = 2.0 * ((x + 2) as f32 / 11.0) - 1.0;
                assert!((out[y * 8 + x] - want).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn resize_then_centre_crop_of_wide_and_tall_images() {
        for (w, h) in [(40, 20), (20, 40)] {
            let mut out = vec![0f32; 3 * 10 * 10];
            rgb_to_sample(stripes(w, h), 3, 10, &mut out);
            let at = |c: usize, x: usize, y: usize| out[c * 100 + y * 10 + x];
            for y in 0..10 {
                for x in 0..10 {
                    let (along, _) = if w > h { (x, y) } else { (y, x) };
                    // Away from the cropped edges, pure green.
                    if (2..8).contains(&along) {
                        assert!((at(1, x, y) - 1.0).abs() < 1e-5, "{w}×{h} at {x},{y}");
                        assert!((at(0, x, y) + 1.0).abs() < 1e-5);
                        assert!((at(2, x, y) + 1.0).abs() < 1e-5);
                    }
                    // The red and blue stripes lie outside the crop: at most a little bleed.
                    assert!(
                        at(0, x, y) < -0.4 && at(2, x, y) < -0.4,
                        "{w}×{h} at {x},{y}"
                    );
                }
            }
        }
    }

    #[test]
    fn grey_conversion_uses_luma_and_rgb_keeps_colour() {
        let img = RgbF::from_pixel(4, 4, Rgb([1.0, 0.5, 0.0]));
        let mut grey = vec![0f32; 16];
        rgb_to_sample(img.clone(), 1, 4, &mut grey);
        let want = 2.0 * (0.299 + 0.587 * 0.5) - 1.0;
        assert!(grey.iter().all(|&v| (v - want).abs() < 1e-6), "{grey:?}");
        let mut rgb = vec![0f32; 48];
        rgb_to_sample(img, 3, 4, &mut rgb);
        assert!(rgb[..16].iter().all(|&v| v == 1.0));
        assert!(rgb[16..32].iter().all(|&v| v == 0.0));
        assert!(rgb[32..].iter().all(|&v| v == -1.0));
        // Grey stays exact; alpha is composited onto white.
        let mut grey = [0f32; 1];
        write_pixels(&[0.3, 0.3, 0.3], 3, 1, &mut grey);
        assert_eq!(
            grey[0],
            2.0 * 0.3f32 - 1.0,
            "a grey pixel keeps its exact value"
        );
        let mut out = vec![0f32; 6];
        write_pixels(&[0.25, 0.25, 0.25, 1.0, 0.0, 0.0, 0.0, 0.5], 4, 3, &mut out);
        assert_eq!(out, [-0.5, 0.0, -0.5, 0.0, -0.5, 0.0]);
    }

    #[test]
    fn par_fill_keeps_order() {
        let mut buf = vec![0f32; 7 * 333];
        let answers = par_fill(&mut buf, 7, |i, out| {
            out.fill(i as f32);
            i * 3
        });
        assert_eq!(answers, (0..333).map(|i| i * 3).collect::<Vec<_>>());
        for (i, s) in buf.chunks(7).enumerate() {
            assert!(s.iter().all(|&v| v == i as f32));
        }
        assert!(par_fill(&mut [], 7, |i, _| i).is_empty());
    }
}
