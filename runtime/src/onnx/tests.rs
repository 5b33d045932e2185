//! Tests of the interface reader and the contract check, on hand-encoded ONNX files (also used
//! by the generator's tests through `model`).

use super::*;

// A tiny protobuf writer for building test models.
fn key(field: u64, wire: u64, out: &mut Vec<u8>) {
    put_varint((field << 3) | wire, out);
}
fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}
fn bytes(field: u64, b: &[u8], out: &mut Vec<u8>) {
    key(field, 2, out);
    put_varint(b.len() as u64, out);
    out.extend_from_slice(b);
}
fn int(field: u64, v: u64, out: &mut Vec<u8>) {
    key(field, 0, out);
    put_varint(v, out);
}
fn vi(name: &str, elem: u64, dims: &[Dim]) -> Vec<u8> {
    let mut shape = Vec::new();
    for d in dims {
        let mut dim = Vec::new();
        match d {
            Dim::Fixed(v) => int(1, *v as u64, &mut dim),
            Dim::Symbol(s) => bytes(2, s.as_bytes(), &mut dim),
            Dim::Unknown => {}
        }
        bytes(1, &dim, &mut shape);
    }
    let mut tensor = Vec::new();
    int(1, elem, &mut tensor);
    bytes(2, &shape, &mut tensor);
    let mut ty = Vec::new();
    bytes(1, &tensor, &mut ty);
    let mut v = Vec::new();
    bytes(1, name.as_bytes(), &mut v);
    bytes(2, &ty, &mut v);
    v
}

/// An ONNX-shaped protobuf with the given interface (no nodes), for contract tests.
pub(crate) fn model(
    inputs: &[(&str, u64, Vec<Dim>)],
    outputs: &[(&str, u64, Vec<Dim>)],
    meta: &[(&str, &str)],
) -> Vec<u8> {
    let mut graph = Vec::new();
    let mut node = Vec::new();
    bytes(4, b"ConvTranspose", &mut node);
    bytes(1, &node, &mut graph);
    bytes(2, b"g", &mut graph);
    let mut init = Vec::new();
    int(1, 3, &mut init);
    int(1, 4, &mut init);
    bytes(8, b"w", &mut init);
    bytes(5, &init, &mut graph);
    for (n, t, d) in inputs {
        bytes(11, &vi(n, *t, d), &mut graph);
    }
    bytes(11, &vi("w", 1, &[Dim::Fixed(3), Dim::Fixed(4)]), &mut graph);
    for (n, t, d) in outputs {
        bytes(12, &vi(n, *t, d), &mut graph);
    }
    let mut m = Vec::new();
    int(1, 8, &mut m);
    bytes(2, b"test", &mut m);
    bytes(7, &graph, &mut m);
    let mut opset = Vec::new();
    int(2, 17, &mut opset);
    bytes(8, &opset, &mut m);
    for (k, v) in meta {
        let mut e = Vec::new();
        bytes(1, k.as_bytes(), &mut e);
        bytes(2, v.as_bytes(), &mut e);
        bytes(14, &e, &mut m);
    }
    m
}

fn sym() -> Dim {
    Dim::Symbol("N".into())
}
fn f(v: i64) -> Dim {
    Dim::Fixed(v)
}
fn gen_dims() -> (Vec<Dim>, Vec<Dim>) {
    (
        vec![sym(), f(100), f(1), f(1)],
        vec![sym(), f(1), f(32), f(32)],
    )
}

#[test]
fn parses_interface_metadata_and_skips_initializers() {
    let (i, o) = gen_dims();
    let bytes = model(
        &[("z", 1, i)],
        &[("image", 1, o)],
        &[("wgan.z_dim", "100"), ("wgan.preset", "small")],
    );
    let info = ModelInfo::parse(&bytes).unwrap();
    assert_eq!(info.ir_version, 8);
    assert_eq!(info.opset(), 17);
    assert_eq!(info.inputs.len(), 1);
    assert_eq!(info.inputs[0].shape_text(), "[N, 100, 1, 1]");
    assert_eq!(info.meta("wgan.preset"), Some("small"));
    assert_eq!(info.parameters, 12);
    assert_eq!(info.ops.get("ConvTranspose"), Some(&1));
    let c = Contract::check(&info).unwrap();
    assert_eq!(c.z_dim, 100);
    assert_eq!(c.image, Some([1, 32, 32]));
    assert_eq!((c.batch, c.batch_symbol.as_str()), (BatchDim::Dynamic, "N"));
    assert!(c.notes.is_empty(), "{:?}", c.notes);
    assert_eq!(c.summary(), "z [N, 100, 1, 1] → image [N, 1, 32, 32]");
}

