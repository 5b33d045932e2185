//! The library against onnxruntime's outputs (committed by tests/fixtures/make_fixtures.py)
//! and the backends against each other.

use std::path::{Path, PathBuf};
use wgan_runtime::onnx::BatchDim;
use wgan_runtime::{npy, Backend, Generator, Options};
use wgan_test_support::max_abs_diff;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[allow(dead_code)]
fn options(backend: Backend) -> Options {
    Options {
        backend,
        threads: Some(2),
        ..Options::default()
    }
}

/// The Python script's independent reimplementation of the latent function gave these.
#[test]
fn latent_function_matches_the_python_reimplementation() {
    let z = npy::read_f32(&fixture("tiny-gen.z.npy")).unwrap();
    assert_eq!(z.shape, vec![5, 8, 1, 1]);
    let ours = wgan_runtime::latent::latents(42, 5, 8);
    assert!(
        max_abs_diff(&ours, &z.data) <= 1e-6,
        "diff {}",
        max_abs_diff(&ours, &z.data)
    );
    let z = npy::read_f32(&fixture("foreign-rgb.z.npy")).unwrap();
    assert!(max_abs_diff(&wgan_runtime::latent::latents(7, 3, 6), &z.data) <= 1e-6);
}

/// Checks one backend against onnxruntime's committed outputs, for both fixture generators.
#[allow(dead_code)]
fn matches_onnxruntime(backend: Backend) {
    let mut g = Generator::load(&fixture("tiny-gen.onnx"), &options(backend)).unwrap();
    assert_eq!(g.image_shape(), [1, 16, 16]);
    assert_eq!(g.contract().batch, BatchDim::Dynamic);
    let z = npy::read_f32(&fixture("tiny-gen.z.npy")).unwrap();
    let expected = npy::read_f32(&fixture("tiny-gen.out.npy")).unwrap();
    let out = g.run(&z.data).unwrap();
    assert_eq!(out.shape.n, 5);
    let d = max_abs_diff(&out.data, &expected.data);
    assert!(d <= 1e-4, "{backend}: max abs diff {d}");
    // Seeded sampling at several batch sizes gives the same images as the latents above.
    for b in [1, 2, 5, 64] {
        let s = g.generate(42, 5, b).unwrap();
        let d = max_abs_diff(&s.data, &expected.data);
        assert!(d <= 1e-4, "{backend}, batch {b}: max abs diff {d}");
    }

    // Foreign style: other names, batch fixed to 2 (3 latents → 2 runs, the last padded).
    let mut g = Generator::load(&fixture("foreign-rgb.onnx"), &options(backend)).unwrap();
    assert_eq!(g.contract().batch, BatchDim::Fixed(2));
    assert_eq!(
        (g.contract().input.as_str(), g.image_shape()),
        ("input", [3, 8, 8])
    );
    let z = npy::read_f32(&fixture("foreign-rgb.z.npy")).unwrap();
    let expected = npy::read_f32(&fixture("foreign-rgb.out.npy")).unwrap();
    let d = max_abs_diff(&g.run(&z.data).unwrap().data, &expected.data);
    assert!(d <= 1e-4, "{backend} foreign: max abs diff {d}");
    let s = g.generate(7, 3, 1).unwrap();
    assert!(max_abs_diff(&s.data, &expected.data) <= 1e-4);
}

#[cfg(feature = "tract")]
mod tract {
    use super::*;

    #[test]
    fn tract_matches_onnxruntime() {
        matches_onnxruntime(Backend::Tract);
    }

    #[test]
    fn streaming_continues_the_latent_stream() {
        let mut g = Generator::load(&fixture("tiny-gen.onnx"), &options(Backend::Tract)).unwrap();
        let all = g.generate(3, 7, 7).unwrap();
        let mut firsts = Vec::new();
        let mut streamed = Vec::new();
        g.sample(3, 7, 3, |first, b| {
            firsts.push(first);
            streamed.extend_from_slice(&b.data);
            Ok(())
        })
        .unwrap();
        assert_eq!(firsts, vec![0, 3, 6]);
        assert!(max_abs_diff(&all.data, &streamed) <= 1e-5);
        // Image i does not depend on how many images follow it.
        let three = g.generate(3, 3, 3).unwrap();
        assert!(max_abs_diff(&three.data, &all.data[..three.data.len()]) <= 1e-5);
    }

