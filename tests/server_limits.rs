//! The server at its boundary (see docs/reliability.md): slow, idle and oversized clients
//! cannot hold it.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};
use wgan_gp::*;

/// A `runtime serve` on a free port with `extra` flags; returns the child and its address.
fn serve(extra: &[&str], cwd: &Path) -> (Child, String) {
    use std::io::BufRead;
    let mut args = vec!["serve", "--port", "0", "--log-level", "warn"];
    args.extend_from_slice(extra);
    let mut child = spawn("runtime", &args, cwd);
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server exited before listening")
            .unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining stderr so the server never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// Sends `request` (raw HTTP/1.1) on a new connection and returns the status and body of the
/// answer (the connection is closed by the request's `Connection: close`).
fn http(addr: &str, request: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn get_health(addr: &str) -> (u16, String) {
    http(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
}

/// Whether the server has closed `s` (a read gives end-of-file or a reset) within `limit`.
fn closed_within(s: &mut std::net::TcpStream, limit: Duration) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn the_server_cannot_be_held_by_slow_idle_or_oversized_clients() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (mut child, addr) = serve(
        &[
            "--header-timeout-s",
            "1",
            "--body-timeout-s",
            "1",
            "--idle-timeout-s",
            "2",
            "--max-connections",
            "300",
            "--body-limit",
            "100000",
        ],
        d,
    );
    // 200 connections that send half a header, then nothing.
    let mut slow: Vec<std::net::TcpStream> = (0..200)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(b"POST /v1/generate HTTP/1.1\r\nHost: t\r\n")
                .unwrap();
            s
        })
        .collect();
    // The server still answers at once.
    let t = Instant::now();
    assert_eq!(get_health(&addr), (200, "ok\n".to_string()));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // ...and closes every slow one after the header timeout.
    for s in &mut slow {
        assert!(
            closed_within(s, Duration::from_secs(5)),
            "a half header stayed open"
        );
    }
    // A body shorter than its Content-Length: 408 with a JSON message after the body timeout.
    let (status, body) = http(
        &addr,
        b"POST /v1/generate HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{\"n\": 1",
    );
    assert_eq!(status, 408, "{body}");
    assert!(
        body.contains("\"error\"") && body.contains("--body-timeout-s"),
        "{body}"
    );
    // A body over the limit: 413 with a JSON message (not plain text), before it is read.
    let mut big = b"POST /v1/generate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 52428800\r\nConnection: close\r\n\r\n".to_vec();
    big.extend(std::iter::repeat_n(b' ', 1 << 20));
    let (status, body) = http(&addr, &big);
    assert_eq!(status, 413, "{body}");
    assert!(
        body.contains("\"error\"") && body.contains("--body-limit"),
        "{body}"
    );
    // `q=0` means "not this one": PNG is refused, JSON is what the client takes.
    let (status, body) = http(
        &addr,
        b"POST /v1/generate HTTP/1.1\r\nHost: t\r\nAccept: image/png;q=0, application/json;q=0.5\r\nContent-Length: 8\r\nConnection: close\r\n\r\n{\"n\": 1}",
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with('{') && body.contains("\"images\""),
        "{body}"
    );
    // A kept-alive connection that goes quiet after its answer is closed after the idle time.
    let mut keep = std::net::TcpStream::connect(&addr).unwrap();
    keep.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        closed_within(&mut keep, Duration::from_secs(6)),
        "an idle keep-alive connection stayed open"
    );
    assert_eq!(get_health(&addr).0, 200);
    signal(&child, libc::SIGTERM);
    assert_eq!(child.wait().unwrap().code(), Some(0));

    // With the connection cap reached by idle clients, a new client waits for a slot (freed
    // by the idle timeout) instead of being dropped.
    let (mut child, addr) = serve(&["--max-connections", "4", "--idle-timeout-s", "1"], d);
    let idle: Vec<std::net::TcpStream> = (0..4)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    assert_eq!(get_health(&addr).0, 200);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    drop(idle);
    signal(&child, libc::SIGTERM);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
