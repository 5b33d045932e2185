//! Pixel conversions shared by the formats: fitting to a square (resize the shorter side,
//! crop the centre), alpha onto white, grey ↔ RGB, `[0, 1]` → `[-1, 1]`, and decoding samples
//! in parallel into one buffer.

use image::imageops::FilterType;
use image::{ImageBuffer, Rgb};

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
mod tests {
    use super::*;

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
