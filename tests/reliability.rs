//! Reliability at the binaries' boundary (see docs/reliability.md): a table of bad inputs
//! across `trainer`, `runtime` and `export` (each gives exit status 2 and one `error:` line,
//! usage errors clap's message naming the argument, never a panic, and no temporary file left
//! behind), damaged run files, two processes on one run, memory limits, decompression bombs
//! and non-finite weights. Signals, disks and the server's limits have files of their own.

use std::path::{Path, PathBuf};
use std::time::Duration;
use wgan_gp::*;
use wgan_test_support::fixtures::{bomb_png, gzip};

/// The bad-input table: (binary, arguments with `{placeholders}`, expected fragment of the
/// error). Every case must exit 2.
#[rustfmt::skip]
const CASES: &[(&str, &str, &str)] = &[
    // trainer train: flags.
    ("trainer", "train --steps 0 --out {d}/o", "--steps must be at least 1"),
    ("trainer", "train --batch-size 0 --out {d}/o", "--batch-size must be at least 1"),
    ("trainer", "train --batch-size 18446744073709551615 --out {d}/o", "needs more memory than this machine can address"),
    ("trainer", "train --batch-size 1000000000 --out {d}/o", "use a smaller --batch-size"),
    ("trainer", "train --preset resnet --out {d}/o", "resnet"),
    ("trainer", "train --device tpu --out {d}/o", "unknown device 'tpu'"),
    ("trainer", "train --lr=-1 --out {d}/o", "--lr must be a positive number"),
    ("trainer", "train --beta1 1.5 --out {d}/o", "--beta1 and --beta2 must be in [0, 1)"),
    ("trainer", "train --channels 2 --out {d}/o", "--channels must be 1 or 3"),
    ("trainer", "train --ema 1.5 --out {d}/o", "--ema must be a decay between 0 and 1"),
    ("trainer", "train --n-critic 0 --out {d}/o", "--n-critic must be at least 1"),
    ("trainer", "train --lambda-gp nan --out {d}/o", "--lambda-gp must be a finite number"),
    ("trainer", "train --checkpoint-every 0 --out {d}/o", "must be at least 1"),
    ("trainer", "train --steps abc --out {d}/o", "abc"),
    // trainer train: data and output folder.
    ("trainer", "train --data {d}/missing --out {d}/o", "missing"),
    ("trainer", "train --data {empty} --out {d}/o", "empty"),
    ("trainer", "train --out {file}", "names an existing file"),
    ("trainer", "train --out {full}", "is a directory that is not empty"),
    ("trainer", "train --out {run}", "already holds a run"),
    // trainer resume, sample, eval.
    ("trainer", "resume", "--checkpoint"),
    ("trainer", "resume --checkpoint {d}/missing", "{d}/missing does not exist"),
    ("trainer", "resume --checkpoint {run} --steps 1", "pass --steps greater than that"),
    ("trainer", "resume --checkpoint {empty}", "cannot resume from"),
    ("trainer", "sample --checkpoint {run} --n 0 --out {d}/s.png", "--n must be between 1 and 10000"),
    ("trainer", "sample --checkpoint {run} --n 100000 --out {d}/s.png", "--n must be between 1 and 10000"),
    ("trainer", "sample --checkpoint {d}/missing --out {d}/s.png", "missing"),
    ("trainer", "eval --checkpoint {run} --n 1", "--n must be between 2 and 5000"),
    // runtime gen, info, bench.
    ("runtime", "gen --n 0 --grid {d}/g.png", "--n must be at least 1"),
    ("runtime", "gen --batch-size 0 --grid {d}/g.png", "--batch-size must be at least 1"),
    ("runtime", "gen --n 10000000 --grid {d}/g.png", "--grid draws at most 10000 images"),
    ("runtime", "gen --n 100000000000 --batch-size 100000000000 --out {d}/imgs", "use a smaller --batch-size"),
    ("runtime", "gen --model {d}/missing.onnx", "missing.onnx"),
    ("runtime", "gen --model {garbage}", "garbage.onnx"),
    ("runtime", "gen --latents {huge_npy} --grid {d}/g.png", "needs more memory than this machine can address"),
    ("runtime", "gen --latents {short_npy} --grid {d}/g.png", "data bytes"),
    ("runtime", "gen --latents {f8_npy} --grid {d}/g.png", "float64"),
    ("runtime", "gen --grid {d}/g.jpg", "name it .png"),
    ("runtime", "gen --grid {d}/no/such/g.png", "does not exist"),
    ("runtime", "gen --save-raw {empty}", "is a folder"),
    ("runtime", "gen --backend torch", "torch"),
    ("runtime", "gen --threads 0 --grid {d}/g.png", "--threads must be at least 1"),
    ("runtime", "gen --grid-cols 0 --grid {d}/g.png", "--grid-cols must be at least 1"),
    ("runtime", "gen --grid /dev/full", "No space left on device"),
    ("runtime", "info --model {d}/missing.onnx", "missing.onnx"),
    ("runtime", "bench --iters 0", "--iters must be at least 1"),
    ("runtime", "bench --batch-sizes 1,100000000000000", "use a smaller --batch-sizes"),
    ("trainer", "check-device --batch-size 1000000000000", "use a smaller --batch-size"),
    // export onnx.
    ("export", "onnx --out {d}/x.onnx", "--checkpoint"),
    ("export", "onnx --checkpoint {d}/missing --out {d}/x.onnx", "missing"),
    ("export", "onnx --checkpoint {run} --out {empty}", "is a directory"),
    ("export", "onnx --checkpoint {run} --out {d}/no/such/x.onnx", "does not exist"),
    ("export", "onnx --checkpoint {run} --out {d}/x.onnx --opset 12", "12"),
    ("export", "onnx --checkpoint {run} --out {d}/x.onnx --samples 0", "--samples must be at least 1"),
    ("export", "onnx --checkpoint {run} --out {d}/x.onnx --verify --samples 1000000000", "use a smaller --samples"),
    ("export", "onnx --checkpoint {run} --out {d}/x.onnx --fold-bn --keep-bn", "--keep-bn"),
    ("export", "onnx --checkpoint {run} --out /dev/full", "No space left on device"),
    // Unbounded numbers in flags: every count, size and thread flag has a limit it names.
    ("runtime", "bench --iters 18446744073709551615", "--iters must be at most 1000000"),
    ("runtime", "bench --iters 4294967296", "--iters must be at most 1000000"),
    ("runtime", "gen --threads 100000 --grid {d}/g.png", "--threads must be between 1 and 1024, not 100000"),
    ("runtime", "serve --threads 100000 --port 0", "--threads must be between 1 and 1024"),
    ("runtime", "serve --max-images-per-request 18446744073709551615 --queue-capacity 18446744073709551615 --port 0", "--max-images-per-request"),
    ("runtime", "serve --timeout-s 1e300 --port 0", "at most 86400"),
    ("runtime", "serve --body-limit 18446744073709551615 --port 0", "--body-limit must be between 1 and"),
    ("trainer", "train --threads 100000 --out {d}/o", "--threads must be between 1 and 1024"),
    ("trainer", "prepare --data {empty} --image-size 16 --threads 100000 --out {d}/p.u8", "--threads must be between 1 and 1024"),
    // Unbounded reads: a device or pipe that never ends, a file longer than its header says.
    ("runtime", "info --model /dev/zero", "is not an ONNX model: it starts with byte 0x00"),
    ("runtime", "gen --model /dev/zero --grid {d}/g.png", "is not an ONNX model"),
    ("runtime", "gen --latents /dev/zero --grid {d}/g.png", "magic"),
    ("trainer", "train --data /dev/zero --format mnist --out {d}/o", "magic number is 0x00000000"),
    ("trainer", "train --data {gzip_bomb} --out {d}/o", "inflates to more bytes than its IDX header says"),
    // Outputs that would overwrite inputs, or write into a checkpoint.
    ("export", "onnx --checkpoint {run} --out {ckpt}/state.json", "is inside the input folder"),
    ("export", "onnx --checkpoint {run} --out {ckpt}/generator.safetensors", "is inside the input folder"),
    ("export", "onnx --checkpoint {ckpt} --out {run}/checkpoints/latest", "checkpoint folder"),
    ("export", "onnx --checkpoint {run} --out {run}/metrics.csv", "would replace a file of the run"),
    ("trainer", "prepare --data {full} --image-size 16 --out {full}/new.png", "is inside the input folder"),
    ("export", "onnx --checkpoint {run} --out {ckpt}/new.onnx", "is inside the input folder"),
    ("export", "triton --checkpoint {run} --repo {ckpt}/repo", "is inside the input folder"),
    ("trainer", "sample --checkpoint {run} --out {ckpt}/grid.png", "is inside the input folder"),
    ("trainer", "train --out {ckpt}/nested", "inside the checkpoint folder"),
    ("runtime", "gen --grid {d}/same.png --out {d}/same.png", "name the same path"),
    ("runtime", "gen --grid {d}/same.npy --save-raw {d}/same.npy", "name the same path"),
    ("runtime", "gen --model {d}/model.onnx --grid {d}/model.onnx", "is the input"),
    ("runtime", "gen --n 18446744073709551615 --save-raw {d}/x.npy", "--n must be at most 1000000000000"),
    ("runtime", "gen --n 100000000000 --save-raw {d}/x.npy", "of disk space"),
];

