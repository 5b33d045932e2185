//! `runtime gen`'s latent walks (`--interpolate`, `--frames`, `--gif`) and truncation
//! (`--truncation`), run for real on the shipped MNIST generator.
#![cfg(feature = "cli")]

mod common;

use common::*;
use std::path::Path;
use wgan_runtime::{latent, npy};
use wgan_test_support::fixtures;

/// A walk GIF of the shipped 32×32 model: its frames as RGBA, each frame's delay in hundredths
/// of a second, and its repeat setting.
fn decode_gif(path: &Path) -> (Vec<Vec<u8>>, Vec<u16>, gif::Repeat) {
    let gif = fixtures::decode_gif(path);
    assert_eq!((gif.width, gif.height), (32, 32));
    let mut frames = Vec::new();
    let mut delays = Vec::new();
    for f in gif.frames {
        assert_eq!(f.rect, (0, 0, 32, 32));
        frames.push(f.rgba);
        delays.push(f.delay);
    }
    (frames, delays, gif.repeat)
}

fn raw(dir: &Path, name: &str) -> npy::Array {
    npy::read_f32(&dir.join(name)).unwrap()
}

const IMAGE: usize = 32 * 32;

#[test]
fn a_walk_from_the_shipped_model_is_a_looping_gif_from_seed_to_seed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = ok(
        d,
        &[
            "gen",
            "--interpolate",
            "1,2,3",
            "--frames",
            "12",
            "--gif",
            "walk.gif",
            "--frame-ms",
            "100",
            "--out",
            "frames",
            "--save-raw",
            "walk.npy",
        ],
    );
    assert!(
        out.contains("looping GIF walk.gif at 100 ms a frame")
            && out.contains("12 images from a walk through seeds 1 → 2 → 3"),
        "{out}"
    );
    assert!(
        !d.join("generated.png").exists(),
        "--gif is an output: no default grid beside it"
    );
    let (frames, delays, repeat) = decode_gif(&d.join("walk.gif"));
    assert_eq!(frames.len(), 12, "N is the total number of frames");
    assert_eq!(repeat, gif::Repeat::Infinite);
    assert!(delays.iter().all(|&t| t == 10), "{delays:?}");
    // The GIF's frames are the PNG frames, pixel for pixel.
    for (k, rgba) in frames.iter().enumerate() {
        let png = image::open(d.join(format!("frames/{k:05}.png"))).unwrap();
        assert_eq!(rgba, &png.to_rgba8().into_raw(), "frame {k}");
    }
    // The walk starts on image 0 of --seed 1 and ends on image 0 of --seed 3 (no return path).
    let walk = raw(d, "walk.npy");
    assert_eq!(walk.shape, vec![12, 1, 32, 32]);
    for (seed, frame) in [("1", 0), ("3", 11)] {
        ok(
            d,
            &["gen", "--seed", seed, "--n", "1", "--save-raw", "one.npy"],
        );
        let one = raw(d, "one.npy");
        let f = &walk.data[frame * IMAGE..(frame + 1) * IMAGE];
        assert!(max_abs_diff(f, &one.data) <= 1e-5, "seed {seed}");
    }
    // It moves: neighbouring frames are closer than the walk's ends, and no frame repeats.
    let frame = |k: usize| &walk.data[k * IMAGE..(k + 1) * IMAGE];
    let ends = max_abs_diff(frame(0), frame(11));
    assert!(ends > 0.5, "the seeds' images differ: {ends}");
    for k in 0..11 {
        let step = max_abs_diff(frame(k), frame(k + 1));
        assert!(step > 1e-3, "frames {k} and {} are the same", k + 1);
    }
}

