//! The HTTP interface: routes, request checks, response formats and errors (JSON
//! `{"error": "…"}` with a 4xx or 5xx status).

use super::batcher::{Batcher, Refused};
use super::bodies::{ImagesJson, ModelDescription, Source};
pub use super::error::ApiError;
use super::metrics::{Metrics, StatusLabel};
use super::request::{format_of, Format, GenerateRequest, Images};
use crate::images::{image_file_name, to_image, BatchShape, GridCanvas};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the handlers share.
pub struct AppState {
    pub batcher: Batcher,
    pub metrics: Arc<Metrics>,
    /// The answer of `GET /v1/model`.
    pub model: ModelDescription,
    pub z_dim: usize,
    /// `[C, H, W]` of one image.
    pub image: [usize; 3],
    /// `--max-images-per-request`.
    pub max_images: usize,
    /// `--timeout-s`: the longest a request waits for its images.
    pub timeout: Duration,
    /// Set when shutdown began: `/readyz` then answers 503.
    pub shutting_down: Arc<AtomicBool>,
}

/// The routes, with the body's size and time limits and the per-request log line and
/// counters.
pub fn router(state: Arc<AppState>, body_limit: usize, body_timeout: Duration) -> Router {
    let limits = BodyLimits {
        bytes: body_limit,
        time: body_timeout,
    };
    Router::new()
        .route("/", get(page))
        .route("/v1/generate", post(generate))
        .route("/v1/model", get(model))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // The body is read whole by `read_body` under its own limits and errors.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(limits, read_body))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The largest body and the longest it may take to arrive.
#[derive(Clone, Copy, Debug)]
struct BodyLimits {
    bytes: usize,
    time: Duration,
}

/// Reads the request's body before the handler sees it: at most `limits.bytes` (413 with a
/// JSON message beyond) within `limits.time` (408: a client that promises more than it sends
/// would otherwise hold the connection for as long as it likes).
async fn read_body(State(limits): State<BodyLimits>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        ApiError::too_large(format!(
            "the request body is larger than this server's limit of {} bytes (--body-limit)",
            limits.bytes
        ))
    };
    if let Some(n) = declared.filter(|&n| n > limits.bytes as u64) {
        if n <= limits.bytes as u64 + DRAIN_LIMIT {
            // Read what the client is still sending, so that it gets the answer rather than a
            // connection reset in the middle of its body.
            let _ = tokio::time::timeout(limits.time, drain(body)).await;
        }
        return too_large().into_response();
    }
    let bytes =
        match tokio::time::timeout(limits.time, axum::body::to_bytes(body, limits.bytes)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) if is_length_limit(&e) => return too_large().into_response(),
            Ok(Err(e)) => {
                return ApiError::bad(format!("cannot read the request body: {e}")).into_response()
            }
            Err(_) => {
                return ApiError::timeout(format!(
                    "the request body did not arrive within {:.1} s (--body-timeout-s)",
                    limits.time.as_secs_f64()
                ))
                .into_response()
            }
        };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// How far past `--body-limit` a declared body is still read (and dropped) before the 413;
/// a larger one gets the answer at once and its connection closed.
const DRAIN_LIMIT: u64 = 1 << 20;

/// Reads a body to its end, dropping it (hyper holds it to its declared length).
async fn drain(mut body: axum::body::Body) {
    use http_body_util::BodyExt as _;
    while let Some(Ok(_)) = body.frame().await {}
}

/// Whether a body error is the length limit of `to_bytes`.
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// A 503 when the memory available now (the machine's, the container's, `ulimit -v`'s: see
/// `wgan_models::limits`) cannot hold what answering `n` images takes: the latents, the images
/// as f32, and them once more encoded. The server stays up; the client may retry or ask for
/// fewer.
fn check_request_memory(state: &AppState, n: usize) -> Result<(), ApiError> {
    request_memory_against(
        state.z_dim,
        state.image,
        n,
        wgan_models::limits::available_memory(),
    )
}