#[test]
fn bad_inputs_give_one_clear_line_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let run_dir = d.join("run");
    tiny_run(&run_dir, 2);
    let (empty, full, file) = (d.join("empty"), d.join("full"), d.join("file.txt"));
    std::fs::create_dir(&empty).unwrap();
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("notes.txt"), "x").unwrap();
    std::fs::write(&file, "x").unwrap();
    std::fs::write(d.join("garbage.onnx"), "this is not a model").unwrap();
    npy(
        &d.join("huge.npy"),
        "<f4",
        "(4611686018427387905, 8, 1, 1)",
        400,
    );
    npy(&d.join("short.npy"), "<f4", "(2, 100, 1, 1)", 100);
    // An MNIST file whose header says 10 images, then 64 MiB of zeros, gzipped (64 KiB).
    let mut idx = vec![0u8, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 28, 0, 0, 0, 28];
    idx.resize(16 + (64 << 20), 0);
    std::fs::write(d.join("bomb-images-idx3-ubyte.gz"), gzip(&idx)).unwrap();
    let ckpt = wgan_models::checkpoint::resolve(&run_dir).unwrap();
    let before_ckpt: Vec<(String, Vec<u8>)> = checkpoint_bytes(&run_dir);
    let state_before = std::fs::read(ckpt.join("state.json")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime/assets/mnist-small.onnx"),
        d.join("model.onnx"),
    )
    .unwrap();
    npy(&d.join("f8.npy"), "<f8", "(2, 100, 1, 1)", 1600);
    let fill = |s: &str| {
        s.replace("{run}", run_dir.to_str().unwrap())
            .replace("{empty}", empty.to_str().unwrap())
            .replace("{full}", full.to_str().unwrap())
            .replace("{file}", file.to_str().unwrap())
            .replace("{garbage}", d.join("garbage.onnx").to_str().unwrap())
            .replace("{huge_npy}", d.join("huge.npy").to_str().unwrap())
            .replace("{short_npy}", d.join("short.npy").to_str().unwrap())
            .replace("{f8_npy}", d.join("f8.npy").to_str().unwrap())
            .replace(
                "{gzip_bomb}",
                d.join("bomb-images-idx3-ubyte.gz").to_str().unwrap(),
            )
            .replace("{ckpt}", ckpt.to_str().unwrap())
            .replace("{d}", d.to_str().unwrap())
    };
    assert!(CASES.len() >= 40);
    let mut failures = Vec::new();
    for (bin, args, fragment) in CASES {
        let args = fill(args);
        let argv: Vec<&str> = args.split_whitespace().collect();
        let o = run(bin, &argv, d);
        let err = stderr(&o);
        let error_lines = err.lines().filter(|l| l.starts_with("error:")).count();
        let ok = o.status.code() == Some(2)
            && err.contains(&fill(fragment))
            && error_lines == 1
            && !err.contains("panicked");
        if !ok {
            failures.push(format!(
                "{bin} {args}\n  status {:?}, expected 2 and {fragment:?}\n  stderr: {err}",
                o.status.code()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
    assert_eq!(leftovers(d), Vec::<PathBuf>::new());
    // Nothing the failed runs asked for was created, and no input was touched.
    assert!(!d.join("o").exists() && !d.join("x.onnx").exists() && !d.join("g.png").exists());
    assert!(!d.join("same.png").exists() && !d.join("p.u8").exists());
    assert_eq!(checkpoint_bytes(&run_dir), before_ckpt);
    assert_eq!(
        std::fs::read(ckpt.join("state.json")).unwrap(),
        state_before
    );
    assert!(!ckpt.join("new.onnx").exists() && !ckpt.join("repo").exists());
    assert_eq!(
        std::fs::read(d.join("model.onnx")).unwrap(),
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime/assets/mnist-small.onnx")
        )
        .unwrap()
    );
}

#[test]
fn a_second_process_on_a_busy_run_is_refused_with_the_holders_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let r = d.join("run");
    let rs = r.to_str().unwrap();
    let child = spawn(
        "trainer",
        &[
            TRAIN,
            &["--steps", "1000", "--checkpoint-every", "1", "--out", rs],
        ]
        .concat(),
        d,
    );
    wait_until(Duration::from_secs(60), || latest_step(&r).is_some());
    let holder = format!("process {} is training in it", child.id());
    for args in [
        vec!["resume", "--checkpoint", rs, "--steps", "2000"],
        vec!["train", "--preset", "tiny", "--out", rs],
    ] {
        let o = run("trainer", &args, d);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(&holder), "{err}");
    }
    signal(&child, libc::SIGTERM);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Released with the process: resuming works now.
    let step = latest_step(&r).unwrap();
    let o = run(
        "trainer",
        &[
            "resume",
            "--checkpoint",
            rs,
            "--steps",
            &(step + 1).to_string(),
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn damaged_run_files_say_what_still_works() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let r = d.join("run");
    let rs = r.to_str().unwrap();
    tiny_run(&r, 3);
    // Checkpoint files get the mode every other output gets (0666 less the umask).
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let probe = d.join("probe");
    std::fs::File::create(&probe).unwrap();
    for f in [
        "generator.safetensors",
        "critic.safetensors",
        "optimizer.safetensors",
        "state.json",
    ] {
        let path = r.join("checkpoints/step_000003").join(f);
        assert_eq!(mode(&path), mode(&probe), "{}", path.display());
    }
    // metrics.csv that is not UTF-8: a warning, and the run goes on.
    let metrics = r.join("metrics.csv");
    let mut bytes = std::fs::read(&metrics).unwrap();
    bytes.extend_from_slice(b"\xff\xfe not a row\n");
    std::fs::write(&metrics, bytes).unwrap();
    let o = run(
        "trainer",
        &["resume", "--checkpoint", rs, "--steps", "4"],
        d,
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("left out 1 damaged line(s)"), "{err}");
    assert!(std::str::from_utf8(&std::fs::read(&metrics).unwrap()).is_ok());
    // The latest checkpoint without its state.json: the error names those that still work.
    std::fs::remove_file(r.join("checkpoints/step_000004/state.json")).unwrap();
    let o = run(
        "trainer",
        &["resume", "--checkpoint", rs, "--steps", "5"],
        d,
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let older = r.join("checkpoints/step_000003");
    assert!(err.contains("can be resumed instead"), "{err}");
    assert!(err.contains(older.to_str().unwrap()), "{err}");
    let o = run(
        "trainer",
        &[
            "resume",
            "--checkpoint",
            older.to_str().unwrap(),
            "--steps",
            "5",
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(latest_step(&r), Some(5));
}

#[test]
fn out_of_memory_under_an_address_space_limit_is_an_error_line_not_an_abort() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let limit = 1u64 << 30;
    // An allocation the system refuses deep in the engine: one line, exit 2, and the
    // half-written output's temporary file removed.
    let o = run_with_address_limit(
        "runtime",
        &[
            "gen",
            "--n",
            "20000",
            "--batch-size",
            "20000",
            "--save-raw",
            "raw.npy",
        ],
        d,
        limit,
    );
    assert_one_error_line(&o, "out of memory: the system refused");
    assert_eq!(leftovers(d), Vec::<PathBuf>::new());
    assert!(!d.join("raw.npy").exists());
    // The memory checks see what the limit leaves (not the machine's free memory).
    let o = run_with_address_limit(
        "trainer",
        &[
            "train",
            "--batch-size",
            "5000",
            "--steps",
            "1",
            "--out",
            "r",
        ],
        d,
        limit,
    );
    assert_one_error_line(&o, "the address-space limit (ulimit -v) leaves");
    assert!(!d.join("r").exists());
    let o = run_with_address_limit(
        "trainer",
        &["train", "--batch-size", "512", "--steps", "1", "--out", "r"],
        d,
        limit,
    );
    assert_one_error_line(&o, "memory");
}

/// A folder of a few small PNGs and one 20000×20000 PNG of ~400 KB.
fn folder_with_a_bomb(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..8u8 {
        let img =
            image::GrayImage::from_fn(20, 20, |x, y| image::Luma([x as u8 * 10 + y as u8 + i]));
        img.save(dir.join(format!("{i}.png"))).unwrap();
    }
    std::fs::write(dir.join("bomb.png"), bomb_png(20000)).unwrap();
}

#[test]
fn a_decompression_bomb_in_a_data_folder_is_skipped_with_its_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    folder_with_a_bomb(&d.join("pics"));
    // Under an address-space limit the 400 MB (as RGBA 1.6 GB) the bomb claims would not fit.
    let o = run_with_address_limit(
        "trainer",
        &[
            "train",
            "--data",
            "pics",
            "--preset",
            "tiny",
            "--batch-size",
            "4",
            "--steps",
            "1",
            "--out",
            "r",
        ],
        d,
        3 << 30,
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("skipped 1 of 9") && err.contains("bomb.png") && err.contains("20000×20000"),
        "{err}"
    );
}

/// A tiny run whose generator holds one NaN weight (as a diverged or damaged run would).
fn run_with_a_nan_weight(dir: &Path) -> PathBuf {
    let r = dir.join("nan-run");
    tiny_run(&r, 1);
    let ck = wgan_models::checkpoint::resolve(&r).unwrap();
    let file = ck.join("generator.safetensors");
    let mut tensors = candle_core::safetensors::load(&file, &candle_core::Device::Cpu).unwrap();
    let w = tensors["net.1.0.weight"].clone();
    let mut values = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    values[5] = f32::NAN;
    let t = candle_core::Tensor::from_vec(values, w.dims(), &candle_core::Device::Cpu).unwrap();
    tensors.insert("net.1.0.weight".into(), t);
    candle_core::safetensors::save(&tensors, &file).unwrap();
    r
}

#[test]
fn non_finite_weights_are_refused_everywhere_with_the_tensor_named() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let r = run_with_a_nan_weight(d);
    let rs = r.to_str().unwrap();
    for (bin, args) in [
        (
            "export",
            vec!["onnx", "--checkpoint", rs, "--out", "nan.onnx"],
        ),
        (
            "trainer",
            vec!["sample", "--checkpoint", rs, "--out", "s.png"],
        ),
        ("trainer", vec!["eval", "--checkpoint", rs, "--n", "8"]),
        (
            "trainer",
            vec!["resume", "--checkpoint", rs, "--steps", "2"],
        ),
    ] {
        let o = run(bin, &args, d);
        assert_one_error_line(&o, "net.1.0.weight is NaN at index 5");
    }
    assert!(!d.join("nan.onnx").exists() && !d.join("s.png").exists());
    // An ONNX file with a NaN weight (written from the generator in memory): every backend
    // refuses it alike.
    let preset = wgan_models::preset("tiny", 1).unwrap();
    let mut g = wgan_models::Generator::new(
        &preset,
        &mut wgan_models::latent::Rng::new(1),
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let (info, var) = g.params.iter().next().unwrap();
    let shape = info.shape.clone();
    let mut values = var
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    values[3] = f32::INFINITY;
    var.set(&candle_core::Tensor::from_vec(values, shape, &candle_core::Device::Cpu).unwrap())
        .unwrap();
    g.params.batches_tracked = 0;
    let header = wgan_models::checkpoint::CheckpointHeader::new(&preset, 1, "test".into());
    let model =
        wgan_export::build_model(&g, &header, &wgan_export::BuildOptions::default()).unwrap();
    wgan_export::write_model_atomic(&model, &d.join("inf.onnx")).unwrap();
    for backend in ["native", "tract"] {
        let o = run(
            "runtime",
            &[
                "gen",
                "--model",
                "inf.onnx",
                "--backend",
                backend,
                "--grid",
                "g.png",
            ],
            d,
        );
        assert_one_error_line(&o, "holds inf at index 3");
    }
    assert!(!d.join("g.png").exists());
}
