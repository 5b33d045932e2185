//! What a prepared file's JSON sidecar (`FILE.json`) records: the content fingerprint, the
//! source files and their identities, the files skipped and why, and each image's name.

use super::prepared::{FORMAT_VERSION, PIPELINE_VERSION, SIDECAR_FORMAT};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A content fingerprint: xxh3-128 of the image bytes followed by the label bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub u128);

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "xxh3-128:{:032x}", self.0)
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let hex = s
            .strip_prefix("xxh3-128:")
            .with_context(|| format!("'{s}' is not an xxh3-128 fingerprint"))?;
        Ok(Fingerprint(u128::from_str_radix(hex, 16).with_context(
            || format!("'{s}' is not an xxh3-128 fingerprint"),
        )?))
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One input file of a source, as it was when the data set was prepared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// Path relative to the source (the file's own name for a single-file source).
    pub name: String,
    pub bytes: u64,
    /// Modification time, nanoseconds since the epoch.
    pub modified_ns: i128,
}

impl SourceFile {
    /// The record of `path`, named `name`.
    pub fn of(path: &Path, name: String) -> Result<Self> {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Self {
            name,
            bytes: meta.len(),
            modified_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        })
    }
}

/// Where a prepared data set came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// `folder`, `zip`, `mnist`, `cifar10` or `embedded`.
    pub kind: String,
    /// The source path, absolute (empty for the embedded digits).
    pub path: PathBuf,
    /// Every input file with its size and modification time, sorted by name.
    pub files: Vec<SourceFile>,
}

/// A file or record that could not be decoded, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

/// The sidecar `FILE.json` of a prepared file (see the module documentation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    pub format: String,
    pub format_version: u32,
    pub pipeline_version: u32,
    pub channels: usize,
    pub size: usize,
    pub count: usize,
    pub labels: bool,
    pub fingerprint: Fingerprint,
    /// One line: format, path, image count, shape.
    pub description: String,
    pub source: SourceRecord,
    pub skipped: Vec<Skipped>,
    /// The name of each image, in file order (the held-out split hashes them).
    pub names: Vec<String>,
}

/// The sidecar path of prepared file `path`: `path` with `.json` appended.
pub fn sidecar_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

impl Sidecar {
    /// A sidecar for a file of `count` images with `fingerprint`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        channels: usize,
        size: usize,
        count: usize,
        labels: bool,
        fingerprint: Fingerprint,
        description: String,
        source: SourceRecord,
        skipped: Vec<Skipped>,
        names: Vec<String>,
    ) -> Self {
        Self {
            format: SIDECAR_FORMAT.to_string(),
            format_version: FORMAT_VERSION,
            pipeline_version: PIPELINE_VERSION,
            channels,
            size,
            count,
            labels,
            fingerprint,
            description,
            source,
            skipped,
            names,
        }
    }

    /// Writes the sidecar of prepared file `path`, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        wgan_models::output::write_atomic(
            &sidecar_path(path),
            serde_json::to_string_pretty(self)?.as_bytes(),
        )
    }
}