/// [`check_request_memory`] against `available` bytes.
fn request_memory_against(
    z_dim: usize,
    [c, h, w]: [usize; 3],
    n: usize,
    available: Option<u64>,
) -> Result<(), ApiError> {
    let per_image = (z_dim + 2 * c * h * w) as u64 * 4;
    let needed = per_image.saturating_mul(n as u64);
    match available {
        Some(free) if needed > free => Err(ApiError::unavailable(
            format!(
                "not enough memory for {n} images now ({} needed, {} free); retry later or ask for fewer",
                wgan_models::limits::human(needed),
                wgan_models::limits::human(free)
            ),
            1,
        )),
        _ => Ok(()),
    }
}

/// PNG bytes of `img`, or a 500.
fn png_bytes(img: &image::DynamicImage) -> Result<Vec<u8>, ApiError> {
    crate::images::png_bytes(img).map_err(|e| ApiError::internal(format!("{e:#}")))
}

/// PNG bytes of image `i` of `values` (`[n, C, H, W]`).
fn image_png(values: &[f32], shape: BatchShape, i: usize) -> Result<Vec<u8>, ApiError> {
    let len = shape.image_len();
    let img = to_image(
        &values[i * len..(i + 1) * len],
        shape.channels,
        shape.height,
        shape.width,
    )
    .map_err(|e| ApiError::bad(e.to_string()))?;
    png_bytes(&img)
}

async fn generate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut req: GenerateRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad(format!("the body is not a generation request: {e}")))?;
    let format = format_of(req.format.as_deref(), &headers)?;
    if req.cols == Some(0) {
        return Err(ApiError::bad("\"cols\" must be at least 1"));
    }
    let images = Images::of(&mut req, state.z_dim, state.max_images)?;
    let n = images.n();
    check_request_memory(&state, n)?;
    let (first, source) = (images.first(), images.source());
    let z_dim = state.z_dim;
    let z = blocking(move || Ok(images.latents(z_dim))).await?;
    let rx = state.batcher.submit(z, n).map_err(|e| match e {
        Refused::Full { queued, capacity } => ApiError::unavailable(
            format!(
                "the server is busy: {queued} of at most {capacity} images are queued; retry later"
            ),
            1,
        ),
        Refused::Stopped => ApiError::unavailable("the server is shutting down", 5),
    })?;
    let values = match tokio::time::timeout(state.timeout, rx).await {
        Err(_) => {
            return Err(ApiError::unavailable(
                format!(
                    "no images within {:.1} s (the server is overloaded); retry later",
                    state.timeout.as_secs_f64()
                ),
                1,
            ))
        }
        Ok(Err(_)) => return Err(ApiError::internal("the batching worker stopped")),
        Ok(Ok(Err(failed))) => return Err(ApiError::internal(failed.to_string())),
        Ok(Ok(Ok(values))) => values,
    };
    let [channels, height, width] = state.image;
    let shape = BatchShape {
        n,
        channels,
        height,
        width,
    };
    let cols = req.cols;
    let mut resp = blocking(move || encode(format, &values, shape, cols, first, source)).await?;
    resp.extensions_mut().insert(ImagesMade(n));
    Ok(resp)
}

/// How many images a response carries, for the log line ([`observe`]); a response extension,
/// not sent to the client.
#[derive(Clone, Copy, Debug)]
struct ImagesMade(usize);

/// Runs `work` (drawing latents, encoding images) on the blocking pool, off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("a worker task failed: {e}")))?
}

