//! Data sets through the `trainer` binary: `prepare`, training on a prepared file, on a folder
//! (decoded once into the run) and on a zip archive, held-out splits, resume tied to its data,
//! and prepared files that are damaged, stale or changed under a running training.

mod common;

use common::{binary, stderr, trainer};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use wgan_test_support::fixtures::bomb_png;

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", stderr(&o));
    o
}

/// Exit code 2 and one `error:` line containing every needle, no panic.
fn refused(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line: {err}");
    for n in needles {
        assert!(lines[0].contains(n), "expected '{n}' in: {err}");
    }
}

/// `n` small pictures (PNG and JPEG, various sizes, some with alpha) in `dir/pics/`, plus one
/// corrupt file and one decompression bomb (20000×20000 claimed in a few hundred KB).
fn picture_folder(dir: &Path, n: usize) -> PathBuf {
    let root = dir.join("pics");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    for i in 0..n {
        let (w, h) = (20 + (i as u32 * 7) % 30, 18 + (i as u32 * 5) % 40);
        let img = image::RgbaImage::from_fn(w, h, |x, y| {
            let a = if i % 3 == 0 && x < 4 { 0 } else { 255 };
            image::Rgba([
                (x * 9 + i as u32 * 13) as u8,
                (y * 7) as u8,
                (i * 40) as u8,
                a,
            ])
        });
        let path = match i % 2 {
            0 => root.join(format!("p{i:03}.png")),
            _ => root.join(format!("sub/j{i:03}.jpg")),
        };
        match i % 2 {
            0 => img.save(&path).unwrap(),
            _ => image::DynamicImage::ImageRgba8(img)
                .into_rgb8()
                .save(&path)
                .unwrap(),
        }
    }
    std::fs::write(root.join("broken.png"), b"\x89PNG\r\n\x1a\nnot an image").unwrap();
    std::fs::write(root.join("bomb.png"), bomb_png(20000)).unwrap();
    root
}

/// The folder's files as a zip archive, under the same relative names.
fn zip_of(folder: &Path, out: &Path) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(out).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut files = Vec::new();
    let mut stack = vec![folder.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    for f in files.iter().rev() {
        let name = f
            .strip_prefix(folder)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        zip.start_file(name, options).unwrap();
        zip.write_all(&std::fs::read(f).unwrap()).unwrap();
    }
    zip.finish().unwrap();
}

fn sidecar(path: &Path) -> serde_json::Value {
    let mut p = path.as_os_str().to_owned();
    p.push(".json");
    serde_json::from_str(&std::fs::read_to_string(PathBuf::from(p)).unwrap()).unwrap()
}

const TINY: &[&str] = &[
    "--preset",
    "tiny",
    "--channels",
    "3",
    "--batch-size",
    "4",
    "--n-critic",
    "1",
    "--threads",
    "1",
];

/// `trainer prepare` of `pics/` at 16×16, 3 channels, into `out` (must succeed).
fn prepare(dir: &Path, out: &str) -> Output {
    ok(trainer(
        dir,
        &[
            "prepare",
            "--data",
            "pics",
            "--image-size",
            "16",
            "--channels",
            "3",
            "--out",
            out,
        ],
    ))
}

fn train(dir: &Path, data: &str, out: &str, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--data", data, "--out", out, "--steps", "2"];
    args.extend_from_slice(TINY);
    args.extend_from_slice(extra);
    trainer(dir, &args)
}

