//! A directory of image files, walked recursively, as a [`Source`].

use super::decode::decode_image;
use super::prepared::{SourceFile, SourceRecord};
use super::source::Unreadable;
use super::source::{channels_text, Decoder, Source};
use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Extensions (lower case) of the files the loader tries to decode.
pub(crate) const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp"];

/// Largest encoded image file read (a bigger one is skipped, with the reason).
pub(crate) const MAX_FILE_BYTES: u64 = 256 << 20;

pub(crate) fn has_image_extension(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// All files under `root` (following links, skipping hidden entries whose name starts with a
/// dot) with their metadata, sorted by path so that the data set order does not depend on the
/// file system.
fn walk(root: &Path) -> Result<Vec<(PathBuf, std::fs::Metadata)>> {
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
                Ok(m) if m.is_file() => files.push((path, m)),
                _ => {}
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

/// The image files of a folder.
pub(crate) struct FolderSource {
    root: PathBuf,
    /// The image files, sorted by path, with what the sidecar records of each.
    files: Vec<(PathBuf, SourceFile)>,
}

impl FolderSource {
    /// Lists the image files under `path` (errors when there are none, saying why).
    pub(crate) fn open(path: &Path) -> Result<Self> {
        if !path.is_dir() {
            bail!(
                "the folder format needs a directory of images, but {} is a file (use --format \
                 mnist, cifar10 or zip for those files, or pass the directory that holds the images)",
                path.display()
            );
        }
        let root = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let all = walk(&root)?;
        if all.is_empty() {
            bail!(
                "data directory {} is empty: put image files (png, jpg, gif, bmp, tiff, webp) in it",
                path.display()
            );
        }
        let total = all.len();
        let files: Vec<(PathBuf, SourceFile)> = all
            .into_iter()
            .filter_map(|(p, meta)| {
                let name = p.strip_prefix(&root).ok()?.to_string_lossy().into_owned();
                has_image_extension(&name).then(|| {
                    use std::os::unix::fs::MetadataExt;
                    let record = SourceFile {
                        name,
                        bytes: meta.len(),
                        modified_ns: meta.mtime() as i128 * 1_000_000_000
                            + meta.mtime_nsec() as i128,
                    };
                    (p, record)
                })
            })
            .collect();
        if files.is_empty() {
            bail!(
                "data directory {} contains no decodable images: none of its {total} files has an \
                 image extension ({})",
                path.display(),
                EXTENSIONS.join(", ")
            );
        }
        Ok(Self { root, files })
    }
}

struct FolderDecoder<'a>(&'a FolderSource);

impl Decoder for FolderDecoder<'_> {
    fn decode(
        &mut self,
        i: usize,
        channels: usize,
        size: usize,
        out: &mut [u8],
    ) -> Result<(), Unreadable> {
        let (path, record) = &self.0.files[i];
        if record.bytes > MAX_FILE_BYTES {
            return Err(Unreadable(format!(
                "file is {} bytes, more than the {} MiB read per image",
                record.bytes,
                MAX_FILE_BYTES >> 20
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        decode_image(&bytes, channels, size, out)
    }
}

impl Source for FolderSource {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn name(&self, i: usize) -> String {
        self.files[i].1.name.clone()
    }

    fn decoder(&self) -> Result<Box<dyn Decoder + '_>> {
        Ok(Box::new(FolderDecoder(self)))
    }

    fn record(&self) -> SourceRecord {
        SourceRecord {
            kind: "folder".into(),
            path: self.root.clone(),
            files: self.files.iter().map(|(_, r)| r.clone()).collect(),
        }
    }

    fn describe(&self, count: usize, channels: usize, size: usize) -> String {
        format!(
            "image folder {} ({count} images, resized and centre-cropped to {size}×{size}, {})",
            self.root.display(),
            channels_text(channels)
        )
    }
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
        let a = d.image(0).unwrap();
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
        let b = d.image(1).unwrap();
        let want = 2.0 * (1.0 - 128.0 / 255.0) - 1.0;
        assert!(b.iter().all(|&v| (v - want).abs() < 1e-5), "{}", b[0]);
        // Grey: transparent → +1, red → luma 0.299.
        let g = load(dir.path(), Format::Folder, 1, 8).unwrap();
        assert_eq!(g.image(0).unwrap()[0], 1.0);
        // Rounded to 8 bits: within half a level (1/255 in [-1, 1]).
        assert!((g.image(0).unwrap()[7] - (2.0 * 0.299 - 1.0)).abs() <= 1.0 / 255.0);
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
        let jpeg = ds.image(1).unwrap();
        let want = 2.0 * 128.0 / 255.0 - 1.0;
        assert!(jpeg.iter().all(|&v| (v - want).abs() < 0.03), "{}", jpeg[0]);
        let bmp = ds.image(2).unwrap();
        assert!(bmp.iter().all(|&v| (v - want).abs() < 1e-5));
        assert!(ds
            .images()
            .unwrap()
            .iter()
            .all(|v| (-1.0..=1.0).contains(v)));
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
        let a = d.image(0).unwrap();
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
        assert!(d.images().unwrap().iter().all(|v| (-1.0..=1.0).contains(v)));
        // Transparent corners became white.
        let corner = (0..d.len).map(|i| d.image(i).unwrap()[0]).sum::<f32>() / d.len as f32;
        assert!(corner > 0.9, "mean top-left red value {corner}");
    }
}
