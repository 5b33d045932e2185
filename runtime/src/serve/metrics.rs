//! The server's Prometheus metrics (`GET /metrics`, text format).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The label of a request counter: the HTTP status answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: u16,
}

/// Counters, gauges and histograms shared by the handlers and the batching worker.
pub struct Metrics {
    /// `wgan_requests_total{status}`: requests answered, by HTTP status.
    pub requests: Family<StatusLabel, Counter>,
    /// `wgan_images_generated_total`.
    pub images: Counter,
    /// `wgan_batch_size`: images per batch the worker ran.
    pub batch_size: Histogram,
    /// `wgan_queue_depth`: images waiting or being made.
    pub queue_depth: Gauge,
    /// `wgan_request_duration_seconds`: from arrival to the response (generation requests).
    pub latency: Histogram,
    registry: Registry,
}

impl Metrics {
    /// The metrics, with batch-size buckets up to `max_batch`.
    pub fn new(max_batch: usize) -> Metrics {
        let requests = Family::<StatusLabel, Counter>::default();
        let images = Counter::default();
        let steps = (max_batch.max(1) as f64).log2().ceil() as u16 + 1;
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, steps));
        let queue_depth = Gauge::default();
        let latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let mut registry = Registry::with_prefix("wgan");
        registry.register(
            "requests",
            "Requests answered, by HTTP status",
            requests.clone(),
        );
        registry.register("images_generated", "Images generated", images.clone());
        registry.register(
            "batch_size",
            "Images per batch run by the model",
            batch_size.clone(),
        );
        registry.register(
            "queue_depth",
            "Images waiting or being generated",
            queue_depth.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a generation request's arrival to its response",
            latency.clone(),
        );
        Metrics {
            requests,
            images,
            batch_size,
            queue_depth,
            latency,
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
