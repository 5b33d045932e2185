//! A zip archive of images (the form CelebA ships in: `img_align_celeba.zip`), as a
//! [`Source`]: its entries with an image extension, sorted by name, read straight from the
//! archive (each worker thread opens it once).

use super::decode::decode_image;
use super::folder::{has_image_extension, MAX_FILE_BYTES};
use super::prepared::{SourceFile, SourceRecord};
use super::source::Unreadable;
use super::source::{channels_text, Decoder, Source};
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Whether `path` starts with a zip signature.
pub(crate) fn is_zip(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| &magic == b"PK\x03\x04" || &magic == b"PK\x05\x06")
}

/// The image entries of a zip archive.
pub(crate) struct ZipSource {
    path: PathBuf,
    /// (index in the archive, name), sorted by name.
    entries: Vec<(usize, String)>,
    record: SourceFile,
}

impl ZipSource {
    /// Reads the archive's directory (not its contents).
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let file = File::open(&path)
            .with_context(|| format!("cannot open zip archive {}", path.display()))?;
        let archive = zip::ZipArchive::new(file).with_context(|| {
            format!(
                "{} is not a readable zip archive (damaged or truncated?)",
                path.display()
            )
        })?;
        let mut entries: Vec<(usize, String)> = (0..archive.len())
            .filter_map(|i| Some((i, archive.name_for_index(i)?.ok()?.into_owned())))
            .filter(|(_, n)| !n.ends_with('/') && has_image_extension(n))
            .filter(|(_, n)| {
                // Hidden files and macOS resource forks (`__MACOSX/`, `._name`) are not images.
                !n.split('/')
                    .any(|part| part.starts_with('.') || part == "__MACOSX")
            })
            .collect();
        entries.sort_by(|a, b| a.1.cmp(&b.1));
        if entries.is_empty() {
            bail!(
                "zip archive {} holds no images ({} entries, none with an image extension: {})",
                path.display(),
                archive.len(),
                super::folder::EXTENSIONS.join(", ")
            );
        }
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        Ok(Self {
            record: SourceFile::of(&path, name)?,
            path,
            entries,
        })
    }
}

struct ZipDecoder<'a> {
    source: &'a ZipSource,
    archive: zip::ZipArchive<File>,
    buf: Vec<u8>,
}

impl Decoder for ZipDecoder<'_> {
    fn decode(
        &mut self,
        i: usize,
        channels: usize,
        size: usize,
        out: &mut [u8],
    ) -> Result<(), Unreadable> {
        let (index, _) = &self.source.entries[i];
        let mut entry = self.archive.by_index(*index).map_err(|e| e.to_string())?;
        if entry.size() > MAX_FILE_BYTES {
            return Err(Unreadable(format!(
                "entry is {} bytes uncompressed, more than the {} MiB read per image",
                entry.size(),
                MAX_FILE_BYTES >> 20
            )));
        }
        self.buf.clear();
        // The header's size can lie: never read more than the limit.
        (&mut entry)
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut self.buf)
            .map_err(|e| e.to_string())?;
        if self.buf.len() as u64 > MAX_FILE_BYTES {
            return Err(Unreadable(format!(
                "entry inflates to more than the {} MiB read per image",
                MAX_FILE_BYTES >> 20
            )));
        }
        decode_image(&self.buf, channels, size, out)
    }
}

impl Source for ZipSource {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn name(&self, i: usize) -> String {
        self.entries[i].1.clone()
    }

    fn decoder(&self) -> Result<Box<dyn Decoder + '_>> {
        let file = File::open(&self.path)
            .with_context(|| format!("cannot open zip archive {}", self.path.display()))?;
        let archive = zip::ZipArchive::new(file)
            .with_context(|| format!("{} is not a readable zip archive", self.path.display()))?;
        Ok(Box::new(ZipDecoder {
            source: self,
            archive,
            buf: Vec::new(),
        }))
    }

    fn record(&self) -> SourceRecord {
        SourceRecord {
            kind: "zip".into(),
            path: self.path.clone(),
            files: vec![self.record.clone()],
        }
    }

    fn describe(&self, count: usize, channels: usize, size: usize) -> String {
        format!(
            "zip archive {} ({count} images, resized and centre-cropped to {size}×{size}, {})",
            self.path.display(),
            channels_text(channels)
        )
    }
}