/// The same walk with truncation on each backend built in: the same latents, so the same frames
/// up to each backend's rounding, and the same GIF levels within one.
#[test]
#[allow(clippy::vec_init_then_push)] // which backends are pushed depends on the features
fn walks_are_the_same_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    #[allow(unused_mut)]
    let mut backends: Vec<(&str, Vec<(&str, String)>)> = Vec::new();
    #[cfg(feature = "native")]
    backends.push(("native", vec![]));
    #[cfg(feature = "tract")]
    backends.push(("tract", vec![]));
    #[cfg(feature = "ort")]
    backends.push(("ort", vec![("ORT_DYLIB_PATH", ort_lib())]));
    let mut runs = Vec::new();
    for (backend, env) in &backends {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (npy_name, gif_name) = (format!("{backend}.npy"), format!("{backend}.gif"));
        ok_env(
            d,
            &[
                "gen",
                "--backend",
                backend,
                "--interpolate",
                "5,9",
                "--frames",
                "6",
                "--truncation",
                "1.5",
                "--batch-size",
                "4",
                "--save-raw",
                &npy_name,
                "--gif",
                &gif_name,
            ],
            &env,
        );
        runs.push((backend, raw(d, &npy_name), decode_gif(&d.join(&gif_name)).0));
    }
    let (first, z0, g0) = &runs[0];
    for (backend, z, g) in &runs[1..] {
        let diff = max_abs_diff(&z0.data, &z.data);
        assert!(diff <= 1e-4, "{first} and {backend} differ by {diff}");
        for (a, b) in g0.iter().zip(g) {
            let levels = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
            assert!(
                levels <= 1,
                "{first} and {backend}: {levels} grey levels apart"
            );
        }
    }
}

#[test]
fn truncated_image_i_depends_on_the_seed_i_and_psi_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gen = |n: &str, batch: &str, psi: Option<&str>, out: &str| {
        let mut args = vec![
            "gen",
            "--seed",
            "7",
            "--n",
            n,
            "--batch-size",
            batch,
            "--save-raw",
            out,
        ];
        if let Some(psi) = psi {
            args.extend(["--truncation", psi]);
        }
        let stdout = ok(d, &args);
        if let Some(psi) = psi {
            assert!(stdout.contains(&format!("truncation {psi}")), "{stdout}");
        }
        raw(d, out)
    };
    let six = gen("6", "4", Some("0.7"), "six.npy");
    let two = gen("2", "1", Some("0.7"), "two.npy");
    assert!(max_abs_diff(&six.data[..2 * IMAGE], &two.data) <= 1e-5);
    let plain = gen("2", "1", None, "plain.npy");
    assert!(
        max_abs_diff(&plain.data, &two.data) > 0.05,
        "ψ = 0.7 changes the images"
    );
    // The images are the generator's on the contract's truncated latents.
    let mut z = latent::latents(7, 6, 100);
    latent::truncate(&mut z, 7, 0, 100, 0.7);
    assert!(z.iter().all(|v| v.abs() <= 0.7));
    npy::write_f32(&d.join("z.npy"), &[6, 100, 1, 1], &z).unwrap();
    ok(d, &["gen", "--latents", "z.npy", "--save-raw", "fromz.npy"]);
    assert!(max_abs_diff(&raw(d, "fromz.npy").data, &six.data) <= 1e-5);
}

#[test]
fn bad_walks_and_truncations_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: &[(&[&str], &str)] = &[
        (
            &["gen", "--interpolate", "4", "--gif", "w.gif"],
            "at least two seeds and 1 was given",
        ),
        (
            &["gen", "--interpolate", "4,5", "--frames", "0", "--gif", "w.gif"],
            "from 2 to 10000 frames, and 0 were asked for",
        ),
        (
            &["gen", "--interpolate", "4,5", "--frames", "1000000"],
            "from 2 to 10000 frames",
        ),
        (
            &["gen", "--truncation", "0"],
            "--truncation is 0; truncation keeps latent components within ±ψ, so ψ must be at least 0.01",
        ),
        (
            &["gen", "--truncation", "-1"],
            "--truncation is -1; truncation keeps latent components within ±ψ, so ψ must be at least 0.01",
        ),
        (
            &["gen", "--interpolate", "4,5", "--truncation", "0.001"],
            "at least 0.01",
        ),
        (
            &["gen", "--interpolate", "4,5", "--gif", "missing/w.gif"],
            "missing",
        ),
        (&["gen", "--interpolate", "4,5", "--gif", "w.png"], ".gif"),
        (&["gen", "--frames", "8"], "--interpolate"),
        (&["gen", "--interpolate", "4,5", "--n", "3"], "--n"),
        (&["gen", "--interpolate", "4,x"], "invalid value 'x'"),
        (
            &["gen", "--gif", "w.gif", "--frame-ms", "5"],
            "outside the 20 to 655350 ms",
        ),
        (&["gen", "--frame-ms", "100"], "--gif"),
        (&["gen", "--latents", "z.npy", "--truncation", "1"], "--latents"),
    ];
    for (args, needle) in cases {
        fails(d, args, needle);
    }
    let left: Vec<_> = std::fs::read_dir(d).unwrap().flatten().collect();
    assert!(left.is_empty(), "bad runs write nothing: {left:?}");
}
