//! TensorBoard event files: what `tensorboard --logdir RUN/tensorboard` shows of a run.
//!
//! - Format: TFRecord framing (a little-endian `u64` length, its masked CRC-32C, the bytes, their
//!   masked CRC-32C; mask `rotr(crc, 15) + 0xa282ead8`) around `tensorflow.Event` protobuf
//!   messages. The first event of a file is `file_version: "brain.Event:2"`. Scalars are
//!   `Summary.Value.simple_value` and images `Summary.Image` (PNG), the forms TensorBoard lists
//!   as scalars and images. The messages below are the subset of TensorFlow's `event.proto` and
//!   `summary.proto` this writes, with their field numbers.
//! - Training (`RUN/tensorboard/events.out.tfevents.<seconds>.<host>.<pid>.<n>`): per generator
//!   step one event with a scalar per column of `metrics.csv` (`train/<column>`), and the sample
//!   grid (`samples`) at each step `samples/step_NNNNNN.png` is written.
//! - Resume: each session starts a new file whose first event after the version is
//!   `SessionLog.START` at the first step the session writes. TensorBoard then drops what
//!   earlier files hold from that step on (what a crashed session wrote after its last
//!   checkpoint), so no step shows twice.
//! - `trainer eval --all` (`RUN/tensorboard/<eval name>/`, a run of its own in TensorBoard):
//!   one event per checkpoint with its measures (`eval/<column of eval.csv>`), the file
//!   replaced as a whole by the next `eval --all` of that name.
//!
//! Event files are records, like `metrics.csv`: appended and flushed event by event, not
//! state a run depends on.

use anyhow::{Context, Result};
use prost::Message;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The folder in a run.
pub use wgan_models::checkpoint::TENSORBOARD_DIR;

#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5, 7")]
    what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
    #[prost(message, tag = "7")]
    SessionLog(SessionLog),
}

#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(oneof = "Kind", tags = "2, 4")]
    kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Kind {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    #[prost(message, tag = "4")]
    Image(SummaryImage),
}

#[derive(Clone, PartialEq, prost::Message)]
struct SummaryImage {
    #[prost(int32, tag = "1")]
    height: i32,
    #[prost(int32, tag = "2")]
    width: i32,
    /// 1 grey, 3 RGB.
    #[prost(int32, tag = "3")]
    colorspace: i32,
    #[prost(bytes = "vec", tag = "4")]
    encoded_image_string: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SessionLog {
    /// 1: START.
    #[prost(int32, tag = "1")]
    status: i32,
}

const SESSION_START: i32 = 1;

/// The CRC-32C of `bytes`, masked as TFRecord masks it.
fn masked_crc(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
        .rotate_right(15)
        .wrapping_add(0xa282_ead8)
}

/// One TFRecord around `data`.
fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn event(step: u64, what: What) -> Vec<u8> {
    record(
        &Event {
            wall_time: now(),
            step: step as i64,
            what: Some(what),
        }
        .encode_to_vec(),
    )
}

/// The first event of every file.
fn file_version_event() -> Vec<u8> {
    event(0, What::FileVersion("brain.Event:2".into()))
}

fn scalars_event(step: u64, values: &[(String, f64)]) -> Vec<u8> {
    let value = values
        .iter()
        .map(|(tag, v)| SummaryValue {
            tag: tag.clone(),
            kind: Some(Kind::SimpleValue(*v as f32)),
        })
        .collect();
    event(step, What::Summary(Summary { value }))
}

/// A file name TensorBoard reads, new in `dir`.
fn new_file_name(dir: &Path) -> PathBuf {
    let secs = now() as u64;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .unwrap_or_else(|| "localhost".into());
    let pid = std::process::id();
    (0..)
        .map(|n| dir.join(format!("events.out.tfevents.{secs:010}.{host}.{pid}.{n}")))
        .find(|p| !p.exists())
        .expect("a free name")
}

/// The event file one training session appends to.
pub struct EventWriter {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
    /// The step of the last sample grid written (a stop right after a sampled step saves the
    /// same grid again).
    last_image_step: Option<u64>,
}

impl EventWriter {
    /// Starts a new event file in `dir` (created if missing). `first_step` is the first step
    /// this session writes: after a resume, TensorBoard drops what earlier files hold from
    /// there on.
    pub fn create(dir: &Path, first_step: Option<u64>) -> Result<EventWriter> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = new_file_name(dir);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut w = EventWriter {
            file: std::io::BufWriter::new(file),
            path,
            last_image_step: None,
        };
        let mut head = file_version_event();
        if let Some(step) = first_step {
            head.extend(event(
                step,
                What::SessionLog(SessionLog {
                    status: SESSION_START,
                }),
            ));
        }
        w.write(&head)?;
        Ok(w)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .and_then(|()| self.file.flush())
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// Scalars `(tag, value)` at `step`, as one event.
    pub fn scalars(&mut self, step: u64, values: &[(String, f64)]) -> Result<()> {
        self.write(&scalars_event(step, values))
    }

    /// A PNG of `[channels, height, width]` as image `tag` at `step`; a second image at the
    /// same step as the last one is left out.
    pub fn image(
        &mut self,
        step: u64,
        tag: &str,
        png: Vec<u8>,
        [c, h, w]: [usize; 3],
    ) -> Result<()> {
        if self.last_image_step == Some(step) {
            return Ok(());
        }
        let image = SummaryImage {
            height: h as i32,
            width: w as i32,
            colorspace: c as i32,
            encoded_image_string: png,
        };
        let value = vec![SummaryValue {
            tag: tag.into(),
            kind: Some(Kind::Image(image)),
        }];
        self.write(&event(step, What::Summary(Summary { value })))?;
        self.last_image_step = Some(step);
        Ok(())
    }
}

/// Replaces the event files in `dir` with one holding `rows`: per step, scalars `(tag, value)`
/// (the file is written under a temporary name and renamed; the older ones are removed after).
pub fn replace_scalars(dir: &Path, rows: &[(u64, Vec<(String, f64)>)]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let old: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("events.out.tfevents."))
        })
        .collect();
    let path = new_file_name(dir);
    let mut bytes = file_version_event();
    for (step, values) in rows {
        bytes.extend(scalars_event(*step, values));
    }
    wgan_models::output::write_atomic(&path, &bytes)?;
    for p in old.iter().filter(|p| **p != path) {
        std::fs::remove_file(p).with_context(|| format!("cannot remove {}", p.display()))?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_tensorflows_masked_crc32c() {
        // CRC-32C check value (RFC 3720 B.4): 32 bytes of zeros give 0x8a9136aa.
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8a91_36aa);
        let r = record(b"abc");
        assert_eq!(r.len(), 8 + 4 + 3 + 4);
        assert_eq!(&r[..8], &3u64.to_le_bytes());
        let crc = crc32c::crc32c(b"abc");
        #[allow(clippy::manual_rotate)] // TensorFlow's formula as it writes it
        let masked = ((crc >> 15) | (crc << 17)).wrapping_add(0xa282_ead8);
        assert_eq!(&r[15..], &masked.to_le_bytes());
        // An event decodes back to what was written.
        let e = scalars_event(7, &[("train/x".into(), 0.25)]);
        let decoded = Event::decode(&e[12..e.len() - 4]).unwrap();
        assert_eq!(decoded.step, 7);
        let Some(What::Summary(s)) = decoded.what else {
            panic!("a summary")
        };
        assert_eq!(s.value[0].tag, "train/x");
        assert_eq!(s.value[0].kind, Some(Kind::SimpleValue(0.25)));
    }
}
