//! The prepared data set: decoded images as 8-bit pixels in one file, read by index with
//! positioned reads, and the JSON sidecar that says where they came from.
//!
//! File layout (little-endian; see ARCHITECTURE.md, "Prepared data sets"):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `WGANPIX\0` |
//! | 4 | format version ([`FORMAT_VERSION`]) |
//! | 2 | channels (1 or 3) |
//! | 2 | side `S` in pixels |
//! | `count · C · S · S` | the images, each CHW row-major, one byte per value (0 black, 255 white) |
//! | `count` | class labels, when the flags say so |
//! | 8 | count |
//! | 4 | flags (bit 0: labels present) |
//! | 4 | reserved, 0 |
//! | 16 | fingerprint: xxh3-128 of the image bytes followed by the label bytes |
//! | 8 | end magic `WGANEND\0` |
//!
//! The count and fingerprint are known only once every image has been decoded, so they sit in
//! the trailer and the file is written front to back in one pass. A file cut short loses its
//! trailer, which is how truncation is told apart from damage.
//!
//! The sidecar `FILE.json` ([`Sidecar`]) repeats the shape, count and fingerprint and adds the
//! pipeline version, the source (its path and every input file with its size and modification
//! time, to tell when the source changed), the name of each image (for the held-out split) and
//! the skipped files with the reason.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::Xxh3;

pub use super::sidecar::*;

/// First bytes of a prepared file.
pub const MAGIC: &[u8; 8] = b"WGANPIX\0";
/// Last bytes of a complete prepared file.
const END_MAGIC: &[u8; 8] = b"WGANEND\0";
/// Version of the file layout written by this build.
pub const FORMAT_VERSION: u32 = 1;
/// Version of the decoding pipeline (decoder limits, alpha onto white, resize of the shorter
/// side with a triangle filter, centre crop, luma for one channel, rounding to 8 bits).
pub const PIPELINE_VERSION: u32 = 1;
const PREAMBLE: u64 = 16;
const TRAILER: u64 = 40;
/// What the sidecar's `format` field says.
pub(super) const SIDECAR_FORMAT: &str = "wgan-gp prepared images";

/// Where the image bytes start.
pub const DATA_OFFSET: u64 = PREAMBLE;

/// Whether `path` starts like a prepared file.
pub fn is_prepared(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    File::open(path)
        .and_then(|f| f.read_exact_at(&mut magic, 0))
        .is_ok_and(|()| &magic == MAGIC)
}

/// Writes a prepared file front to back: [`PreparedWriter::push`] each image in order, then
/// [`PreparedWriter::finish`] writes the labels and the trailer and puts the file in place
/// atomically (under the workspace's output policy).
pub struct PreparedWriter {
    out: std::io::BufWriter<wgan_models::output::OutputFile>,
    path: PathBuf,
    sample_len: usize,
    count: usize,
    hasher: Xxh3,
}

impl PreparedWriter {
    /// Starts `path` for images of `channels` × `size` × `size`.
    pub fn create(path: &Path, channels: usize, size: usize) -> Result<Self> {
        let file = wgan_models::output::OutputFile::create(path)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut preamble = Vec::with_capacity(PREAMBLE as usize);
        preamble.extend_from_slice(MAGIC);
        preamble.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        preamble.extend_from_slice(&(channels as u16).to_le_bytes());
        preamble.extend_from_slice(&(size as u16).to_le_bytes());
        out.write_all(&preamble)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self {
            out,
            path: path.to_path_buf(),
            sample_len: channels * size * size,
            count: 0,
            hasher: Xxh3::new(),
        })
    }

    /// Appends one image (`channels · size · size` bytes, CHW).
    pub fn push(&mut self, image: &[u8]) -> Result<()> {
        debug_assert_eq!(image.len(), self.sample_len);
        self.hasher.update(image);
        self.out
            .write_all(image)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.count += 1;
        Ok(())
    }

    /// Images written so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Writes the labels (one per image, when the source has them) and the trailer, flushes
    /// the file to disk and renames it into place. Returns the count and the fingerprint.
    pub fn finish(mut self, labels: Option<&[u8]>) -> Result<(usize, Fingerprint)> {
        let write_err = |path: &Path| format!("cannot write {}", path.display());
        if let Some(l) = labels {
            debug_assert_eq!(l.len(), self.count);
            self.hasher.update(l);
            self.out
                .write_all(l)
                .with_context(|| write_err(&self.path))?;
        }
        let fingerprint = Fingerprint(self.hasher.digest128());
        let mut trailer = Vec::with_capacity(TRAILER as usize);
        trailer.extend_from_slice(&(self.count as u64).to_le_bytes());
        trailer.extend_from_slice(&(labels.is_some() as u32).to_le_bytes());
        trailer.extend_from_slice(&0u32.to_le_bytes());
        trailer.extend_from_slice(&fingerprint.0.to_le_bytes());
        trailer.extend_from_slice(END_MAGIC);
        self.out
            .write_all(&trailer)
            .with_context(|| write_err(&self.path))?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| write_err(&self.path))?;
        file.commit()?;
        Ok((self.count, fingerprint))
    }
}

