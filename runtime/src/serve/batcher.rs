//! Dynamic batching: requests queue, and one worker thread that owns the [`Generator`] forms
//! batches of up to `max_batch` images, waiting at most `max_delay` after the first queued
//! request for more. A request larger than a batch is split across batches; each batch's images
//! go back to the requests they came from, in order. The queue is bounded in images, so an
//! overloaded server refuses work instead of growing.

use super::metrics::Metrics;
use crate::Generator;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The images of one request, `[n, C, H, W]` values, or why they could not be made.
pub type Reply = Result<Vec<f32>, GenerationFailed>;

/// The generator's error on a batch, shared by every request with images in it.
#[derive(Clone, Debug, thiserror::Error)]
#[error("generation failed: {0:#}")]
pub struct GenerationFailed(Arc<anyhow::Error>);

/// A queued request: its latents and where its images go.
struct Job {
    z: Vec<f32>,
    n: usize,
    reply: oneshot::Sender<Reply>,
    /// Images made so far, and their values.
    done: usize,
    out: Vec<f32>,
}

/// Why a request was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds `queued` images and takes at most `capacity`.
    Full { queued: usize, capacity: usize },
    /// The worker has stopped (the server is shutting down, or it failed).
    Stopped,
}

/// The sending side: cheap to clone, one per server.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
    z_dim: usize,
}

/// How batches are formed.
#[derive(Clone, Copy, Debug)]
pub struct BatchPolicy {
    /// Most images per batch.
    pub max_batch: usize,
    /// Longest wait for more requests once one is queued.
    pub max_delay: Duration,
    /// Most images waiting in the queue (requests beyond it are refused).
    pub queue_capacity: usize,
}

impl Batcher {
    /// Starts the worker thread on `generator`. The worker stops when every [`Batcher`] clone
    /// is dropped and the queue is empty; join the returned handle to wait for it.
    pub fn start(
        generator: Generator,
        policy: BatchPolicy,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Batcher, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let z_dim = generator.z_dim();
        let worker_queued = queued.clone();
        let handle = std::thread::Builder::new()
            .name("batcher".into())
            .spawn(move || work(generator, rx, policy, worker_queued, metrics))?;
        Ok((
            Batcher {
                tx,
                queued,
                capacity: policy.queue_capacity,
                z_dim,
            },
            handle,
        ))
    }

    /// Queues the `n` images of latents `z` (`n · z_dim` values); the receiver gets them.
    pub fn submit(&self, z: Vec<f32>, n: usize) -> Result<oneshot::Receiver<Reply>, Refused> {
        debug_assert_eq!(z.len(), n * self.z_dim);
        let capacity = self.capacity;
        self.queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                (q + n <= capacity).then_some(q + n)
            })
            .map_err(|queued| Refused::Full { queued, capacity })?;
        let (reply, rx) = oneshot::channel();
        let job = Job {
            z,
            n,
            reply,
            done: 0,
            out: Vec::new(),
        };
        if self.tx.send(job).is_err() {
            self.queued.fetch_sub(n, Ordering::SeqCst);
            return Err(Refused::Stopped);
        }
        Ok(rx)
    }

    /// Images waiting or being made.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }
}

/// The batch size to run with `available` images queued: `max_batch` when that many are
/// there, else the largest power of two not above `available` (the rest waits for the next
/// batch). The model thus sees at most log2(`max_batch`) + 2 distinct batch sizes: tract
/// optimises and keeps one plan per size, and with every size from 1 to 64 those plans held
/// 0.8 GB for `dcgan64` and cost their optimisation time on first use.
pub fn batch_size_for(available: usize, max_batch: usize) -> usize {
    if available >= max_batch {
        max_batch
    } else if available == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - available.leading_zeros())
    }
}

/// Images still to make for the queued jobs.
fn remaining(jobs: &VecDeque<Job>) -> usize {
    jobs.iter().map(|j| j.n - j.done).sum()
}

fn work(
    mut generator: Generator,
    rx: mpsc::Receiver<Job>,
    policy: BatchPolicy,
    queued: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
) {
    let zd = generator.z_dim();
    let image_len: usize = generator.image_shape().iter().product();
    let max_batch = policy.max_batch.max(1);
    let mut jobs: VecDeque<Job> = VecDeque::new();
    let mut open = true;
    loop {
        if jobs.is_empty() {
            match rx.recv() {
                Ok(job) => jobs.push_back(job),
                Err(_) => return,
            }
        }
        // Gather more until the batch is full or the delay has passed.
        let deadline = Instant::now() + policy.max_delay;
        while open && remaining(&jobs) < max_batch {
            let wait = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(job) => jobs.push_back(job),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        }
        // Requests whose client went away are not worth computing.
        jobs.retain(|j| {
            let gone = j.reply.is_closed();
            if gone {
                queued.fetch_sub(j.n - j.done, Ordering::SeqCst);
            }
            !gone
        });
        if jobs.is_empty() {
            if !open {
                return;
            }
            continue;
        }
        // One batch: images from the front jobs, splitting the last one if needed.
        let size = batch_size_for(remaining(&jobs), max_batch);
        let mut z = Vec::with_capacity(size * zd);
        let mut parts = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            let room = size - z.len() / zd;
            if room == 0 {
                break;
            }
            let k = room.min(job.n - job.done);
            z.extend_from_slice(&job.z[job.done * zd..(job.done + k) * zd]);
            parts.push((i, k));
        }
        let made = z.len() / zd;
        metrics.batch_size.observe(made as f64);
        match generator.run(&z) {
            Ok(batch) => {
                let mut at = 0;
                for &(i, k) in &parts {
                    let job = &mut jobs[i];
                    job.out
                        .extend_from_slice(&batch.data[at * image_len..(at + k) * image_len]);
                    job.done += k;
                    at += k;
                }
                metrics.images.inc_by(made as u64);
            }
            Err(e) => {
                let failed = GenerationFailed(Arc::new(e));
                for &(i, _) in parts.iter().rev() {
                    if let Some(job) = jobs.remove(i) {
                        queued.fetch_sub(job.n - job.done, Ordering::SeqCst);
                        let _ = job.reply.send(Err(failed.clone()));
                    }
                }
                continue;
            }
        }
        queued.fetch_sub(made, Ordering::SeqCst);
        while jobs.front().is_some_and(|j| j.done == j.n) {
            let job = jobs.pop_front().expect("checked above");
            // A client that went away meanwhile is no error.
            let _ = job.reply.send(Ok(job.out));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::batch_size_for;

    #[test]
    fn batch_sizes_are_powers_of_two_or_the_maximum() {
        let sizes: Vec<usize> = (1..=70).map(|a| batch_size_for(a, 64)).collect();
        assert_eq!(&sizes[..9], &[1, 2, 2, 4, 4, 4, 4, 8, 8]);
        assert_eq!(sizes[62], 32);
        assert!(sizes[63..].iter().all(|&s| s == 64));
        let mut distinct = sizes.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct, [1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(batch_size_for(30, 20), 20);
        assert_eq!(batch_size_for(19, 20), 16);
    }
}
