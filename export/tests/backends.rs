//! Every runtime backend runs what `export onnx` writes and gives candle's images: the native
//! backend, tract and, in builds with `wgan-runtime/ort` (what `scripts/test.sh` runs),
//! ONNX Runtime, on `tiny`, `small` and `dcgan64` generators and a 128×128 one of width 4 that
//! no preset names, with BatchNorm folded and kept, agreeing with each other and with candle
//! to 1e-5.

mod common;

use candle_core::{Device, Tensor};
use common::*;
use wgan_export::{export_onnx, BuildOptions, ExportOptions};
use wgan_models::latent::latents;
use wgan_models::spec::Architecture;
use wgan_models::{preset, Mode};
use wgan_runtime::{Backend, Generator, Options};

#[test]
fn every_backend_matches_candle_on_exported_generators() {
    let tmp = tempfile::tempdir().unwrap();
    let mut backends = vec![Backend::Native, Backend::Tract];
    if Backend::Ort.is_compiled() {
        backends.push(Backend::Ort);
    }
    let n = 3;
    let custom128 = Architecture {
        image_size: 128,
        z_dim: 32,
        g_width: 4,
        c_width: 4,
    }
    .build(3)
    .unwrap();
    let nets = [
        (preset("tiny", 1).unwrap(), 31),
        (preset("small", 3).unwrap(), 32),
        (preset("dcgan64", 3).unwrap(), 33),
        (custom128, 34),
    ];
    for (p, seed) in nets {
        let name = match p.name.as_str() {
            "custom" => format!("custom{}", p.image_size),
            named => named.to_string(),
        };
        let ckpt = tmp.path().join(format!("ckpt-{name}"));
        let mut g = make_checkpoint_of(&ckpt, &p, seed);
        let z_dim = g.spec.layers[0].in_channels;
        let z = latents(77, n, z_dim);
        let candle = g
            .forward(
                &Tensor::from_vec(z.clone(), (n, z_dim, 1, 1), &Device::Cpu).unwrap(),
                Mode::Eval,
            )
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for fold_bn in [true, false] {
            let out = tmp.path().join(format!("{name}-{fold_bn}.onnx"));
            export_onnx(
                &ckpt,
                &ExportOptions {
                    build: BuildOptions {
                        fold_bn,
                        ..Default::default()
                    },
                    ..ExportOptions::new(&out)
                },
            )
            .unwrap();
            let mut outputs = Vec::new();
            for &backend in &backends {
                let mut r = Generator::load(
                    &out,
                    &Options {
                        backend,
                        threads: Some(2),
                        ..Options::default()
                    },
                )
                .unwrap();
                assert_eq!(r.backend(), backend);
                let meta = |k: &str| r.info().meta(k).map(str::to_string);
                assert_eq!(meta("wgan.preset"), Some(p.name.clone()));
                assert_eq!(meta("wgan.image_size"), Some(p.image_size.to_string()));
                assert_eq!(meta("wgan.g_width"), Some(p.g_width.to_string()));
                assert_eq!(meta("wgan.c_width"), Some(p.c_width.to_string()));
                let images = r.run(&z).unwrap().data;
                let d = max_abs_diff(&images, &candle);
                let bn = if fold_bn { "folded" } else { "kept" };
                println!("{name:<8} BatchNorm {bn:<6} {backend:<6} vs candle: {d:.2e}");
                assert!(
                    d <= 1e-5,
                    "{name}, BatchNorm {bn}, {backend}: {d} from candle"
                );
                outputs.push((backend, images));
            }
            for (i, (a, x)) in outputs.iter().enumerate() {
                for (b, y) in &outputs[i + 1..] {
                    let d = max_abs_diff(x, y);
                    assert!(d <= 1e-5, "{name}: {a} vs {b}: {d}");
                }
            }
        }
    }
}
