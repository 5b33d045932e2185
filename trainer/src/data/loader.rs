//! An infinite, shuffled, resumable stream of batches, assembled on a background thread.
//!
//! The stream of sample indices is a pure function of `(seed, len, cursor)`: epoch `e` is the
//! permutation of `0..len` made by `Rng::new(seed ^ e · 0x9E37_79B9_7F4A_7C15).shuffle` applied to
//! `[0, 1, …, len − 1]`, and the stream concatenates epochs 0, 1, 2, … Position `p` of the stream
//! is `perm_{p / len}[p % len]`. A batch is the next `batch_size` positions, so it may straddle two
//! (or more) epochs, and a run resumed at `cursor` sees exactly what it would have seen.
//!
//! With `mirror` (horizontal flips, as stylegan2-ada's `--mirror`) the stream runs over `2 · len`
//! entries: entry `v` is image `v mod len`, mirrored left to right when `v ≥ len`, so each
//! epoch shows every image once each way round.
//!
//! Images are read from the data set as the batch is assembled (the data set may be a prepared
//! file larger than memory); a data set that changes or becomes unreadable under the loader
//! ends the stream with an error instead of a batch.

use super::Dataset;
use anyhow::Result;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;
use wgan_models::latent::Rng;

/// Batches kept ready by the background thread.
const PREFETCH: usize = 4;

/// The permutation of `0..len` used for epoch `epoch`.
pub fn epoch_permutation(seed: u64, epoch: u64, len: usize) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..len).collect();
    Rng::new(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)).shuffle(&mut perm);
    perm
}

/// Stream entries at positions `cursor .. cursor + n` of a stream over `len` entries.
pub fn stream_indices(seed: u64, len: usize, cursor: u64, n: usize) -> Vec<usize> {
    let mut s = Stream::new(seed, len, cursor);
    (0..n).map(|_| s.next_index()).collect()
}

/// The image and whether it is mirrored at stream position `p`, for a data set of `len`
/// images (see the module documentation).
pub fn stream_position(seed: u64, len: usize, mirror: bool, p: u64) -> (usize, bool) {
    let entries = if mirror { 2 * len } else { len };
    let v = stream_indices(seed, entries, p, 1)[0];
    (v % len, v >= len)
}

/// Walks the stream, keeping the current epoch's permutation.
struct Stream {
    seed: u64,
    len: usize,
    epoch: u64,
    offset: usize,
    perm: Vec<usize>,
}

impl Stream {
    fn new(seed: u64, len: usize, cursor: u64) -> Self {
        assert!(len > 0, "a data stream needs at least one sample");
        let epoch = cursor / len as u64;
        Self {
            seed,
            len,
            epoch,
            offset: (cursor % len as u64) as usize,
            perm: epoch_permutation(seed, epoch, len),
        }
    }

    fn next_index(&mut self) -> usize {
        if self.offset == self.len {
            self.epoch += 1;
            self.offset = 0;
            self.perm = epoch_permutation(self.seed, self.epoch, self.len);
        }
        let i = self.perm[self.offset];
        self.offset += 1;
        i
    }
}

/// What the batches are drawn from, and how.
#[derive(Clone)]
struct Batches {
    data: Dataset,
    batch_size: usize,
    seed: u64,
    mirror: bool,
    /// This rank's part of each batch: entries `rank · b .. (rank + 1) · b` with
    /// `b = batch_size / ranks` (the whole batch for one process).
    rank: usize,
    ranks: usize,
}

impl Batches {
    fn stream(&self, cursor: u64) -> Stream {
        let entries = if self.mirror {
            2 * self.data.len
        } else {
            self.data.len
        };
        Stream::new(self.seed, entries, cursor)
    }

