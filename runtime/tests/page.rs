//! The page `runtime serve` answers at `/`, loaded in headless Chromium (Debian's `chromium`,
//! which `scripts/test-env.sh` installs) against a server on 127.0.0.1: generated images
//! appear, one request per image when the server allows one image per request, and a refused
//! request shows the server's message, not a broken image.

mod common;

use common::server::*;
use std::path::PathBuf;
use std::process::Command;

/// The Chromium binary: `$WGAN_TEST_CHROMIUM`, else `chromium` on the `PATH`.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("WGAN_TEST_CHROMIUM").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("chromium"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "chromium is missing: run `eval \"$(scripts/test-env.sh)\"` from the workspace root \
                 (it installs Debian's chromium package), or set WGAN_TEST_CHROMIUM"
            )
        })
}

/// The page at `url` after its scripts ran (Chromium's `--dump-dom`), within a bounded
/// virtual time; `--screenshot` as well when `screenshot` is given.
fn dump_dom(url: &str, screenshot: Option<&std::path::Path>) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        "--window-size=1100,900",
        "--virtual-time-budget=20000",
        "--timeout=60000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()));
    if let Some(p) = screenshot {
        cmd.arg(format!("--screenshot={}", p.display()));
    } else {
        cmd.arg("--dump-dom");
    }
    let out = cmd.arg(url).output().expect("runs chromium");
    assert!(
        out.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The `src` of every `img` in `dom` that holds a PNG from the server.
fn png_images(dom: &str) -> usize {
    dom.matches("src=\"data:image/png;base64,iVBORw0KGgo")
        .count()
}

/// The text of the element with id `id`.
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {dom}"));
    let open = start + dom[start..].find('>').unwrap() + 1;
    let close = open + dom[open..].find('<').unwrap();
    &dom[open..close]
}

#[test]
fn the_page_shows_generated_images_one_request_per_image() {
    let s = Server::start(&["--max-images-per-request", "1"]);
    let dom = dump_dom(&s.url("/"), None);
    // On open: a grid of 16 images, fetched one per request.
    assert_eq!(png_images(&dom), 16, "{dom}");
    let status = text_of(&dom, "status");
    assert!(status.starts_with("16 images in 16 requests"), "{status}");
    assert!(
        text_of(&dom, "subtitle").contains("small, step 5000"),
        "{dom}"
    );
    assert!(dom.contains("<dd>1 channel × 32 × 32</dd>"), "{dom}");
    // The images are the server's: seed 0's first image, as /v1/generate answers it.
    let (_, json, _) = post(&s, r#"{"n": 1, "seed": 0, "format": "json"}"#, None);
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let first = format!(
        "src=\"data:image/png;base64,{}\"",
        json["images"][0].as_str().unwrap()
    );
    assert!(dom.contains(&first), "seed 0's image 0 is not on the page");
    // A walk from the address: its frames, and the player.
    let dom = dump_dom(&s.url("/?walk=3,4&frames=6&truncation=1.5"), None);
    assert!(
        text_of(&dom, "status").starts_with("6 images in 6 requests"),
        "{dom}"
    );
    // Six frames in the grid, and the player showing one of them.
    assert_eq!(png_images(&dom), 7, "{dom}");
    assert!(dom.contains("frame 5"), "{dom}");
    // A bad value from the address is the server's 400 message.
    let dom = dump_dom(&s.url("/?seed=1&n=4&truncation=0.001"), None);
    assert_eq!(png_images(&dom), 0);
    let error = text_of(&dom, "error");
    assert!(
        error.contains("400: \"truncation\" is 0.001") && error.contains("at least 0.01"),
        "{error}"
    );
    // A count the page does not ask for: its own message, no request.
    let dom = dump_dom(&s.url("/?seed=1&n=5000"), None);
    assert_eq!(png_images(&dom), 0);
    let error = text_of(&dom, "error");
    assert!(
        error.contains("Images must be a whole number from 1 to 1024"),
        "{error}"
    );
    if let Some(path) = std::env::var_os("WGAN_PAGE_SCREENSHOT") {
        dump_dom(&s.url("/?seed=7&n=24&truncation=1.5"), Some(path.as_ref()));
    }
}

#[test]
fn a_refused_request_shows_the_servers_message() {
    // Every request waits 5 s for a fuller batch, and gives up after 0.5 s: a 503.
    let s = Server::start(&["--max-delay-ms", "5000", "--timeout-s", "0.5"]);
    let dom = dump_dom(&s.url("/"), None);
    assert_eq!(png_images(&dom), 0, "{dom}");
    let error = text_of(&dom, "error");
    assert!(
        error.contains("503: no images within 0.5 s") && error.contains("retry after 1 s"),
        "{error}"
    );
}
