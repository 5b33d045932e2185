//! One image to one 8-bit sample: decoding with limits, alpha onto white, fitting to a
//! square (resize the shorter side, crop the centre), grey ↔ RGB, CHW planes.
//!
//! Every format ends here, so a pixel means the same whatever file it came from: RGB → grey
//! is the luma `0.299 R + 0.587 G + 0.114 B` (exact for grey pixels), grey → RGB replicates
//! the value, values are rounded to the nearest 8-bit level once, at the end of each step that
//! computes new values.
//!
//! Decoding goes through `image`'s non-generic entry points (`ImageReader`, `DynamicImage`
//! methods), so the decoders and the resampling run as compiled, optimised, in the `image`
//! crate even in a debug build of this crate.

use super::source::Unreadable;
use image::imageops::FilterType;
use image::{DynamicImage, ImageReader, Limits};

/// Largest image, in pixels, that is decoded (64 megapixels: an 8-bit RGBA buffer of 256 MiB).
/// A file that claims more (a decompression bomb: a few hundred bytes of PNG can claim
/// 20000×20000) is skipped before anything is allocated for it.
pub const MAX_PIXELS: u64 = 64 << 20;
/// Largest allocation a decoder may make for one image.
const MAX_ALLOC: u64 = 512 << 20;

/// The dimensions after resizing `w`×`h` so that the shorter side is `size` (the longer side
/// rounded to the nearest pixel, never below `size`).
pub(crate) fn fitted_dims(w: u32, h: u32, size: u32) -> (u32, u32) {
    let scaled = |long: u32, short: u32| -> u32 {
        let v = (long as u64 * size as u64 + short as u64 / 2) / short as u64;
        (v.min(u32::MAX as u64) as u32).max(size)
    };
    if w <= h {
        (size, scaled(h, w))
    } else {
        (scaled(w, h), size)
    }
}

/// Decodes an encoded image (PNG, JPEG, GIF, BMP, TIFF, WebP) into one sample of `channels`
/// planes of `size`×`size` (see the module documentation). Errors are one line for the
/// skipped-files report.
pub(crate) fn decode_image(
    bytes: &[u8],
    channels: usize,
    size: usize,
    out: &mut [u8],
) -> Result<(), Unreadable> {
    let reader = || {
        ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| e.to_string())
    };
    let (w, h) = reader()?.into_dimensions().map_err(|e| e.to_string())?;
    if w == 0 || h == 0 {
        return Err("image has no pixels".into());
    }
    if w as u64 * h as u64 > MAX_PIXELS {
        return Err(Unreadable(format!(
            "image claims {w}×{h} pixels, more than the {} megapixels decoded (a decompression bomb or a very large photo)",
            MAX_PIXELS >> 20
        )));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    limits.max_alloc = Some(MAX_ALLOC);
    let mut r = reader()?;
    r.limits(limits);
    let img = r.decode().map_err(|e| e.to_string())?;
    image_to_sample(img, channels, size, out);
    Ok(())
}

/// A decoded image to one sample: alpha composited onto white, fitted to `size`, converted to
/// `channels` planes.
pub(crate) fn image_to_sample(img: DynamicImage, channels: usize, size: usize, out: &mut [u8]) {
    let rgb = if img.color().has_alpha() {
        composite_onto_white(img.into_rgba8())
    } else {
        img.into_rgb8()
    };
    let fitted = fit_square(DynamicImage::ImageRgb8(rgb), size);
    interleaved_rgb_to_planes(fitted.as_raw(), channels, out);
}

/// Straight-alpha RGBA composited onto white, rounded to 8 bits.
fn composite_onto_white(rgba: image::RgbaImage) -> image::RgbImage {
    let (w, h) = rgba.dimensions();
    let src = rgba.as_raw();
    let n = src.len() / 4;
    let mut rgb = vec![0u8; n * 3];
    let (mut i, mut k) = (0usize, 0usize);
    while k < src.len() {
        let a = src[k + 3] as u32;
        if a == 255 {
            rgb[i] = src[k];
            rgb[i + 1] = src[k + 1];
            rgb[i + 2] = src[k + 2];
        } else {
            // c·a/255 + (255 − a), rounded: (c·a + 255·(255 − a) + 127) / 255.
            let white = 255 * (255 - a) + 127;
            rgb[i] = ((src[k] as u32 * a + white) / 255) as u8;
            rgb[i + 1] = ((src[k + 1] as u32 * a + white) / 255) as u8;
            rgb[i + 2] = ((src[k + 2] as u32 * a + white) / 255) as u8;
        }
        i += 3;
        k += 4;
    }
    image::RgbImage::from_raw(w, h, rgb).expect("buffer has w·h·3 values")
}