#[test]
fn prepare_once_then_train_from_the_file_the_folder_or_a_zip_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let pics = picture_folder(d, 24);
    let o = prepare(d, "pics.u8");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("wrote pics.u8") && out.contains("xxh3-128:"),
        "{out}"
    );
    // The bomb and the broken file are skipped, counted and named with the reason.
    let err = stderr(&o);
    assert!(err.contains("skipped 2 of 26"), "{err}");
    let side = sidecar(&d.join("pics.u8"));
    assert_eq!(side["count"], 24);
    let skipped = side["skipped"].as_array().unwrap();
    let bomb = skipped.iter().find(|s| s["name"] == "bomb.png").unwrap();
    assert!(
        bomb["reason"].as_str().unwrap().contains("20000×20000"),
        "{bomb}"
    );
    assert_eq!(side["names"][0], "p000.png");
    assert_eq!(side["source"]["kind"], "folder");
    assert_eq!(side["source"]["files"].as_array().unwrap().len(), 26);

    // Training on the prepared file, on the folder and on a zip of it reads the same images.
    ok(train(d, "pics.u8", "from-file", &[]));
    ok(train(d, "pics", "from-folder", &[]));
    zip_of(&pics, &d.join("pics.zip"));
    ok(train(d, "pics.zip", "from-zip", &[]));
    let fingerprint = &side["fingerprint"];
    assert_eq!(
        &sidecar(&d.join("from-folder/data.u8"))["fingerprint"],
        fingerprint
    );
    let zipped = sidecar(&d.join("from-zip/data.u8"));
    assert_eq!(&zipped["fingerprint"], fingerprint);
    assert_eq!(zipped["source"]["kind"], "zip");
    assert!(
        !d.join("from-file/data.u8").exists(),
        "a prepared file is not copied"
    );
    let state = |run: &str| -> serde_json::Value {
        let p = d.join(run).join("checkpoints/step_000002/state.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    for run in ["from-file", "from-folder", "from-zip"] {
        let s = state(run);
        assert_eq!(&s["data"]["fingerprint"], fingerprint, "{run}");
        assert_eq!(s["data"]["images"], 24);
        assert_eq!(s["config"]["threads"], 1);
    }
    // The same images in the same order train the same run, bit for bit.
    let weights = |run: &str| {
        std::fs::read(
            d.join(run)
                .join("checkpoints/step_000002/generator.safetensors"),
        )
        .unwrap()
    };
    assert_eq!(weights("from-file"), weights("from-folder"));
    assert_eq!(weights("from-file"), weights("from-zip"));
    // Eval reads the run's prepared copy; without a held-out split it asks for one.
    let o = trainer(d, &["eval", "--checkpoint", "from-folder", "--n", "4"]);
    refused(&o, &["--data", "--holdout"]);
}

#[test]
fn held_out_images_are_kept_from_training_and_measured_by_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    picture_folder(d, 30);
    ok(train(d, "pics", "run", &["--holdout", "6", "--mirror"]));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("run/config.json")).unwrap()).unwrap();
    assert_eq!(config["holdout"], 6);
    assert_eq!(config["mirror"], true);
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.join("run/checkpoints/step_000002/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["data"]["images"], 30);
    assert_eq!(state["data"]["training_images"], 24);
    assert!(
        state["dataset"]
            .as_str()
            .unwrap()
            .starts_with("24 training images of"),
        "{}",
        state["dataset"]
    );
    let o = ok(trainer(
        d,
        &["eval", "--checkpoint", "run", "--n", "4", "--json"],
    ));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        report["held_out"]
            .as_str()
            .unwrap()
            .contains("6 held-out images"),
        "{}",
        report["held_out"]
    );
    // None of the held-out images is a training image.
    assert_eq!(report["held_out_in_training"], 0);
    let o = train(d, "pics", "all", &["--holdout", "30"]);
    refused(&o, &["--holdout 30", "no training images"]);
    assert!(
        !d.join("all").exists(),
        "a run that could not start leaves nothing"
    );
}

#[test]
fn resume_refuses_changed_data_unless_told_and_says_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let pics = picture_folder(d, 20);
    ok(train(d, "pics", "run", &[]));
    // Unchanged data resumes.
    ok(trainer(d, &["resume", "run", "--steps", "3"]));
    // A file added and one removed.
    std::fs::copy(pics.join("p000.png"), pics.join("new.png")).unwrap();
    std::fs::remove_file(pics.join("p002.png")).unwrap();
    let o = trainer(d, &["resume", "run", "--steps", "4"]);
    refused(
        &o,
        &[
            "changed",
            "1 file added (first: new.png)",
            "1 file removed (first: p002.png)",
            "--allow-data-change",
        ],
    );
    let o = ok(trainer(
        d,
        &["resume", "run", "--steps", "4", "--allow-data-change"],
    ));
    assert!(stderr(&o).contains("warning:"), "{}", stderr(&o));
    ok(trainer(d, &["resume", "run", "--steps", "5"]));

    // A run on a prepared file: the file prepared again from other images is refused.
    prepare(d, "p.u8");
    ok(train(d, "p.u8", "on-file", &[]));
    std::fs::remove_file(pics.join("p004.png")).unwrap();
    prepare(d, "p.u8");
    let o = trainer(d, &["resume", "on-file", "--steps", "3"]);
    refused(&o, &["changed", "fingerprint", "--allow-data-change"]);

    // A folder changed after it was prepared: training on the stale file is refused.
    std::fs::copy(pics.join("p000.png"), pics.join("newer.png")).unwrap();
    let o = train(d, "p.u8", "stale", &[]);
    refused(
        &o,
        &[
            "changed since",
            "p.u8",
            "1 file added (first: newer.png)",
            "trainer prepare",
        ],
    );
    assert!(!d.join("stale").exists());
}

