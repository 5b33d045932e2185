//! Tests of the graph builder.

use super::*;
use crate::pb::{type_proto, ValueInfoProto};
use candle_core::Device;
use wgan_models::latent::Rng;
use wgan_models::preset;

fn header(name: &str, channels: usize) -> CheckpointHeader {
    CheckpointHeader::new(&preset(name, channels).unwrap(), 7, "unit".into())
}

fn generator(name: &str, channels: usize) -> Generator {
    Generator::new(
        &preset(name, channels).unwrap(),
        &mut Rng::new(1),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap()
}

fn ops(m: &ModelProto) -> Vec<String> {
    m.graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .map(|n| n.op_type.clone())
        .collect()
}

#[test]
fn walks_the_spec_folded_and_kept() {
    let g = generator("tiny", 1);
    let h = header("tiny", 1);
    let folded = build_model(&g, &h, &BuildOptions::default()).unwrap();
    assert_eq!(
        ops(&folded),
        [
            "ConvTranspose",
            "Relu",
            "ConvTranspose",
            "Relu",
            "ConvTranspose",
            "Tanh"
        ]
    );
    let graph = folded.graph.as_ref().unwrap();
    let names: Vec<&str> = graph.node.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        ["net.0.0", "net.0.2", "net.1.0", "net.1.2", "net.2", "net.3"]
    );
    let inits: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        inits,
        [
            "net.0.0.weight.bn_folded",
            "net.0.0.bias.bn_folded",
            "net.1.0.weight.bn_folded",
            "net.1.0.bias.bn_folded",
            "net.2.weight",
            "net.2.bias"
        ]
    );
    assert_eq!(graph.node.last().unwrap().output, ["image"]);
    assert_eq!(
        graph.node[0].input,
        ["z", "net.0.0.weight.bn_folded", "net.0.0.bias.bn_folded"]
    );
    assert_eq!((folded.ir_version, folded.opset_import[0].version), (8, 17));

    let kept = build_model(
        &g,
        &h,
        &BuildOptions {
            fold_bn: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        ops(&kept),
        [
            "ConvTranspose",
            "BatchNormalization",
            "Relu",
            "ConvTranspose",
            "BatchNormalization",
            "Relu",
            "ConvTranspose",
            "Tanh"
        ]
    );
    let graph = kept.graph.as_ref().unwrap();
    // Kept: every initializer is a state_dict tensor.
    let expected: Vec<String> = g.spec.params().into_iter().map(|p| p.name).collect();
    let mut got: Vec<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    let mut want = expected.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        weight_count(&kept),
        g.spec
            .params()
            .iter()
            .map(|p| p.shape.iter().product::<usize>())
            .sum::<usize>()
    );
}

#[test]
fn conv_attributes_and_shapes_follow_the_spec() {
    let g = generator("dcgan64", 3);
    let m = build_model(
        &g,
        &header("dcgan64", 3),
        &BuildOptions {
            batch: BatchDim::Fixed(8),
            ..Default::default()
        },
    )
    .unwrap();
    let graph = m.graph.as_ref().unwrap();
    let convs: Vec<&NodeProto> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "ConvTranspose")
        .collect();
    assert_eq!(convs.len(), g.spec.layers.len());
    for (n, l) in convs.iter().zip(&g.spec.layers) {
        let get = |name: &str| n.attribute.iter().find(|a| a.name == name).unwrap().clone();
        assert_eq!(get("strides").ints, [l.stride as i64; 2]);
        assert_eq!(get("pads").ints, [l.padding as i64; 4]);
        assert_eq!(get("kernel_shape").ints, [l.kernel as i64; 2]);
        assert_eq!(get("group").i, 1);
    }
    let dims = |v: &ValueInfoProto| match &v.r#type.as_ref().unwrap().value {
        Some(type_proto::Value::TensorType(t)) => t
            .shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|d| d.value.clone().unwrap())
            .collect::<Vec<_>>(),
        _ => panic!(),
    };
    assert_eq!(
        dims(&graph.input[0]),
        [
            Dim::DimValue(8),
            Dim::DimValue(100),
            Dim::DimValue(1),
            Dim::DimValue(1)
        ]
    );
    assert_eq!(
        dims(&graph.output[0]),
        [
            Dim::DimValue(8),
            Dim::DimValue(3),
            Dim::DimValue(64),
            Dim::DimValue(64)
        ]
    );
    let meta: Vec<(String, String)> = m
        .metadata_props
        .iter()
        .map(|e| (e.key.clone(), e.value.clone()))
        .collect();
    for (k, v) in [
        ("wgan.z_dim", "100"),
        ("wgan.channels", "3"),
        ("wgan.image_size", "64"),
        ("wgan.preset", "dcgan64"),
        ("wgan.g_width", "64"),
        ("wgan.c_width", "64"),
        ("wgan.step", "7"),
        ("wgan.dataset", "unit"),
        ("wgan.output_range", "-1,1"),
        ("wgan.latent", "xoshiro256++/splitmix64 box-muller v1"),
    ] {
        assert!(
            meta.contains(&(k.to_string(), v.to_string())),
            "{k} missing in {meta:?}"
        );
    }
    assert!(meta
        .iter()
        .any(|(k, v)| k == "wgan.producer" && v.starts_with("wgan-export ")));
}

#[test]
fn ir_version_follows_the_opset() {
    let pairs: Vec<(i64, i64)> = (MIN_OPSET..=MAX_OPSET)
        .map(|o| (o, ir_version_for(o)))
        .collect();
    let mut want: Vec<(i64, i64)> = (13..=18).map(|o| (o, 8)).collect();
    want.extend([(19, 9), (20, 9), (21, 10)]);
    assert_eq!(pairs, want);
    assert_eq!(ir_version_for(DEFAULT_OPSET), IR_VERSION);
    let g = generator("tiny", 1);
    for (opset, ir) in [(13, 8), (17, 8), (18, 8), (19, 9), (20, 9), (21, 10)] {
        let options = BuildOptions {
            opset,
            ..Default::default()
        };
        let m = build_model(&g, &header("tiny", 1), &options).unwrap();
        assert_eq!((m.ir_version, m.opset_import[0].version), (ir, opset));
    }
}

#[test]
fn options_and_architecture_are_checked() {
    for opset in [12, 22, 0] {
        let err = BuildOptions {
            opset,
            ..Default::default()
        }
        .check()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("unknown opset {opset}: supported 13–21")
        );
    }
    assert!(BuildOptions {
        opset: 13,
        ..Default::default()
    }
    .check()
    .is_ok());
    let err = build_model(
        &generator("tiny", 1),
        &header("tiny", 3),
        &BuildOptions::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("does not have the architecture"),
        "{err}"
    );
}
