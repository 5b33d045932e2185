//! A closed-loop load generator for `runtime serve`: `--clients` threads each send
//! single-image (or `--n`-image) generation requests back to back for `--seconds`, to one
//! server on 127.0.0.1; prints throughput and latency percentiles as one table row.
//!
//! ```sh
//! cargo run --release -p wgan-runtime --example loadgen -- --url http://127.0.0.1:8080 --clients 32 --seconds 10
//! ```
//!
//! Columns: clients, requests answered 200, other answers, images/s, p50 and p99 latency (ms).
//! Bounded: at most `--seconds` of sending plus one request's time, to one address.

use std::io::Read;
use std::time::{Duration, Instant};

struct Args {
    url: String,
    clients: usize,
    seconds: f64,
    n: usize,
    header: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        url: "http://127.0.0.1:8080".into(),
        clients: 1,
        seconds: 10.0,
        n: 1,
        header: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = value()?,
            "--clients" => a.clients = value()?.parse().map_err(|e| format!("--clients: {e}"))?,
            "--seconds" => a.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--n" => a.n = value()?.parse().map_err(|e| format!("--n: {e}"))?,
            "--header" => a.header = true,
            other => {
                return Err(format!(
                    "unknown flag {other} (--url, --clients, --seconds, --n, --header)"
                ))
            }
        }
    }
    if !a.url.starts_with("http://127.0.0.1") && !a.url.starts_with("http://localhost") {
        return Err(
            "--url must be a server on 127.0.0.1 (this tool loads local servers only)".into(),
        );
    }
    if a.clients == 0 || a.n == 0 || !(a.seconds > 0.0 && a.seconds <= 600.0) {
        return Err("--clients and --n must be at least 1, --seconds in (0, 600]".into());
    }
    Ok(a)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let url = format!("{}/v1/generate", args.url.trim_end_matches('/'));
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..args.clients)
        .map(|c| {
            let url = url.clone();
            let n = args.n;
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(60))
                    .build();
                let (mut ok, mut other, mut latencies) = (0usize, 0usize, Vec::new());
                let mut seed = c as u64 * 1_000_000;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let body = format!(r#"{{"n": {n}, "seed": {seed}, "format": "npy"}}"#);
                    seed += 1;
                    match agent.post(&url).send_string(&body) {
                        Ok(r) => {
                            let mut sink = Vec::new();
                            let _ = r.into_reader().read_to_end(&mut sink);
                            ok += 1;
                            latencies.push(t.elapsed().as_secs_f64() * 1e3);
                        }
                        Err(_) => other += 1,
                    }
                }
                (ok, other, latencies)
            })
        })
        .collect();
    let (mut ok, mut other, mut lat) = (0, 0, Vec::new());
    for w in workers {
        let (o, x, l) = w.join().expect("client thread");
        ok += o;
        other += x;
        lat.extend(l);
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    if args.header {
        println!("| clients | ok | other | images/s | p50 ms | p99 ms |");
        println!("|---|---|---|---|---|---|");
    }
    println!(
        "| {} | {ok} | {other} | {:.1} | {:.1} | {:.1} |",
        args.clients,
        (ok * args.n) as f64 / elapsed,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
}
