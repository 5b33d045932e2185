//! Accepting and keeping HTTP/1 connections with limits a hostile client cannot get around:
//! at most `--max-connections` at once (further ones wait in the listen queue), a request's
//! header must arrive within `--header-timeout-s` of its first byte, and a kept-alive
//! connection with no request in progress closes after `--idle-timeout-s` without traffic
//! (a new connection too, until it sends something). The body's own time limit is the
//! router's (`--body-timeout-s`, see `api.rs`), since it is read once the header is parsed.
//!
//! axum's `serve` offers none of these, so the loop is ours: hyper's HTTP/1 connection with
//! the router as its service, and a watchdog per connection that sees the bytes read (through
//! [`Tracked`]) and the requests in progress.

use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// The limits of [`serve`].
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// What a connection's watchdog knows.
struct Activity {
    start: Instant,
    /// Requests being answered.
    in_flight: AtomicUsize,
    /// Milliseconds since `start` at which bytes of a request's head began to arrive while no
    /// request was in progress (`u64::MAX`: none since the last answer).
    head_started: AtomicU64,
    /// Milliseconds since `start` of the last byte read or the last answer.
    last_activity: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            head_started: AtomicU64::new(u64::MAX),
            last_activity: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn read_bytes(&self) {
        let now = self.now_ms();
        self.last_activity.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let _ = self.head_started.compare_exchange(
                u64::MAX,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    fn request_began(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(u64::MAX, Ordering::Relaxed);
    }

    fn request_ended(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.last_activity.store(self.now_ms(), Ordering::Relaxed);
        self.head_started.store(u64::MAX, Ordering::Relaxed);
    }

    /// Why the connection should close now, if it should.
    fn expired(&self, limits: &ConnLimits) -> Option<&'static str> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let now = self.now_ms();
        let head = self.head_started.load(Ordering::Relaxed);
        if head != u64::MAX {
            return (now.saturating_sub(head) > limits.header_timeout.as_millis() as u64)
                .then_some("the request header did not arrive in time");
        }
        let idle = now.saturating_sub(self.last_activity.load(Ordering::Relaxed));
        (idle > limits.idle_timeout.as_millis() as u64).then_some("idle")
    }
}

/// A socket that tells its [`Activity`] when bytes arrive.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read_bytes();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves `app` on `listener` under `limits` until `stop` turns true (or its sender is gone),
/// then stops accepting, lets the connections finish their requests (closing idle ones at
/// once) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let stopped = || {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|&s| s).await;
        }
    };
    loop {
        // A free slot first: beyond the cap, connections wait in the kernel's listen queue.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopped() => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors, say: wait a little instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let mut closing = closing_rx.clone();
        connections.spawn(async move {
            let _permit = permit;
            let activity = Arc::new(Activity::new());
            let io = TokioIo::new(Tracked {
                inner: stream,
                activity: activity.clone(),
            });
            let act = activity.clone();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (app, act) = (app.clone(), act.clone());
                async move {
                    act.request_began();
                    let response = app.oneshot(req.map(Body::new)).await;
                    act.request_ended();
                    response
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(io, service);
            tokio::pin!(conn);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut shutting_down = false;
            loop {
                tokio::select! {
                    _ = conn.as_mut() => break,
                    changed = closing.changed(), if !shutting_down => {
                        if changed.is_err() || *closing.borrow() {
                            shutting_down = true;
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                    _ = tick.tick() => {
                        if let Some(why) = activity.expired(&limits) {
                            tracing::debug!("closing a connection: {why}");
                            break;
                        }
                    }
                }
            }
        });
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = closing_tx.send(true);
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_tells_idle_from_slow_headers() {
        let limits = ConnLimits {
            max_connections: 1,
            header_timeout: Duration::from_millis(50),
            idle_timeout: Duration::from_millis(200),
        };
        let a = Activity::new();
        assert_eq!(a.expired(&limits), None);
        std::thread::sleep(Duration::from_millis(80));
        // Nothing sent yet: idle, not late (80 ms < 200 ms).
        assert_eq!(a.expired(&limits), None);
        a.read_bytes();
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(
            a.expired(&limits),
            Some("the request header did not arrive in time")
        );
        // A request in progress is never closed by the watchdog.
        a.request_began();
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(a.expired(&limits), None);
        a.request_ended();
        assert_eq!(a.expired(&limits), None);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(a.expired(&limits), Some("idle"));
    }
}