    /// The next batch of `stream`, as values in [-1, 1], after checking that the data set is
    /// as it was opened.
    fn next_batch(&self, stream: &mut Stream) -> Result<Vec<f32>> {
        self.data.check_unchanged()?;
        let n = self.data.sample_len();
        let local = self.batch_size / self.ranks;
        let mine = self.rank * local..(self.rank + 1) * local;
        let mut out = vec![0f32; local * n];
        for k in 0..self.batch_size {
            // Every rank walks the whole stream; each reads only its entries.
            let v = stream.next_index();
            if mine.contains(&k) {
                let len = self.data.len;
                let sample = &mut out[(k - mine.start) * n..][..n];
                self.data.read(v % len, v >= len, sample)?;
            }
        }
        Ok(out)
    }
}

/// Infinite shuffled stream of batches assembled on a background thread.
pub struct Loader {
    source: Batches,
    cursor: u64,
    rx: Option<Receiver<Result<Vec<f32>>>>,
    worker: Option<JoinHandle<()>>,
}

impl Loader {
    /// `cursor` = number of stream entries already consumed (0 for a new run); the stream is
    /// the deterministic function of (seed, data set length, mirror) the module documents. A
    /// batch is the next `batch_size` entries (it may straddle two epochs).
    ///
    /// Panics if `batch_size` is 0 or the data set is empty (neither can come from a
    /// validated configuration).
    pub fn new(dataset: Dataset, batch_size: usize, seed: u64, cursor: u64, mirror: bool) -> Self {
        Self::sliced(dataset, batch_size, seed, cursor, mirror, (0, 1))
    }

    /// [`Loader::new`] for rank `rank` of `ranks`: each batch is this rank's `batch_size /
    /// ranks` entries of the global batch (`batch_size` must divide evenly); the cursor counts
    /// the global batch.
    pub fn sliced(
        dataset: Dataset,
        batch_size: usize,
        seed: u64,
        cursor: u64,
        mirror: bool,
        (rank, ranks): (usize, usize),
    ) -> Self {
        assert!(batch_size > 0, "Loader needs a batch size of at least 1");
        assert!(dataset.len > 0, "Loader needs a non-empty data set");
        assert!(
            rank < ranks && batch_size.is_multiple_of(ranks),
            "the batch splits evenly over the ranks"
        );
        let source = Batches {
            data: dataset,
            batch_size,
            seed,
            mirror,
            rank,
            ranks,
        };
        let (tx, rx) = sync_channel(PREFETCH);
        let worker_source = source.clone();
        let worker = std::thread::Builder::new()
            .name("data-loader".into())
            .spawn(move || produce(worker_source, cursor, tx))
            .ok();
        // If no thread could be started, batches are assembled on the caller's thread instead.
        Self {
            source,
            cursor,
            rx: worker.as_ref().map(|_| rx),
            worker,
        }
    }

    /// Next batch: `batch_size · channels · size · size` values in [-1, 1]. Never blocks for
    /// long: a background thread keeps a few batches ready. An error (the data set changed or
    /// cannot be read) is returned once; the cursor then stays where it was.
    pub fn next_batch(&mut self) -> Result<Vec<f32>> {
        let from_worker = self.rx.as_ref().and_then(|rx| rx.recv().ok());
        let batch = match from_worker {
            Some(b) => b?,
            None => {
                // The worker is gone (it could not start or it died): same stream, computed here.
                self.rx = None;
                let mut stream = self.source.stream(self.cursor);
                self.source.next_batch(&mut stream)?
            }
        };
        self.cursor += self.source.batch_size as u64;
        Ok(batch)
    }

    /// Stream entries consumed by the batches returned so far (what a checkpoint stores to
    /// resume exactly).
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Samples per batch.
    pub fn batch_size(&self) -> usize {
        self.source.batch_size
    }

    /// The data set the batches come from.
    pub fn dataset(&self) -> &Dataset {
        &self.source.data
    }
}

