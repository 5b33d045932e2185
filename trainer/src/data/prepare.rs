//! Decoding a [`Source`] in parallel into 8-bit samples, handed on in item order, with bounded
//! memory: worker threads take chunks of items in order, and none runs more than a few chunks
//! ahead of the one the writer waits for, so at most `2 · threads` chunks are in memory
//! whatever the size of the data set.

use super::prepared::Skipped;
use super::source::Source;
use super::source::Unreadable;
use anyhow::{anyhow, Result};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};

/// Items per unit of work.
const CHUNK: usize = 64;

/// What decoding found besides the pixels.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    /// The name of each kept image, in order.
    pub names: Vec<String>,
    /// The label of each kept image, where the source has labels.
    pub labels: Option<Vec<u8>>,
    /// The items that could not be decoded, with the reason.
    pub skipped: Vec<Skipped>,
}

/// One decoded chunk: its kept samples back to back, and each item's outcome.
struct Chunk {
    index: usize,
    samples: Vec<u8>,
    outcomes: Vec<Result<(), Unreadable>>,
}

/// Decodes every item of `source` to `channels` × `size`² on `threads` threads and hands each
/// decoded sample to `sink`, in item order; `progress` sees the items done so far. Items that
/// fail to decode are skipped (listed in [`Decoded::skipped`]). An error from `sink` stops the
/// workers and is returned.
pub(crate) fn decode_all(
    source: &dyn Source,
    channels: usize,
    size: usize,
    threads: usize,
    mut sink: impl FnMut(&[u8]) -> Result<()>,
    mut progress: impl FnMut(usize),
) -> Result<Decoded> {
    let n = source.len();
    let sample_len = channels * size * size;
    let chunks = n.div_ceil(CHUNK);
    let threads = threads.clamp(1, chunks.max(1));
    let window = 2 * threads;
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let written = Mutex::new(0usize);
    let moved = Condvar::new();
    let labels = source.labels();
    let mut out = Decoded {
        labels: labels.map(|_| Vec::new()),
        ..Decoded::default()
    };
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = mpsc::channel::<Result<Chunk>>();
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, abort, written, moved) = (&next, &abort, &written, &moved);
            scope.spawn(move || {
                let mut decoder = match source.decoder() {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                loop {
                    let c = next.fetch_add(1, Ordering::SeqCst);
                    if c >= chunks {
                        return;
                    }
                    // Wait until the writer is within `window` chunks of this one.
                    {
                        let mut w = written.lock().unwrap_or_else(|p| p.into_inner());
                        while c >= *w + window && !abort.load(Ordering::SeqCst) {
                            w = moved.wait(w).unwrap_or_else(|p| p.into_inner());
                        }
                    }
                    if abort.load(Ordering::SeqCst) {
                        return;
                    }
                    let items = c * CHUNK..((c + 1) * CHUNK).min(n);
                    let mut samples = Vec::with_capacity(items.len() * sample_len);
                    let mut outcomes = Vec::with_capacity(items.len());
                    let mut buf = vec![0u8; sample_len];
                    for i in items {
                        let r = decoder.decode(i, channels, size, &mut buf);
                        if r.is_ok() {
                            samples.extend_from_slice(&buf);
                        }
                        outcomes.push(r);
                    }
                    let chunk = Chunk {
                        index: c,
                        samples,
                        outcomes,
                    };
                    if tx.send(Ok(chunk)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let stop = |e: anyhow::Error| {
            abort.store(true, Ordering::SeqCst);
            moved.notify_all();
            e
        };
        let mut pending = BTreeMap::new();
        let mut done = 0usize;
        while done < chunks {
            let chunk = match rx.recv() {
                Ok(Ok(chunk)) => chunk,
                Ok(Err(e)) => return Err(stop(e)),
                Err(_) => return Err(stop(anyhow!("the decoding threads stopped early"))),
            };
            pending.insert(chunk.index, chunk);
            while let Some(chunk) = pending.remove(&done) {
                let mut kept = chunk.samples.chunks_exact(sample_len);
                for (k, outcome) in chunk.outcomes.into_iter().enumerate() {
                    let i = chunk.index * CHUNK + k;
                    match outcome {
                        Ok(()) => {
                            sink(kept.next().expect("one sample per kept item")).map_err(stop)?;
                            out.names.push(source.name(i));
                            if let (Some(all), Some(mine)) = (labels, out.labels.as_mut()) {
                                mine.push(all[i]);
                            }
                        }
                        Err(reason) => out.skipped.push(Skipped {
                            name: source.name(i),
                            reason: reason.to_string(),
                        }),
                    }
                }
                done += 1;
                *written.lock().unwrap_or_else(|p| p.into_inner()) = done;
                moved.notify_all();
                progress((done * CHUNK).min(n));
            }
        }
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::prepared::SourceRecord;
    use super::super::source::Decoder;
    use super::*;

    /// Items 0..n; item i decodes to bytes all `i % 251`, except multiples of 7, which fail.
    struct Numbers(usize);

    struct NumbersDecoder;

    impl Decoder for NumbersDecoder {
        fn decode(
            &mut self,
            i: usize,
            _: usize,
            _: usize,
            out: &mut [u8],
        ) -> Result<(), Unreadable> {
            if i.is_multiple_of(7) {
                return Err(format!("{i} is a multiple of 7").into());
            }
            // Uneven costs, so that chunks finish out of order.
            if i.is_multiple_of(5) {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
            out.fill((i % 251) as u8);
            Ok(())
        }
    }

    impl Source for Numbers {
        fn len(&self) -> usize {
            self.0
        }
        fn name(&self, i: usize) -> String {
            format!("n{i}")
        }
        fn decoder(&self) -> Result<Box<dyn Decoder + '_>> {
            Ok(Box::new(NumbersDecoder))
        }
        fn record(&self) -> SourceRecord {
            SourceRecord {
                kind: "test".into(),
                path: Default::default(),
                files: vec![],
            }
        }
        fn describe(&self, count: usize, _: usize, _: usize) -> String {
            format!("{count} numbers")
        }
    }

    #[test]
    fn samples_arrive_in_order_on_any_thread_count_and_failures_are_listed() {
        for threads in [1, 2, 5] {
            let mut got = Vec::new();
            let mut last_progress = 0;
            let d = decode_all(
                &Numbers(1000),
                1,
                2,
                threads,
                |s| {
                    got.push(s[0]);
                    Ok(())
                },
                |p| {
                    assert!(p >= last_progress);
                    last_progress = p;
                },
            )
            .unwrap();
            let want: Vec<u8> = (0..1000)
                .filter(|i: &usize| !i.is_multiple_of(7))
                .map(|i| (i % 251) as u8)
                .collect();
            assert_eq!(got, want, "{threads} threads");
            assert_eq!(d.names.len(), want.len());
            assert_eq!(d.names[0], "n1");
            assert_eq!(d.skipped.len(), 143);
            assert_eq!(d.skipped[1].name, "n7");
            assert_eq!(d.skipped[1].reason, "7 is a multiple of 7");
            assert_eq!(last_progress, 1000);
        }
    }

    #[test]
    fn a_failing_sink_stops_the_workers() {
        let mut calls = 0;
        let e = decode_all(
            &Numbers(100_000),
            1,
            2,
            2,
            |_| {
                calls += 1;
                if calls == 100 {
                    anyhow::bail!("disk full");
                }
                Ok(())
            },
            |_| {},
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "disk full");
    }
}
