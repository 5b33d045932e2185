//! `runtime serve`'s flags and their checks (part of the `runtime` binary; the server itself
//! is [`wgan_runtime::serve`]).

use super::engine::EngineArgs;
use anyhow::{ensure, Result};
use clap::{Args, ValueEnum};
use std::time::Duration;
use wgan_runtime::serve::batcher::BatchPolicy;
use wgan_runtime::serve::ServeOptions;

/// Log detail on stderr.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    /// One line per request.
    Info,
    Debug,
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Address to listen on (0.0.0.0 for every interface).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: a free one, printed at start).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Most images per model run; concurrent requests are batched up to it (1: no batching).
    #[arg(long, default_value_t = 64)]
    pub max_batch: usize,
    /// Longest wait, after a request arrives, for more to batch with it. At 0 (default) a
    /// batch is what queued while the model ran the previous one: no added latency at low
    /// load, batches as large as the load makes them. A delay trades latency for batch size.
    #[arg(long, default_value_t = 0)]
    pub max_delay_ms: u64,
    /// Most images one request may ask for.
    #[arg(long, default_value_t = 1024)]
    pub max_images_per_request: usize,
    /// Most images waiting in the queue; requests beyond it get 503 with Retry-After.
    #[arg(long, default_value_t = 4096)]
    pub queue_capacity: usize,
    /// Longest a request waits for its images before a 503.
    #[arg(long, default_value_t = 30.0)]
    pub timeout_s: f64,
    /// Largest request body, in bytes (explicit latents: about 10 bytes per value as JSON);
    /// larger ones get 413.
    #[arg(long, default_value_t = 8 << 20)]
    pub body_limit: usize,
    /// Longest a request's header may take to arrive, from its first byte (at most 30);
    /// slower clients are disconnected.
    #[arg(long, default_value_t = 10.0)]
    pub header_timeout_s: f64,
    /// Longest a request's body may take to arrive once its header has; slower ones get 408.
    #[arg(long, default_value_t = 30.0)]
    pub body_timeout_s: f64,
    /// A connection with no request in progress closes after this long without traffic (keep-
    /// alive connections between requests, and new ones that send nothing).
    #[arg(long, default_value_t = 60.0)]
    pub idle_timeout_s: f64,
    /// Connections served at once; more wait in the listen queue until one closes.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Log detail on stderr.
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
}

/// Longest `--timeout-s`: a day.
const MAX_TIMEOUT_S: f64 = 86_400.0;
/// Longest `--max-delay-ms`: a minute.
const MAX_DELAY_MS: u64 = 60_000;
/// Largest `--body-limit`: 1 GiB.
const MAX_BODY_LIMIT: usize = 1 << 30;
/// Most `--max-connections`.
const MAX_CONNECTIONS: usize = 1 << 16;

impl ServeArgs {
    /// The server options, checked.
    pub fn options(&self) -> Result<ServeOptions> {
        ensure!(self.max_batch > 0, "--max-batch must be at least 1");
        ensure!(
            self.max_images_per_request > 0,
            "--max-images-per-request must be at least 1"
        );
        ensure!(
            self.queue_capacity >= self.max_images_per_request,
            "--queue-capacity ({}) must hold at least one largest request (--max-images-per-request {})",
            self.queue_capacity,
            self.max_images_per_request
        );
        ensure!(
            self.timeout_s.is_finite() && self.timeout_s > 0.0 && self.timeout_s <= MAX_TIMEOUT_S,
            "--timeout-s must be a positive number of seconds, at most {MAX_TIMEOUT_S} (a day)"
        );
        ensure!(
            self.max_delay_ms <= MAX_DELAY_MS,
            "--max-delay-ms must be at most {MAX_DELAY_MS} (a minute)"
        );
        ensure!(
            (1..=MAX_BODY_LIMIT).contains(&self.body_limit),
            "--body-limit must be between 1 and {MAX_BODY_LIMIT} bytes (1 GiB)"
        );
        let seconds = |flag: &str, v: f64, max: f64| -> Result<Duration> {
            ensure!(
                v.is_finite() && v > 0.0 && v <= max,
                "{flag} must be a positive number of seconds, at most {max}"
            );
            Ok(Duration::from_secs_f64(v))
        };
        let header_timeout = seconds("--header-timeout-s", self.header_timeout_s, 30.0)?;
        let body_timeout = seconds("--body-timeout-s", self.body_timeout_s, MAX_TIMEOUT_S)?;
        let idle_timeout = seconds("--idle-timeout-s", self.idle_timeout_s, MAX_TIMEOUT_S)?;
        ensure!(
            (1..=MAX_CONNECTIONS).contains(&self.max_connections),
            "--max-connections must be between 1 and {MAX_CONNECTIONS}"
        );
        Ok(ServeOptions {
            host: self.host.clone(),
            port: self.port,
            policy: BatchPolicy {
                max_batch: self.max_batch,
                max_delay: Duration::from_millis(self.max_delay_ms),
                queue_capacity: self.queue_capacity,
            },
            max_images_per_request: self.max_images_per_request,
            timeout: Duration::from_secs_f64(self.timeout_s),
            body_limit: self.body_limit,
            body_timeout,
            connections: wgan_runtime::serve::conn::ConnLimits {
                max_connections: self.max_connections,
                header_timeout,
                idle_timeout,
            },
            log_level: match self.log_level {
                LogLevel::Error => tracing::Level::ERROR,
                LogLevel::Warn => tracing::Level::WARN,
                LogLevel::Info => tracing::Level::INFO,
                LogLevel::Debug => tracing::Level::DEBUG,
            },
        })
    }
}

/// `runtime serve`.
pub fn serve(args: ServeArgs) -> Result<()> {
    let options = args.options()?;
    let (generator, name) = args.engine.load()?;
    super::gen::check_batch_memory("--max-batch", args.max_batch, generator.contract())?;
    // A largest request holds its images as f32 and once more encoded.
    super::gen::check_images_memory(
        "--max-images-per-request",
        args.max_images_per_request,
        2,
        generator.contract(),
    )?;
    wgan_runtime::serve::run(generator, &name, options)
}
