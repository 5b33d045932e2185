//! The native backend against tract and onnxruntime on the committed fixtures, and its
//! refusals. (Outputs of the shipped and `dcgan64` models are compared in
//! `runtime/tests/backends.rs`.)

use super::graph::lower;
use super::LoadError;
use crate::engine::{Backend, Options};
use crate::Generator;
use std::path::{Path, PathBuf};
use wgan_test_support::max_abs_diff;

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

/// onnxruntime's committed outputs (native and tract, 1e-5), for a generator with explicit
/// BatchNormalization nodes, one whose first layer is Flatten → MatMul → Add → Reshape, one
/// whose weights are computed in the graph by every folded operator, and generators exported
/// by PyTorch's two exporters (BatchNorm nodes kept; BatchNorm folded with every attribute
/// written out): a DCGAN with non-trivial statistics, the same freshly initialised (Identity
/// nodes on shared tensors), and the `tiny` generator trained by `trainer train`.
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
        (
            "folded-consts.onnx",
            "folded-consts.z.npy",
            "folded-consts.out.npy",
        ),
        (
            "torch-fresh.onnx",
            "torch-dcgan.z.npy",
            "torch-fresh.out.npy",
        ),
        (
            "torch-fresh-dynamo.onnx",
            "torch-dcgan.z.npy",
            "torch-fresh.out.npy",
        ),
        (
            "torch-trained.onnx",
            "torch-trained.z.npy",
            "torch-trained.out.npy",
        ),
        (
            "torch-trained-dynamo.onnx",
            "torch-trained.z.npy",
            "torch-trained.out.npy",
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

/// PyTorch's exports of any module state, freshly initialised or trained, through either
/// exporter, run natively under `--backend auto` rather than falling back to tract.
#[test]
fn auto_runs_pytorch_exports_natively() {
    for model in [
        "torch-dcgan.onnx",
        "torch-dcgan-dynamo.onnx",
        "torch-fresh.onnx",
        "torch-fresh-dynamo.onnx",
        "torch-trained.onnx",
        "torch-trained-dynamo.onnx",
    ] {
        let g = Generator::load(
            &fixture(model),
            &Options {
                backend: Backend::Auto,
                ..native()
            },
        )
        .unwrap();
        assert_eq!(g.backend(), Backend::Native, "{model}: {}", g.describe());
    }
}

/// The freshly initialised TorchScript export reads BatchNorm statistics through Identity
/// nodes, which only folding makes constants: the fixture tests what it is meant to.
#[test]
fn the_fresh_export_has_identity_nodes_on_constants() {
    let bytes = std::fs::read(fixture("torch-fresh.onnx")).unwrap();
    let model = <crate::onnx_proto::ModelProto as prost::Message>::decode(&bytes[..]).unwrap();
    let graph = model.graph.unwrap();
    let inits: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let on_consts = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Identity" && inits.contains(&n.input[0].as_str()))
        .count();
    assert!(on_consts >= 2, "{on_consts} Identity nodes on initializers");
}

fn edit(name: &str, change: impl FnOnce(&mut crate::onnx_proto::GraphProto)) -> Vec<u8> {
    let bytes = std::fs::read(fixture(name)).unwrap();
    let mut model = <crate::onnx_proto::ModelProto as prost::Message>::decode(&bytes[..]).unwrap();
    change(model.graph.as_mut().unwrap());
    prost::Message::encode_to_vec(&model)
}

fn lower_bytes(bytes: &[u8]) -> Result<super::plan::Plan, LoadError> {
    let info = crate::onnx::ModelInfo::parse(bytes).unwrap();
    let contract = crate::onnx::Contract::check(&info).unwrap();
    lower(bytes, &contract.input, &contract.output, contract.z_dim)
}

/// A node on constants whose operator is not folded is refused, naming it and what is folded;
/// a fold that would make a huge constant is refused before anything is allocated.
#[test]
fn folding_refuses_what_it_does_not_implement() {
    let sin = edit("folded-consts.onnx", |g| {
        let n = g.node.iter_mut().find(|n| n.op_type == "Neg").unwrap();
        n.op_type = "Sin".into();
        n.name = "mean_sin".into();
    });
    let e = lower_bytes(&sin).unwrap_err();
    assert!(matches!(e, LoadError::Unsupported(_)), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("'mean_sin' (Sin)")
            && msg.contains("does not fold Sin")
            && msg.contains("Gather"),
        "{msg}"
    );

    let huge = edit("folded-consts.onnx", |g| {
        let shape = g.initializer.iter_mut().find(|t| t.name == "taps").unwrap();
        // [4, 4] → [1 << 20, 1 << 20]: the first weight's shape becomes 6·12·2⁴⁰ values.
        shape.raw_data = [1i64 << 20, 1 << 20]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>()
            .into();
    });
    let e = lower_bytes(&huge).unwrap_err();
    assert!(e.to_string().contains("too large"), "{e}");
}

/// The supported-operator lists are the registries', and the README quotes them (`runtime
/// info` prints them).
#[test]
fn the_operator_lists_come_from_the_registries() {
    let ops = super::ops::names();
    for op in ["ConvTranspose", "BatchNormalization", "Gemm", "Reshape"] {
        assert!(ops.contains(op), "{ops}");
    }
    assert_eq!(ops.split(", ").count(), super::ops::OPERATORS.len());
    let folded = super::fold::names();
    assert_eq!(folded.split(", ").count(), super::fold::FOLDED.len());
    assert!(folded.starts_with("Constant, Identity"), "{folded}");
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
    for list in [ops, folded] {
        assert!(readme.contains(&list), "the README does not list: {list}");
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
    assert!(matches!(e, LoadError::Unsupported(_)), "{e}");
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
    assert!(matches!(e, LoadError::Unsupported(_)), "{e}");
}

/// The activations after a step against their formulas: the specs' set (run by the training
/// engine's fused kernel) and what ONNX graphs add (another leaky slope, sigmoid).
#[test]
fn activations_match_their_formulas() {
    use super::plan::Act;
    use wgan_models::spec::{Activation, LEAKY_SLOPE};
    let c = 3;
    let x: Vec<f32> = (0..3 * 5000)
        .map(|i| (i as f32 * 0.37).sin() * 4.0)
        .collect();
    let bias = [0.5f32, -0.25, 0.0];
    let leaky = |a: f32| move |v: f32| if v < 0.0 { v * a } else { v };
    type Formula = Box<dyn Fn(f32) -> f32>;
    let cases: [(Act, Formula); 6] = [
        (Act::Spec(Activation::None), Box::new(|v| v)),
        (Act::Spec(Activation::Relu), Box::new(|v: f32| v.max(0.0))),
        (
            Act::Spec(Activation::LeakyRelu),
            Box::new(leaky(LEAKY_SLOPE as f32)),
        ),
        (Act::Spec(Activation::Tanh), Box::new(f32::tanh)),
        (Act::LeakyRelu(0.01), Box::new(leaky(0.01))),
        (Act::Sigmoid, Box::new(|v: f32| 1.0 / (1.0 + (-v).exp()))),
    ];
    for (act, formula) in cases {
        let mut y = x.clone();
        super::epilogue(&mut y, c, &bias, act);
        let want: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, v)| formula(v + bias[i % c]))
            .collect();
        assert!(max_abs_diff(&y, &want) < 1e-6, "{act:?}");
    }
}
