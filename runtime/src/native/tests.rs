//! The native backend against tract and onnxruntime on the committed fixtures, and its
//! refusals. (Outputs of the shipped and `dcgan64` models are compared in
//! `runtime/tests/backends.rs`.)

use super::graph::{lower, Unsupported};
use crate::engine::{Backend, Options};
use crate::Generator;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn native() -> Options {
    Options {
        backend: Backend::Native,
        threads: Some(2),
        ..Options::default()
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// onnxruntime's committed outputs (native and tract, 1e-5), for a generator with explicit
/// BatchNormalization nodes, one whose first layer is Flatten → MatMul → Add → Reshape, and a
/// DCGAN generator exported by PyTorch's two exporters (BatchNorm nodes kept; BatchNorm folded
/// with every attribute written out).
#[test]
fn matches_onnxruntime_on_the_fixtures() {
    let mut backends = vec![Backend::Native];
    if cfg!(feature = "tract") {
        backends.push(Backend::Tract);
    }
    for (model, z, out) in [
        ("tiny-gen.onnx", "tiny-gen.z.npy", "tiny-gen.out.npy"),
        (
            "foreign-rgb.onnx",
            "foreign-rgb.z.npy",
            "foreign-rgb.out.npy",
        ),
        (
            "torch-dcgan.onnx",
            "torch-dcgan.z.npy",
            "torch-dcgan.out.npy",
        ),
        (
            "torch-dcgan-dynamo.onnx",
            "torch-dcgan.z.npy",
            "torch-dcgan.out.npy",
        ),
    ] {
        for &backend in &backends {
            let mut g = Generator::load(
                &fixture(model),
                &Options {
                    backend,
                    ..native()
                },
            )
            .unwrap();
            assert_eq!(g.backend(), backend);
            let z = crate::npy::read_f32(&fixture(z)).unwrap();
            let want = crate::npy::read_f32(&fixture(out)).unwrap();
            let got = g.run(&z.data).unwrap().data;
            assert_eq!(got.len(), want.data.len(), "{model}");
            let d = max_abs_diff(&got, &want.data);
            eprintln!("{model}: {backend} vs onnxruntime max abs diff {d:.2e}");
            assert!(
                d <= 1e-5,
                "{model}: {backend}: max abs diff {d} against onnxruntime"
            );
        }
    }
}

/// The shipped model: native against tract, batch 1 and 7, 1e-5.
#[cfg(feature = "tract")]
#[test]
fn matches_tract_on_the_shipped_model() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/mnist-small.onnx");
    let mut n = Generator::load(&path, &native()).unwrap();
    let mut t = Generator::load(
        &path,
        &Options {
            backend: Backend::Tract,
            ..native()
        },
    )
    .unwrap();
    for b in [1, 7] {
        let a = n.generate(3, b, b).unwrap();
        let c = t.generate(3, b, b).unwrap();
        let d = max_abs_diff(&a.data, &c.data);
        eprintln!("shipped model, batch {b}: native vs tract max abs diff {d:.2e}");
        assert!(d <= 1e-5, "batch {b}: max abs diff {d}");
    }
}

#[test]
fn auto_picks_native_for_generators_and_says_so() {
    let g = Generator::load(
        &fixture("tiny-gen.onnx"),
        &Options {
            backend: Backend::Auto,
            ..native()
        },
    )
    .unwrap();
    assert_eq!(g.backend(), Backend::Native);
    assert!(g.describe().starts_with("native"), "{}", g.describe());
}

/// A graph with an attribute the native backend does not implement is refused, naming the
/// node and the attribute; `auto` hands it to tract and says why.
#[test]
fn unsupported_attributes_are_named() {
    let bytes = std::fs::read(fixture("tiny-gen.onnx")).unwrap();
    let mut model = <crate::onnx_proto::ModelProto as prost::Message>::decode(&bytes[..]).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let node = graph
        .node
        .iter_mut()
        .find(|n| n.op_type == "ConvTranspose")
        .unwrap();
    let name = node.name.clone();
    node.attribute.push(crate::onnx_proto::AttributeProto {
        name: "dilations".into(),
        ints: vec![2, 2],
        r#type: 7,
        ..Default::default()
    });
    let edited = prost::Message::encode_to_vec(&model);
    let info = crate::onnx::ModelInfo::parse(&edited).unwrap();
    let contract = crate::onnx::Contract::check(&info).unwrap();
    let e = lower(&edited, &contract.input, &contract.output, contract.z_dim).unwrap_err();
    assert!(e.downcast_ref::<Unsupported>().is_some(), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&name) && msg.contains("dilations"), "{msg}");
    let e = Generator::from_bytes(&edited, &native()).unwrap_err();
    assert!(format!("{e:#}").contains("dilations"), "{e:#}");
    #[cfg(feature = "tract")]
    {
        let g = Generator::from_bytes(
            &edited,
            &Options {
                backend: Backend::Auto,
                ..native()
            },
        )
        .unwrap();
        assert_eq!(g.backend(), Backend::Tract);
        assert!(g.describe().contains("native skipped") && g.describe().contains("dilations"));
    }
}

/// An operator outside the set is named with its node.
#[test]
fn unsupported_operators_are_named() {
    let bytes = std::fs::read(fixture("classifier.onnx")).unwrap();
    // The classifier's input is [N, 784]: lower it as if it were a chain from z of 784.
    let e = lower(&bytes, "x", "logits", 784).unwrap_err();
    assert!(e.downcast_ref::<Unsupported>().is_some(), "{e}");
}
