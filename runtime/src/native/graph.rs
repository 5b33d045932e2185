//! Lowering an ONNX generator graph to the native backend's [`Plan`]: a chain of steps over
//! channels-last buffers, with BatchNormalization, constant Add/Mul and activations folded into
//! the convolution or matrix product before them.
//!
//! The supported graphs are chains (every intermediate value feeds exactly the next node) of
//! ConvTranspose, Conv, BatchNormalization (inference), Relu, LeakyRelu, Tanh, Sigmoid, Gemm,
//! MatMul, Add/Mul by a constant (scalar or per channel), Reshape, Flatten, Identity and
//! Dropout (inference), with Constant nodes for their constants. Anything else — another
//! operator, an attribute this backend does not implement (dilations, groups, auto_pad,
//! output_padding, asymmetric pads, …), a branch — is an [`Unsupported`] error naming the node
//! and what it has, never a silently different computation.

use super::constant::{constant, floats, per_channel, Attrs, Constant};
use super::plan::{Act, ConvShape, Plan, Shape, Step, DECONV_BLOCK};
use crate::onnx_proto as proto;
use anyhow::{anyhow, bail, Result};
use prost::Message;
use std::collections::HashMap;
use std::fmt;
use wgan_models::kernels::gemm::to_column_blocks;

/// Why a graph is not for the native backend: the node (name and operator) and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

/// Lowers the ONNX model in `bytes` (a generator `z [N, z_dim, 1, 1] → [N, C, H, W]` with
/// input `input` and output `output`) to a plan. `Err` is [`Unsupported`] for graphs outside
/// the native set (callers may hand those to tract), or another error for broken files.
pub fn lower(bytes: &[u8], input: &str, output: &str, z_dim: usize) -> Result<Plan> {
    let model = proto::ModelProto::decode(bytes)
        .map_err(|e| anyhow!("cannot decode the ONNX file: {e}"))?;
    let mut graph = model
        .graph
        .ok_or_else(|| anyhow!("the ONNX file has no graph"))?;
    let unsupported = |m: String| anyhow::Error::new(Unsupported(m));
    let mut consts: HashMap<String, Constant> = HashMap::new();
    // Each tensor's raw bytes are freed as soon as it is decoded, so that the weights are not
    // held twice at once (peak memory on load).
    for t in std::mem::take(&mut graph.initializer) {
        consts.insert(t.name.clone(), constant(&t).map_err(unsupported)?);
    }
    // How often each value is read (a chain reads every intermediate value once).
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for n in &graph.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            *uses.entry(i.as_str()).or_default() += 1;
        }
    }
    for o in &graph.output {
        *uses.entry(o.name.as_str()).or_default() += 1;
    }
    let mut cur = input.to_string();
    let mut shape = Shape::Image {
        c: z_dim,
        h: 1,
        w: 1,
    };
    let mut steps: Vec<Step> = Vec::new();
    for node in &graph.node {
        let label = if node.name.is_empty() {
            format!(
                "node {} ({})",
                node.output.first().map_or("?", String::as_str),
                node.op_type
            )
        } else {
            format!("node '{}' ({})", node.name, node.op_type)
        };
        if !node.domain.is_empty() && node.domain != "ai.onnx" {
            return Err(unsupported(format!(
                "{label}: operator domain '{}' is not ONNX's",
                node.domain
            )));
        }
        if node.op_type == "Constant" {
            let mut a = Attrs::new(&label, node);
            let t = a
                .map
                .remove("value")
                .and_then(|v| v.t.clone())
                .ok_or_else(|| {
                    unsupported(format!(
                        "{label}: only tensor constants ('value') are implemented"
                    ))
                })?;
            a.finish().map_err(unsupported)?;
            let out = node.output.first().cloned().unwrap_or_default();
            consts.insert(out, constant(&t).map_err(unsupported)?);
            continue;
        }
        let data_pos = node.input.iter().position(|i| *i == cur);
        let Some(data_pos) = data_pos else {
            return Err(unsupported(format!(
                "{label} does not read the previous node's output '{cur}' (the native backend runs chains of nodes)"
            )));
        };
        if uses.get(cur.as_str()).copied().unwrap_or(0) != 1 {
            return Err(unsupported(format!(
                "{label}: value '{cur}' is read by several nodes (the native backend runs chains of nodes)"
            )));
        }
        let other_inputs: Vec<&str> = node
            .input
            .iter()
            .enumerate()
            .filter(|(i, name)| *i != data_pos && !name.is_empty())
            .map(|(_, n)| n.as_str())
            .collect();
        for name in &other_inputs {
            if !consts.contains_key(*name) {
                return Err(unsupported(format!(
                    "{label}: input '{name}' is computed in the graph (the native backend takes constants there)"
                )));
            }
        }
        let produced: Vec<&String> = node.output.iter().filter(|o| !o.is_empty()).collect();
        let extra_outputs_used = produced
            .iter()
            .skip(1)
            .any(|o| uses.get(o.as_str()).copied().unwrap_or(0) > 0);
        if produced.is_empty() || extra_outputs_used {
            return Err(unsupported(format!(
                "{label}: only its first output may be used"
            )));
        }
        let c = |name: &str| consts.get(name).expect("checked above");
        let input_at = |i: usize| node.input.get(i).filter(|s| !s.is_empty()).map(|s| c(s));
        let mut a = Attrs::new(&label, node);
        shape = lower_node(&label, node, data_pos, shape, &input_at, &mut a, &mut steps)
            .map_err(unsupported)?;
        a.finish().map_err(unsupported)?;
        cur = produced[0].clone();
        // A constant that only this node reads is not needed again (peak memory on load).
        for name in &other_inputs {
            if uses.get(name).copied() == Some(1) {
                consts.remove(*name);
            }
        }
    }
    if cur != output {
        return Err(unsupported(format!(
            "the graph's output '{output}' is not the end of the chain of nodes ('{cur}')"
        )));
    }
    let Shape::Image { c, h, w } = shape else {
        return Err(unsupported(format!(
            "the graph's output '{output}' is not an image [N, C, H, W]"
        )));
    };
    if steps.is_empty() {
        bail!(Unsupported("the graph has no operations".into()));
    }
    for step in &mut steps {
        if let Step::Deconv { shape, w, .. } = step {
            *w = to_column_blocks(w, shape.cin, shape.k * shape.k * shape.cout, DECONV_BLOCK);
        }
    }
    Ok(Plan {
        z_dim,
        steps,
        image: [c, h, w],
    })
}

