//! Reading an ONNX file's interface without an inference engine, and checking the generator
//! contract ([`wgan_models::contract`]; see ARCHITECTURE.md).
//!
//! The file is decoded into the prost messages of [`crate::onnx_proto`], which declare only
//! what the contract needs — IR and opset versions, producer, graph inputs and outputs with
//! their types and shapes, initializer names and shapes, node op types and `metadata_props` —
//! so everything else is skipped (weights are not copied).
//! Both backends are handed a file only after [`Contract::check`] accepted it, so a classifier,
//! a truncated file or a text file is refused with one line that says what was found and what
//! was expected, whichever backend is compiled in.

use crate::onnx_proto as proto;
use anyhow::{bail, ensure, Context, Result};
use prost::Message;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
pub use wgan_models::contract::BatchDim;
use wgan_models::contract::{
    BATCH_SYMBOL, CHANNELS, IMAGE_SIZE, INPUT_NAME, METADATA_PREFIX, OUTPUT_NAME, OUTPUT_RANGE,
    OUTPUT_RANGE_VALUE, Z_DIM,
};

/// ONNX `TensorProto.DataType` codes the runtime reads ([`elem_type_name`] names them all).
pub mod elem {
    pub const FLOAT: i32 = 1;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const DOUBLE: i32 = 11;
}

/// One dimension of a value's declared shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Fixed(i64),
    Symbol(String),
    /// Declared without a value or a name.
    Unknown,
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(v) => write!(f, "{v}"),
            Dim::Symbol(s) => f.write_str(s),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

impl Dim {
    fn fixed(&self) -> Option<usize> {
        match self {
            Dim::Fixed(v) if *v > 0 => Some(*v as usize),
            _ => None,
        }
    }
}

/// A graph input or output: name, element type and (when declared) shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueInfo {
    pub name: String,
    /// ONNX element type (1 = float); 0 when the value is not a tensor or has no type.
    pub elem_type: i32,
    /// `None` when the file declares no shape.
    pub shape: Option<Vec<Dim>>,
}

impl ValueInfo {
    /// The shape as `[N, 100, 1, 1]`, or `unknown` when not declared.
    pub fn shape_text(&self) -> String {
        match &self.shape {
            None => "unknown".into(),
            Some(dims) => format!(
                "[{}]",
                dims.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    pub fn type_name(&self) -> &'static str {
        elem_type_name(self.elem_type)
    }
}

/// Name of an ONNX element type.
pub fn elem_type_name(t: i32) -> &'static str {
    match t {
        0 => "untyped",
        1 => "f32",
        2 => "u8",
        3 => "i8",
        4 => "u16",
        5 => "i16",
        6 => "i32",
        7 => "i64",
        8 => "string",
        9 => "bool",
        10 => "f16",
        11 => "f64",
        12 => "u32",
        13 => "u64",
        16 => "bf16",
        _ => "other",
    }
}

/// What an ONNX file declares about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelInfo {
    pub ir_version: i64,
    /// `(domain, version)`; the default domain is `""`.
    pub opsets: Vec<(String, i64)>,
    pub producer_name: String,
    pub producer_version: String,
    pub graph_name: String,
    /// Graph inputs that are not initializers.
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    /// `metadata_props` in file order.
    pub metadata: Vec<(String, String)>,
    /// Number of nodes per op type.
    pub ops: BTreeMap<String, usize>,
    pub initializers: usize,
    /// Number of weight values (product of initializer dims).
    pub parameters: u64,
    pub file_bytes: usize,
}

/// Refuses a model whose float weights (initializers) hold NaN or an infinity, naming the
/// tensor: such a generator draws NaN images, and backends disagree on them (the native
/// backend propagates NaN where tract's kernels may not), so none runs it.
pub fn check_finite_weights(bytes: &[u8]) -> Result<()> {
    let model =
        proto::ModelProto::decode(bytes).context("the model is not a valid ONNX protobuf")?;
    let Some(graph) = model.graph else {
        return Ok(());
    };
    for t in &graph.initializer {
        let bad = match t.data_type {
            elem::FLOAT if !t.raw_data.is_empty() => t
                .raw_data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .enumerate()
                .find(|(_, v)| !v.is_finite()),
            elem::FLOAT => t
                .float_data
                .iter()
                .map(|&v| v as f64)
                .enumerate()
                .find(|(_, v)| !v.is_finite()),
            elem::DOUBLE if !t.raw_data.is_empty() => t
                .raw_data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .enumerate()
                .find(|(_, v)| !v.is_finite()),
            elem::DOUBLE => t
                .double_data
                .iter()
                .copied()
                .enumerate()
                .find(|(_, v)| !v.is_finite()),
            _ => None,
        };
        if let Some((i, v)) = bad {
            bail!(
                "the model's weight {} holds {v} at index {i}: a generator with non-finite weights draws NaN images; export it again from a checkpoint that trained well",
                t.name
            );
        }
    }
    Ok(())
}