/// Resizes so that the shorter side is `size` (triangle filter: bilinear when enlarging, an
/// area-like average when shrinking; it never overshoots), then crops the centre
/// `size`×`size`.
pub(crate) fn fit_square(img: DynamicImage, size: usize) -> image::RgbImage {
    let (w, h) = (img.width(), img.height());
    let s = size as u32;
    if (w, h) == (s, s) {
        return img.into_rgb8();
    }
    let (nw, nh) = fitted_dims(w, h, s);
    let mut img = img;
    if (nw, nh) != (w, h) {
        img = img.resize_exact(nw, nh, FilterType::Triangle);
    }
    if (nw, nh) != (s, s) {
        img = img.crop_imm((nw - s) / 2, (nh - s) / 2, s, s);
    }
    img.into_rgb8()
}

/// Interleaved 8-bit RGB pixels into `channels` CHW planes: three planes, or one of luma
/// `g + 0.299 (r − g) + 0.114 (b − g)` (= 0.299 R + 0.587 G + 0.114 B, exact for grey),
/// rounded.
pub(crate) fn interleaved_rgb_to_planes(rgb: &[u8], channels: usize, out: &mut [u8]) {
    let plane = rgb.len() / 3;
    assert!(
        (channels == 1 || channels == 3) && out.len() == plane * channels,
        "interleaved_rgb_to_planes: bad buffer sizes"
    );
    let (mut i, mut k) = (0usize, 0usize);
    while i < plane {
        let (r, g, b) = (rgb[k], rgb[k + 1], rgb[k + 2]);
        if channels == 1 {
            let (r, g, b) = (r as f32, g as f32, b as f32);
            out[i] = (g + 0.299 * (r - g) + 0.114 * (b - g)).round() as u8;
        } else {
            out[i] = r;
            out[plane + i] = g;
            out[2 * plane + i] = b;
        }
        i += 1;
        k += 3;
    }
}

/// Three 8-bit planes (or one grey plane given three times) of a `w`×`h` image into one
/// sample: fitted to `size`, converted to `channels`. The planar formats (MNIST, CIFAR-10)
/// come through here; at their own size with matching channels it is a copy.
pub(crate) fn planes_to_sample(
    w: usize,
    h: usize,
    [r, g, b]: [&[u8]; 3],
    channels: usize,
    size: usize,
    out: &mut [u8],
) {
    let grey = std::ptr::eq(r, g) && std::ptr::eq(g, b);
    let plane = size * size;
    if (w, h) == (size, size) && grey {
        for c in 0..channels {
            out[c * plane..(c + 1) * plane].copy_from_slice(r);
        }
        return;
    }
    if (w, h) == (size, size) && channels == 3 {
        out[..plane].copy_from_slice(r);
        out[plane..2 * plane].copy_from_slice(g);
        out[2 * plane..].copy_from_slice(b);
        return;
    }
    let mut rgb = Vec::with_capacity(w * h * 3);
    for p in 0..w * h {
        rgb.extend_from_slice(&[r[p], g[p], b[p]]);
    }
    let img = image::RgbImage::from_raw(w as u32, h as u32, rgb).expect("w·h·3 values");
    let fitted = fit_square(DynamicImage::ImageRgb8(img), size);
    interleaved_rgb_to_planes(fitted.as_raw(), channels, out);
}

/// One 8-bit sample to values in [-1, 1]: `2v/255 − 1` (0 is −1, black).
pub fn to_unit_range(src: &[u8], out: &mut [f32]) {
    debug_assert_eq!(src.len(), out.len());
    let mut i = 0;
    while i < src.len() {
        out[i] = src[i] as f32 / 127.5 - 1.0;
        i += 1;
    }
}