fn lower_node<'c>(
    label: &str,
    node: &proto::NodeProto,
    data_pos: usize,
    shape: Shape,
    input_at: &dyn Fn(usize) -> Option<&'c Constant>,
    a: &mut Attrs,
    steps: &mut Vec<Step>,
) -> std::result::Result<Shape, String> {
    let op = node.op_type.as_str();
    let need_data_first = !matches!(op, "Add" | "Mul");
    if need_data_first && data_pos != 0 {
        return Err(format!(
            "{label}: the previous output is not its first input"
        ));
    }
    match op {
        "ConvTranspose" | "Conv" => {
            lower_conv(label, op == "ConvTranspose", shape, input_at, a, steps)
        }
        "BatchNormalization" => {
            let eps = a.float("epsilon", 1e-5);
            a.float("momentum", 0.9);
            if a.int("training_mode", 0) != 0 {
                return Err(format!("{label}: training_mode 1 is not inference"));
            }
            if a.int("spatial", 1) != 1 {
                return Err(format!("{label}: spatial 0 is not implemented"));
            }
            a.int("is_test", 1);
            let get = |i: usize, what: &str| -> std::result::Result<Vec<f32>, String> {
                let t = input_at(i).ok_or_else(|| format!("{label}: {what} is missing"))?;
                let v = floats(label, what, t)?;
                if v.len() != shape.channels() {
                    return Err(format!(
                        "{label}: {what} has {} values for {} channels",
                        v.len(),
                        shape.channels()
                    ));
                }
                Ok(v.to_vec())
            };
            let (gamma, beta, mean, var) = (
                get(1, "scale")?,
                get(2, "bias")?,
                get(3, "mean")?,
                get(4, "var")?,
            );
            let scale: Vec<f32> = (0..gamma.len())
                .map(|i| (gamma[i] as f64 / (var[i] as f64 + eps as f64).sqrt()) as f32)
                .collect();
            let shift: Vec<f32> = (0..gamma.len())
                .map(|i| (beta[i] as f64 - mean[i] as f64 * scale[i] as f64) as f32)
                .collect();
            affine(steps, shape, scale, shift);
            Ok(shape)
        }
        "Add" | "Mul" => {
            let t = input_at(1 - data_pos).ok_or_else(|| format!("{label}: needs two inputs"))?;
            let v = per_channel(label, t, shape)?;
            let c = v.len();
            if op == "Add" {
                affine(steps, shape, vec![1.0; c], v);
            } else {
                affine(steps, shape, v, vec![0.0; c]);
            }
            Ok(shape)
        }
        "Relu" | "LeakyRelu" | "Tanh" | "Sigmoid" => {
            let act = match op {
                "Relu" => Act::Relu,
                "LeakyRelu" => Act::LeakyRelu(a.float("alpha", 0.01)),
                "Tanh" => Act::Tanh,
                _ => Act::Sigmoid,
            };
            match steps.last_mut().and_then(Step::act_mut) {
                Some(slot) if *slot == Act::None => *slot = act,
                _ => steps.push(Step::Affine {
                    c: shape.channels(),
                    scale: vec![1.0; shape.channels()],
                    shift: vec![0.0; shape.channels()],
                    act,
                }),
            }
            Ok(shape)
        }
        "Gemm" | "MatMul" => {
            let Shape::Flat(k_in) = shape else {
                return Err(format!(
                    "{label}: a matrix product on an image (flatten it first)"
                ));
            };
            let (alpha, beta, trans_b) = if op == "Gemm" {
                if a.int("transA", 0) != 0 {
                    return Err(format!("{label}: transA 1 is not implemented"));
                }
                (
                    a.float("alpha", 1.0),
                    a.float("beta", 1.0),
                    a.int("transB", 0) != 0,
                )
            } else {
                (1.0, 1.0, false)
            };
            let b = input_at(1).ok_or_else(|| format!("{label}: needs a weight input"))?;
            let bv = floats(label, "the weight", b)?;
            let (rows, cols) = match b.dims.as_slice() {
                [r, c] => (*r, *c),
                d => return Err(format!("{label}: weight of shape {d:?} (2-D expected)")),
            };
            let (kk, m) = if trans_b { (cols, rows) } else { (rows, cols) };
            if kk != k_in {
                return Err(format!("{label}: weight for {kk} inputs, gets {k_in}"));
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
            let bias = match input_at(2) {
                Some(t) if op == "Gemm" => per_channel(label, t, Shape::Flat(m))?
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
                act: Act::None,
            });
            Ok(Shape::Flat(m))
        }
        "Flatten" => {
            if a.int("axis", 1) != 1 {
                return Err(format!("{label}: axis other than 1 is not implemented"));
            }
            Ok(flatten(steps, shape))
        }
        "Reshape" => {
            a.int("allowzero", 0);
            let t = input_at(1).ok_or_else(|| format!("{label}: needs a shape input"))?;
            let dims = t
                .i64
                .as_deref()
                .ok_or_else(|| format!("{label}: the shape is not an int64 tensor"))?;
            reshape(label, steps, shape, dims)
        }
        "Identity" => Ok(shape),
        "Dropout" => {
            a.float("ratio", 0.5);
            a.int("seed", 0);
            if node.input.len() > 2 && !node.input[2].is_empty() {
                if let Some(t) = input_at(2) {
                    if t.i64.as_deref().is_some_and(|v| v.iter().any(|&x| x != 0)) {
                        return Err(format!("{label}: training_mode is on"));
                    }
                }
            }
            Ok(shape)
        }
        other => Err(format!(
            "{label}: operator {other} is not in the native backend's set (ConvTranspose, Conv, \
             BatchNormalization, Relu, LeakyRelu, Tanh, Sigmoid, Gemm, MatMul, Add, Mul, Reshape, \
             Flatten, Identity, Dropout)"
        )),
    }
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
        act: Act::None,
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
    label: &str,
    steps: &mut Vec<Step>,
    shape: Shape,
    dims: &[i64],
) -> std::result::Result<Shape, String> {
    let len = shape.values() as i64;
    // dims[0] is the batch: 0 (copied), -1 (inferred) or a file's fixed batch; the rest must
    // hold one sample.
    let Some((_, rest)) = dims.split_first() else {
        return Err(format!("{label}: empty target shape"));
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
                _ => {
                    return Err(format!(
                        "{label}: cannot copy dimension {} of {shape:?}",
                        i + 1
                    ))
                }
            },
            d if d > 0 => d,
            _ => return Err(format!("{label}: target shape {dims:?} is not implemented")),
        });
    }
    if out.iter().product::<i64>() != len {
        return Err(format!(
            "{label}: target shape {dims:?} does not hold {len} values per sample"
        ));
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
            reshape(label, steps, t, &[0, *c2, *h2, *w2])
        }
        _ => Err(format!(
            "{label}: reshape of {shape:?} to {out:?} is not implemented"
        )),
    }
}

