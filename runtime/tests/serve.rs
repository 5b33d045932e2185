//! `runtime serve` end to end, on 127.0.0.1 with an ephemeral port: images identical to
//! `runtime gen`, batching of concurrent requests, 4xx answers that name the problem, overload
//! (503 with Retry-After, then recovery) and a drained shutdown on SIGTERM. Every request is
//! bounded in count and time.

mod common;

use common::server::*;
use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};
use wgan_test_support::binary;

#[test]
fn images_equal_gen_and_bad_requests_get_a_4xx_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&["--body-limit", "20000", "--max-images-per-request", "100"]);
    // Identical to `runtime gen` for the same seed: the PNG grid and the raw values.
    let (grid, raw) = (dir.path().join("g.png"), dir.path().join("r.npy"));
    let gen = Command::new(binary("runtime"))
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
    let gen = Command::new(binary("runtime"))
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

/// Sends a request for `n` images of seed 1 on a thread and returns once it is queued; join
/// for its status (0 when the connection closed without an answer).
fn queued(s: &Server, n: usize) -> std::thread::JoinHandle<u16> {
    let url = s.url("/v1/generate");
    let request = std::thread::spawn(move || {
        agent()
            .post(&url)
            .send_string(&format!(r#"{{"n": {n}, "seed": 1}}"#))
            .map(|r| r.status())
            .unwrap_or(0)
    });
    let start = Instant::now();
    while metric(&get(s, "/metrics").1, "wgan_queue_depth") == 0.0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the request never queued"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    request
}

#[test]
fn sigterm_answers_the_queued_requests_then_exits_0() {
    let mut s = Server::start(&["--max-batch", "8"]);
    // Queue a request, then ask the server to stop.
    let request = queued(&s, 512);
    // SAFETY: kill(2) on our own child process.
    assert_eq!(unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) }, 0);
    assert_eq!(request.join().unwrap(), 200);
    assert_eq!(s.wait_for_exit().code(), Some(0));
    s.wait_for_stderr("SIGTERM: finishing the queued requests");
}

#[test]
fn a_second_sigterm_exits_at_once_without_answering() {
    // Batches of one image: the 1,024 queued images take far longer than the second signal.
    let mut s = Server::start(&["--max-batch", "1"]);
    let request = queued(&s, 1024);
    let pid = s.child.id() as i32;
    // SAFETY: kill(2) on our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    s.wait_for_stderr("SIGTERM: finishing the queued requests");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert_eq!(s.wait_for_exit().code(), Some(128 + libc::SIGTERM));
    s.wait_for_stderr("second signal, SIGTERM: exiting without answering the queued requests");
    // The connection closed without an answer.
    assert_eq!(request.join().unwrap(), 0);
}

/// `gen --save-raw` of `args` (run in `dir`), as f32 values.
fn gen_raw(dir: &std::path::Path, args: &[&str]) -> Vec<f32> {
    let out = dir.join("gen.npy");
    let o = Command::new(binary("runtime"))
        .arg("gen")
        .args(args)
        .arg("--save-raw")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wgan_runtime::npy::read_f32(&out).unwrap().data
}

fn npy_values(bytes: &[u8]) -> Vec<f32> {
    wgan_runtime::npy::parse_f32(bytes).unwrap().data
}

