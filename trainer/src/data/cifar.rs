//! CIFAR-10, binary version: records of 1 label byte + 3072 pixel bytes (1024 R, 1024 G, 1024 B,
//! each a row-major 32×32 plane).

use super::decode::planes_to_sample;
use super::dir_file_names;
use super::prepared::{SourceFile, SourceRecord};
use super::source::Unreadable;
use super::source::{channels_text, resize_text, Decoder, Source};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

const SIDE: usize = 32;
const PLANE: usize = SIDE * SIDE;
const RECORD: usize = 1 + 3 * PLANE;

/// `data_batch_*.bin` or `test_batch.bin`.
pub(crate) fn is_batch_name(name: &str) -> bool {
    is_data_batch(name) || name == "test_batch.bin"
}

fn is_data_batch(name: &str) -> bool {
    name.starts_with("data_batch_") && name.ends_with(".bin")
}

/// Sort key: the batch number when there is one (so `data_batch_10` follows `data_batch_9`).
fn batch_key(name: &str) -> (u64, String) {
    let n = name
        .trim_start_matches("data_batch_")
        .trim_end_matches(".bin")
        .parse()
        .unwrap_or(u64::MAX);
    (n, name.to_string())
}

/// The batch files to read for `path` (a `.bin` file or a directory).
fn batch_files(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let names = dir_file_names(path)?;
    let mut data: Vec<&String> = names.iter().filter(|n| is_data_batch(n)).collect();
    data.sort_by_key(|n| batch_key(n));
    if !data.is_empty() {
        return Ok(data.into_iter().map(|n| path.join(n)).collect());
    }
    if names.iter().any(|n| n == "test_batch.bin") {
        return Ok(vec![path.join("test_batch.bin")]);
    }
    bail!(
        "directory {} holds no CIFAR-10 binary batches (data_batch_*.bin or test_batch.bin): pass \
         the cifar-10-batches-bin directory or one .bin file",
        path.display()
    )
}

/// Most records read from one batch file (the real ones hold 10,000).
const MAX_RECORDS: u64 = 100_000;

fn read_batch(path: &Path) -> Result<Vec<u8>> {
    let bytes = wgan_models::limits::read_bounded(
        path,
        MAX_RECORDS * RECORD as u64,
        "CIFAR-10 batch file",
    )?;
    if bytes.is_empty() {
        bail!("CIFAR-10 file {} is empty", path.display());
    }
    if bytes.len() % RECORD != 0 {
        let hint = if bytes.len() % (RECORD + 1) == 0 {
            " (records of 3074 bytes: that looks like CIFAR-100, which is not supported)"
        } else {
            " (truncated or not a CIFAR-10 binary batch)"
        };
        bail!(
            "CIFAR-10 file {} has {} bytes, not a multiple of the 3073-byte record (1 label + \
             3072 pixels){hint}",
            path.display(),
            bytes.len()
        );
    }
    Ok(bytes)
}

/// CIFAR-10 records from one or more batch files.
pub(crate) struct CifarSource {
    path: PathBuf,
    files: Vec<PathBuf>,
    records: Vec<u8>,
    /// (first record, file name) of each file, for item names.
    starts: Vec<(usize, String)>,
}

impl CifarSource {
    /// The batches of `path` (a `.bin` file, or a directory: its `data_batch_*.bin`, else its
    /// `test_batch.bin`).
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let files = batch_files(&path)?;
        let mut records = Vec::new();
        let mut starts = Vec::new();
        for f in &files {
            let name = f
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            starts.push((records.len() / RECORD, name));
            records.extend_from_slice(&read_batch(f)?);
        }
        // The class labels are not kept: eval's class measures are those of digits.
        Ok(Self {
            path,
            files,
            records,
            starts,
        })
    }
}

struct CifarDecoder<'a>(&'a CifarSource);

impl Decoder for CifarDecoder<'_> {
    fn decode(
        &mut self,
        i: usize,
        channels: usize,
        size: usize,
        out: &mut [u8],
    ) -> Result<(), Unreadable> {
        let px = &self.0.records[i * RECORD + 1..(i + 1) * RECORD];
        let planes = [&px[..PLANE], &px[PLANE..2 * PLANE], &px[2 * PLANE..]];
        planes_to_sample(SIDE, SIDE, planes, channels, size, out);
        Ok(())
    }
}

impl Source for CifarSource {
    fn len(&self) -> usize {
        self.records.len() / RECORD
    }

    fn name(&self, i: usize) -> String {
        let k = self.starts.partition_point(|(first, _)| *first <= i) - 1;
        let (first, file) = &self.starts[k];
        format!("{file}#{}", i - first)
    }

