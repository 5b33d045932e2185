//! Minimal `.npy` reading and writing for little-endian `f32` arrays in C order.
//!
//! Reads format versions 1.0, 2.0 and 3.0; writes 1.0 (2.0 when the header needs it). Any other
//! dtype, Fortran order or a length that does not match the shape is an error naming what was
//! found. [`NpyWriter`] streams a large array to disk batch by batch (temporary file, renamed
//! over the target when complete; devices and FIFOs such as `/dev/null` are written in place,
//! see [`crate::output`]).

use anyhow::{bail, ensure, Context, Result};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::output::OutputFile;

const MAGIC: &[u8] = b"\x93NUMPY";

/// An `f32` array read from a `.npy` file.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Largest `.npy` header read (numpy writes a few hundred bytes).
const MAX_HEADER: usize = 1 << 20;

/// Reads a `.npy` file holding little-endian `f32` ('<f4') values in C order. Only as many
/// bytes as the header's shape calls for are read (and one more, to tell a longer file), so a
/// device or pipe that never ends is an error, not a read without end.
pub fn read_f32(path: &Path) -> Result<Array> {
    use std::io::Read;
    let shown = || format!("{} is not a usable .npy file", path.display());
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut bytes = Vec::new();
    let mut read_up_to = |bytes: &mut Vec<u8>, n: u64| {
        (&mut reader)
            .take(n)
            .read_to_end(bytes)
            .with_context(|| format!("cannot read {}", path.display()))
    };
    read_up_to(&mut bytes, 12)?;
    let (start, header_len) = header_extent(&bytes).with_context(shown)?;
    let have = bytes.len() as u64;
    read_up_to(
        &mut bytes,
        ((start + header_len) as u64).saturating_sub(have),
    )?;
    let (_, _, needed) = parse_header(&bytes).with_context(shown)?;
    crate::limits::check_memory(
        &format!("reading {}", path.display()),
        needed,
        "use a smaller file",
    )?;
    read_up_to(&mut bytes, needed.saturating_add(1))?;
    parse_f32(&bytes).with_context(shown)
}

/// Where the header starts and how long it is, from the first 12 bytes.
fn header_extent(bytes: &[u8]) -> Result<(usize, usize)> {
    ensure!(
        bytes.len() >= 10 && bytes.starts_with(MAGIC),
        "no .npy magic number (\\x93NUMPY) at the start"
    );
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            ensure!(bytes.len() >= 12, "truncated header");
            (
                u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
                12,
            )
        }
        v => bail!("unsupported .npy format version {v}.{}", bytes[7]),
    };
    ensure!(
        header_len <= MAX_HEADER,
        "its header claims {header_len} bytes, more than the {MAX_HEADER} a .npy header can be here"
    );
    Ok((start, header_len))
}

/// The data offset, shape and data byte count of a `.npy` file's header (in `bytes`).
fn parse_header(bytes: &[u8]) -> Result<(usize, Vec<usize>, u64)> {
    let (start, header_len) = header_extent(bytes)?;
    ensure!(bytes.len() >= start + header_len, "truncated header");
    let header =
        std::str::from_utf8(&bytes[start..start + header_len]).context("header is not text")?;
    let descr = dict_value(header, "descr").context("header has no 'descr'")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let fortran = dict_value(header, "fortran_order").context("header has no 'fortran_order'")?;
    let shape_text = dict_value(header, "shape").context("header has no 'shape'")?;
    let shape = parse_shape(shape_text)?;
    if descr != "<f4" {
        bail!(
            "it holds {} values ('{descr}'); expected float32 ('<f4')",
            dtype_name(descr)
        );
    }
    ensure!(
        fortran == "False",
        "it is in Fortran order; expected C order"
    );
    let count = crate::limits::count(&format!("shape {shape:?}"), &shape)?;
    let needed = crate::limits::bytes(&format!("shape {shape:?}"), count, 4)?;
    Ok((start + header_len, shape, needed))
}

