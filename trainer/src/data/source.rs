//! A source of images, listed but not yet decoded: a folder, a zip archive, MNIST IDX files,
//! CIFAR-10 batches or the embedded digits. Every source goes through the same preparation
//! ([`super::prepare`]), which decodes its items in parallel into 8-bit samples.

use super::prepared::{SourceFile, SourceRecord};
use anyhow::Result;

/// Why one item of a source is skipped: one line for the skipped-items report.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

impl From<String> for Unreadable {
    fn from(why: String) -> Self {
        Unreadable(why)
    }
}

impl From<&str> for Unreadable {
    fn from(why: &str) -> Self {
        Unreadable(why.to_string())
    }
}

/// Decodes items of a [`Source`]; each worker thread has its own (a zip archive needs its own
/// file handle, say).
pub trait Decoder {
    /// Decodes item `i` into `out` (`channels · size · size` bytes, CHW). An error is one line
    /// saying why the item is skipped.
    fn decode(
        &mut self,
        i: usize,
        channels: usize,
        size: usize,
        out: &mut [u8],
    ) -> Result<(), Unreadable>;
}

/// A listed set of images (see the module documentation).
pub trait Source: Sync {
    /// Items (files, archive entries, records), in the order the data set keeps.
    fn len(&self) -> usize;
    /// Whether the source has no items.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The name of item `i`: its path relative to the source, its entry name, or
    /// `file#index` for records. The held-out split hashes these.
    fn name(&self, i: usize) -> String;
    /// A decoder for one worker thread.
    fn decoder(&self) -> Result<Box<dyn Decoder + '_>>;
    /// The class labels of every item, where the format has them.
    fn labels(&self) -> Option<&[u8]> {
        None
    }
    /// The source as the sidecar records it: kind, path and input files.
    fn record(&self) -> SourceRecord;
    /// One line for `count` images decoded to `channels` × `size`², e.g. "MNIST IDX
    /// train-images-idx3-ubyte.gz (9000 images, 28×28 → 32×32, 1 channel)".
    fn describe(&self, count: usize, channels: usize, size: usize) -> String;
}

/// What changed between the input files recorded when a data set was prepared and those there
/// now, in one line (`None` when nothing did): counts of added, removed and modified files
/// with the first name of each.
pub fn changes(recorded: &[SourceFile], now: &[SourceFile]) -> Option<String> {
    use std::collections::BTreeMap;
    let before: BTreeMap<&str, &SourceFile> =
        recorded.iter().map(|f| (f.name.as_str(), f)).collect();
    let after: BTreeMap<&str, &SourceFile> = now.iter().map(|f| (f.name.as_str(), f)).collect();
    let added: Vec<&str> = after
        .keys()
        .filter(|k| !before.contains_key(*k))
        .copied()
        .collect();
    let removed: Vec<&str> = before
        .keys()
        .filter(|k| !after.contains_key(*k))
        .copied()
        .collect();
    let modified: Vec<&str> = after
        .iter()
        .filter(|(k, f)| before.get(*k).is_some_and(|b| b != *f))
        .map(|(k, _)| *k)
        .collect();
    let mut parts = Vec::new();
    for (list, what) in [
        (added, "added"),
        (removed, "removed"),
        (modified, "modified"),
    ] {
        if let Some(first) = list.first() {
            let s = if list.len() == 1 { "" } else { "s" };
            parts.push(format!("{} file{s} {what} (first: {first})", list.len()));
        }
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// "1 channel" / "3 channels".
pub(crate) fn channels_text(channels: usize) -> String {
    if channels == 1 {
        "1 channel".to_string()
    } else {
        format!("{channels} channels")
    }
}

/// "28×28" or "28×28 → 32×32" when resized.
pub(crate) fn resize_text(w: usize, h: usize, size: usize) -> String {
    if w == size && h == size {
        format!("{w}×{h}")
    } else {
        format!("{w}×{h} → {size}×{size}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, bytes: u64, t: i128) -> SourceFile {
        SourceFile {
            name: name.into(),
            bytes,
            modified_ns: t,
        }
    }

    #[test]
    fn changes_name_added_removed_and_modified_files() {
        let a = vec![f("a.jpg", 1, 1), f("b.jpg", 2, 2), f("c.jpg", 3, 3)];
        assert_eq!(changes(&a, &a), None);
        let b = vec![
            f("a.jpg", 1, 1),
            f("c.jpg", 3, 4),
            f("d.jpg", 4, 4),
            f("e.jpg", 4, 4),
        ];
        assert_eq!(
            changes(&a, &b).unwrap(),
            "2 files added (first: d.jpg), 1 file removed (first: b.jpg), 1 file modified (first: c.jpg)"
        );
    }
}