    fn decoder(&self) -> Result<Box<dyn Decoder + '_>> {
        Ok(Box::new(CifarDecoder(self)))
    }

    fn record(&self) -> SourceRecord {
        let files = self
            .files
            .iter()
            .map(|f| {
                let name = f
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                SourceFile::of(f, name)
            })
            .collect::<Result<Vec<_>>>();
        SourceRecord {
            kind: "cifar10".into(),
            path: self.path.clone(),
            // The files were just read; a failure to stat one now records none of them, which
            // a later comparison reports as changed.
            files: files.unwrap_or_default(),
        }
    }

    fn describe(&self, count: usize, channels: usize, size: usize) -> String {
        let shown = match self.files.as_slice() {
            [one] => one.display().to_string(),
            [first, .., last] => format!(
                "{} ({} files: {} … {})",
                self.path.display(),
                self.files.len(),
                first.file_name().unwrap_or_default().to_string_lossy(),
                last.file_name().unwrap_or_default().to_string_lossy()
            ),
            [] => self.path.display().to_string(),
        };
        format!(
            "CIFAR-10 binary {shown} ({count} images, {}, {})",
            resize_text(SIDE, SIDE, size),
            channels_text(channels)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::RECORD;
    use crate::data::test_util::write;
    use crate::data::{load, Format};

    /// `n` records; record `i` has R = i, G = 100 + i, B = 200 + i everywhere except pixel
    /// (row 0, col 1) whose R is 255.
    fn records(first: usize, n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for i in first..first + n {
            v.push((i % 10) as u8);
            let mut r = vec![i as u8; 1024];
            r[1] = 255;
            v.extend_from_slice(&r);
            v.extend(std::iter::repeat_n((100 + i) as u8, 1024));
            v.extend(std::iter::repeat_n((200 + i) as u8, 1024));
        }
        v
    }

    #[test]
    fn records_decode_to_planes_in_batch_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(&d.join("data_batch_2.bin"), &records(3, 2));
        write(&d.join("data_batch_1.bin"), &records(0, 3));
        write(&d.join("data_batch_10.bin"), &records(5, 1));
        write(&d.join("test_batch.bin"), &records(50, 4)); // ignored: data batches exist
        let ds = load(d, Format::Auto, 3, 32).unwrap();
        assert_eq!((ds.len, ds.channels, ds.size), (6, 3, 32));
        assert!(
            ds.description.contains("3 files") && ds.description.contains("6 images"),
            "{}",
            ds.description
        );
        for i in 0..6 {
            let im = ds.image(i).unwrap();
            let v = |b: usize| b as f32 / 127.5 - 1.0;
            assert_eq!(im[0], v(i), "image {i} in batch order 1, 2, 10");
            assert_eq!(im[1], 1.0);
            assert_eq!(im[1024], v(100 + i));
            assert_eq!(im[2048 + 1023], v(200 + i));
        }
        // One channel: luma.
        let g = load(&d.join("data_batch_1.bin"), Format::Auto, 1, 32).unwrap();
        assert_eq!(g.len, 3);
        let want = (0.299 * 2.0 + 0.587 * 102.0 + 0.114 * 202.0) / 255.0 * 2.0 - 1.0;
        // Rounded to 8 bits: within half a level (1/255 in [-1, 1]).
        assert!((g.image(2).unwrap()[5] - want).abs() <= 1.0 / 255.0);
        // Resized to 16.
        let s = load(d, Format::Cifar10, 3, 16).unwrap();
        assert_eq!(s.images().unwrap().len(), 6 * 3 * 16 * 16);
        assert!(s.description.contains("32×32 → 16×16"));
        assert!(s.images().unwrap().iter().all(|v| (-1.0..=1.0).contains(v)));
    }

    #[test]
    fn test_batch_is_used_only_without_data_batches() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("test_batch.bin"), &records(0, 2));
        write(&dir.path().join("batches.meta.txt"), b"airplane\n");
        assert_eq!(load(dir.path(), Format::Auto, 3, 32).unwrap().len, 2);
    }

    #[test]
    fn bad_record_size_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = records(0, 2);
        bytes.pop();
        write(&dir.path().join("data_batch_1.bin"), &bytes);
        let e = format!("{:#}", load(dir.path(), Format::Auto, 3, 32).unwrap_err());
        assert!(
            e.contains("data_batch_1.bin") && e.contains("not a multiple of the 3073-byte record"),
            "{e}"
        );
        let c100 = vec![0u8; 2 * (RECORD + 1)];
        write(&dir.path().join("x/train.bin"), &c100);
        let e = format!(
            "{:#}",
            load(&dir.path().join("x/train.bin"), Format::Auto, 3, 32).unwrap_err()
        );
        assert!(e.contains("CIFAR-100"), "{e}");
        write(&dir.path().join("y/empty.bin"), b"");
        assert!(format!(
            "{:#}",
            load(&dir.path().join("y/empty.bin"), Format::Cifar10, 3, 32).unwrap_err()
        )
        .contains("is empty"));
        let e = format!(
            "{:#}",
            load(&dir.path().join("x"), Format::Cifar10, 3, 32).unwrap_err()
        );
        assert!(e.contains("holds no CIFAR-10 binary batches"), "{e}");
    }
}
