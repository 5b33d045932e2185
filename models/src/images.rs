//! Turning generator output (`f32`, `[N, C, H, W]`, values in [-1, 1]) into images, grids and
//! PNG files: what the trainer's samples, `runtime gen` and the server write.

use anyhow::{bail, Context, Result};
use image::{DynamicImage, GrayImage, RgbImage};
use std::path::Path;

use crate::output::write_atomic;

/// Shape of a batch of images, `[n, channels, height, width]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchShape {
    pub n: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl BatchShape {
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// Maps a value in [-1, 1] to a byte, clamping outside values and rounding to nearest.
pub fn to_u8(v: f32) -> u8 {
    (((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round()) as u8
}

/// One image (`[C, H, W]`, C = 1 or 3) as an 8-bit grey or RGB picture.
pub fn to_image(chw: &[f32], channels: usize, height: usize, width: usize) -> Result<DynamicImage> {
    if chw.len() != channels * height * width {
        bail!(
            "image buffer has {} values, expected {channels}×{height}×{width}",
            chw.len()
        );
    }
    let plane = height * width;
    Ok(match channels {
        1 => DynamicImage::ImageLuma8(
            GrayImage::from_raw(
                width as u32,
                height as u32,
                chw.iter().map(|&v| to_u8(v)).collect(),
            )
            .expect("buffer length checked above"),
        ),
        3 => {
            let mut rgb = Vec::with_capacity(3 * plane);
            for p in 0..plane {
                rgb.extend((0..3).map(|c| to_u8(chw[c * plane + p])));
            }
            DynamicImage::ImageRgb8(
                RgbImage::from_raw(width as u32, height as u32, rgb)
                    .expect("buffer length checked above"),
            )
        }
        c => bail!("cannot make a picture of {c} channels (expected 1 or 3)"),
    })
}

/// Lays a batch out as a grid of `cols` columns (default: about square) with a 2-pixel
/// border, on a mid-grey background.
pub fn grid(batch: &[f32], shape: BatchShape, cols: Option<usize>) -> Result<DynamicImage> {
    if batch.len() != shape.n * shape.image_len() || shape.n == 0 {
        bail!(
            "grid needs a non-empty batch of {:?}, got {} values",
            shape,
            batch.len()
        );
    }
    let cols = cols
        .unwrap_or_else(|| (shape.n as f64).sqrt().ceil() as usize)
        .clamp(1, shape.n);
    let rows = shape.n.div_ceil(cols);
    let pad = 2;
    let (h, w) = (shape.height, shape.width);
    let gw = (cols * (w + pad) + pad) as u32;
    let gh = (rows * (h + pad) + pad) as u32;
    let mut out = RgbImage::from_pixel(gw, gh, image::Rgb([128, 128, 128]));
    for i in 0..shape.n {
        let img = to_image(
            &batch[i * shape.image_len()..(i + 1) * shape.image_len()],
            shape.channels,
            h,
            w,
        )?
        .to_rgb8();
        let (x0, y0) = (
            (pad + (i % cols) * (w + pad)) as i64,
            (pad + (i / cols) * (h + pad)) as i64,
        );
        image::imageops::replace(&mut out, &img, x0, y0);
    }
    Ok(DynamicImage::ImageRgb8(out))
}

/// The most images one grid PNG holds (a 100 × 100 grid; a larger one is better written as
/// files).
pub const MAX_GRID_IMAGES: usize = 10_000;

/// A grid filled batch by batch (same layout as [`grid`]): memory is the grid picture, not the
/// `f32` values of every image, so a large run can stream into one.
pub struct GridCanvas {
    canvas: RgbImage,
    shape: BatchShape,
    cols: usize,
}

impl GridCanvas {
    /// A canvas for `shape.n` images of `shape`'s size, `cols` columns (default: about square).
    pub fn new(shape: BatchShape, cols: Option<usize>) -> Result<GridCanvas> {
        if shape.n == 0 || shape.image_len() == 0 {
            bail!("grid needs a non-empty batch, got {:?}", shape);
        }
        let cols = cols
            .unwrap_or_else(|| (shape.n as f64).sqrt().ceil() as usize)
            .clamp(1, shape.n);
        if shape.n > MAX_GRID_IMAGES {
            bail!(
                "a grid holds at most {MAX_GRID_IMAGES} images, {} were asked for",
                shape.n
            );
        }
        let rows = shape.n.div_ceil(cols);
        let pad = 2;
        let side = |count: usize, len: usize| {
            count
                .checked_mul(len.saturating_add(pad))
                .and_then(|v| v.checked_add(pad))
                .and_then(|v| u32::try_from(v).ok())
        };
        let (Some(gw), Some(gh)) = (side(cols, shape.width), side(rows, shape.height)) else {
            bail!(
                "a grid of {} images of {:?} is too large for one PNG",
                shape.n,
                shape
            );
        };
        let what = format!("a grid of {} images", shape.n);
        let bytes = crate::limits::count(&what, &[gw as usize, gh as usize, 3])?;
        // Small canvases (every server answer) skip the look at /proc/meminfo.
        if bytes > 64 << 20 {
            crate::limits::check_memory(&what, bytes as u64, "draw fewer images into it")?;
        }
        Ok(GridCanvas {
            canvas: RgbImage::from_pixel(gw, gh, image::Rgb([128, 128, 128])),
            shape,
            cols,
        })
    }

    /// Places image `index` (`[C, H, W]` values).
    pub fn put(&mut self, index: usize, chw: &[f32]) -> Result<()> {
        let s = self.shape;
        if index >= s.n {
            bail!("image {index} is outside a grid of {}", s.n);
        }
        let img = to_image(chw, s.channels, s.height, s.width)?.to_rgb8();
        let pad = 2;
        let x0 = (pad + (index % self.cols) * (s.width + pad)) as i64;
        let y0 = (pad + (index / self.cols) * (s.height + pad)) as i64;
        image::imageops::replace(&mut self.canvas, &img, x0, y0);
        Ok(())
    }

    pub fn finish(self) -> DynamicImage {
        DynamicImage::ImageRgb8(self.canvas)
    }
}

/// Writes a PNG through [`write_atomic`]: atomically (temporary file beside `path`, renamed over
/// it) for a new or regular file, in place for a device or FIFO such as `/dev/null`.
pub fn save_png(img: &DynamicImage, path: &Path) -> Result<()> {
    write_atomic(path, &png_bytes(img)?)
}

/// The PNG encoding of `img` (what [`save_png`] writes).
pub fn png_bytes(img: &DynamicImage) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .context("encoding PNG")?;
    Ok(bytes)
}

/// The PNG file name of image `index` in a set whose largest index is `last`: zero-padded to
/// `last`'s width and at least five digits, so the names sort in index order (`00042.png`).
/// `runtime gen --out` and the server's zip answers name their images with it.
pub fn image_file_name(index: u64, last: u64) -> String {
    let digits = last.to_string().len().max(5);
    format!("{index:0digits$}.png")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_file_names_sort_in_index_order() {
        assert_eq!(image_file_name(0, 0), "00000.png");
        assert_eq!(image_file_name(42, 99_999), "00042.png");
        assert_eq!(image_file_name(7, 100_000), "000007.png");
        let names: Vec<String> = (0..=120_000u64)
            .step_by(997)
            .map(|i| image_file_name(i, 120_000))
            .collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn byte_mapping_clamps_and_rounds() {
        assert_eq!(to_u8(-1.0), 0);
        assert_eq!(to_u8(1.0), 255);
        assert_eq!(to_u8(0.0), 128);
        assert_eq!(to_u8(-7.0), 0);
        assert_eq!(to_u8(f32::INFINITY), 255);
    }

    #[test]
    fn rgb_planes_are_interleaved() {
        // 1×2 image: red pixel then blue pixel.
        let chw = [1.0, -1.0, -1.0, -1.0, -1.0, 1.0];
        let img = to_image(&chw, 3, 1, 2).unwrap().to_rgb8();
        assert_eq!(img.get_pixel(0, 0).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(1, 0).0, [0, 0, 255]);
    }

    #[test]
    fn grid_places_images_row_major() {
        let shape = BatchShape {
            n: 3,
            channels: 1,
            height: 2,
            width: 2,
        };
        let mut batch = vec![-1.0; 12];
        batch[8..12].fill(1.0); // third image white
        let g = grid(&batch, shape, Some(2)).unwrap().to_rgb8();
        assert_eq!((g.width(), g.height()), (2 * 4 + 2, 2 * 4 + 2));
        assert_eq!(g.get_pixel(2, 2).0, [0, 0, 0]);
        assert_eq!(g.get_pixel(2, 6).0, [255, 255, 255]);
        assert!(grid(&batch[..5], shape, None).is_err());
    }

    #[test]
    fn canvas_matches_grid() {
        let shape = BatchShape {
            n: 5,
            channels: 3,
            height: 3,
            width: 2,
        };
        let batch: Vec<f32> = (0..shape.n * shape.image_len())
            .map(|i| ((i * 37) % 21) as f32 / 10.0 - 1.0)
            .collect();
        let mut c = GridCanvas::new(shape, Some(2)).unwrap();
        for i in (0..5).rev() {
            c.put(i, &batch[i * 18..(i + 1) * 18]).unwrap();
        }
        assert!(c.put(5, &batch[..18]).is_err());
        assert_eq!(c.finish(), grid(&batch, shape, Some(2)).unwrap());
    }
}