/// [`to_unit_range`] of a sample mirrored left to right (each row reversed).
pub fn to_unit_range_mirrored(src: &[u8], size: usize, out: &mut [f32]) {
    debug_assert_eq!(src.len(), out.len());
    for (row_in, row_out) in src.chunks_exact(size).zip(out.chunks_exact_mut(size)) {
        let mut x = 0;
        while x < size {
            row_out[x] = row_in[size - 1 - x] as f32 / 127.5 - 1.0;
            x += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage, Rgba, RgbaImage};

    fn png(img: DynamicImage) -> Vec<u8> {
        let mut v = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut v), image::ImageFormat::Png)
            .unwrap();
        v
    }

    /// `w`×`h`: columns in the first quarter red, the middle half green, the last quarter blue.
    fn stripes(w: u32, h: u32) -> DynamicImage {
        let long = w.max(h);
        DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
            let t = if w >= h { x } else { y };
            if t < long / 4 {
                Rgb([255, 0, 0])
            } else if t < 3 * long / 4 {
                Rgb([0, 255, 0])
            } else {
                Rgb([0, 0, 255])
            }
        }))
    }

    #[test]
    fn centre_crop_without_resize_is_exact_and_resize_keeps_the_middle() {
        // 20×10: the shorter side is already 10; the crop keeps columns 5..15, all green.
        let mut out = vec![0u8; 300];
        image_to_sample(stripes(20, 10), 3, 10, &mut out);
        assert!(out[..100].iter().all(|&v| v == 0));
        assert!(out[100..200].iter().all(|&v| v == 255));
        assert!(out[200..].iter().all(|&v| v == 0));
        for (w, h) in [(40, 20), (20, 40)] {
            image_to_sample(stripes(w, h), 3, 10, &mut out);
            for y in 0..10 {
                for x in 0..10 {
                    let along = if w > h { x } else { y };
                    let at = |c: usize| out[c * 100 + y * 10 + x];
                    if (2..8).contains(&along) {
                        assert_eq!((at(0), at(1), at(2)), (0, 255, 0), "{w}×{h} {x},{y}");
                    }
                    assert!(
                        at(0) < 80 && at(2) < 80,
                        "{w}×{h} at {x},{y}: a little bleed"
                    );
                }
            }
        }
    }

    #[test]
    fn alpha_goes_onto_white_and_grey_is_luma() {
        let img = RgbaImage::from_fn(4, 4, |x, _| match x {
            0 => Rgba([0, 0, 0, 0]),         // transparent → white
            1 => Rgba([255, 0, 0, 255]),     // opaque red
            2 => Rgba([0, 0, 0, 128]),       // half-transparent black → 127
            _ => Rgba([100, 100, 100, 255]), // grey stays exact
        });
        let bytes = png(DynamicImage::ImageRgba8(img));
        let mut rgb = vec![0u8; 48];
        decode_image(&bytes, 3, 4, &mut rgb).unwrap();
        assert_eq!((rgb[0], rgb[16], rgb[32]), (255, 255, 255));
        assert_eq!((rgb[1], rgb[17], rgb[33]), (255, 0, 0));
        assert_eq!((rgb[2], rgb[18], rgb[34]), (127, 127, 127));
        let mut grey = vec![0u8; 16];
        decode_image(&bytes, 1, 4, &mut grey).unwrap();
        assert_eq!(grey[0], 255);
        assert_eq!(grey[1], (0.299f32 * 255.0).round() as u8);
        assert_eq!(grey[3], 100);
    }

    #[test]
    fn decompression_bombs_and_garbage_are_refused_without_allocating() {
        // A 20000×20000 PNG: about 400 KB of file, 400 MB once decoded.
        let enc = crate::data::test_util::bomb_png(20000);
        assert!(enc.len() < 1 << 20, "{} bytes", enc.len());
        let mut out = vec![0u8; 16];
        let e = decode_image(&enc, 1, 4, &mut out).unwrap_err();
        assert!(
            e.0.contains("20000×20000") && e.0.contains("megapixels"),
            "{e}"
        );
        let e = decode_image(b"\x89PNG\r\n\x1a\nnot really", 1, 4, &mut out).unwrap_err();
        assert!(!e.0.is_empty());
    }

    #[test]
    fn planes_at_their_own_size_are_copied_and_others_resized() {
        let r: Vec<u8> = (0..16).collect();
        let g: Vec<u8> = (100..116).collect();
        let b: Vec<u8> = (200..216).collect();
        let mut out = vec![0u8; 48];
        planes_to_sample(4, 4, [&r, &g, &b], 3, 4, &mut out);
        assert_eq!(&out[..16], &r[..]);
        assert_eq!(&out[32..], &b[..]);
        let mut grey = vec![0u8; 16];
        planes_to_sample(4, 4, [&r, &r, &r], 1, 4, &mut grey);
        assert_eq!(grey, r);
        let mut big = vec![0u8; 64];
        planes_to_sample(4, 4, [&r, &r, &r], 1, 8, &mut big);
        assert_eq!(big[0], 0);
        assert!(big[63] >= 14, "{}", big[63]);
    }

    #[test]
    fn unit_range_and_mirror() {
        let mut out = [0f32; 4];
        to_unit_range(&[0, 255, 51, 204], &mut out);
        assert_eq!(out, [-1.0, 1.0, 51.0 / 127.5 - 1.0, 204.0 / 127.5 - 1.0]);
        to_unit_range_mirrored(&[0, 255, 51, 204], 2, &mut out);
        assert_eq!(out, [1.0, -1.0, 204.0 / 127.5 - 1.0, 51.0 / 127.5 - 1.0]);
    }
}