#[test]
fn damaged_prepared_files_are_refused_with_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    picture_folder(d, 12);
    prepare(d, "p.u8");
    let good = std::fs::read(d.join("p.u8")).unwrap();
    let side = std::fs::read(d.join("p.u8.json")).unwrap();
    let cases: Vec<(Vec<u8>, &[&str])> = vec![
        (good[..good.len() - 100].to_vec(), &["truncated"]),
        (
            {
                let mut v = good.clone();
                v[8] = 7;
                v
            },
            &["format version 7"],
        ),
        (
            {
                let mut v = good.clone();
                v[100] ^= 0x55;
                v
            },
            &["damaged", "fingerprint"],
        ),
    ];
    for (bytes, needles) in cases {
        std::fs::write(d.join("p.u8"), &bytes).unwrap();
        refused(&train(d, "p.u8", "never", &[]), needles);
        assert!(!d.join("never").exists());
    }
    std::fs::write(d.join("p.u8"), &good).unwrap();
    let mut other: serde_json::Value = serde_json::from_slice(&side).unwrap();
    other["count"] = 13.into();
    std::fs::write(d.join("p.u8.json"), other.to_string()).unwrap();
    refused(
        &train(d, "p.u8", "never", &[]),
        &["does not match", "image count 13"],
    );
    std::fs::remove_file(d.join("p.u8.json")).unwrap();
    refused(&train(d, "p.u8", "never", &[]), &["p.u8.json", "sidecar"]);
    // Wrong shape for the run, and arguments of prepare.
    std::fs::write(d.join("p.u8.json"), &side).unwrap();
    refused(
        &train(d, "p.u8", "never", &["--image-size", "32"]),
        &["16×16", "--image-size 16"],
    );
    for (args, needle) in [
        (&["--image-size", "48"][..], "power of two"),
        (&["--image-size", "16", "--channels", "2"][..], "--channels"),
        (&["--image-size", "16", "--threads", "0"][..], "--threads"),
    ] {
        let mut a = vec!["prepare", "--data", "pics", "--out", "q.u8"];
        a.extend_from_slice(args);
        refused(&trainer(d, &a), &[needle]);
        assert!(!d.join("q.u8").exists());
    }
    refused(
        &trainer(
            d,
            &[
                "prepare",
                "--data",
                "p.u8",
                "--image-size",
                "16",
                "--out",
                "q.u8",
            ],
        ),
        &["already a prepared data set"],
    );
}

#[test]
fn a_prepared_file_truncated_or_replaced_while_training_ends_the_run_with_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    picture_folder(d, 40);
    for (how, needle) in [("truncate", "truncated"), ("replace", "replaced")] {
        prepare(d, "p.u8");
        let run = format!("run-{how}");
        let mut args = vec![
            "train",
            "--data",
            "p.u8",
            "--out",
            &run,
            "--steps",
            "1000000",
            "--checkpoint-every",
            "5",
        ];
        args.extend_from_slice(TINY);
        let mut child = Command::new(binary("trainer"))
            .args(&args)
            .current_dir(d)
            .env_remove("CANDLE_GRAD_DO_NOT_DETACH")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for a checkpoint, so that there is something not to lose.
        let t = Instant::now();
        while !d.join(&run).join("checkpoints/latest").exists() {
            assert!(t.elapsed() < Duration::from_secs(60), "no checkpoint");
            std::thread::sleep(Duration::from_millis(20));
        }
        match how {
            "truncate" => std::fs::OpenOptions::new()
                .write(true)
                .open(d.join("p.u8"))
                .unwrap()
                .set_len(1000)
                .unwrap(),
            _ => {
                std::fs::copy(d.join("p.u8"), d.join("copy.u8")).unwrap();
                std::fs::rename(d.join("copy.u8"), d.join("p.u8")).unwrap();
            }
        }
        let t = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "still training");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(2), "{how}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        let line = err.lines().find(|l| l.starts_with("error:")).unwrap();
        assert!(line.contains(needle) && line.contains("p.u8"), "{line}");
        // The checkpoints written before are intact.
        let latest = std::fs::read_to_string(d.join(&run).join("checkpoints/latest")).unwrap();
        assert!(d
            .join(&run)
            .join("checkpoints")
            .join(latest.trim())
            .join("state.json")
            .is_file());
    }
}

#[test]
fn runs_at_the_same_thread_count_are_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    picture_folder(d, 16);
    let weights = |run: &str| {
        std::fs::read(
            d.join(run)
                .join("checkpoints/step_000002/generator.safetensors"),
        )
        .unwrap()
    };
    for threads in ["1", "2"] {
        let a = format!("a{threads}");
        let b = format!("b{threads}");
        for run in [&a, &b] {
            let mut args = vec![
                "train",
                "--data",
                "pics",
                "--out",
                run,
                "--steps",
                "2",
                "--preset",
                "tiny",
                "--channels",
                "3",
                "--batch-size",
                "8",
                "--n-critic",
                "2",
            ];
            args.extend_from_slice(&["--threads", threads]);
            ok(trainer(d, &args));
        }
        assert_eq!(weights(&a), weights(&b), "{threads} threads");
    }
}
