//! A directory of image files, walked recursively.

use super::{
    channels_text, composite_onto_white, par_fill, rgb_to_sample, write_pixels, write_pixels_u8,
    Dataset,
};
use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Extensions (lower case) of the files the loader tries to decode.
pub(crate) const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp"];

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// All files under `root` (following links, skipping hidden entries whose name starts with a
/// dot), sorted by path so that the data set order does not depend on the file system.
fn walk(root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        // Guard against directory links that loop.
        if let Ok(canonical) = dir.canonicalize() {
            if !seen.insert(canonical) {
                continue;
            }
        }
        let entries = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot list data directory {}", dir.display()))?;
        for entry in entries {
            let entry =
                entry.with_context(|| format!("cannot list data directory {}", dir.display()))?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            // `metadata` follows links; a broken link is simply ignored.
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => stack.push(path),
                Ok(m) if m.is_file() => files.push(path),
                _ => {}
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Decodes one file into one sample (see [`super::write_pixels`]): alpha composited onto white,
/// resized and centre-cropped to `size`, converted to `channels`.
///
/// Uses only non-generic `image` functions (`load_from_memory`, `DynamicImage` methods), so the
/// decoders run as compiled in the `image` crate, optimised even in a debug build of this crate.
pub(crate) fn decode_sample(
    path: &Path,
    channels: usize,
    size: usize,
    out: &mut [f32],
) -> std::result::Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let img = image::load_from_memory(&bytes).map_err(|e| e.to_string())?;
    drop(bytes);
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 {
        return Err("image has no pixels".to_string());
    }
    let color = img.color();
    let alpha = color.has_alpha();
    if (w, h) == (size as u32, size as u32) {
        // No resampling: straight from the decoded pixels into the sample.
        let eight_bit = color.bytes_per_pixel() == color.channel_count();
        match (eight_bit, alpha) {
            (true, true) => write_pixels_u8(img.into_rgba8().as_raw(), 4, channels, out),
            (true, false) => write_pixels_u8(img.into_rgb8().as_raw(), 3, channels, out),
            (false, true) => write_pixels(img.into_rgba32f().as_raw(), 4, channels, out),
            (false, false) => write_pixels(img.into_rgb32f().as_raw(), 3, channels, out),
        }
    } else if alpha {
        // Composite before resizing, so that the colour of transparent pixels cannot bleed.
        let rgb = composite_onto_white(w, h, img.into_rgba32f().as_raw());
        rgb_to_sample(rgb, channels, size, out);
    } else {
        rgb_to_sample(img.into_rgb32f(), channels, size, out);
    }
    Ok(())
}

pub(crate) fn load(path: &Path, channels: usize, size: usize) -> Result<Dataset> {
    if !path.is_dir() {
        bail!(
            "the folder format needs a directory of images, but {} is a file (use --format mnist \
             or cifar10 for those files, or pass the directory that holds the images)",
            path.display()
        );
    }
    let all = walk(path)?;
    if all.is_empty() {
        bail!(
            "data directory {} is empty: put image files (png, jpg, gif, bmp, tiff, webp) in it",
            path.display()
        );
    }
    let files: Vec<PathBuf> = all
        .iter()
        .filter(|p| has_image_extension(p))
        .cloned()
        .collect();
    if files.is_empty() {
        bail!(
            "data directory {} contains no decodable images: none of its {} files has an image \
             extension ({})",
            path.display(),
            all.len(),
            EXTENSIONS.join(", ")
        );
    }

    let sample_len = channels * size * size;
    let mut images = super::image_buffer(files.len(), sample_len)?;
    let results = par_fill(&mut images, sample_len, |i, out| {
        decode_sample(&files[i], channels, size, out)
    });
    // Drop the slots of the files that failed, keeping the order of the others.
    let mut kept = 0;
    let mut skipped = 0;
    let mut first_error = None;
    for (i, (file, r)) in files.iter().zip(results).enumerate() {
        match r {
            Ok(()) => {
                if kept != i {
                    images.copy_within(i * sample_len..(i + 1) * sample_len, kept * sample_len);
                }
                kept += 1;
            }
            Err(e) => {
                skipped += 1;
                if first_error.is_none() {
                    first_error = Some(format!("{}: {e}", file.display()));
                }
            }
        }
    }
    images.truncate(kept * sample_len);
    images.shrink_to_fit();
    let len = images.len() / sample_len;
    if len == 0 {
        bail!(
            "data directory {} contains no decodable images: all {} image files failed to decode \
             (first: {})",
            path.display(),
            files.len(),
            first_error.unwrap_or_default()
        );
    }
    if skipped > 0 {
        eprintln!(
            "warning: skipped {skipped} of {} files that could not be decoded (first: {})",
            files.len(),
            first_error.unwrap_or_default()
        );
    }
    let description = format!(
        "image folder {} ({len} images, resized and centre-cropped to {size}×{size}, {}{})",
        path.display(),
        channels_text(channels),
        if skipped > 0 {
            format!(", {skipped} undecodable files skipped")
        } else {
            String::new()
        }
    );
    Ok(Dataset {
        images,
        len,
        channels,
        size,
        description,
        skipped,
        labels: None,
    })
}

#[cfg(test)]
mod tests {
    use crate::data::{load, Format};
    use image::{ImageBuffer, Rgb, Rgba};
    use std::path::Path;

    fn save_rgba(path: &Path, img: &ImageBuffer<Rgba<u8>, Vec<u8>>) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        img.save(path).unwrap();
    }

    /// 8×8 RGBA: left half transparent (colour black, alpha 0), right half opaque red.
    fn half_transparent() -> ImageBuffer<Rgba<u8>, Vec<u8>> {
        ImageBuffer::from_fn(8, 8, |x, _| {
            if x < 4 {
                Rgba([0, 0, 0, 0])
            } else {
                Rgba([255, 0, 0, 255])
            }
        })
    }

    #[test]
    fn transparency_is_composited_onto_white() {
        let dir = tempfile::tempdir().unwrap();
        save_rgba(&dir.path().join("a.png"), &half_transparent());
        // Half-transparent black: 50 % white.
        save_rgba(
            &dir.path().join("sub/b.PNG"),
            &ImageBuffer::from_pixel(8, 8, Rgba([0, 0, 0, 128])),
        );
        let d = load(dir.path(), Format::Folder, 3, 8).unwrap();
        assert_eq!((d.len, d.channels, d.size, d.skipped), (2, 3, 8, 0));
        let a = d.image(0);
        for y in 0..8 {
            for x in 0..8 {
                let px: Vec<f32> = (0..3).map(|c| a[c * 64 + y * 8 + x]).collect();
                if x < 4 {
                    assert_eq!(px, [1.0, 1.0, 1.0], "transparent → white at {x},{y}");
                } else {
                    assert_eq!(px, [1.0, -1.0, -1.0], "opaque red at {x},{y}");
                }
            }
        }
        let b = d.image(1);
        let want = 2.0 * (1.0 - 128.0 / 255.0) - 1.0;
        assert!(b.iter().all(|&v| (v - want).abs() < 1e-5), "{}", b[0]);
        // Grey: transparent → +1, red → luma 0.299.
        let g = load(dir.path(), Format::Folder, 1, 8).unwrap();
        assert_eq!(g.image(0)[0], 1.0);
        assert!((g.image(0)[7] - (2.0 * 0.299 - 1.0)).abs() < 1e-6);
    }

    #[test]
    fn jpeg_and_other_formats_decode_and_corrupt_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let grey = ImageBuffer::from_pixel(16, 12, Rgb([128u8, 128, 128]));
        grey.save(d.join("photo.JPG")).unwrap();
        grey.save(d.join("pic.bmp")).unwrap();
        save_rgba(&d.join("nested/deeper/c.png"), &half_transparent());
        std::fs::write(d.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
        std::fs::write(d.join("notes.txt"), b"ignored, not an image extension").unwrap();
        std::fs::write(d.join(".hidden.png"), b"hidden files are ignored").unwrap();
        let ds = load(d, Format::Auto, 1, 8).unwrap();
        assert_eq!(ds.len, 3);
        assert_eq!(ds.skipped, 1);
        assert!(ds.description.contains("3 images"), "{}", ds.description);
        // Sorted by path: nested/deeper/c.png, photo.JPG, pic.bmp.
        let jpeg = ds.image(1);
        let want = 2.0 * 128.0 / 255.0 - 1.0;
        assert!(jpeg.iter().all(|&v| (v - want).abs() < 0.03), "{}", jpeg[0]);
        let bmp = ds.image(2);
        assert!(bmp.iter().all(|&v| (v - want).abs() < 1e-5));
        assert!(ds.images.iter().all(|v| (-1.0..=1.0).contains(v)));
    }

    #[test]
    fn empty_directory_and_no_images_are_distinct_errors() {
        let dir = tempfile::tempdir().unwrap();
        let e = format!("{:#}", load(dir.path(), Format::Auto, 3, 8).unwrap_err());
        assert!(
            e.contains("is empty") && e.contains(&dir.path().display().to_string()),
            "{e}"
        );

        std::fs::write(dir.path().join("a.txt"), b"hello").unwrap();
        std::fs::write(dir.path().join("b.md"), b"# hi").unwrap();
        let e = format!("{:#}", load(dir.path(), Format::Folder, 3, 8).unwrap_err());
        assert!(
            e.contains("contains no decodable images") && e.contains("2 files"),
            "{e}"
        );

        std::fs::write(dir.path().join("c.png"), b"garbage").unwrap();
        let e = format!("{:#}", load(dir.path(), Format::Folder, 3, 8).unwrap_err());
        assert!(
            e.contains("contains no decodable images") && e.contains("c.png"),
            "{e}"
        );

        let e = format!(
            "{:#}",
            load(&dir.path().join("a.txt"), Format::Folder, 3, 8).unwrap_err()
        );
        assert!(e.contains("needs a directory"), "{e}");
    }

    #[test]
    fn non_square_images_are_resized_and_centre_cropped() {
        let dir = tempfile::tempdir().unwrap();
        // 40×20: black | white (20 wide) | black. Size 10 → 20×10, crop columns 5..15 (white).
        let img = ImageBuffer::from_fn(40, 20, |x, _| {
            if (10..30).contains(&x) {
                Rgb([255u8, 255, 255])
            } else {
                Rgb([0, 0, 0])
            }
        });
        img.save(dir.path().join("wide.png")).unwrap();
        let d = load(dir.path(), Format::Folder, 1, 10).unwrap();
        let a = d.image(0);
        for y in 0..10 {
            for x in 2..8 {
                assert!(
                    (a[y * 10 + x] - 1.0).abs() < 1e-5,
                    "{x},{y}: {}",
                    a[y * 10 + x]
                );
            }
            assert!(a[y * 10] > 0.0 && a[y * 10 + 9] > 0.0);
        }
    }

    /// The real 3,786-image emoji folder; reports the time taken.
    #[test]
    fn loads_the_emoji_folder_quickly() {
        let path = Path::new("/work/shared/data/emoji-noto-64");
        if !path.is_dir() {
            eprintln!("skipped: {} is not here", path.display());
            return;
        }
        let t = std::time::Instant::now();
        let d = load(path, Format::Auto, 3, 64).unwrap();
        let took = t.elapsed();
        eprintln!("emoji folder: {} in {:.2?}", d.description, took);
        assert_eq!((d.len, d.skipped, d.channels, d.size), (3786, 0, 3, 64));
        assert!(d.images.iter().all(|v| (-1.0..=1.0).contains(v)));
        // Transparent corners became white.
        let corner = (0..d.len).map(|i| d.image(i)[0]).sum::<f32>() / d.len as f32;
        assert!(corner > 0.9, "mean top-left red value {corner}");
    }
}