    #[test]
    fn shipped_model_has_the_small_contract_and_metadata() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/mnist-small.onnx");
        let mut g = Generator::load(&path, &options(Backend::Tract)).unwrap();
        assert_eq!((g.z_dim(), g.image_shape()), (100, [1, 32, 32]));
        assert_eq!(g.info().meta("wgan.preset"), Some("small"));
        // Trained by the trainer and exported by the exporter, not a stand-in.
        assert_eq!(
            g.info()
                .meta("wgan.producer")
                .map(|p| p.starts_with("wgan-export")),
            Some(true)
        );
        assert!(
            g.info()
                .meta("wgan.step")
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
                > 0
        );
        let b = g.generate(0, 2, 2).unwrap();
        assert!(b.data.iter().all(|v| (-1.0..=1.0).contains(v)));
    }

    #[test]
    fn other_contracts_and_broken_files_are_refused() {
        let e = format!(
            "{:#}",
            Generator::load(&fixture("classifier.onnx"), &options(Backend::Tract)).unwrap_err()
        );
        assert!(
            e.contains(
                "model input 'x' has shape [N, 784]; a generator takes z as [N, z_dim, 1, 1]"
            ),
            "{e}"
        );
        let bytes = std::fs::read(fixture("tiny-gen.onnx")).unwrap();
        for cut in [3, 100, bytes.len() / 2, bytes.len() - 1] {
            let e = format!(
                "{:#}",
                Generator::from_bytes(&bytes[..cut], &options(Backend::Tract)).unwrap_err()
            );
            assert!(e.contains("not an ONNX model"), "cut at {cut}: {e}");
        }
        let e = format!(
            "{:#}",
            Generator::from_bytes(b"", &options(Backend::Tract)).unwrap_err()
        );
        assert!(e.contains("empty"), "{e}");
        let e = format!(
            "{:#}",
            Generator::load(Path::new("/nonexistent.onnx"), &options(Backend::Tract)).unwrap_err()
        );
        assert!(e.contains("cannot read model /nonexistent.onnx"), "{e}");
        let mut g = Generator::load(&fixture("tiny-gen.onnx"), &options(Backend::Tract)).unwrap();
        assert!(g.run(&[0.0; 7]).is_err());
        assert!(g.run(&[]).is_err());
        assert!(g.sample(0, 0, 4, |_, _| Ok(())).is_err());
    }

    #[test]
    fn tract_refuses_gpu_providers() {
        let o = Options {
            providers: vec![wgan_runtime::Provider::Cuda],
            ..options(Backend::Tract)
        };
        let e = format!(
            "{:#}",
            Generator::load(&fixture("tiny-gen.onnx"), &o).unwrap_err()
        );
        assert!(e.contains("need --backend ort"), "{e}");
    }

    #[test]
    fn bench_reports_one_row_per_batch_size() {
        let mut g = Generator::load(&fixture("tiny-gen.onnx"), &options(Backend::Tract)).unwrap();
        let rows = wgan_runtime::bench(&mut g, &[1, 4], 3).unwrap();
        assert_eq!(rows.iter().map(|r| r.batch).collect::<Vec<_>>(), vec![1, 4]);
        for r in rows {
            assert!(
                r.min_ms > 0.0
                    && r.median_ms >= r.min_ms
                    && r.p90_ms >= r.median_ms
                    && r.images_per_s > 0.0,
                "{r:?}"
            );
        }
    }
}

#[cfg(feature = "ort")]
mod ort {
    use super::*;