/// Parses the bytes of a `.npy` file (see [`read_f32`]).
pub fn parse_f32(bytes: &[u8]) -> Result<Array> {
    let (data_start, shape, needed) = parse_header(bytes)?;
    let body = &bytes[data_start..];
    ensure!(
        body.len() as u64 == needed,
        "shape {shape:?} needs {needed} data bytes, found {}",
        body.len()
    );
    let data = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    Ok(Array { shape, data })
}

fn dtype_name(descr: &str) -> &'static str {
    match descr.trim_start_matches(['<', '>', '=', '|']) {
        "f2" => "float16",
        "f4" if descr.starts_with('>') => "big-endian float32",
        "f4" => "float32",
        "f8" => "float64",
        "i1" => "int8",
        "i2" => "int16",
        "i4" => "int32",
        "i8" => "int64",
        "u1" => "uint8",
        "b1" => "bool",
        _ => "unsupported",
    }
}

/// The text after `'key':` up to the next top-level comma or closing brace.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat_single = format!("'{key}'");
    let pat_double = format!("\"{key}\"");
    let at = header
        .find(&pat_single)
        .or_else(|| header.find(&pat_double))?;
    let rest = &header[at + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let mut depth = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(rest[..=i].trim());
                }
            }
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

fn parse_shape(text: &str) -> Result<Vec<usize>> {
    let inner = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .with_context(|| format!("bad shape {text}"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .with_context(|| format!("bad shape {text}"))
        })
        .collect()
}

/// The header bytes (magic, version, length, dict, padding) for an `f32` C-order array.
fn header(shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // Version 1.0 has a u16 length; the total header is padded to a multiple of 64 bytes.
    let (version, prefix) = if dict.len() + 11 + 10 < 65536 {
        (1u8, 10)
    } else {
        (2u8, 12)
    };
    let total = (prefix + dict.len() + 1).div_ceil(64) * 64;
    let hlen = total - prefix;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(hlen as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(hlen as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out
}

/// Writes `data` with `shape` as a `.npy` file: atomically, or in place for a device or FIFO
/// (see [`NpyWriter`]).
/// The bytes of a `.npy` file holding `data` (little-endian f32, C order) of `shape`.
pub fn to_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let mut out = header(shape);
    out.reserve(data.len() * 4);
    data.iter()
        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    out
}

pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let mut w = NpyWriter::create(path, shape)?;
    w.write(data)?;
    w.finish()
}

/// Streams an `f32` array of a known shape to a `.npy` file in pieces.
///
/// For a new or regular file ([`crate::output::Destination::Replace`]) data goes to a temporary file beside
/// the target, renamed over it by [`NpyWriter::finish`] once exactly `shape.product()` values
/// were written; dropped unfinished, it removes the temporary file. An existing device, FIFO
/// or socket ([`crate::output::Destination::InPlace`]) is written directly as the data comes. A directory or
/// block device is refused by [`NpyWriter::create`].
pub struct NpyWriter {
    out: BufWriter<OutputFile>,
    /// The path as given, for messages.
    path: PathBuf,
    expected: usize,
    written: usize,
}

