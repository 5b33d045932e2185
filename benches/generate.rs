//! Generation latency per backend and batch size (1, 8, 64): a `dcgan64` generator with random
//! weights exported by `wgan-export`, and the shipped MNIST model. native and tract always; ONNX Runtime
//! when built with `--features wgan-runtime/ort` and its library is found (`eval
//! "$(scripts/test-env.sh)"`), otherwise that backend is reported as skipped.
//!
//! `cargo bench --bench generate [--features wgan-runtime/ort]`

use candle_core::{DType, Device};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::path::{Path, PathBuf};
use std::time::Duration;
use wgan_models::checkpoint::CheckpointHeader;
use wgan_models::latent::Rng;
use wgan_runtime::{Backend, Generator, Options};

fn dcgan64_onnx(dir: &Path) -> PathBuf {
    let preset = wgan_models::preset("dcgan64", 3).unwrap();
    let g =
        wgan_models::Generator::new(&preset, &mut Rng::new(1), DType::F32, &Device::Cpu).unwrap();
    let header = CheckpointHeader::new(&preset, 0, "random weights".into());
    let model =
        wgan_export::build_model(&g, &header, &wgan_export::BuildOptions::default()).unwrap();
    let path = dir.join("dcgan64.onnx");
    wgan_export::write_model_atomic(&model, &path).unwrap();
    path
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let shipped = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/runtime/assets/mnist-small.onnx"
    ));
    let models = [
        ("dcgan64", dcgan64_onnx(tmp.path())),
        ("mnist-small", shipped),
    ];
    let mut group = c.benchmark_group("generate");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for (name, path) in &models {
        for backend in [Backend::Native, Backend::Tract, Backend::Ort] {
            let options = Options {
                backend,
                ..Options::default()
            };
            let mut g = match Generator::load(path, &options) {
                Ok(g) => g,
                Err(e) => {
                    eprintln!("skipping {backend:?} on {name}: {e:#}");
                    continue;
                }
            };
            for batch in [1usize, 8, 64] {
                let id = BenchmarkId::new(format!("{name}/{backend:?}"), batch);
                group.bench_with_input(id, &batch, |b, &n| b.iter(|| g.generate(0, n, n).unwrap()));
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