impl ModelInfo {
    /// Parses the interface of an ONNX file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<ModelInfo> {
        ensure!(
            !bytes.is_empty(),
            "the file is empty (0 bytes); expected an ONNX model"
        );
        let model = proto::ModelInterfaceProto::decode(bytes).context(
            "not an ONNX model (the protobuf encoding is broken: truncated or another kind of file)",
        )?;
        let graph = model
            .graph
            .context("not an ONNX model (no graph; truncated or another kind of file)")?;
        ensure!(
            model.ir_version > 0 && !model.opset_import.is_empty(),
            "not an ONNX model (no IR version or opset import; truncated or another kind of file)"
        );
        let init_names: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let mut ops = BTreeMap::new();
        for node in &graph.node {
            *ops.entry(node.op_type.clone()).or_default() += 1;
        }
        Ok(ModelInfo {
            ir_version: model.ir_version,
            opsets: model
                .opset_import
                .into_iter()
                .map(|o| (o.domain, o.version))
                .collect(),
            producer_name: model.producer_name,
            producer_version: model.producer_version,
            graph_name: graph.name.clone(),
            inputs: graph
                .input
                .iter()
                .filter(|i| !init_names.contains(i.name.as_str()))
                .map(value_info)
                .collect(),
            outputs: graph.output.iter().map(value_info).collect(),
            metadata: model
                .metadata_props
                .into_iter()
                .map(|e| (e.key, e.value))
                .collect(),
            ops,
            initializers: graph.initializer.len(),
            parameters: graph
                .initializer
                .iter()
                .map(|t| t.dims.iter().fold(1u64, |n, &d| n.saturating_mul(d as u64)))
                .fold(0u64, u64::saturating_add),
            file_bytes: bytes.len(),
        })
    }

    /// The value of a `metadata_props` key.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The default-domain opset version (0 when absent).
    pub fn opset(&self) -> i64 {
        self.opsets
            .iter()
            .find(|(d, _)| d.is_empty() || d == "ai.onnx")
            .map_or(0, |(_, v)| *v)
    }
}

/// A graph input or output as the contract check sees it.
fn value_info(v: &proto::ValueInfoProto) -> ValueInfo {
    let tensor = v.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
    ValueInfo {
        name: v.name.clone(),
        elem_type: tensor.map_or(0, |t| t.elem_type),
        shape: tensor.and_then(|t| t.shape.as_ref()).map(|shape| {
            shape
                .dim
                .iter()
                .map(|d| match (&d.dim_param, d.dim_value) {
                    (Some(p), _) => Dim::Symbol(p.clone()),
                    (None, Some(v)) => Dim::Fixed(v),
                    (None, None) => Dim::Unknown,
                })
                .collect()
        }),
    }
}

/// A generator's interface, checked: `z [N, z_dim, 1, 1] → image [N, C, H, W]`, f32.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contract {
    pub input: String,
    pub output: String,
    pub batch: BatchDim,
    /// The batch dimension's name in the file ([`BATCH_SYMBOL`] when unnamed or fixed).
    pub batch_symbol: String,
    pub z_dim: usize,
    /// `[C, H, W]` of one image when the file declares it (output shape or metadata); the
    /// backends fill it in otherwise.
    pub image: Option<[usize; 3]>,
    /// Departures from our exporter's conventions that are accepted (other names, no metadata).
    pub notes: Vec<String>,
}