    /// ONNX Runtime's library from the environment `scripts/test-env.sh` sets up. Fails (does not
    /// skip) when it is missing.
    pub(crate) fn ort_lib() -> PathBuf {
        if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/lib");
        let found = std::fs::read_dir(&venv).ok().and_then(|dirs| {
            dirs.flatten().find_map(|py| {
                let capi = py.path().join("site-packages/onnxruntime/capi");
                let mut libs: Vec<_> = std::fs::read_dir(capi)
                    .ok()?
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so"))
                    })
                    .collect();
                libs.sort();
                libs.into_iter().next()
            })
        });
        found.unwrap_or_else(|| {
            panic!(
                "ONNX Runtime's library is missing: run `eval \"$(scripts/test-env.sh)\"` from the workspace root \
                 (it installs the onnxruntime wheel into .venv and sets ORT_DYLIB_PATH)"
            )
        })
    }

    fn ort_options() -> Options {
        Options {
            ort_lib: Some(ort_lib()),
            ..options(Backend::Ort)
        }
    }

    #[test]
    fn ort_matches_onnxruntime() {
        // The first load names the library; it stays loaded for the process, so
        // matches_onnxruntime's options need no path.
        let o = ort_options();
        let mut g = Generator::load(&fixture("tiny-gen.onnx"), &o).unwrap();
        assert!(g.describe().starts_with("onnxruntime"), "{}", g.describe());
        let z = npy::read_f32(&fixture("tiny-gen.z.npy")).unwrap();
        let expected = npy::read_f32(&fixture("tiny-gen.out.npy")).unwrap();
        assert!(max_abs_diff(&g.run(&z.data).unwrap().data, &expected.data) <= 1e-4);
        // The process-wide environment is loaded now; the rest needs no path.
        matches_onnxruntime(Backend::Ort);
    }

    /// The native backend against ONNX Runtime on the shipped model, batch 1 and 9.
    #[cfg(feature = "native")]
    #[test]
    fn ort_and_native_agree_on_the_shipped_model() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/mnist-small.onnx");
        let mut a = Generator::load(&path, &ort_options()).unwrap();
        let mut b = Generator::load(&path, &options(Backend::Native)).unwrap();
        for n in [1, 9] {
            let (x, y) = (a.generate(5, n, n).unwrap(), b.generate(5, n, n).unwrap());
            let d = max_abs_diff(&x.data, &y.data);
            println!("shipped model, batch {n}: native vs ort max abs diff {d:.2e}");
            assert!(d <= 1e-5, "batch {n}: max abs diff {d}");
        }
    }

    #[cfg(feature = "tract")]
    #[test]
    fn ort_and_tract_agree() {
        let mut a = Generator::load(&fixture("tiny-gen.onnx"), &ort_options()).unwrap();
        let mut b = Generator::load(&fixture("tiny-gen.onnx"), &options(Backend::Tract)).unwrap();
        let (x, y) = (a.generate(11, 9, 4).unwrap(), b.generate(11, 9, 4).unwrap());
        let d = max_abs_diff(&x.data, &y.data);
        assert!(d <= 1e-4, "max abs diff {d}");
    }

    #[test]
    fn providers_that_fail_warn_or_fail_on_request() {
        use wgan_runtime::Provider;
        let o = Options {
            providers: vec![Provider::Cuda, Provider::Cpu],
            ..ort_options()
        };
        let g = Generator::load(&fixture("tiny-gen.onnx"), &o).unwrap();
        if g.warnings().is_empty() {
            // The GPU wheel with a `cuda` build on a machine with CUDA: it registered.
            assert!(g.describe().contains("cuda"), "{}", g.describe());
            return;
        }
        // The CPU wheel (or a build without `cuda`) has no CUDA: a warning, then CPU.
        assert!(
            g.warnings()
                .iter()
                .any(|w| w.contains("execution provider cuda not used")),
            "{:?}",
            g.warnings()
        );
        let o = Options {
            require_provider: true,
            ..o
        };
        let e = format!(
            "{:#}",
            Generator::load(&fixture("tiny-gen.onnx"), &o).unwrap_err()
        );
        assert!(e.contains("execution provider cuda is required"), "{e}");
    }
}
