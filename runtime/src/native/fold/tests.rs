//! The folds on small tensors against numpy's results for the same calls (`np.concatenate`,
//! `np.transpose`, `np.take`, broadcasting `+`, `np.trunc`), written out.

use super::*;
use crate::onnx_proto as proto;

fn f32s(dims: &[usize], v: &[f32]) -> Constant {
    Constant {
        dims: dims.to_vec(),
        values: Values::F32(v.to_vec()),
    }
}

fn i64s(dims: &[usize], v: &[i64]) -> Constant {
    Constant {
        dims: dims.to_vec(),
        values: Values::I64(v.to_vec()),
    }
}

/// Folds `op` with `attrs` on `inputs`.
fn run(
    op: &str,
    attrs: Vec<proto::AttributeProto>,
    inputs: &[&Constant],
) -> Result<Constant, Unsupported> {
    let node = proto::NodeProto {
        op_type: op.into(),
        attribute: attrs,
        ..Default::default()
    };
    let mut n = FoldNode {
        label: "node t",
        op,
        inputs: inputs.iter().map(|&c| Some(c)).collect(),
        attrs: Attrs::new("node t", &node),
    };
    let c = fold(&mut n)?;
    n.attrs.finish()?;
    Ok(c)
}

fn int_attr(name: &str, i: i64) -> proto::AttributeProto {
    proto::AttributeProto {
        name: name.into(),
        i,
        r#type: 2,
        ..Default::default()
    }
}

fn ints_attr(name: &str, ints: &[i64]) -> proto::AttributeProto {
    proto::AttributeProto {
        name: name.into(),
        ints: ints.to_vec(),
        r#type: 7,
        ..Default::default()
    }
}

const A: [f32; 6] = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];

#[test]
fn concat_on_an_inner_axis() {
    let a = f32s(&[2, 3], &A);
    let first = f32s(&[2, 1], &[0.0, 3.0]);
    let c = run("Concat", vec![int_attr("axis", 1)], &[&first, &a]).unwrap();
    assert_eq!(c.dims, [2, 4]);
    assert_eq!(c.f32().unwrap(), [0.0, 0.0, 1.0, 2.0, 3.0, 3.0, 4.0, 5.0]);
}

#[test]
fn transpose_with_and_without_perm() {
    let c = run("Transpose", vec![], &[&f32s(&[2, 3], &A)]).unwrap();
    assert_eq!(c.dims, [3, 2]);
    assert_eq!(c.f32().unwrap(), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    let x: Vec<i64> = (0..24).collect();
    let c = run(
        "Transpose",
        vec![ints_attr("perm", &[2, 0, 1])],
        &[&i64s(&[2, 3, 4], &x)],
    )
    .unwrap();
    assert_eq!(c.dims, [4, 2, 3]);
    assert_eq!(
        c.i64().unwrap(),
        [0, 4, 8, 12, 16, 20, 1, 5, 9, 13, 17, 21, 2, 6, 10, 14, 18, 22, 3, 7, 11, 15, 19, 23]
    );
}

#[test]
fn gather_with_a_matrix_of_indices_on_axis_1() {
    let c = run(
        "Gather",
        vec![int_attr("axis", 1)],
        &[&f32s(&[2, 3], &A), &i64s(&[1, 2], &[2, -3])],
    )
    .unwrap();
    assert_eq!(c.dims, [2, 1, 2]);
    assert_eq!(c.f32().unwrap(), [2.0, 0.0, 5.0, 3.0]);
    let e = run("Gather", vec![], &[&f32s(&[2, 3], &A), &i64s(&[], &[2])]).unwrap_err();
    assert!(
        e.to_string().contains("index 2 is outside axis 0 of 2"),
        "{e}"
    );
}

#[test]
fn arithmetic_broadcasts_like_numpy() {
    let c = run(
        "Add",
        vec![],
        &[
            &f32s(&[2, 1], &[1.0, 2.0]),
            &f32s(&[3], &[10.0, 20.0, 30.0]),
        ],
    )
    .unwrap();
    assert_eq!(c.dims, [2, 3]);
    assert_eq!(c.f32().unwrap(), [11.0, 21.0, 31.0, 12.0, 22.0, 32.0]);
    let e = run(
        "Mul",
        vec![],
        &[&f32s(&[2], &[1.0, 2.0]), &f32s(&[3], &[1.0; 3])],
    )
    .unwrap_err();
    assert!(e.to_string().contains("do not broadcast"), "{e}");
    let e = run("Add", vec![], &[&f32s(&[1], &[1.0]), &i64s(&[1], &[1])]).unwrap_err();
    assert!(e.to_string().contains("differ"), "{e}");
    let e = run("Div", vec![], &[&i64s(&[1], &[1]), &i64s(&[1], &[0])]).unwrap_err();
    assert!(e.to_string().contains("division by zero"), "{e}");
}

#[test]
fn cast_truncates_toward_zero() {
    let c = run(
        "Cast",
        vec![int_attr("to", elem::INT64 as i64)],
        &[&f32s(&[2], &[-1.7, 2.9])],
    )
    .unwrap();
    assert_eq!(c.i64().unwrap(), [-1, 2]);
    let e = run("Cast", vec![int_attr("to", 10)], &[&f32s(&[1], &[1.0])]).unwrap_err();
    assert!(e.to_string().contains("cast to"), "{e}");
}

#[test]
fn reshape_infers_and_copies_dimensions() {
    let x = f32s(&[2, 3], &A);
    let c = run("Reshape", vec![], &[&x, &i64s(&[2], &[0, -1])]).unwrap();
    assert_eq!(c.dims, [2, 3]);
    let c = run("Reshape", vec![], &[&x, &i64s(&[3], &[-1, 1, 2])]).unwrap();
    assert_eq!(c.dims, [3, 1, 2]);
    let e = run("Reshape", vec![], &[&x, &i64s(&[1], &[4])]).unwrap_err();
    assert!(e.to_string().contains("does not hold 6 values"), "{e}");
}

#[test]
fn number_constants() {
    let c = run("Constant", vec![ints_attr("value_ints", &[3, 4])], &[]).unwrap();
    assert_eq!(
        (c.dims.as_slice(), c.i64().unwrap()),
        (&[2][..], &[3, 4][..])
    );
    let e = run("Constant", vec![], &[]).unwrap_err();
    assert!(
        e.to_string().contains("only tensor and number constants"),
        "{e}"
    );
}

#[test]
fn unread_attributes_are_refused() {
    let e = run(
        "Identity",
        vec![int_attr("colour", 1)],
        &[&f32s(&[1], &[1.0])],
    )
    .unwrap_err();
    assert!(e.to_string().contains("attribute 'colour'"), "{e}");
}
