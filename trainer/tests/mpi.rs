//! Data-parallel training through a real `mpirun` (OpenMPI; built with `--features mpi`, which
//! `scripts/test.sh` does after installing OpenMPI): two ranks give the one-process run,
//! SIGTERM to `mpirun` leaves one good checkpoint, and bad launches are one error line on
//! every rank.
#![cfg(feature = "mpi")]

mod common;

use candle_core::Device;
use common::{binary, stderr};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use wgan_test_support::relative_l2;

/// `mpirun -n ranks trainer args…` in `dir` (as root, oversubscribed, unbound: this may be a
/// 2-core machine where the test runs as root).
fn mpirun(ranks: usize, args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args([
        "-n",
        &ranks.to_string(),
        "--bind-to",
        "none",
        "--oversubscribe",
    ])
    .arg(binary("trainer"))
    .args(args)
    .current_dir(dir)
    .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
    .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    .env_remove("CANDLE_GRAD_DO_NOT_DETACH");
    cmd
}

fn run(ranks: usize, args: &[&str], dir: &Path) -> Output {
    mpirun(ranks, args, dir)
        .output()
        .expect("mpirun (install OpenMPI: scripts/test-env.sh)")
}

/// Every value of a checkpoint's generator.
fn generator(run: &Path) -> Vec<f32> {
    let ck = wgan_models::checkpoint::resolve(run).unwrap();
    let t = candle_core::safetensors::load(ck.join("generator.safetensors"), &Device::Cpu).unwrap();
    let mut names: Vec<&String> = t
        .keys()
        .filter(|k| !k.ends_with("num_batches_tracked"))
        .collect();
    names.sort();
    names
        .into_iter()
        .flat_map(|k| t[k].flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect()
}

const TINY: &[&str] = &[
    "train",
    "--preset",
    "tiny",
    "--batch-size",
    "16",
    "--threads",
    "1",
];

#[test]
fn two_mpi_ranks_give_the_one_process_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let o = run(2, &[TINY, &["--steps", "3", "--out", "R2"]].concat(), d);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("MPI, 2 ranks"), "{err}");
    // One progress report: rank 0 speaks for the run.
    assert_eq!(err.matches("done: 3 steps").count(), 1, "{err}");
    let o = common::trainer(d, &[TINY, &["--steps", "3", "--out", "R1"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let diff = relative_l2(&generator(&d.join("R2")), &generator(&d.join("R1")));
    eprintln!("mpirun -n 2 against one process: {diff:.2e}");
    assert!(diff <= 1e-5, "{diff:e}");
    // A 2-rank checkpoint resumes on one process, and a 1-process one on 2 ranks.
    let o = common::trainer(d, &["resume", "R2", "--steps", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(2, &["resume", "R1", "--steps", "4"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    let diff = relative_l2(&generator(&d.join("R2")), &generator(&d.join("R1")));
    assert!(diff <= 1e-5, "{diff:e}");
}

#[test]
fn bad_launches_are_one_error_line_on_every_rank() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let each_rank = |o: &Output, needle: &str| {
        let err = stderr(o);
        assert_ne!(o.status.code(), Some(0), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        // One error per rank. The ranks write at the same moment and mpirun merges their
        // stderr as it arrives, so one rank's "error: " may land inside the other's line:
        // count the messages, not the lines.
        assert_eq!(
            err.matches("error: ").count(),
            2,
            "one error per rank: {err}"
        );
        assert_eq!(err.matches(needle).count(), 2, "one error per rank: {err}");
    };
    // A global batch that does not split over the ranks.
    let o = run(
        2,
        &[
            "train",
            "--preset",
            "tiny",
            "--batch-size",
            "15",
            "--out",
            "odd",
        ],
        d,
    );
    each_rank(&o, "does not split evenly over 2 ranks");
    assert!(!d.join("odd").exists());
    // Ranks started with different flags (MPMD launch).
    let mut cmd = Command::new("mpirun");
    cmd.args(["--bind-to", "none", "--oversubscribe"])
        .args(["-n", "1"])
        .arg(binary("trainer"))
        .args(TINY)
        .args(["--seed", "1", "--out", "mixed", ":"])
        .args(["-n", "1"])
        .arg(binary("trainer"))
        .args(TINY)
        .args(["--seed", "2", "--out", "mixed"])
        .current_dir(d)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    let o = cmd.output().unwrap();
    each_rank(&o, "another binary or configuration than rank 0");
    assert!(!d.join("mixed").join("config.json").exists());
}

#[test]
fn sigterm_to_mpirun_stops_every_rank_at_one_step_with_one_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut child: Child = mpirun(
        2,
        &[
            TINY,
            &[
                "--steps",
                "100000",
                "--checkpoint-every",
                "100000",
                "--out",
                "R",
            ],
        ]
        .concat(),
        d,
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let t = Instant::now();
    while std::fs::read_to_string(d.join("R/metrics.csv")).map_or(0, |m| m.lines().count()) < 5 {
        assert!(t.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill(2) on the mpirun we started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("saved"), "{status:?}: {err}");
    let latest = std::fs::read_to_string(d.join("R/checkpoints/latest")).unwrap();
    let step: u64 = latest.trim().trim_start_matches("step_").parse().unwrap();
    assert!(step >= 4, "{latest}");
    // One good checkpoint, which resumes (once the ranks, which mpirun may outlive by a
    // moment, have let go of the run's lock).
    let steps = (step + 1).to_string();
    let t = Instant::now();
    let o = loop {
        let o = common::trainer(d, &["resume", "R", "--steps", &steps]);
        if o.status.success()
            || !stderr(&o).contains("is in use")
            || t.elapsed() > Duration::from_secs(20)
        {
            break o;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(o.status.success(), "{}", stderr(&o));
}