#[test]
fn broken_files_are_not_onnx() {
    let (i, o) = gen_dims();
    let good = model(&[("z", 1, i)], &[("image", 1, o)], &[]);
    assert!(ModelInfo::parse(&[])
        .unwrap_err()
        .to_string()
        .contains("empty"));
    for cut in [1, 5, good.len() / 2, good.len() - 3] {
        let e = ModelInfo::parse(&good[..cut]).unwrap_err();
        assert!(
            format!("{e:#}").contains("not an ONNX model"),
            "cut {cut}: {e:#}"
        );
    }
    let e = ModelInfo::parse(b"hello, this is a text file\n").unwrap_err();
    assert!(format!("{e:#}").contains("not an ONNX model"), "{e:#}");
}

fn check_err(
    inputs: &[(&str, u64, Vec<Dim>)],
    outputs: &[(&str, u64, Vec<Dim>)],
    meta: &[(&str, &str)],
) -> String {
    let info = ModelInfo::parse(&model(inputs, outputs, meta)).unwrap();
    format!("{:#}", Contract::check(&info).unwrap_err())
}

#[test]
fn other_contracts_are_refused_with_what_was_found() {
    let (i, o) = gen_dims();
    let e = check_err(
        &[("x", 1, vec![f(1), f(784)])],
        &[("y", 1, vec![f(1), f(10)])],
        &[],
    );
    assert_eq!(
        e,
        "model input 'x' has shape [1, 784]; a generator takes z as [N, z_dim, 1, 1]"
    );
    let e = check_err(&[("z", 7, i.clone())], &[("image", 1, o.clone())], &[]);
    assert!(e.contains("is i64 [N, 100, 1, 1]"), "{e}");
    let e = check_err(
        &[("z", 1, i.clone()), ("t", 1, vec![f(1)])],
        &[("image", 1, o.clone())],
        &[],
    );
    assert!(
        e.starts_with("the model has 2 inputs ('z' f32 [N, 100, 1, 1], 't' f32 [1])"),
        "{e}"
    );
    let e = check_err(
        &[("z", 1, i.clone())],
        &[("image", 1, vec![sym(), f(10)])],
        &[],
    );
    assert!(e.contains("output 'image' has shape [N, 10]"), "{e}");
    let e = check_err(
        &[("z", 1, i.clone())],
        &[("image", 1, o.clone())],
        &[("wgan.z_dim", "64")],
    );
    assert!(e.contains("wgan.z_dim is 64"), "{e}");
    let e = check_err(
        &[("z", 1, i.clone())],
        &[("image", 1, o.clone())],
        &[("wgan.channels", "3")],
    );
    assert!(e.contains("wgan.channels is 3"), "{e}");
    let e = check_err(
        &[("z", 1, i.clone())],
        &[("image", 1, o.clone())],
        &[("wgan.output_range", "0,1")],
    );
    assert!(e.contains("output_range"), "{e}");
    let e = check_err(
        &[("z", 1, vec![f(2), f(8), f(1), f(1)])],
        &[("image", 1, vec![f(3), f(1), f(4), f(4)])],
        &[],
    );
    assert!(e.contains("batch 2") && e.contains("batch 3"), "{e}");
}

#[test]
fn foreign_generators_are_accepted_with_notes() {
    let info = ModelInfo::parse(&model(
        &[("input", 1, vec![f(1), f(64), f(1), f(1)])],
        &[(
            "output",
            1,
            vec![Dim::Unknown, Dim::Unknown, Dim::Unknown, Dim::Unknown],
        )],
        &[],
    ))
    .unwrap();
    let c = Contract::check(&info).unwrap();
    assert_eq!(
        (c.input.as_str(), c.output.as_str(), c.z_dim),
        ("input", "output", 64)
    );
    assert_eq!(c.batch, BatchDim::Fixed(1));
    assert_eq!(c.image, None);
    assert_eq!(c.notes.len(), 4, "{:?}", c.notes);
    // Metadata fills in what the graph leaves open.
    let info = ModelInfo::parse(&model(
        &[("z", 1, vec![Dim::Unknown, f(64), f(1), f(1)])],
        &[("image", 1, vec![Dim::Unknown; 4])],
        &[("wgan.channels", "3"), ("wgan.image_size", "64")],
    ))
    .unwrap();
    let c = Contract::check(&info).unwrap();
    assert_eq!((c.image, c.batch), (Some([3, 64, 64]), BatchDim::Dynamic));
}
