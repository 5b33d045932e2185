//! An infinite, shuffled, resumable stream of batches, assembled on a background thread.
//!
//! The stream of sample indices is a pure function of `(seed, len)`: epoch `e` is the
//! permutation of `0..len` made by `Rng::new(seed ^ e · 0x9E37_79B9_7F4A_7C15).shuffle` applied to
//! `[0, 1, …, len − 1]`, and the stream concatenates epochs 0, 1, 2, … Position `p` of the stream
//! is `perm_{p / len}[p % len]`. A batch is the next `batch_size` positions, so it may straddle two
//! (or more) epochs, and a run resumed at `cursor` sees exactly what it would have seen.

use super::Dataset;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
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

/// Sample indices at stream positions `cursor .. cursor + n`.
pub fn stream_indices(seed: u64, len: usize, cursor: u64, n: usize) -> Vec<usize> {
    let mut s = Stream::new(seed, len, cursor);
    (0..n).map(|_| s.next_index()).collect()
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

    fn next_batch(&mut self, data: &Dataset, batch_size: usize) -> Vec<f32> {
        let n = data.sample_len();
        let mut out = Vec::with_capacity(batch_size * n);
        for _ in 0..batch_size {
            out.extend_from_slice(data.image(self.next_index()));
        }
        out
    }
}

/// Infinite shuffled stream of batches assembled on a background thread.
pub struct Loader {
    dataset: Arc<Dataset>,
    batch_size: usize,
    seed: u64,
    cursor: u64,
    rx: Option<Receiver<Vec<f32>>>,
    worker: Option<JoinHandle<()>>,
}

impl Loader {
    /// `cursor` = number of samples already consumed from the stream (0 for a new run); the
    /// stream is a deterministic function of (seed, dataset length): epoch e is the permutation of
    /// 0..len given by `Rng::new(seed ^ (e as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).shuffle`,
    /// and the stream concatenates epochs. A batch is the next `batch_size` samples of the stream
    /// (it may straddle two epochs).
    ///
    /// Panics if `batch_size` is 0 or the data set is empty (neither can come from [`super::load`]
    /// with a validated configuration).
    pub fn new(dataset: Arc<Dataset>, batch_size: usize, seed: u64, cursor: u64) -> Self {
        assert!(batch_size > 0, "Loader needs a batch size of at least 1");
        assert!(dataset.len > 0, "Loader needs a non-empty data set");
        let (tx, rx) = sync_channel(PREFETCH);
        let data = Arc::clone(&dataset);
        let worker = std::thread::Builder::new()
            .name("data-loader".into())
            .spawn(move || produce(data, batch_size, seed, cursor, tx))
            .ok();
        // If no thread could be started, batches are assembled on the caller's thread instead.
        Self {
            dataset,
            batch_size,
            seed,
            cursor,
            rx: worker.as_ref().map(|_| rx),
            worker,
        }
    }

    /// Next batch: `batch_size · channels · size · size` values. Never blocks for long: a
    /// background thread keeps a few batches ready.
    pub fn next_batch(&mut self) -> Vec<f32> {
        let from_worker = self.rx.as_ref().and_then(|rx| rx.recv().ok());
        let batch = match from_worker {
            Some(b) => b,
            None => {
                // The worker is gone (it could not start or it died): same stream, computed here.
                self.rx = None;
                Stream::new(self.seed, self.dataset.len, self.cursor)
                    .next_batch(&self.dataset, self.batch_size)
            }
        };
        self.cursor += self.batch_size as u64;
        batch
    }

    /// Samples consumed by the batches returned so far (what a checkpoint stores to resume
    /// exactly).
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Samples per batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The data set the batches come from.
    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.dataset
    }
}

fn produce(
    data: Arc<Dataset>,
    batch_size: usize,
    seed: u64,
    cursor: u64,
    tx: SyncSender<Vec<f32>>,
) {
    let mut stream = Stream::new(seed, data.len, cursor);
    loop {
        let batch = stream.next_batch(&data, batch_size);
        // `send` blocks while the channel is full and fails once the receiver is dropped.
        if tx.send(batch).is_err() {
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
            .field("batch_size", &self.batch_size)
            .field("seed", &self.seed)
            .field("cursor", &self.cursor)
            .field("dataset_len", &self.dataset.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::numbered;
    use std::time::{Duration, Instant};

    /// The sample index of each image in a batch of a `numbered` data set.
    fn ids(batch: &[f32], sample_len: usize) -> Vec<usize> {
        batch
            .chunks(sample_len)
            .map(|s| {
                assert!(s.iter().all(|&v| v == s[0]), "a sample is one whole image");
                s[0] as usize
            })
            .collect()
    }

    #[test]
    fn first_epoch_is_a_permutation_and_matches_the_documented_formula() {
        let data = Arc::new(numbered(10, 1, 2));
        let mut l = Loader::new(data, 5, 42, 0);
        let mut seen = ids(&l.next_batch(), 4);
        seen.extend(ids(&l.next_batch(), 4));
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
        let mut next = ids(&l.next_batch(), 4);
        next.extend(ids(&l.next_batch(), 4));
        assert_eq!(next, e1);
        assert_ne!(e1, want);
    }

    #[test]
    fn same_seed_and_cursor_give_the_same_batches_and_other_seeds_differ() {
        let data = Arc::new(numbered(37, 3, 4));
        let run = |seed, cursor| {
            let mut l = Loader::new(Arc::clone(&data), 8, seed, cursor);
            (0..12).map(|_| l.next_batch()).collect::<Vec<_>>()
        };
        assert_eq!(run(7, 0), run(7, 0));
        assert_eq!(run(7, 13), run(7, 13));
        assert_ne!(run(7, 0), run(8, 0));
        assert_eq!(run(7, 0)[0].len(), 8 * 3 * 4 * 4);
    }

    #[test]
    fn resuming_at_a_cursor_continues_exactly() {
        let data = Arc::new(numbered(23, 1, 3));
        let b = 5;
        let mut full = Loader::new(Arc::clone(&data), b, 3, 0);
        let all: Vec<Vec<f32>> = (0..20).map(|_| full.next_batch()).collect();
        for k in [0usize, 1, 4, 5, 9, 13] {
            let mut resumed = Loader::new(Arc::clone(&data), b, 3, (k * b) as u64);
            for (j, want) in all.iter().enumerate().skip(k).take(6) {
                assert_eq!(
                    &resumed.next_batch(),
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
        let data = Arc::new(numbered(len, 1, 1));
        // Batch of 4 over 7 samples: batch 1 holds the last 3 of epoch 0 and the first of epoch 1.
        let mut l = Loader::new(Arc::clone(&data), 4, 11, 0);
        let got: Vec<usize> = (0..7).flat_map(|_| ids(&l.next_batch(), 1)).collect();
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
        let mut big = Loader::new(data, 16, 11, 3);
        assert_eq!(ids(&big.next_batch(), 1), stream_indices(11, len, 3, 16));
        assert_eq!(big.cursor(), 19);
    }

    #[test]
    fn dropping_a_loader_mid_stream_returns_promptly() {
        // Big samples so the worker is busy or blocked on a full channel when we drop.
        let data = Arc::new(numbered(64, 3, 64));
        for consumed in [0, 1, 3] {
            let mut l = Loader::new(Arc::clone(&data), 32, 1, 0);
            for _ in 0..consumed {
                let _ = l.next_batch();
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
        // The worker's reference to the data set is released: only ours remains.
        assert_eq!(Arc::strong_count(&data), 1);
    }
}
