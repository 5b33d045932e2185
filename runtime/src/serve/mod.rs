//! `runtime serve`: image generation over HTTP with dynamic batching.
//!
//! - `POST /v1/generate` with `{"n": 16, "seed": 42}` (optionally `"first"`, `"truncation"`),
//!   `{"walk": {"seeds": [1, 2], "frames": 16}}` or `{"z": [[…], …]}` answers one PNG grid
//!   (default, `Accept: image/png`), a `.npy` of `[N, C, H, W]` f32 (`application/x-npy`),
//!   JSON with base64 PNGs (`application/json`) or a zip of PNGs (`application/zip`); a
//!   `"format"` field overrides `Accept`. Image
//!   `i` of seed `S` is what `runtime gen --seed S` makes (the same latent function).
//! - `GET /v1/model` (the contract and metadata, as `runtime info`), `/healthz`, `/readyz` (503
//!   once shutdown began), `/metrics` (Prometheus text: requests by status, images, batch
//!   sizes, queue depth, latency).
//! - Requests queue for one worker that owns the model ([`batcher`]): batches of up to
//!   `--max-batch` images: what queued while the model ran the previous batch, plus what
//!   arrives within `--max-delay-ms` (default 0); the queue holds at most
//!   `--queue-capacity` images, beyond which requests get 503 with `Retry-After`.
//! - Bad requests get a 4xx with a JSON message naming the problem (413 over `--body-limit`,
//!   408 for a body slower than `--body-timeout-s`); a request that does not fit in the memory
//!   free now gets 503. The server stays up.
//! - Connections ([`conn`]): at most `--max-connections` at once; a header slower than
//!   `--header-timeout-s` or a connection idle for `--idle-timeout-s` is closed.
//! - SIGTERM, SIGINT or SIGHUP (through `tokio::signal`): stop accepting, answer what is queued, exit 0 (a second signal exits at
//!   once). One log line per request on stderr (`--log-level`).

pub mod api;
pub mod batcher;
pub mod bodies;
pub mod conn;
pub mod error;
pub mod metrics;
pub mod request;

use crate::Generator;
use anyhow::{Context, Result};
use api::{router, AppState};
use batcher::{BatchPolicy, Batcher};
use metrics::Metrics;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub host: String,
    /// 0 picks a free port (printed at start).
    pub port: u16,
    pub policy: BatchPolicy,
    pub max_images_per_request: usize,
    /// The longest a request waits for its images before a 503.
    pub timeout: Duration,
    /// Largest request body in bytes.
    pub body_limit: usize,
    /// The longest a request's body may take to arrive once its header has.
    pub body_timeout: Duration,
    /// Connections at once, and the header and idle time limits ([`conn`]).
    pub connections: conn::ConnLimits,
    pub log_level: tracing::Level,
}

/// `SIGINT`, `SIGTERM` and `SIGHUP`, received through `tokio::signal` (the policy is
/// `wgan_models::signals`').
struct StopSignals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl StopSignals {
    /// Starts receiving the three; call it inside the runtime.
    fn listen() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The number of the next one to arrive.
    async fn next(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => libc::SIGINT,
            _ = self.term.recv() => libc::SIGTERM,
            _ = self.hup.recv() => libc::SIGHUP,
        }
    }
}

/// Serves `generator` (loaded from `name`) until SIGTERM, SIGINT or SIGHUP, then drains and
/// returns.
pub fn run(generator: Generator, name: &str, options: ServeOptions) -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(options.log_level)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let metrics = Arc::new(Metrics::new(options.policy.max_batch));
    let model = bodies::ModelDescription::of(&generator, name, options.max_images_per_request);
    let (z_dim, image) = (generator.z_dim(), generator.image_shape());
    let summary = format!("{name}, {}", generator.describe());
    let (batcher, worker) = Batcher::start(generator, options.policy, metrics.clone())
        .context("cannot start the batching worker")?;
    let shutting_down = Arc::new(AtomicBool::new(false));
    let state = Arc::new(AppState {
        batcher,
        metrics,
        model,
        z_dim,
        image,
        max_images: options.max_images_per_request,
        timeout: options.timeout,
        shutting_down: shutting_down.clone(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let served = rt.block_on(async {
        // Receive the stop signals here before the signal thread leaves them to us (a signal
        // in between would be lost), and before "listening on" tells a client it may begin.
        let mut signals = StopSignals::listen().context("cannot receive signals")?;
        wgan_models::signals::leave_to_caller();
        let listener = tokio::net::TcpListener::bind((options.host.as_str(), options.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", options.host, options.port))?;
        let addr = listener.local_addr()?;
        let p = options.policy;
        eprintln!(
            "listening on http://{addr} · {summary} · max batch {} · max delay {} ms · queue {} images",
            p.max_batch,
            p.max_delay.as_millis(),
            p.queue_capacity
        );
        let app = router(state, options.body_limit, options.body_timeout);
        let (stop, stopped) = watch::channel(false);
        // Runs until the process exits: a second signal during the drain exits at once.
        tokio::spawn(async move {
            let first = signals.next().await;
            eprintln!(
                "\n{}: finishing the queued requests, then exiting (send it again to quit now)",
                wgan_models::signals::name(first)
            );
            shutting_down.store(true, Ordering::SeqCst);
            let _ = stop.send(true);
            tracing::info!("shutting down: no new connections; answering the queued requests");
            let second = signals.next().await;
            wgan_models::signals::exit_on_second(
                second,
                "exiting without answering the queued requests",
            );
        });
        conn::serve(listener, app, options.connections, stopped).await;
        anyhow::Ok(())
    });
    // The router (and its handle on the queue) is gone: the worker finishes and stops.
    worker
        .join()
        .map_err(|_| anyhow::anyhow!("the batching worker panicked"))?;
    served?;
    eprintln!("stopped");
    Ok(())
}
