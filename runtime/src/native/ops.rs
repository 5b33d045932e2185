//! The operators the native backend runs on the chain's value: [`OPERATORS`], one
//! `(operator, lowering)` entry each. A lowering reads its node (attributes, constant inputs,
//! the incoming per-sample shape), appends steps to the plan and returns the outgoing shape;
//! what it does not implement it refuses with [`Unsupported`], never computing something
//! else. This table is also the supported-operator list (`runtime info`, the README).

use super::constant::{floats, per_channel, Attrs, Constant};
use super::error::Unsupported;
use super::plan::{Act, ConvShape, Shape, Step};
use crate::onnx_proto as proto;
use std::collections::HashMap;
use wgan_models::spec::{batch_norm_affine, Activation, LEAKY_SLOPE};

/// One node on the chain, as a lowering sees it.
pub(super) struct Node<'a> {
    /// `node 'name' (Op)`, for messages.
    pub label: &'a str,
    pub proto: &'a proto::NodeProto,
    /// Which input is the chain's value (the others are constants).
    pub data_pos: usize,
    /// The chain value's per-sample shape coming in.
    pub shape: Shape,
    pub attrs: Attrs<'a>,
    pub(super) consts: &'a HashMap<String, Constant>,
}

impl<'a> Node<'a> {
    /// Constant input `i`, if the node has one there.
    pub fn input(&self, i: usize) -> Option<&'a Constant> {
        let consts = self.consts;
        self.proto
            .input
            .get(i)
            .filter(|s| !s.is_empty())
            .and_then(|s| consts.get(s))
    }

    /// Constant input `i`, or an error saying the node lacks `what`.
    pub fn required(&self, i: usize, what: &str) -> Result<&'a Constant, Unsupported> {
        self.input(i)
            .ok_or_else(|| self.refuse(format!("needs {what}")))
    }

    pub fn refuse(&self, why: impl std::fmt::Display) -> Unsupported {
        Unsupported::at(self.label, why)
    }
}

/// Lowers one node: appends its steps, returns the value's new per-sample shape.
pub(super) type Lower = fn(&mut Node<'_>, &mut Vec<Step>) -> Result<Shape, Unsupported>;

/// A supported operator.
pub struct Operator {
    pub name: &'static str,
    pub(super) lower: Lower,
    /// The chain's value may be either input (Add, Mul); otherwise it must be the first.
    pub(super) either_input: bool,
}

const fn op(name: &'static str, lower: Lower) -> Operator {
    Operator {
        name,
        lower,
        either_input: false,
    }
}

/// Every operator the native backend runs on the chain's value.
pub const OPERATORS: &[Operator] = &[
    op("ConvTranspose", conv_transpose),
    op("Conv", conv),
    op("BatchNormalization", batch_norm),
    op("Relu", activation),
    op("LeakyRelu", activation),
    op("Tanh", activation),
    op("Sigmoid", activation),
    op("Gemm", matrix_product),
    op("MatMul", matrix_product),
    Operator {
        either_input: true,
        ..op("Add", add_or_mul)
    },
    Operator {
        either_input: true,
        ..op("Mul", add_or_mul)
    },
    op("Reshape", reshape_node),
    op("Flatten", flatten_node),
    op("Identity", |n, _| Ok(n.shape)),
    op("Dropout", dropout),
];

/// The entry for `op_type`.
pub(super) fn operator(op_type: &str) -> Option<&'static Operator> {
    OPERATORS.iter().find(|o| o.name == op_type)
}

