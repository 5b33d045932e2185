//! Signals at the binaries' boundary (see docs/reliability.md): SIGTERM during training (then
//! resume equals an uninterrupted run), `kill -9` while checkpoints are written, SIGTERM during
//! generation, signals at any moment, a second SIGTERM while a checkpoint is written.

use std::path::PathBuf;
use std::time::Duration;
use wgan_gp::*;

#[test]
fn sigterm_saves_a_checkpoint_and_resume_equals_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let steps = "30";
    let straight = d.join("straight");
    let o = run(
        "trainer",
        &[
            TRAIN,
            &["--steps", steps, "--out", straight.to_str().unwrap()],
        ]
        .concat(),
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let stopped = d.join("stopped");
    let child = spawn(
        "trainer",
        &[
            TRAIN,
            &[
                "--steps",
                steps,
                "--checkpoint-every",
                "1",
                "--out",
                stopped.to_str().unwrap(),
            ],
        ]
        .concat(),
        d,
    );
    wait_until(Duration::from_secs(60), || {
        latest_step(&stopped).is_some_and(|s| s >= 3)
    });
    signal(&child, libc::SIGTERM);
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("SIGTERM: saving a checkpoint"), "{err}");
    let at = latest_step(&stopped).unwrap();
    assert!(
        err.contains(&format!(
            "checkpoint {}",
            stopped.join(format!("checkpoints/step_{at:06}")).display()
        )),
        "{err}"
    );
    assert!(at < 30, "the run ended before the signal: {err}");
    let o = run(
        "trainer",
        &["resume", "--checkpoint", stopped.to_str().unwrap()],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(latest_step(&stopped), Some(30));
    assert!(
        checkpoint_bytes(&stopped) == checkpoint_bytes(&straight),
        "the resumed run differs from the uninterrupted one"
    );
    assert_eq!(leftovers(d), Vec::<PathBuf>::new());
}

#[test]
fn kill_9_while_checkpointing_loses_at_most_the_last_checkpoint_and_leftovers_are_cleaned() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let r = d.join("run");
    let args = [
        TRAIN,
        &[
            "--steps",
            "1000",
            "--checkpoint-every",
            "1",
            "--out",
            r.to_str().unwrap(),
        ],
    ]
    .concat();
    let mut child = spawn("trainer", &args, d);
    wait_until(Duration::from_secs(60), || {
        latest_step(&r).is_some_and(|s| s >= 2)
    });
    // Checkpoints are written every step: wait until one is being written, then kill.
    wait_until(Duration::from_secs(60), || {
        !leftovers(&r.join("checkpoints")).is_empty()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let before = latest_step(&r).unwrap();
    // A temporary checkpoint folder of the dead process may remain; resume removes it.
    let o = run(
        "trainer",
        &[
            "resume",
            "--checkpoint",
            r.to_str().unwrap(),
            "--steps",
            &(before + 2).to_string(),
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(latest_step(&r), Some(before + 2));
    assert_eq!(leftovers(&r), Vec::<PathBuf>::new());
}

#[test]
fn sigterm_during_generation_leaves_no_temporary_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let child = spawn(
        "runtime",
        &["gen", "--n", "200000", "--save-raw", "big.npy"],
        d,
    );
    wait_until(Duration::from_secs(60), || !leftovers(d).is_empty());
    signal(&child, libc::SIGTERM);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(143), "{}", stderr(&o));
    assert_eq!(leftovers(d), Vec::<PathBuf>::new());
    assert!(!d.join("big.npy").exists());
}

#[test]
fn signals_at_any_moment_leave_no_temporary_and_dead_writers_leftovers_are_cleaned() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let run_dir = d.join("run");
    tiny_run(&run_dir, 1);
    let rs = run_dir.to_str().unwrap();
    // SIGTERM during `gen --out DIR` (many small files) and during `export --test-data`, at
    // moments from its first milliseconds on.
    for (k, delay_ms) in [0u64, 2, 5, 10, 20, 40, 80].into_iter().enumerate() {
        let out = format!("imgs{k}");
        let child = spawn("runtime", &["gen", "--n", "20000", "--out", &out], d);
        std::thread::sleep(Duration::from_millis(200 + delay_ms * 5));
        signal(&child, libc::SIGTERM);
        let o = child.wait_with_output().unwrap();
        assert!(
            matches!(o.status.code(), Some(143) | Some(0)),
            "{}",
            stderr(&o)
        );
        let export = spawn(
            "export",
            &[
                "onnx",
                "--checkpoint",
                rs,
                "--out",
                &format!("m{k}.onnx"),
                "--test-data",
            ],
            d,
        );
        std::thread::sleep(Duration::from_millis(delay_ms));
        signal(&export, libc::SIGTERM);
        let _ = export.wait_with_output().unwrap();
        assert_eq!(leftovers(d), Vec::<PathBuf>::new(), "after {delay_ms} ms");
    }
    // A temporary of a writer killed with SIGKILL (pid 4194304 is above Linux's pid_max, so
    // no such process runs): the next export of the same output removes it.
    let stale = d.join(".model.onnx.4194304.a1b2c3.tmp");
    std::fs::write(&stale, "half a model").unwrap();
    let o = run(
        "export",
        &["onnx", "--checkpoint", rs, "--out", "model.onnx"],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stale.exists());
    // An output name of 255 bytes (NAME_MAX): its temporary name is shortened to fit.
    let long = format!("{}.png", "n".repeat(251));
    let o = run("runtime", &["gen", "--n", "4", "--grid", &long], d);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d.join(&long).is_file());
}

#[test]
fn a_second_sigterm_while_a_checkpoint_is_written_leaves_nothing_half_written() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for attempt in 0..3 {
        let out = format!("run{attempt}");
        // Checkpoints of some size (width 32 at 64×64), one per step.
        let child = spawn(
            "trainer",
            &[
                "train",
                "--image-size",
                "64",
                "--width",
                "32",
                "--batch-size",
                "2",
                "--n-critic",
                "1",
                "--steps",
                "1000",
                "--checkpoint-every",
                "1",
                "--sample-every",
                "1000",
                "--out",
                &out,
            ],
            d,
        );
        let ckpts = d.join(&out).join("checkpoints");
        wait_until(Duration::from_secs(120), || {
            std::fs::read_dir(&ckpts).is_ok_and(|mut e| {
                e.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().contains(".tmp")))
            })
        });
        signal(&child, libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(5 * attempt as u64));
        signal(&child, libc::SIGTERM);
        let o = child.wait_with_output().unwrap();
        assert!(
            matches!(o.status.code(), Some(143) | Some(0)),
            "{}",
            stderr(&o)
        );
        assert_eq!(
            leftovers(&d.join(&out)),
            Vec::<PathBuf>::new(),
            "attempt {attempt}"
        );
    }
}