impl NpyWriter {
    /// Opens the destination and writes the header of an array of `shape`.
    pub fn create(path: &Path, shape: &[usize]) -> Result<Self> {
        let mut out = BufWriter::new(OutputFile::create(path)?);
        out.write_all(&header(shape))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self {
            out,
            path: path.to_path_buf(),
            expected: shape.iter().product(),
            written: 0,
        })
    }

    /// Appends values (C order).
    pub fn write(&mut self, values: &[f32]) -> Result<()> {
        ensure!(
            self.written + values.len() <= self.expected,
            "{}: more values than the declared shape holds",
            self.path.display()
        );
        let mut buf = Vec::with_capacity(values.len() * 4);
        values
            .iter()
            .for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
        self.out
            .write_all(&buf)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.written += values.len();
        Ok(())
    }

    /// Checks the count and flushes; for a file, syncs it and renames it into place.
    pub fn finish(self) -> Result<()> {
        ensure!(
            self.written == self.expected,
            "{}: wrote {} values, the shape declares {}",
            self.path.display(),
            self.written,
            self.expected
        );
        self.out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {}", self.path.display()))?
            .commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wgan_test_support::fs::*;

    #[test]
    fn round_trip_and_header_alignment() {
        let dir = tempdir();
        let p = dir.join("a.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write_f32(&p, &[2, 3, 4], &data).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!((bytes.len() - 24 * 4) % 64, 0);
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let a = read_f32(&p).unwrap();
        assert_eq!(a.shape, vec![2, 3, 4]);
        assert_eq!(a.data, data);
        write_f32(&p, &[3], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(read_f32(&p).unwrap().shape, vec![3]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn reads_what_numpy_writes() {
        // np.save of np.arange(3, dtype='<f4').reshape(1, 3): header as numpy 2 writes it.
        let mut bytes = b"\x93NUMPY\x01\x00v\x00".to_vec();
        let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3), }";
        bytes.extend_from_slice(dict.as_bytes());
        bytes.resize(127, b' ');
        bytes.push(b'\n');
        for v in [0f32, 1.0, 2.0] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let a = parse_f32(&bytes).unwrap();
        assert_eq!((a.shape, a.data), (vec![1, 3], vec![0.0, 1.0, 2.0]));
    }

    #[test]
    fn rejects_other_dtypes_orders_and_lengths() {
        fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
            let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
            [&bytes[..at], to, &bytes[at + from.len()..]].concat()
        }
        let mut h = header(&[2]);
        let mut b = replace(&h, b"<f4", b"<f8");
        b.extend_from_slice(&[0u8; 16]);
        let e = parse_f32(&b).unwrap_err().to_string();
        assert!(e.contains("float64") && e.contains("'<f8'"), "{e}");
        let mut b = replace(&h, b"False", b"True ");
        b.extend_from_slice(&[0u8; 8]);
        assert!(parse_f32(&b).unwrap_err().to_string().contains("Fortran"));
        h.extend_from_slice(&[0u8; 7]);
        assert!(parse_f32(&h)
            .unwrap_err()
            .to_string()
            .contains("needs 8 data bytes"));
        assert!(parse_f32(b"not numpy at all").is_err());
        assert!(parse_f32(b"").is_err());
    }

    #[test]
    fn streaming_writer_checks_count_and_cleans_up() {
        let dir = tempdir();
        let p = dir.join("s.npy");
        let mut w = NpyWriter::create(&p, &[2, 2]).unwrap();
        w.write(&[1.0, 2.0]).unwrap();
        w.write(&[3.0, 4.0]).unwrap();
        assert!(w.write(&[5.0]).is_err());
        w.finish().unwrap();
        assert_eq!(read_f32(&p).unwrap().data, vec![1.0, 2.0, 3.0, 4.0]);
        let mut w = NpyWriter::create(&dir.join("t.npy"), &[4]).unwrap();
        w.write(&[1.0]).unwrap();
        assert!(w.finish().is_err());
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("s.npy")]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn streaming_writer_writes_fifos_in_place() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempdir();
        let fifo = dir.join("pipe.npy");
        mkfifo(&fifo);
        let reader = drain_fifo(&fifo);
        write_f32(&fifo, &[3], &[1.0, 2.0, 3.0]).unwrap();
        assert!(std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo());
        let a = parse_f32(&reader.join().unwrap()).unwrap();
        assert_eq!((a.shape, a.data), (vec![3], vec![1.0, 2.0, 3.0]));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let e = NpyWriter::create(&dir, &[1]).err().unwrap().to_string();
        assert!(e.ends_with("it is a folder"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