fn lower_conv<'c>(
    label: &str,
    transposed: bool,
    shape: Shape,
    input_at: &dyn Fn(usize) -> Option<&'c Constant>,
    a: &mut Attrs,
    steps: &mut Vec<Step>,
) -> std::result::Result<Shape, String> {
    let Shape::Image { c, h, w } = shape else {
        return Err(format!("{label}: input is not an image"));
    };
    let wt = input_at(1).ok_or_else(|| format!("{label}: needs a weight input"))?;
    let wv = floats(label, "the weight", wt)?;
    let [d0, d1, kh, kw] = match wt.dims.as_slice() {
        [a0, a1, a2, a3] => [*a0, *a1, *a2, *a3],
        d => return Err(format!("{label}: weight of shape {d:?} (4-D expected)")),
    };
    if kh != kw {
        return Err(format!("{label}: kernel {kh}×{kw} is not square"));
    }
    let k = kh;
    if let Some(ks) = a.ints("kernel_shape") {
        if ks != [k as i64, k as i64] {
            return Err(format!(
                "{label}: kernel_shape {ks:?} differs from the weight's"
            ));
        }
    }
    let all = |v: &Option<Vec<i64>>, x: i64| v.as_ref().is_none_or(|v| v.iter().all(|&d| d == x));
    let dil = a.ints("dilations");
    if !all(&dil, 1) {
        return Err(format!(
            "{label}: attribute dilations {:?} is not implemented",
            dil.unwrap()
        ));
    }
    let group = a.int("group", 1);
    if group != 1 {
        return Err(format!(
            "{label}: attribute group {group} is not implemented"
        ));
    }
    if let Some(p) = a.string("auto_pad") {
        if p != "NOTSET" {
            return Err(format!(
                "{label}: attribute auto_pad {p} is not implemented"
            ));
        }
    }
    let strides = a.ints("strides").unwrap_or_else(|| vec![1, 1]);
    let stride = match strides.as_slice() {
        [s, t] if s == t && *s > 0 => *s as usize,
        s => {
            return Err(format!(
                "{label}: attribute strides {s:?} is not implemented (equal strides only)"
            ))
        }
    };
    let pads = a.ints("pads").unwrap_or_else(|| vec![0; 4]);
    let pad = match pads.as_slice() {
        [p, q, r, s] if p == q && q == r && r == s && *p >= 0 => *p as usize,
        p => {
            return Err(format!(
                "{label}: attribute pads {p:?} is not implemented (equal pads on every side only)"
            ))
        }
    };
    if transposed {
        let op = a.ints("output_padding");
        if !all(&op, 0) {
            return Err(format!(
                "{label}: attribute output_padding {:?} is not implemented",
                op.unwrap()
            ));
        }
        if let Some(os) = a.ints("output_shape") {
            return Err(format!(
                "{label}: attribute output_shape {os:?} is not implemented"
            ));
        }
    }
    let (cin, cout) = if transposed { (d0, d1) } else { (d1, d0) };
    if cin != c {
        return Err(format!(
            "{label}: weight for {cin} input channels, gets {c}"
        ));
    }
    let (ho, wo) = if transposed {
        let out = |x: usize| ((x - 1) * stride + k).checked_sub(2 * pad);
        match (out(h), out(w)) {
            (Some(a), Some(b)) if a > 0 && b > 0 => (a, b),
            _ => return Err(format!("{label}: output would be empty")),
        }
    } else {
        let out = |x: usize| (x + 2 * pad).checked_sub(k).map(|v| v / stride + 1);
        match (out(h), out(w)) {
            (Some(a), Some(b)) => (a, b),
            _ => {
                return Err(format!(
                    "{label}: kernel {k} larger than the padded {h}×{w} input"
                ))
            }
        }
    };
    let bias = match input_at(2) {
        Some(t) => {
            let v = floats(label, "the bias", t)?;
            if v.len() != cout {
                return Err(format!(
                    "{label}: bias of {} values for {cout} channels",
                    v.len()
                ));
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
    steps.push(if transposed {
        Step::Deconv {
            shape,
            w: wm,
            bias,
            act: Act::None,
        }
    } else {
        Step::Conv {
            shape,
            w: wm,
            bias,
            act: Act::None,
        }
    });
    Ok(Shape::Image {
        c: cout,
        h: ho,
        w: wo,
    })
}
