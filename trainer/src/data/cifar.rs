//! CIFAR-10, binary version: records of 1 label byte + 3072 pixel bytes (1024 R, 1024 G, 1024 B,
//! each a row-major 32×32 plane).

use super::{
    channels_text, dir_file_names, par_fill, resize_text, rgb_from_planes, rgb_to_sample, Dataset,
};
use anyhow::{bail, Context, Result};
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

fn read_batch(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read CIFAR-10 file {}", path.display()))?;
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

pub(crate) fn load(path: &Path, channels: usize, size: usize) -> Result<Dataset> {
    let files = batch_files(path)?;
    let mut records = Vec::new();
    for f in &files {
        records.extend_from_slice(&read_batch(f)?);
    }
    let n = records.len() / RECORD;
    let sample_len = channels * size * size;
    let mut images = super::image_buffer(n, sample_len)?;
    par_fill(&mut images, sample_len, |i, out| {
        let px = &records[i * RECORD + 1..(i + 1) * RECORD];
        let (r, g, b) = (&px[..PLANE], &px[PLANE..2 * PLANE], &px[2 * PLANE..]);
        let img = rgb_from_planes(SIDE as u32, SIDE as u32, r, g, b);
        rgb_to_sample(img, channels, size, out);
    });
    let shown = match files.as_slice() {
        [one] => one.display().to_string(),
        [first, .., last] => format!(
            "{} ({} files: {} … {})",
            path.display(),
            files.len(),
            first.file_name().unwrap_or_default().to_string_lossy(),
            last.file_name().unwrap_or_default().to_string_lossy()
        ),
        [] => unreachable!("batch_files never answers an empty list"),
    };
    let description = format!(
        "CIFAR-10 binary {shown} ({n} images, {}, {})",
        resize_text(SIDE, SIDE, size),
        channels_text(channels)
    );
    Ok(Dataset {
        images,
        len: n,
        channels,
        size,
        description,
        skipped: 0,
        labels: None,
    })
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
            let im = ds.image(i);
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
        assert!((g.image(2)[5] - want).abs() < 1e-5);
        // Resized to 16.
        let s = load(d, Format::Cifar10, 3, 16).unwrap();
        assert_eq!(s.images.len(), 6 * 3 * 16 * 16);
        assert!(s.description.contains("32×32 → 16×16"));
        assert!(s.images.iter().all(|v| (-1.0..=1.0).contains(v)));
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