/// The answer's body: `values` (`shape`) in `format`. Zip entries are named by image index from
/// `first`, as `runtime gen --out` names its files; the JSON answer carries `source` (seed,
/// walk, first, truncation).
fn encode(
    format: Format,
    values: &[f32],
    shape: BatchShape,
    cols: Option<usize>,
    first: u64,
    source: Source,
) -> Result<Response, ApiError> {
    let (n, c, h, w) = (shape.n, shape.channels, shape.height, shape.width);
    Ok(match format {
        Format::Npy => (
            [(header::CONTENT_TYPE, "application/x-npy")],
            crate::npy::to_bytes(&[n, c, h, w], values),
        )
            .into_response(),
        Format::Png => {
            let mut grid =
                GridCanvas::new(shape, cols).map_err(|e| ApiError::bad(e.to_string()))?;
            for (i, image) in values.chunks(shape.image_len()).enumerate() {
                grid.put(i, image)
                    .map_err(|e| ApiError::bad(e.to_string()))?;
            }
            (
                [(header::CONTENT_TYPE, "image/png")],
                png_bytes(&grid.finish())?,
            )
                .into_response()
        }
        Format::Zip => {
            let last = first + n as u64 - 1;
            let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            let stored = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored);
            for i in 0..n {
                let png = image_png(values, shape, i)?;
                zip.start_file(image_file_name(first + i as u64, last), stored)
                    .and_then(|()| std::io::Write::write_all(&mut zip, &png).map_err(Into::into))
                    .map_err(|e| ApiError::internal(format!("writing the zip: {e}")))?;
            }
            let bytes = zip
                .finish()
                .map_err(|e| ApiError::internal(format!("writing the zip: {e}")))?
                .into_inner();
            ([(header::CONTENT_TYPE, "application/zip")], bytes).into_response()
        }
        Format::Json => {
            let images = (0..n)
                .map(|i| {
                    let png = image_png(values, shape, i)?;
                    Ok(base64::engine::general_purpose::STANDARD.encode(png))
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            Json(ImagesJson {
                source,
                n,
                shape: [c, h, w],
                images,
            })
            .into_response()
        }
    })
}

/// The page at `/`: the model's description and images through `/v1/generate`, one HTML file
/// with its script and style inline, embedded in the binary.
const PAGE: &str = include_str!("page.html");

/// `GET /`. The content security policy keeps the page to this server (no external assets);
/// images arrive as `data:` URLs.
async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; connect-src 'self'; img-src 'self' data: blob:; \
                 style-src 'unsafe-inline'; script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

async fn model(State(state): State<Arc<AppState>>) -> Json<ModelDescription> {
    Json(state.model.clone())
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.shutting_down.load(Ordering::SeqCst) {
        ApiError::unavailable("shutting down", 5).into_response()
    } else {
        "ready\n".into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.queue_depth.set(state.batcher.queued() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// What the 404 and 405 answers list.
const ROUTES: &str =
    "the routes are GET / (the page), POST /v1/generate, GET /v1/model, /healthz, /readyz, /metrics";

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {} {}: {ROUTES}",
        req.method(),
        req.uri().path()
    ))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::method_not_allowed(format!(
        "{} is not allowed on {}: {ROUTES}",
        req.method(),
        req.uri().path()
    ))
}

/// One log line and the counters per request.
async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let elapsed = started.elapsed();
    state
        .metrics
        .requests
        .get_or_create(&StatusLabel { status })
        .inc();
    if path == "/v1/generate" {
        state.metrics.latency.observe(elapsed.as_secs_f64());
    }
    let images = resp
        .extensions()
        .get::<ImagesMade>()
        .map_or_else(|| "-".to_string(), |m| m.0.to_string());
    tracing::info!(
        "{method} {path} {status} images={images} {:.1} ms",
        elapsed.as_secs_f64() * 1e3
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn a_request_that_does_not_fit_in_memory_now_gets_503_with_retry_after() {
        // 1000 images of 3×64×64 with z 100: about 98 MB.
        let refused = request_memory_against(100, [3, 64, 64], 1000, Some(50 << 20)).unwrap_err();
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.retry_after, Some(1));
        assert!(
            refused
                .message
                .contains("not enough memory for 1000 images"),
            "{}",
            refused.message
        );
        assert!(request_memory_against(100, [3, 64, 64], 1000, Some(1 << 30)).is_ok());
        assert!(request_memory_against(100, [3, 64, 64], usize::MAX, None).is_ok());
    }
}