/// An open prepared file: images read by index with positioned reads (see ARCHITECTURE.md for
/// why not a memory map), and the identity of the file as opened, to notice it being
/// truncated or replaced while it is read.
#[derive(Debug)]
pub struct PreparedFile {
    file: File,
    /// The path it was opened at (`None` for an anonymous temporary file).
    path: Option<PathBuf>,
    pub channels: usize,
    pub size: usize,
    pub count: usize,
    /// Class labels, read into memory at open (one byte per image).
    pub labels: Option<Vec<u8>>,
    pub fingerprint: Fingerprint,
    /// (device, inode, length, modification time) at open.
    identity: (u64, u64, u64, i128),
}

fn identity(meta: &std::fs::Metadata) -> (u64, u64, u64, i128) {
    (
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
    )
}

impl PreparedFile {
    /// Opens the prepared file at `path` and checks its layout: magic, version, length
    /// against the trailer's count. The sidecar is checked by [`PreparedFile::check_sidecar`],
    /// the content by [`PreparedFile::verify`].
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path)
            .with_context(|| format!("cannot open prepared data set {}", path.display()))?;
        Self::from_file(file, Some(path.to_path_buf()))
    }

    /// [`PreparedFile::open`] on an open file (`path` only for messages and the identity
    /// check).
    pub fn from_file(file: File, path: Option<PathBuf>) -> Result<Self> {
        let shown = path
            .as_ref()
            .map_or("the prepared data set".to_string(), |p| {
                p.display().to_string()
            });
        let meta = file
            .metadata()
            .with_context(|| format!("cannot read {shown}"))?;
        let len = meta.len();
        let mut preamble = [0u8; PREAMBLE as usize];
        if len < PREAMBLE + TRAILER || file.read_exact_at(&mut preamble, 0).is_err() {
            bail!("{shown} is not a prepared data set: it has {len} bytes, fewer than a header and a trailer");
        }
        if &preamble[..8] != MAGIC {
            bail!("{shown} is not a prepared data set (no WGANPIX header): prepare one with `trainer prepare`");
        }
        let version = u32::from_le_bytes(preamble[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            bail!(
                "{shown} is a prepared data set of format version {version}; this build reads version {FORMAT_VERSION}: prepare it again with this build's `trainer prepare`"
            );
        }
        let channels = u16::from_le_bytes([preamble[12], preamble[13]]) as usize;
        let size = u16::from_le_bytes([preamble[14], preamble[15]]) as usize;
        let mut trailer = [0u8; TRAILER as usize];
        file.read_exact_at(&mut trailer, len - TRAILER)
            .with_context(|| format!("cannot read {shown}"))?;
        if &trailer[32..40] != END_MAGIC {
            bail!(
                "{shown} is truncated or was not finished (no trailer at its end): prepare it again"
            );
        }
        let count = u64::from_le_bytes(trailer[..8].try_into().expect("8 bytes"));
        let flags = u32::from_le_bytes(trailer[8..12].try_into().expect("4 bytes"));
        let fingerprint = Fingerprint(u128::from_le_bytes(
            trailer[16..32].try_into().expect("16 bytes"),
        ));
        if !(channels == 1 || channels == 3) || size == 0 {
            bail!("{shown} is damaged: its header says {channels} channels of {size}×{size}");
        }
        let has_labels = flags & 1 == 1;
        let sample = (channels * size * size) as u64;
        let want = count
            .checked_mul(sample + has_labels as u64)
            .and_then(|v| v.checked_add(PREAMBLE + TRAILER));
        if want != Some(len) {
            bail!(
                "{shown} is damaged or truncated: its trailer says {count} images of {channels}×{size}×{size}{}, which is not its length of {len} bytes",
                if has_labels { " with labels" } else { "" }
            );
        }
        let count = usize::try_from(count).context("the image count does not fit this machine")?;
        let labels = match has_labels {
            true => {
                let mut l = vec![0u8; count];
                file.read_exact_at(&mut l, PREAMBLE + count as u64 * sample)
                    .with_context(|| format!("cannot read the labels of {shown}"))?;
                Some(l)
            }
            false => None,
        };
        Ok(Self {
            identity: identity(&meta),
            file,
            path,
            channels,
            size,
            count,
            labels,
            fingerprint,
        })
    }

    /// The path it was opened at.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn shown(&self) -> String {
        self.path
            .as_ref()
            .map_or("the prepared data set".to_string(), |p| {
                p.display().to_string()
            })
    }

    /// Bytes per image.
    pub fn sample_len(&self) -> usize {
        self.channels * self.size * self.size
    }

    /// Reads image `i` (CHW bytes) into `out`.
    pub fn read(&self, i: usize, out: &mut [u8]) -> Result<()> {
        debug_assert!(i < self.count && out.len() == self.sample_len());
        let offset = PREAMBLE + (i as u64) * self.sample_len() as u64;
        self.file.read_exact_at(out, offset).map_err(|e| {
            let what = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "was truncated while it was being read".to_string()
            } else {
                format!("could not be read ({e})")
            };
            anyhow::anyhow!(
                "the prepared data set {} {what}: image {i} is gone; restore or prepare the data again",
                self.shown()
            )
        })
    }

    /// Fails when the file was truncated, rewritten or replaced (renamed over, deleted) since
    /// it was opened: two `stat` calls, cheap enough for every batch.
    pub fn check_unchanged(&self) -> Result<()> {
        let now = self
            .file
            .metadata()
            .with_context(|| format!("cannot read {}", self.shown()))?;
        let (dev, ino, len, modified) = self.identity;
        let (_, _, now_len, now_modified) = identity(&now);
        if now_len != len {
            bail!(
                "the prepared data set {} changed while training: it was {len} bytes and is now {now_len} (truncated or rewritten); restore it or prepare it again",
                self.shown()
            );
        }
        if now_modified != modified {
            bail!(
                "the prepared data set {} was rewritten while training; restore it or prepare it again",
                self.shown()
            );
        }
        if let Some(path) = &self.path {
            match std::fs::metadata(path) {
                Ok(m) if (m.dev(), m.ino()) == (dev, ino) => {}
                Ok(_) => bail!(
                    "the prepared data set {} was replaced by another file while training; restart the run on the new file or restore the old one",
                    path.display()
                ),
                Err(_) => bail!(
                    "the prepared data set {} was deleted or moved while training",
                    path.display()
                ),
            }
        }
        Ok(())
    }

    /// Recomputes the fingerprint with positioned reads (a few MiB at a time, so that memory
    /// stays flat for any file size) and compares it with the trailer's.
    pub fn verify(&self) -> Result<()> {
        let total = self.count as u64 * (self.sample_len() as u64 + self.labels.is_some() as u64);
        let mut hasher = Xxh3::new();
        let mut buf = vec![0u8; 4 << 20];
        let mut offset = 0u64;
        while offset < total {
            let n = (total - offset).min(buf.len() as u64) as usize;
            self.file
                .read_exact_at(&mut buf[..n], PREAMBLE + offset)
                .with_context(|| format!("cannot read {}", self.shown()))?;
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
        let got = Fingerprint(hasher.digest128());
        if got != self.fingerprint {
            bail!(
                "{} is damaged: its content has fingerprint {got}, its trailer says {}; prepare it again",
                self.shown(),
                self.fingerprint
            );
        }
        Ok(())
    }

    /// Reads the sidecar beside the file and checks that it describes this file.
    pub fn check_sidecar(&self) -> Result<Sidecar> {
        let path = self
            .path
            .as_ref()
            .context("an anonymous prepared file has no sidecar")?;
        let side = sidecar_path(path);
        if !side.exists() {
            bail!(
                "cannot read {}, the sidecar of {}: it is needed beside the prepared file (prepare again to write it)",
                side.display(),
                path.display()
            );
        }
        let text = wgan_models::limits::read_text_bounded(
            &side,
            wgan_models::limits::MAX_TEXT_FILE,
            "sidecar",
        )?;
        let sidecar: Sidecar = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a prepared data set's sidecar", side.display()))?;
        if sidecar.format != SIDECAR_FORMAT {
            bail!("{} is not a prepared data set's sidecar", side.display());
        }
        let pairs = [
            ("channels", sidecar.channels, self.channels),
            ("image size", sidecar.size, self.size),
            ("image count", sidecar.count, self.count),
            ("name count", sidecar.names.len(), self.count),
        ];
        for (what, said, is) in pairs {
            if said != is {
                bail!(
                    "{} does not match {}: it says {what} {said}, the file has {is}; prepare the data again",
                    side.display(),
                    path.display()
                );
            }
        }
        if sidecar.fingerprint != self.fingerprint || sidecar.labels != self.labels.is_some() {
            bail!(
                "{} does not match {}: its fingerprint {} is not the file's {}; prepare the data again",
                side.display(),
                path.display(),
                sidecar.fingerprint,
                self.fingerprint
            );
        }
        Ok(sidecar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, images: &[Vec<u8>], labels: Option<&[u8]>) -> Fingerprint {
        let mut w = PreparedWriter::create(path, 1, 2).unwrap();
        for im in images {
            w.push(im).unwrap();
        }
        w.finish(labels).unwrap().1
    }

    fn images() -> Vec<Vec<u8>> {
        (0..5u8).map(|i| vec![i, i + 10, i + 20, 255 - i]).collect()
    }

    #[test]
    fn written_images_read_back_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.u8");
        let fp = write(&p, &images(), Some(&[1, 2, 3, 4, 5]));
        assert!(is_prepared(&p));
        let f = PreparedFile::open(&p).unwrap();
        assert_eq!((f.channels, f.size, f.count), (1, 2, 5));
        assert_eq!(f.labels.as_deref(), Some(&[1u8, 2, 3, 4, 5][..]));
        assert_eq!(f.fingerprint, fp);
        let mut out = [0u8; 4];
        for (i, want) in images().iter().enumerate() {
            f.read(i, &mut out).unwrap();
            assert_eq!(&out[..], &want[..]);
        }
        f.verify().unwrap();
        f.check_unchanged().unwrap();
        // The fingerprint is the content's: another file of other bytes has another one.
        let q = dir.path().join("e.u8");
        let mut other = images();
        other[3][1] ^= 1;
        assert_ne!(write(&q, &other, Some(&[1, 2, 3, 4, 5])), fp);
        assert_eq!(write(&q, &images(), Some(&[1, 2, 3, 4, 5])), fp);
        // Text form round trip.
        assert_eq!(fp.to_string().parse::<Fingerprint>().unwrap(), fp);
    }

    #[test]
    fn truncated_damaged_and_foreign_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.u8");
        write(&p, &images(), None);
        let bytes = std::fs::read(&p).unwrap();
        let e = |b: &[u8]| {
            std::fs::write(&p, b).unwrap();
            format!("{:#}", PreparedFile::open(&p).unwrap_err())
        };
        assert!(e(&bytes[..bytes.len() - 3]).contains("truncated"));
        assert!(e(&bytes[..30]).contains("fewer than a header"));
        let mut v = bytes.clone();
        v[8] = 9;
        assert!(e(&v).contains("format version 9"), "{}", e(&v));
        let mut v = bytes.clone();
        v[0] = b'X';
        assert!(e(&v).contains("not a prepared data set"));
        // A byte flipped inside an image: the layout is fine, the content is not.
        let mut v = bytes.clone();
        v[20] ^= 0xff;
        std::fs::write(&p, &v).unwrap();
        let f = PreparedFile::open(&p).unwrap();
        let err = format!("{:#}", f.verify().unwrap_err());
        assert!(
            err.contains("damaged") && err.contains("fingerprint"),
            "{err}"
        );
        // Missing bytes in the middle: the trailer's count no longer fits the length.
        let mut v = bytes.clone();
        v.drain(20..24);
        assert!(e(&v).contains("not its length"), "{}", e(&v));
    }

    #[test]
    fn truncation_and_replacement_while_open_are_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.u8");
        write(&p, &images(), None);
        let f = PreparedFile::open(&p).unwrap();
        // Replaced: a new file renamed over the path.
        let q = dir.path().join("new.u8");
        write(&q, &images(), None);
        std::fs::rename(&q, &p).unwrap();
        let e = format!("{:#}", f.check_unchanged().unwrap_err());
        assert!(e.contains("replaced"), "{e}");
        // Truncated in place.
        let f = PreparedFile::open(&p).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(20)
            .unwrap();
        let e = format!("{:#}", f.check_unchanged().unwrap_err());
        assert!(e.contains("truncated"), "{e}");
        let mut out = [0u8; 4];
        let e = format!("{:#}", f.read(4, &mut out).unwrap_err());
        assert!(e.contains("truncated while it was being read"), "{e}");
    }

    #[test]
    fn the_sidecar_must_describe_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.u8");
        let fp = write(&p, &images(), None);
        let f = PreparedFile::open(&p).unwrap();
        let e = format!("{:#}", f.check_sidecar().unwrap_err());
        assert!(e.contains("d.u8.json") && e.contains("sidecar"), "{e}");
        let source = SourceRecord {
            kind: "folder".into(),
            path: dir.path().to_path_buf(),
            files: vec![],
        };
        let names: Vec<String> = (0..5).map(|i| format!("{i}.png")).collect();
        let good = Sidecar::new(1, 2, 5, false, fp, "d".into(), source, vec![], names);
        good.write(&p).unwrap();
        assert_eq!(f.check_sidecar().unwrap(), good);
        let mut bad = good.clone();
        bad.count = 6;
        bad.write(&p).unwrap();
        let e = format!("{:#}", f.check_sidecar().unwrap_err());
        assert!(e.contains("image count 6"), "{e}");
        let mut bad = good.clone();
        bad.fingerprint = Fingerprint(fp.0 ^ 1);
        bad.write(&p).unwrap();
        let e = format!("{:#}", f.check_sidecar().unwrap_err());
        assert!(e.contains("fingerprint"), "{e}");
    }
}
