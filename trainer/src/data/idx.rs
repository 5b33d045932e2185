//! IDX files (MNIST's format) read whole and bounded: gzipped or not, never more bytes than
//! the header says the file holds.

use anyhow::{anyhow, bail, Context, Result};
use std::io::Read;
use std::path::Path;

/// The bytes of `data`, decompressed when they start with the gzip magic `1f 8b`. An IDX file
/// says its own length in its header, so at most that many bytes are inflated: a stream that
/// inflates to more (4 GiB of zeros behind a 60,000-image header, say) is refused without
/// being read to its end.
pub(super) fn maybe_gunzip(data: &[u8], name: &str) -> Result<Vec<u8>> {
    if !data.starts_with(&[0x1f, 0x8b]) {
        return Ok(data.to_vec());
    }
    let corrupt = |e: std::io::Error| {
        anyhow!("{name} is not a valid gzip file ({e}): it is corrupt or truncated")
    };
    let mut reader = flate2::read::MultiGzDecoder::new(data);
    let mut header = Vec::with_capacity(16);
    (&mut reader)
        .take(16)
        .read_to_end(&mut header)
        .map_err(corrupt)?;
    let want = idx_length(&header).unwrap_or(header.len() as u64);
    let limit = want.max(header.len() as u64);
    wgan_models::limits::check_memory(
        &format!("decompressing {name}"),
        limit,
        "use a smaller file",
    )?;
    let mut out = header;
    out.reserve((limit as usize).saturating_sub(out.len()).min(1 << 30));
    (&mut reader)
        .take(limit.saturating_sub(out.len() as u64) + 1)
        .read_to_end(&mut out)
        .map_err(corrupt)?;
    if out.len() as u64 > limit {
        bail!("{name} inflates to more bytes than its IDX header says ({limit}): it is not a valid MNIST file");
    }
    Ok(out)
}

/// Largest gzipped IDX file read (the full MNIST training images are 9.9 MB).
const MAX_GZIP_FILE: u64 = 1 << 30;

/// The bytes an IDX file's header says it has (its 4-byte magic and dimensions included), or
/// `None` when `header` is not an IDX header of 1 or 3 dimensions.
fn idx_length(header: &[u8]) -> Option<u64> {
    let dims = match header.get(..4)? {
        [0, 0, 8, d @ (1 | 3)] => *d as usize,
        _ => return None,
    };
    if header.len() < 4 + 4 * dims {
        return None;
    }
    (0..dims)
        .map(|i| be_u32(header, 1 + i) as u64)
        .try_fold(1u64, |acc, d| acc.checked_mul(d))?
        .checked_add(4 + 4 * dims as u64)
}

/// Reads an IDX file, gzipped or not, never more than its header says it holds (a device
/// that never ends or a file padded with gigabytes is refused without being read through).
pub(super) fn read_file(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(16).read_to_end(&mut head))
        .with_context(|| format!("cannot read MNIST file {}", path.display()))?;
    let name = path.display().to_string();
    if head.starts_with(&[0x1f, 0x8b]) {
        let raw = wgan_models::limits::read_bounded(path, MAX_GZIP_FILE, "gzipped MNIST file")?;
        return maybe_gunzip(&raw, &name);
    }
    match idx_length(&head) {
        Some(len) => wgan_models::limits::read_bounded(path, len, "MNIST file")
            .with_context(|| format!("{name} is longer than its IDX header says ({len} bytes): it is not a valid MNIST file")),
        // Not an IDX header: say why from what was read.
        None => Ok(head),
    }
}

pub(super) fn be_u32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}