fn produce(source: Batches, cursor: u64, tx: SyncSender<Result<Vec<f32>>>) {
    let mut stream = source.stream(cursor);
    loop {
        let batch = source.next_batch(&mut stream);
        let failed = batch.is_err();
        // `send` blocks while the channel is full and fails once the receiver is dropped.
        if tx.send(batch).is_err() || failed {
            return;
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Dropping the receiver wakes a worker blocked in `send`, which then returns.
        drop(self.rx.take());
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("batch_size", &self.source.batch_size)
            .field("seed", &self.source.seed)
            .field("mirror", &self.source.mirror)
            .field("cursor", &self.cursor)
            .field("dataset_len", &self.source.data.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::{number_of, numbered};
    use std::time::{Duration, Instant};

    /// The sample index of each image in a batch of a `numbered` data set.
    fn ids(batch: &[f32], sample_len: usize) -> Vec<usize> {
        batch
            .chunks(sample_len)
            .map(|s| {
                assert!(s.iter().all(|&v| v == s[0]), "a sample is one whole image");
                number_of(s[0])
            })
            .collect()
    }

    #[test]
    fn first_epoch_is_a_permutation_and_matches_the_documented_formula() {
        let data = numbered(10, 1, 2);
        let mut l = Loader::new(data, 5, 42, 0, false);
        let mut seen = ids(&l.next_batch().unwrap(), 4);
        seen.extend(ids(&l.next_batch().unwrap(), 4));
        assert_eq!(l.cursor(), 10);
        let mut want: Vec<usize> = (0..10).collect();
        Rng::new(42).shuffle(&mut want);
        assert_eq!(seen, want, "epoch 0 is Rng::new(seed).shuffle");
        let mut sorted = seen.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_ne!(seen, sorted, "shuffled");
        // Epoch 1 uses the mixed seed, and differs from epoch 0.
        let mut e1: Vec<usize> = (0..10).collect();
        Rng::new(42 ^ 0x9E37_79B9_7F4A_7C15).shuffle(&mut e1);
        let mut next = ids(&l.next_batch().unwrap(), 4);
        next.extend(ids(&l.next_batch().unwrap(), 4));
        assert_eq!(next, e1);
        assert_ne!(e1, want);
    }

    #[test]
    fn same_seed_and_cursor_give_the_same_batches_and_other_seeds_differ() {
        let data = numbered(37, 3, 4);
        let run = |seed, cursor| {
            let mut l = Loader::new(data.clone(), 8, seed, cursor, false);
            (0..12).map(|_| l.next_batch().unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run(7, 0), run(7, 0));
        assert_eq!(run(7, 13), run(7, 13));
        assert_ne!(run(7, 0), run(8, 0));
        assert_eq!(run(7, 0)[0].len(), 8 * 3 * 4 * 4);
    }

    #[test]
    fn resuming_at_a_cursor_continues_exactly() {
        let data = numbered(23, 1, 3);
        let b = 5;
        let mut full = Loader::new(data.clone(), b, 3, 0, false);
        let all: Vec<Vec<f32>> = (0..20).map(|_| full.next_batch().unwrap()).collect();
        for k in [0usize, 1, 4, 5, 9, 13] {
            let mut resumed = Loader::new(data.clone(), b, 3, (k * b) as u64, false);
            for (j, want) in all.iter().enumerate().skip(k).take(6) {
                assert_eq!(
                    &resumed.next_batch().unwrap(),
                    want,
                    "resumed at batch {k}, batch {j}"
                );
            }
            assert_eq!(resumed.cursor(), ((k + 6) * b) as u64);
        }
    }

    #[test]
    fn batches_straddle_epoch_boundaries() {
        let len = 7;
        let data = numbered(len, 1, 1);
        // Batch of 4 over 7 samples: batch 1 holds the last 3 of epoch 0 and the first of epoch 1.
        let mut l = Loader::new(data.clone(), 4, 11, 0, false);
        let got: Vec<usize> = (0..7)
            .flat_map(|_| ids(&l.next_batch().unwrap(), 1))
            .collect();
        let want: Vec<usize> = (0..4)
            .flat_map(|e| epoch_permutation(11, e, len))
            .take(28)
            .collect();
        assert_eq!(got, want);
        assert_eq!(got, stream_indices(11, len, 0, 28));
        for e in 0..4 {
            let mut ep = got[e * len..(e + 1) * len].to_vec();
            ep.sort_unstable();
            assert_eq!(
                ep,
                (0..len).collect::<Vec<_>>(),
                "epoch {e} is a permutation"
            );
        }
        // A batch larger than the data set spans several epochs.
        let mut big = Loader::new(data, 16, 11, 3, false);
        assert_eq!(
            ids(&big.next_batch().unwrap(), 1),
            stream_indices(11, len, 3, 16)
        );
        assert_eq!(big.cursor(), 19);
    }

    #[test]
    fn dropping_a_loader_mid_stream_returns_promptly() {
        // Big samples so the worker is busy or blocked on a full channel when we drop.
        let data = numbered(64, 3, 64);
        for consumed in [0, 1, 3] {
            let mut l = Loader::new(data.clone(), 32, 1, 0, false);
            for _ in 0..consumed {
                let _ = l.next_batch().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50)); // let the channel fill up
            let t = Instant::now();
            drop(l);
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "drop took {:?}",
                t.elapsed()
            );
        }
    }

    #[test]
    fn mirror_shows_every_image_once_each_way_per_epoch() {
        let (len, size) = (5, 3);
        // Image i: row r holds the bytes 10 i + r·size .. (a left-right asymmetric picture).
        let bytes: Vec<u8> = (0..len)
            .flat_map(|i| (0..size * size).map(move |p| (10 * i + p) as u8))
            .collect();
        let data = crate::data::Dataset::new(
            crate::data::store::Store::Memory(bytes),
            crate::data::store::Info {
                count: len,
                channels: 1,
                size,
                description: "mirror test".into(),
                skipped: 0,
                labels: None,
                fingerprint: crate::data::Fingerprint(0),
            },
        );
        let mut l = Loader::new(data, 2 * len, 9, 0, true);
        let batch = l.next_batch().unwrap();
        let mut seen = Vec::new();
        for (k, s) in batch.chunks(size * size).enumerate() {
            let first = number_of(s[0]);
            let (image, mirrored) = (first / 10, first % 10 == size - 1);
            assert_eq!(
                (image, mirrored),
                stream_position(9, len, true, k as u64),
                "entry {k}"
            );
            seen.push((image, mirrored));
        }
        seen.sort_unstable();
        let want: Vec<(usize, bool)> = (0..len).flat_map(|i| [(i, false), (i, true)]).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn a_prepared_file_truncated_under_the_loader_is_an_error_not_a_crash() {
        use crate::data::prepared::PreparedWriter;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.u8");
        let mut w = PreparedWriter::create(&path, 1, 8).unwrap();
        for i in 0..50u8 {
            w.push(&[i; 64]).unwrap();
        }
        let (_, fp) = w.finish(None).unwrap();
        let file = crate::data::PreparedFile::open(&path).unwrap();
        let data = crate::data::Dataset::new(
            crate::data::store::Store::File(file),
            crate::data::store::Info {
                count: 50,
                channels: 1,
                size: 8,
                description: "file".into(),
                skipped: 0,
                labels: None,
                fingerprint: fp,
            },
        );
        let mut l = Loader::new(data, 4, 1, 0, false);
        l.next_batch().unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(100)
            .unwrap();
        // Batches made before the truncation may still arrive; then the error does.
        let e = (0..10)
            .find_map(|_| l.next_batch().err())
            .expect("the truncation is reported");
        assert!(format!("{e:#}").contains("truncated"), "{e:#}");
    }

    #[test]
    fn each_rank_reads_its_slice_of_the_global_batch() {
        let data = numbered(30, 1, 2);
        let mut whole = Loader::new(data.clone(), 6, 5, 0, false);
        let mut parts: Vec<Loader> = (0..3)
            .map(|r| Loader::sliced(data.clone(), 6, 5, 0, false, (r, 3)))
            .collect();
        for _ in 0..12 {
            let want = ids(&whole.next_batch().unwrap(), 4);
            let got: Vec<usize> = parts
                .iter_mut()
                .flat_map(|l| ids(&l.next_batch().unwrap(), 4))
                .collect();
            assert_eq!(got, want);
        }
        assert!(parts.iter().all(|l| l.cursor() == whole.cursor()));
    }
}
