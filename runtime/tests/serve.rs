//! `runtime serve` end to end, on 127.0.0.1 with an ephemeral port: images identical to
//! `runtime gen`, batching of concurrent requests, 4xx answers that name the problem, overload
//! (503 with Retry-After, then recovery) and a drained shutdown on SIGTERM. Every request is
//! bounded in count and time.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// Starts `runtime serve --port 0 ARGS` and waits for its "listening on" line.
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_runtime"))
            .args(["serve", "--port", "0", "--log-level", "warn"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let first = lines.next().expect("a first line").unwrap();
        let addr = first
            .strip_prefix("listening on ")
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .to_string();
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, base: addr }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build()
}

/// (status, body, Retry-After) of a POST to /v1/generate.
fn post(s: &Server, body: &str, accept: Option<&str>) -> (u16, Vec<u8>, Option<String>) {
    let mut req = agent().post(&s.url("/v1/generate"));
    if let Some(a) = accept {
        req = req.set("Accept", a);
    }
    let resp = match req.send_string(body) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = resp.status();
    let retry = resp.header("Retry-After").map(str::to_string);
    let mut bytes = Vec::new();
    resp.into_reader().read_to_end(&mut bytes).unwrap();
    (status, bytes, retry)
}

fn get(s: &Server, path: &str) -> (u16, String) {
    match agent().get(&s.url(path)).call() {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap()),
        Err(e) => panic!("request failed: {e}"),
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[test]
fn images_equal_gen_and_bad_requests_get_a_4xx_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&["--body-limit", "20000", "--max-images-per-request", "100"]);
    // Identical to `runtime gen` for the same seed: the PNG grid and the raw values.
    let (grid, raw) = (dir.path().join("g.png"), dir.path().join("r.npy"));
    let gen = Command::new(env!("CARGO_BIN_EXE_runtime"))
        .args(["gen", "--n", "6", "--seed", "42", "--grid"])
        .arg(&grid)
        .arg("--save-raw")
        .arg(&raw)
        .output()
        .unwrap();
    assert!(gen.status.success());
    let (status, png, _) = post(&s, r#"{"n": 6, "seed": 42}"#, None);
    assert_eq!(status, 200);
    assert_eq!(png, std::fs::read(&grid).unwrap());
    let (status, npy, _) = post(&s, r#"{"n": 6, "seed": 42}"#, Some("application/x-npy"));
    assert_eq!(status, 200);
    assert_eq!(npy, std::fs::read(&raw).unwrap());
    let (status, json, _) = post(&s, r#"{"n": 2, "seed": 42, "format": "json"}"#, None);
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(json["images"].as_array().unwrap().len(), 2);
    assert_eq!(json["shape"], serde_json::json!([1, 32, 32]));
    // A zip of PNGs holds what `gen --out DIR` writes, file for file.
    let out = dir.path().join("out");
    let gen = Command::new(env!("CARGO_BIN_EXE_runtime"))
        .args(["gen", "--n", "3", "--seed", "9", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(gen.status.success());
    let (status, zipped, _) = post(&s, r#"{"n": 3, "seed": 9}"#, Some("application/zip"));
    assert_eq!(status, 200);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zipped)).unwrap();
    assert_eq!(archive.len(), 3);
    for i in 0..3 {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().unwrap().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, std::fs::read(out.join(&name)).unwrap(), "{name}");
    }
    // Explicit latents give the same images as the seed's.
    let z = wgan_runtime::latent::latents(42, 6, 100);
    let rows: Vec<&[f32]> = z.chunks(100).collect();
    let body = serde_json::json!({ "z": rows, "format": "npy" }).to_string();
    let (status, from_z, _) = post(&s, &body, None);
    assert_eq!(status, 200);
    assert_eq!(from_z, npy);

    let long_z = serde_json::json!({ "z": vec![vec![0.5f32; 100]; 60] }).to_string();
    let cases: &[(&str, Option<&str>, u16, &str)] = &[
        (r#"{"n": 0}"#, None, 400, "\"n\" must be at least 1"),
        (r#"{"n": 101}"#, None, 400, "at most 100 images per request"),
        (r#"{"n": 2,"#, None, 400, "not a generation request"),
        (r#"{"count": 2}"#, None, 400, "unknown field `count`"),
        (r#"{}"#, None, 400, "give \"n\""),
        (r#"{"n": 1, "z": [[0.0]]}"#, None, 400, "not both"),
        (
            r#"{"z": [[1.0, 2.0]]}"#,
            None,
            400,
            "\"z\"[0] has 2 values; this model's latents have 100",
        ),
        (r#"{"z": []}"#, None, 400, "holds no latents"),
        (
            r#"{"n": 1, "format": "gif"}"#,
            None,
            400,
            "unknown format 'gif'",
        ),
        (
            r#"{"n": 1, "cols": 0}"#,
            None,
            400,
            "\"cols\" must be at least 1",
        ),
        (
            r#"{"n": 1}"#,
            Some("text/html"),
            406,
            "cannot answer with 'text/html'",
        ),
        (
            &long_z,
            None,
            413,
            "larger than this server's limit of 20000 bytes (--body-limit)",
        ),
    ];
    for (body, accept, want, fragment) in cases {
        let (status, bytes, _) = post(&s, body, *accept);
        // Every error is JSON with a message, the 413 of a too-large body included.
        let text = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| panic!("not a JSON error: {}", String::from_utf8_lossy(&bytes)));
        let shown: String = body.chars().take(80).collect();
        assert_eq!(status, *want, "{shown}: {text}");
        assert!(text.contains(fragment), "{shown}: {text}");
    }
    let (status, text) = get(&s, "/v1/nothing");
    assert_eq!(status, 404);
    assert!(text.contains("POST /v1/generate"), "{text}");
    // A known route with another method: 405 with a JSON message too.
    let (status, text) = get(&s, "/v1/generate");
    assert_eq!(status, 405);
    let msg: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        msg["error"]
            .as_str()
            .unwrap()
            .contains("GET is not allowed on /v1/generate"),
        "{text}"
    );
    // Still up, and it says what it serves.
    assert_eq!(get(&s, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(get(&s, "/readyz").0, 200);
    let (status, model) = get(&s, "/v1/model");
    assert_eq!(status, 200);
    let model: serde_json::Value = serde_json::from_str(&model).unwrap();
    assert_eq!(model["z_dim"], 100);
    assert_eq!(model["metadata"]["wgan.preset"], "small");
    let metrics = get(&s, "/metrics").1;
    assert!(metric(&metrics, "wgan_requests_total{status=\"400\"}") >= 10.0);
}

#[test]
fn concurrent_requests_are_batched() {
    let s = Server::start(&["--max-batch", "64", "--max-delay-ms", "50"]);
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let url = s.url("/v1/generate");
            std::thread::spawn(move || {
                agent()
                    .post(&url)
                    .send_string(&format!(r#"{{"n": 1, "seed": {i}}}"#))
                    .map(|r| r.status())
                    .unwrap_or(0)
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 200);
    }
    let metrics = get(&s, "/metrics").1;
    let (sum, count) = (
        metric(&metrics, "wgan_batch_size_sum"),
        metric(&metrics, "wgan_batch_size_count"),
    );
    assert_eq!(sum, 16.0, "{metrics}");
    assert!(
        count < 16.0,
        "16 requests ran in {count} batches: none were batched"
    );
    assert_eq!(metric(&metrics, "wgan_images_generated_total"), 16.0);
}

#[test]
fn overload_gets_503_with_retry_after_and_the_server_recovers() {
    let s = Server::start(&[
        "--max-batch",
        "1",
        "--max-images-per-request",
        "64",
        "--queue-capacity",
        "64",
    ]);
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let url = s.url("/v1/generate");
            std::thread::spawn(move || {
                match agent()
                    .post(&url)
                    .send_string(&format!(r#"{{"n": 48, "seed": {i}}}"#))
                {
                    Ok(r) => (r.status(), None),
                    Err(ureq::Error::Status(c, r)) => {
                        (c, r.header("Retry-After").map(str::to_string))
                    }
                    Err(e) => panic!("{e}"),
                }
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let busy: Vec<_> = results.iter().filter(|(c, _)| *c == 503).collect();
    assert!(!busy.is_empty(), "no request was refused: {results:?}");
    assert!(
        busy.iter().all(|(_, retry)| retry.as_deref() == Some("1")),
        "{results:?}"
    );
    assert!(results.iter().any(|(c, _)| *c == 200), "{results:?}");
    // The queue drained: the server answers again.
    let (status, _, _) = post(&s, r#"{"n": 4}"#, None);
    assert_eq!(status, 200);
}

#[test]
fn sigterm_answers_the_queued_requests_then_exits_0() {
    let mut s = Server::start(&["--max-batch", "8"]);
    let url = s.url("/v1/generate");
    let request = std::thread::spawn(move || {
        agent()
            .post(&url)
            .send_string(r#"{"n": 512, "seed": 1}"#)
            .map(|r| r.status())
            .unwrap_or(0)
    });
    // Wait until the request is queued, then ask the server to stop.
    let start = Instant::now();
    while metric(&get(&s, "/metrics").1, "wgan_queue_depth") == 0.0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the request never queued"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill(2) on our own child process.
    assert_eq!(unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) }, 0);
    assert_eq!(request.join().unwrap(), 200);
    let start = Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the server did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}