impl Contract {
    /// Checks `info` against the generator contract. Errors say what was found and what a
    /// generator looks like.
    pub fn check(info: &ModelInfo) -> Result<Contract> {
        let shape_of = |vs: &[ValueInfo]| {
            vs.iter()
                .map(|v| format!("'{}' {} {}", v.name, v.type_name(), v.shape_text()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let input = match info.inputs.as_slice() {
            [one] => one,
            [] => bail!("the model has no inputs; a generator takes one input, z as [N, z_dim, 1, 1] f32"),
            many => bail!(
                "the model has {} inputs ({}); a generator takes one input, z as [N, z_dim, 1, 1] f32",
                many.len(),
                shape_of(many)
            ),
        };
        let output = match info.outputs.as_slice() {
            [one] => one,
            [] => bail!("the model has no outputs; a generator has one output, image as [N, C, H, W] f32"),
            many => bail!(
                "the model has {} outputs ({}); a generator has one output, image as [N, C, H, W] f32",
                many.len(),
                shape_of(many)
            ),
        };
        let mut notes = Vec::new();
        ensure!(
            input.elem_type == elem::FLOAT,
            "model input '{}' is {} {}; a generator takes z as [N, z_dim, 1, 1] f32",
            input.name,
            input.type_name(),
            input.shape_text()
        );
        let z_dims = input.shape.as_ref().filter(|s| s.len() == 4);
        let (batch_in, z_dim) = match z_dims.map(|d| d.as_slice()) {
            Some([n, z, one_a, one_b])
                if z.fixed().is_some()
                    && one_a.fixed() == Some(1)
                    && one_b.fixed() == Some(1)
                    && !matches!(n, Dim::Fixed(v) if *v <= 0) =>
            {
                (n.clone(), z.fixed().unwrap())
            }
            _ => bail!(
                "model input '{}' has shape {}; a generator takes z as [N, z_dim, 1, 1]",
                input.name,
                input.shape_text()
            ),
        };
        ensure!(
            output.elem_type == elem::FLOAT,
            "model output '{}' is {} {}; a generator's output is image as [N, C, H, W] f32",
            output.name,
            output.type_name(),
            output.shape_text()
        );
        let out_dims = match &output.shape {
            Some(d) if d.len() == 4 => Some(d.as_slice()),
            None => None,
            Some(_) => bail!(
                "model output '{}' has shape {}; a generator's output is image as [N, C, H, W]",
                output.name,
                output.shape_text()
            ),
        };
        let batch = match (&batch_in, out_dims.map(|d| &d[0])) {
            (Dim::Fixed(n), Some(Dim::Fixed(m))) if n != m => bail!(
                "model input '{}' has batch {n} but output '{}' has batch {m}; a generator makes one image per latent",
                input.name,
                output.name
            ),
            (Dim::Fixed(n), _) => BatchDim::Fixed(*n as usize),
            (Dim::Symbol(_) | Dim::Unknown, _) => BatchDim::Dynamic,
        };
        let batch_symbol = match &batch_in {
            Dim::Symbol(s) => s.clone(),
            _ => BATCH_SYMBOL.to_string(),
        };
        let mut image = out_dims.and_then(|d| Some([d[1].fixed()?, d[2].fixed()?, d[3].fixed()?]));

        if input.name != INPUT_NAME {
            notes.push(format!(
                "input is named '{}' (our exporter names it '{INPUT_NAME}')",
                input.name
            ));
        }
        if output.name != OUTPUT_NAME {
            notes.push(format!(
                "output is named '{}' (our exporter names it '{OUTPUT_NAME}')",
                output.name
            ));
        }
        if let BatchDim::Fixed(n) = batch {
            notes.push(format!(
                "batch size is fixed to {n} in the file: larger runs are split"
            ));
        }
        if !info
            .metadata
            .iter()
            .any(|(k, _)| k.starts_with(METADATA_PREFIX))
        {
            notes.push(format!(
                "no {METADATA_PREFIX}* metadata: shapes come from the graph"
            ));
        }

        let meta_usize = |key: &str| -> Result<Option<usize>> {
            info.meta(key)
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|&x| x > 0)
                        .with_context(|| {
                            format!("metadata {key} is '{v}'; expected a positive integer")
                        })
                })
                .transpose()
        };
        if let Some(z) = meta_usize(Z_DIM)? {
            ensure!(
                z == z_dim,
                "metadata {Z_DIM} is {z} but input '{}' has shape {} (z_dim {z_dim})",
                input.name,
                input.shape_text()
            );
        }
        let (meta_c, meta_size) = (meta_usize(CHANNELS)?, meta_usize(IMAGE_SIZE)?);
        match (&mut image, meta_c, meta_size) {
            (Some([c, h, w]), mc, ms) => {
                if let Some(mc) = mc {
                    ensure!(
                        mc == *c,
                        "metadata {CHANNELS} is {mc} but output '{}' has shape {}",
                        output.name,
                        output.shape_text()
                    );
                }
                if let Some(ms) = ms {
                    ensure!(
                        ms == *h && ms == *w,
                        "metadata {IMAGE_SIZE} is {ms} but output '{}' has shape {}",
                        output.name,
                        output.shape_text()
                    );
                }
            }
            (None, Some(c), Some(s)) => image = Some([c, s, s]),
            (None, _, _) => {}
        }
        if let Some(range) = info.meta(OUTPUT_RANGE) {
            let r: String = range.chars().filter(|c| !c.is_whitespace()).collect();
            ensure!(
                r == OUTPUT_RANGE_VALUE,
                "metadata {OUTPUT_RANGE} is '{range}'; this runtime maps images from [-1, 1]"
            );
        }
        Ok(Contract {
            input: input.name.clone(),
            output: output.name.clone(),
            batch,
            batch_symbol,
            z_dim,
            image,
            notes,
        })
    }

    /// A one-line summary: `z [N, 100, 1, 1] → image [N, 1, 32, 32]`.
    pub fn summary(&self) -> String {
        let n = match &self.batch {
            BatchDim::Dynamic => self.batch_symbol.clone(),
            BatchDim::Fixed(n) => n.to_string(),
        };
        let img = match self.image {
            Some([c, h, w]) => format!("[{n}, {c}, {h}, {w}]"),
            None => format!("[{n}, ?, ?, ?]"),
        };
        format!(
            "{} [{n}, {}, 1, 1] → {} {img}",
            self.input, self.z_dim, self.output
        )
    }
}

#[cfg(test)]
pub(crate) mod tests;