/// The supported operators' names, comma-separated.
pub fn names() -> String {
    OPERATORS
        .iter()
        .map(|o| o.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn batch_norm(n: &mut Node<'_>, steps: &mut Vec<Step>) -> Result<Shape, Unsupported> {
    let eps = n.attrs.float("epsilon", 1e-5);
    n.attrs.float("momentum", 0.9);
    if n.attrs.int("training_mode", 0) != 0 {
        return Err(n.refuse("training_mode 1 is not inference"));
    }
    if n.attrs.int("spatial", 1) != 1 {
        return Err(n.refuse("spatial 0 is not implemented"));
    }
    n.attrs.int("is_test", 1);
    let channels = n.shape.channels();
    let get = |i: usize, what: &str| -> Result<&[f32], Unsupported> {
        let v = floats(n.label, what, n.required(i, what)?)?;
        if v.len() != channels {
            return Err(n.refuse(format!(
                "{what} has {} values for {channels} channels",
                v.len()
            )));
        }
        Ok(v)
    };
    let (gamma, beta, mean, var) = (
        get(1, "scale")?,
        get(2, "bias")?,
        get(3, "mean")?,
        get(4, "var")?,
    );
    let (scale, shift) = batch_norm_affine(gamma, beta, mean, var, eps as f64);
    let narrow = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
    affine(steps, n.shape, narrow(scale), narrow(shift));
    Ok(n.shape)
}

fn add_or_mul(n: &mut Node<'_>, steps: &mut Vec<Step>) -> Result<Shape, Unsupported> {
    let t = n.required(1 - n.data_pos, "two inputs")?;
    let v = per_channel(n.label, t, n.shape)?;
    let c = v.len();
    if n.proto.op_type == "Add" {
        affine(steps, n.shape, vec![1.0; c], v);
    } else {
        affine(steps, n.shape, v, vec![0.0; c]);
    }
    Ok(n.shape)
}

fn activation(n: &mut Node<'_>, steps: &mut Vec<Step>) -> Result<Shape, Unsupported> {
    let act = match n.proto.op_type.as_str() {
        "Relu" => Act::Spec(Activation::Relu),
        "LeakyRelu" => match n.attrs.float("alpha", 0.01) {
            a if a == LEAKY_SLOPE as f32 => Act::Spec(Activation::LeakyRelu),
            a => Act::LeakyRelu(a),
        },
        "Tanh" => Act::Spec(Activation::Tanh),
        _ => Act::Sigmoid,
    };
    let c = n.shape.channels();
    match steps.last_mut().and_then(Step::act_mut) {
        Some(slot) if *slot == Act::Spec(Activation::None) => *slot = act,
        _ => steps.push(Step::Affine {
            c,
            scale: vec![1.0; c],
            shift: vec![0.0; c],
            act,
        }),
    }
    Ok(n.shape)
}

fn matrix_product(n: &mut Node<'_>, steps: &mut Vec<Step>) -> Result<Shape, Unsupported> {
    let Shape::Flat(k_in) = n.shape else {
        return Err(n.refuse("a matrix product on an image (flatten it first)"));
    };
    let gemm = n.proto.op_type == "Gemm";
    let (alpha, beta, trans_b) = if gemm {
        if n.attrs.int("transA", 0) != 0 {
            return Err(n.refuse("transA 1 is not implemented"));
        }
        (
            n.attrs.float("alpha", 1.0),
            n.attrs.float("beta", 1.0),
            n.attrs.int("transB", 0) != 0,
        )
    } else {
        (1.0, 1.0, false)
    };
    let b = n.required(1, "a weight input")?;
    let bv = floats(n.label, "the weight", b)?;
    let (rows, cols) = match b.dims.as_slice() {
        [r, c] => (*r, *c),
        d => return Err(n.refuse(format!("weight of shape {d:?} (2-D expected)"))),
    };
    let (kk, m) = if trans_b { (cols, rows) } else { (rows, cols) };
    if kk != k_in {
        return Err(n.refuse(format!("weight for {kk} inputs, gets {k_in}")));
    }
    let mut w = vec![0f32; k_in * m];
    for i in 0..k_in {
        for j in 0..m {
            let v = if trans_b {
                bv[j * k_in + i]
            } else {
                bv[i * m + j]
            };
            w[i * m + j] = alpha * v;
        }
    }
    let bias = match n.input(2) {
        Some(t) if gemm => per_channel(n.label, t, Shape::Flat(m))?
            .into_iter()
            .map(|v| beta * v)
            .collect(),
        _ => vec![0.0; m],
    };
    steps.push(Step::Dense {
        k_in,
        m,
        w,
        bias,
        act: Act::Spec(Activation::None),
    });
    Ok(Shape::Flat(m))
}

fn flatten_node(n: &mut Node<'_>, steps: &mut Vec<Step>) -> Result<Shape, Unsupported> {
    if n.attrs.int("axis", 1) != 1 {
        return Err(n.refuse("axis other than 1 is not implemented"));
    }
    Ok(flatten(steps, n.shape))
}

fn reshape_node(n: &mut Node<'_>, steps: &mut Vec<Step>) -> Result<Shape, Unsupported> {
    n.attrs.int("allowzero", 0);
    let dims = n
        .required(1, "a shape input")?
        .i64()
        .ok_or_else(|| n.refuse("the shape is not an int64 tensor"))?;
    reshape(n, steps, n.shape, dims)
}

fn dropout(n: &mut Node<'_>, _: &mut Vec<Step>) -> Result<Shape, Unsupported> {
    n.attrs.float("ratio", 0.5);
    n.attrs.int("seed", 0);
    if let Some(t) = n.input(2) {
        if t.i64().is_some_and(|v| v.iter().any(|&x| x != 0)) {
            return Err(n.refuse("training_mode is on"));
        }
    }
    Ok(n.shape)
}

/// Appends `act(x · scale + shift)` per channel, folded into the step before when it is linear
/// and not yet activated.
fn affine(steps: &mut Vec<Step>, shape: Shape, scale: Vec<f32>, shift: Vec<f32>) {
    if steps
        .last_mut()
        .is_some_and(|s| s.fold_affine(&scale, &shift))
    {
        return;
    }
    steps.push(Step::Affine {
        c: shape.channels(),
        scale,
        shift,
        act: Act::Spec(Activation::None),
    });
}

/// An image to a flat row in ONNX order.
fn flatten(steps: &mut Vec<Step>, shape: Shape) -> Shape {
    match shape {
        Shape::Image { c, h, w } => {
            if c > 1 && h * w > 1 {
                steps.push(Step::ToFlat { c, h, w });
            }
            Shape::Flat(c * h * w)
        }
        flat => flat,
    }
}

fn reshape(
    n: &Node<'_>,
    steps: &mut Vec<Step>,
    shape: Shape,
    dims: &[i64],
) -> Result<Shape, Unsupported> {
    let len = shape.values() as i64;
    // dims[0] is the batch: 0 (copied), -1 (inferred) or a file's fixed batch; the rest must
    // hold one sample.
    let Some((_, rest)) = dims.split_first() else {
        return Err(n.refuse("empty target shape"));
    };
    let known: i64 = rest.iter().filter(|&&d| d > 0).product();
    let mut out: Vec<i64> = Vec::new();
    for (i, &d) in rest.iter().enumerate() {
        out.push(match d {
            -1 if known > 0 && len % known == 0 => len / known,
            0 => match (shape, i) {
                (Shape::Image { c, .. }, 0) => c as i64,
                (Shape::Image { h, .. }, 1) => h as i64,
                (Shape::Image { w, .. }, 2) => w as i64,
                (Shape::Flat(k), 0) => k as i64,
                _ => return Err(n.refuse(format!("cannot copy dimension {} of {shape:?}", i + 1))),
            },
            d if d > 0 => d,
            _ => return Err(n.refuse(format!("target shape {dims:?} is not implemented"))),
        });
    }
    if out.iter().product::<i64>() != len {
        return Err(n.refuse(format!(
            "target shape {dims:?} does not hold {len} values per sample"
        )));
    }
    match (shape, out.as_slice()) {
        (s, [_]) => Ok(flatten(steps, s)),
        (Shape::Flat(_), [c, h, w]) => {
            let (c, h, w) = (*c as usize, *h as usize, *w as usize);
            if c > 1 && h * w > 1 {
                steps.push(Step::ToImage { c, h, w });
            }
            Ok(Shape::Image { c, h, w })
        }
        (Shape::Image { c, h, w }, [c2, h2, w2])
            if (c, h, w) == (*c2 as usize, *h2 as usize, *w2 as usize) =>
        {
            Ok(shape)
        }
        (Shape::Image { c, h, w }, [c2, h2, w2]) if c * h * w == (*c2 * *h2 * *w2) as usize => {
            let t = flatten(steps, shape);
            reshape(n, steps, t, &[0, *c2, *h2, *w2])
        }
        _ => Err(n.refuse(format!(
            "reshape of {shape:?} to {out:?} is not implemented"
        ))),
    }
}

fn conv_transpose(n: &mut Node<'_>, steps: &mut Vec<Step>) -> Result<Shape, Unsupported> {
    lower_conv(n, steps, true)
}

fn conv(n: &mut Node<'_>, steps: &mut Vec<Step>) -> Result<Shape, Unsupported> {
    lower_conv(n, steps, false)
}

fn lower_conv(
    n: &mut Node<'_>,
    steps: &mut Vec<Step>,
    transposed: bool,
) -> Result<Shape, Unsupported> {
    let Shape::Image { c, h, w } = n.shape else {
        return Err(n.refuse("input is not an image"));
    };
    let wt = n.required(1, "a weight input")?;
    let wv = floats(n.label, "the weight", wt)?;
    let [d0, d1, kh, kw] = match wt.dims.as_slice() {
        [a0, a1, a2, a3] => [*a0, *a1, *a2, *a3],
        d => return Err(n.refuse(format!("weight of shape {d:?} (4-D expected)"))),
    };
    if kh != kw {
        return Err(n.refuse(format!("kernel {kh}×{kw} is not square")));
    }
    let k = kh;
    let a = &mut n.attrs;
    let kernel_shape = a.ints("kernel_shape");
    let dilations = a.ints("dilations");
    let group = a.int("group", 1);
    let auto_pad = a.string("auto_pad");
    let strides = a.ints("strides").unwrap_or_else(|| vec![1, 1]);
    let pads = a.ints("pads").unwrap_or_else(|| vec![0; 4]);
    let (output_padding, output_shape) = if transposed {
        (a.ints("output_padding"), a.ints("output_shape"))
    } else {
        (None, None)
    };
    if let Some(ks) = kernel_shape {
        if ks != [k as i64, k as i64] {
            return Err(n.refuse(format!("kernel_shape {ks:?} differs from the weight's")));
        }
    }
    let all = |v: &Option<Vec<i64>>, x: i64| v.as_ref().is_none_or(|v| v.iter().all(|&d| d == x));
    if !all(&dilations, 1) {
        return Err(n.refuse(format!(
            "attribute dilations {:?} is not implemented",
            dilations.unwrap()
        )));
    }
    if group != 1 {
        return Err(n.refuse(format!("attribute group {group} is not implemented")));
    }
    if let Some(p) = auto_pad.filter(|p| p != "NOTSET") {
        return Err(n.refuse(format!("attribute auto_pad {p} is not implemented")));
    }
    let stride = match strides.as_slice() {
        [s, t] if s == t && *s > 0 => *s as usize,
        s => {
            return Err(n.refuse(format!(
                "attribute strides {s:?} is not implemented (equal strides only)"
            )))
        }
    };
    let pad = match pads.as_slice() {
        [p, q, r, s] if p == q && q == r && r == s && *p >= 0 => *p as usize,
        p => {
            return Err(n.refuse(format!(
                "attribute pads {p:?} is not implemented (equal pads on every side only)"
            )))
        }
    };
    if !all(&output_padding, 0) {
        return Err(n.refuse(format!(
            "attribute output_padding {:?} is not implemented",
            output_padding.unwrap()
        )));
    }
    if let Some(os) = output_shape {
        return Err(n.refuse(format!("attribute output_shape {os:?} is not implemented")));
    }
    let (cin, cout) = if transposed { (d0, d1) } else { (d1, d0) };
    if cin != c {
        return Err(n.refuse(format!("weight for {cin} input channels, gets {c}")));
    }
    let (ho, wo) = if transposed {
        let out = |x: usize| ((x - 1) * stride + k).checked_sub(2 * pad);
        match (out(h), out(w)) {
            (Some(a), Some(b)) if a > 0 && b > 0 => (a, b),
            _ => return Err(n.refuse("output would be empty")),
        }
    } else {
        let out = |x: usize| (x + 2 * pad).checked_sub(k).map(|v| v / stride + 1);
        match (out(h), out(w)) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(n.refuse(format!("kernel {k} larger than the padded {h}×{w} input"))),
        }
    };
    let bias = match n.input(2) {
        Some(t) => {
            let v = floats(n.label, "the bias", t)?;
            if v.len() != cout {
                return Err(n.refuse(format!("bias of {} values for {cout} channels", v.len())));
            }
            v.to_vec()
        }
        None => vec![0.0; cout],
    };
    // The kernels' layout: the second ONNX axis last.
    let wm = wgan_models::kernels::second_axis_last(wv, [d0, d1, k, k]);
    let shape = ConvShape {
        cin,
        cout,
        h,
        w,
        ho,
        wo,
        k,
        stride,
        pad,
    };
    let act = Act::Spec(Activation::None);
    steps.push(if transposed {
        Step::Deconv {
            shape,
            w: wm,
            bias,
            act,
        }
    } else {
        Step::Conv {
            shape,
            w: wm,
            bias,
            act,
        }
    });
    Ok(Shape::Image {
        c: cout,
        h: ho,
        w: wo,
    })
}
