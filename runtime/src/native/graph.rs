//! Lowering an ONNX generator graph to the native backend's [`Plan`]: constants folded, then a
//! chain of steps over channels-last buffers, with BatchNormalization, constant Add/Mul and
//! activations folded into the convolution or matrix product before them.
//!
//! Nodes whose inputs are all constants are evaluated first ([`super::fold::FOLDED`]). The
//! rest must form a chain from the input to the output (every intermediate value feeds
//! exactly the next node) of the operators in [`super::ops::OPERATORS`], whose other inputs
//! are constants. Anything else — another operator, an attribute this backend does not
//! implement (dilations, groups, auto_pad, output_padding, asymmetric pads, …), a branch — is
//! an [`Unsupported`] error naming the node and what it has, never a silently different
//! computation.

use super::constant::{constant, Attrs, Constant};
use super::error::{LoadError, Unsupported};
use super::fold::{fold, FoldNode};
use super::ops::{operator, Node};
use super::plan::{Plan, Shape, Step, DECONV_BLOCK};
use crate::onnx_proto as proto;
use prost::Message;
use std::collections::HashMap;
use wgan_models::kernels::gemm::to_column_blocks;

/// Lowers the ONNX model in `bytes` (a generator `z [N, z_dim, 1, 1] → [N, C, H, W]` with
/// input `input` and output `output`) to a plan. [`LoadError::Unsupported`] for graphs outside
/// the native set (callers may hand those to another backend), [`LoadError::Failed`] for a
/// file that does not decode.
pub fn lower(bytes: &[u8], input: &str, output: &str, z_dim: usize) -> Result<Plan, LoadError> {
    let model = proto::ModelProto::decode(bytes)
        .map_err(|e| LoadError::Failed(anyhow::anyhow!("cannot decode the ONNX file: {e}")))?;
    let graph = model
        .graph
        .ok_or_else(|| LoadError::Failed(anyhow::anyhow!("the ONNX file has no graph")))?;
    Ok(lower_graph(graph, input, output, z_dim)?)
}

fn lower_graph(
    mut graph: proto::GraphProto,
    input: &str,
    output: &str,
    z_dim: usize,
) -> Result<Plan, Unsupported> {
    let mut consts: HashMap<String, Constant> = HashMap::new();
    // Each tensor's raw bytes are freed as soon as it is decoded, so that the weights are not
    // held twice at once (peak memory on load).
    for t in std::mem::take(&mut graph.initializer) {
        consts.insert(t.name.clone(), constant(&t)?);
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
            return Err(Unsupported::at(
                &label,
                format!("operator domain '{}' is not ONNX's", node.domain),
            ));
        }
        let inputs: Vec<&str> = node
            .input
            .iter()
            .filter(|i| !i.is_empty())
            .map(String::as_str)
            .collect();
        let produced: Vec<&String> = node.output.iter().filter(|o| !o.is_empty()).collect();
        let extra_outputs_used = produced
            .iter()
            .skip(1)
            .any(|o| uses.get(o.as_str()).copied().unwrap_or(0) > 0);
        if produced.is_empty() || extra_outputs_used {
            return Err(Unsupported::at(&label, "only its first output may be used"));
        }
        if inputs.iter().all(|i| consts.contains_key(*i)) {
            let mut f = FoldNode {
                label: &label,
                op: &node.op_type,
                inputs: node
                    .input
                    .iter()
                    .map(|i| (!i.is_empty()).then(|| &consts[i]))
                    .collect(),
                attrs: Attrs::new(&label, node),
            };
            let value = fold(&mut f)?;
            f.attrs.finish()?;
            release(&mut consts, &uses, &inputs);
            consts.insert(produced[0].clone(), value);
            continue;
        }
        let Some(data_pos) = node.input.iter().position(|i| *i == cur) else {
            return Err(Unsupported::at(
                &label,
                format!(
                    "does not read the previous node's output '{cur}' (the native backend runs chains of nodes)"
                ),
            ));
        };
        if uses.get(cur.as_str()).copied().unwrap_or(0) != 1 {
            return Err(Unsupported::at(
                &label,
                format!(
                    "value '{cur}' is read by several nodes (the native backend runs chains of nodes)"
                ),
            ));
        }
        if let Some(name) = inputs
            .iter()
            .find(|&&i| i != cur && !consts.contains_key(i))
        {
            return Err(Unsupported::at(
                &label,
                format!("input '{name}' is computed in the graph (the native backend takes constants there)"),
            ));
        }
        let Some(op) = operator(&node.op_type) else {
            return Err(Unsupported::at(
                &label,
                format!(
                    "operator {} is not in the native backend's set ({})",
                    node.op_type,
                    super::ops::names()
                ),
            ));
        };
        if data_pos != 0 && !op.either_input {
            return Err(Unsupported::at(
                &label,
                "the previous output is not its first input",
            ));
        }
        let mut n = Node {
            label: &label,
            proto: node,
            data_pos,
            shape,
            attrs: Attrs::new(&label, node),
            consts: &consts,
        };
        shape = (op.lower)(&mut n, &mut steps)?;
        n.attrs.finish()?;
        cur = produced[0].clone();
        let constant_inputs: Vec<&str> = inputs
            .into_iter()
            .filter(|&i| i != node.input[data_pos])
            .collect();
        release(&mut consts, &uses, &constant_inputs);
    }
    if cur != output {
        return Err(Unsupported::graph(format!(
            "the graph's output '{output}' is not the end of the chain of nodes ('{cur}')"
        )));
    }
    let Shape::Image { c, h, w } = shape else {
        return Err(Unsupported::graph(format!(
            "the graph's output '{output}' is not an image [N, C, H, W]"
        )));
    };
    if steps.is_empty() {
        return Err(Unsupported::graph("the graph has no operations"));
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

/// Drops the constants that only the node just lowered read (peak memory on load).
fn release(consts: &mut HashMap<String, Constant>, uses: &HashMap<&str, usize>, read: &[&str]) {
    for name in read {
        if uses.get(name).copied() == Some(1) {
            consts.remove(*name);
        }
    }
}