#[test]
fn windows_truncation_and_walks_are_the_images_gen_makes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = Server::start(&["--max-images-per-request", "8"]);
    let image = 32 * 32;
    // Images 2..5 of seed 42: a window of what `gen --n 5` makes.
    let whole = gen_raw(d, &["--seed", "42", "--n", "5"]);
    let (status, window, _) = post(
        &s,
        r#"{"n": 3, "seed": 42, "first": 2}"#,
        Some("application/x-npy"),
    );
    assert_eq!(status, 200);
    assert_eq!(npy_values(&window), whole[2 * image..]);
    // Truncated, from a window too: image i depends on the seed, i and ψ only.
    let truncated = gen_raw(d, &["--seed", "7", "--n", "4", "--truncation", "0.7"]);
    let (_, t, _) = post(
        &s,
        r#"{"n": 4, "seed": 7, "truncation": 0.7, "format": "npy"}"#,
        None,
    );
    assert_eq!(npy_values(&t), truncated);
    let (_, t, _) = post(
        &s,
        r#"{"n": 1, "seed": 7, "first": 3, "truncation": 0.7, "format": "npy"}"#,
        None,
    );
    assert_eq!(npy_values(&t), truncated[3 * image..]);
    // A walk's frames 4..9 of 12, with truncated keys.
    let walk = gen_raw(
        d,
        &[
            "--interpolate",
            "1,2,3",
            "--frames",
            "12",
            "--truncation",
            "1.5",
        ],
    );
    let body = r#"{"walk": {"seeds": [1, 2, 3], "frames": 12}, "truncation": 1.5, "first": 4, "n": 5, "format": "npy"}"#;
    let (status, frames, _) = post(&s, body, None);
    assert_eq!(status, 200);
    assert_eq!(npy_values(&frames), walk[4 * image..9 * image]);
    // Without "n", the rest of the walk; JSON says where the images came from.
    let (status, json, _) = post(
        &s,
        r#"{"walk": {"seeds": [1, 2], "frames": 10}, "first": 7, "format": "json"}"#,
        None,
    );
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(json["n"], 3);
    assert_eq!(json["images"].as_array().unwrap().len(), 3);
    assert_eq!(
        json["walk"],
        serde_json::json!({"seeds": [1, 2], "frames": 10})
    );
    assert_eq!(json["first"], 7);
    assert!(json["seed"].is_null(), "{json}");
    // A zip window is named by image index, as `gen --out` names the same images.
    let out = d.join("out");
    let o = Command::new(binary("runtime"))
        .args(["gen", "--n", "3", "--seed", "9", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success());
    let (status, zipped, _) = post(
        &s,
        r#"{"n": 2, "seed": 9, "first": 1, "format": "zip"}"#,
        None,
    );
    assert_eq!(status, 200);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zipped)).unwrap();
    let mut names = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().unwrap().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, std::fs::read(out.join(&name)).unwrap(), "{name}");
        names.push(name);
    }
    assert_eq!(names, ["00001.png", "00002.png"]);
    // The limits a client sizes its requests by.
    let model: serde_json::Value = serde_json::from_str(&get(&s, "/v1/model").1).unwrap();
    assert_eq!(model["limits"]["max_images_per_request"], 8);
    assert_eq!(model["limits"]["max_walk_frames"], 10000);
    let cases: &[(&str, &str)] = &[
        (
            r#"{"walk": {"seeds": [1], "frames": 4}}"#,
            "\"walk\": a walk goes between at least two seeds and 1 was given",
        ),
        (
            r#"{"walk": {"seeds": [1, 2], "frames": 1}}"#,
            "from 2 to 10000 frames, and 1 was asked for",
        ),
        (
            r#"{"walk": {"seeds": [1, 2], "frames": 4}, "seed": 3}"#,
            "\"seed\" does not go with \"walk\"",
        ),
        (
            r#"{"walk": {"seeds": [1, 2], "frames": 4}, "first": 4}"#,
            "the walk's frames are 0 to 3",
        ),
        (
            r#"{"walk": {"seeds": [1, 2], "frames": 4}, "first": 2, "n": 3}"#,
            "go past the walk's 4 frames",
        ),
        (
            r#"{"walk": {"seeds": [1, 2], "frames": 20}}"#,
            "ask for them in parts with \"first\" and \"n\"",
        ),
        (r#"{"walk": {"seeds": [1, 2]}}"#, "missing field `frames`"),
        (r#"{"n": 2, "first": 999999}"#, "go past image 999999"),
        (r#"{"n": 1, "truncation": 0}"#, "\"truncation\" is 0"),
        (r#"{"n": 1, "truncation": -1}"#, "ψ must be at least 0.01"),
        (
            r#"{"z": [[0.0]], "truncation": 1}"#,
            "\"truncation\" does not go with \"z\"",
        ),
        (
            r#"{"z": [[0.0]], "first": 1}"#,
            "\"first\" does not go with \"z\"",
        ),
    ];
    for (body, fragment) in cases {
        let (status, bytes, _) = post(&s, body, None);
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(status, 400, "{body}: {text}");
        let error: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(
            error["error"].as_str().unwrap().contains(fragment),
            "{body}: {text}"
        );
    }
    // The last image a seed's window reaches.
    let (status, _, _) = post(&s, r#"{"n": 1, "first": 999999, "format": "npy"}"#, None);
    assert_eq!(status, 200);
}
