//! The ONNX graph of a generator, built by walking its [`NetSpec`] layer by layer:
//! convolution (`ConvTranspose`, or `Conv` should a spec use one) → normalisation
//! (`BatchNormalization` in inference form, or folded into the convolution; `InstanceNormalization`)
//! → activation (`Relu`, `LeakyRelu` α 0.2, `Tanh`). Initializers carry the PyTorch
//! `state_dict` names (folded ones get a `.bn_folded` suffix); nodes are named after the
//! PyTorch module path (`net.0.0` conv, `net.0.1` norm, `net.0.2` activation).

use crate::fold::{fold_batch_norm, BatchNormValues};
use crate::messages::{attr_float, attr_int, attr_ints, node};
pub use crate::messages::{f32_tensor, f32_value_info};
use crate::pb::{
    tensor_shape_proto::dimension::Value as Dim, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto,
};
use anyhow::{bail, ensure, Context, Result};
use candle_core::DType;
use wgan_models::checkpoint::CheckpointHeader;
use wgan_models::params::Param;
use wgan_models::spec::{
    Activation, LayerKind, LayerNames, LayerSpec, LayerTensors, NetSpec, Norm, LEAKY_SLOPE,
    NORM_EPS,
};
use wgan_models::Generator;

/// ONNX IR version of files exported at the default opset ([`ir_version_for`] gives it for
/// every opset).
pub const IR_VERSION: i64 = 8;

/// The IR version written with a default-domain opset, as ONNX pairs them: 8 for opsets 13–18,
/// 9 for 19–20, 10 for 21 (opsets outside [`MIN_OPSET`]..=[`MAX_OPSET`] are rejected by
/// [`BuildOptions::check`]). tract-onnx's protobuf types are IR 8's; IR 9 and 10 only add what
/// these graphs do not use (float8 and 4-bit types, function overloads), so the encoding of
/// such a model is the same under every one of these IR versions.
pub fn ir_version_for(opset: i64) -> i64 {
    match opset {
        ..=18 => 8,
        19 | 20 => 9,
        _ => 10,
    }
}
/// Default opset (the contract's).
pub const DEFAULT_OPSET: i64 = 17;
/// Lowest accepted opset: every op used here has had its current form since 13 or earlier.
pub const MIN_OPSET: i64 = 13;
/// Highest accepted opset (ConvTranspose and friends were revised in opset 22).
pub const MAX_OPSET: i64 = 21;

use wgan_models::contract::{BatchDim, BATCH_SYMBOL};

/// How the graph is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildOptions {
    /// Default-domain opset, [`MIN_OPSET`]..=[`MAX_OPSET`].
    pub opset: i64,
    pub batch: BatchDim,
    /// Fold BatchNorm into the convolutions (default) or keep `BatchNormalization` nodes.
    pub fold_bn: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            opset: DEFAULT_OPSET,
            batch: BatchDim::Dynamic,
            fold_bn: true,
        }
    }
}

impl BuildOptions {
    /// Rejects an unknown opset or a zero batch.
    pub fn check(&self) -> Result<()> {
        if !(MIN_OPSET..=MAX_OPSET).contains(&self.opset) {
            bail!(
                "unknown opset {}: supported {MIN_OPSET}–{MAX_OPSET}",
                self.opset
            );
        }
        if self.batch == BatchDim::Fixed(0) {
            bail!("the batch size must be at least 1");
        }
        Ok(())
    }
}

/// Module path of a layer's activation in the PyTorch reference: `prefix.k.2` after a norm,
/// `prefix.{k+1}` after a bare conv.
fn activation_name(names: &LayerNames) -> String {
    if let Some(norm) = &names.norm {
        let base = norm.strip_suffix(".1").unwrap_or(norm);
        return format!("{base}.2");
    }
    match names.conv.rsplit_once('.') {
        Some((prefix, k)) => match k.parse::<usize>() {
            Ok(k) => format!("{prefix}.{}", k + 1),
            Err(_) => format!("{}.act", names.conv),
        },
        None => format!("{}.act", names.conv),
    }
}

/// Values of a generator tensor, as f32 in row-major order.
fn values(p: &Param) -> Result<Vec<f32>> {
    p.tensor()
        .to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .with_context(|| format!("reading tensor {}", p.info.name))
}

/// Builds the nodes and initializers of one layer; returns the name of its output.
struct GraphBuilder {
    fold_bn: bool,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl GraphBuilder {
    fn init(&mut self, name: &str, dims: &[usize], values: &[f32], doc: Option<String>) -> String {
        let mut t = f32_tensor(name, dims, values);
        if let Some(doc) = doc {
            t.doc_string = doc;
        }
        self.initializers.push(t);
        name.to_string()
    }

    fn layer(
        &mut self,
        l: &LayerSpec,
        names: &LayerNames,
        tensors: &LayerTensors<Param>,
        input: &str,
    ) -> Result<String> {
        let shape = l.weight_shape();
        let c = [l.out_channels];
        let weight_name = tensors.weight.info.name.clone();
        let bias_name = match &tensors.bias {
            Some(b) => b.info.name.clone(),
            None => format!("{}.bias", names.conv),
        };
        let mut weight = values(&tensors.weight)?;
        let mut bias = tensors.bias.as_ref().map(values).transpose()?;
        let norm = tensors.norm.as_ref();
        let bn = match (l.norm, &names.norm, norm) {
            (Norm::Batch, Some(n), Some(t)) => {
                let running = t
                    .running
                    .as_ref()
                    .with_context(|| format!("BatchNorm {n} has no running statistics"))?;
                Some((
                    n.clone(),
                    BatchNormValues {
                        gamma: values(&t.weight)?,
                        beta: values(&t.bias)?,
                        running_mean: values(&running.mean)?,
                        running_var: values(&running.var)?,
                        eps: NORM_EPS,
                    },
                ))
            }
            (Norm::None, _, _) => None,
            (Norm::Batch | Norm::Instance, _, None) | (Norm::Batch | Norm::Instance, None, _) => {
                bail!("layer {} has a norm but no norm tensors", names.conv)
            }
            (Norm::Instance, Some(_), Some(_)) => None,
        };

        // Convolution (with the BatchNorm folded in when asked).
        let (weight_init, bias_init, conv_doc) = match (&bn, self.fold_bn) {
            (Some((n, bn)), true) => {
                let f = fold_batch_norm(l.kind, shape, &weight, bias.as_deref(), bn)
                    .with_context(|| format!("folding {n} into {}", names.conv))?;
                (weight, bias) = (f.weight, Some(f.bias));
                let doc = format!("BatchNorm {n} (eval, eps {NORM_EPS:e}) folded in");
                let w = self.init(
                    &format!("{weight_name}.bn_folded"),
                    &shape,
                    &weight,
                    Some(format!("{weight_name} scaled along the output channels by {n}.weight / sqrt({n}.running_var + eps)")),
                );
                let b = self.init(
                    &format!("{bias_name}.bn_folded"),
                    &c,
                    bias.as_deref().unwrap(),
                    Some(format!("{n}.bias + ({bias_name} or 0 − {n}.running_mean) · {n}.weight / sqrt({n}.running_var + eps)")),
                );
                (w, Some(b), Some(doc))
            }
            _ => {
                let w = self.init(&weight_name, &shape, &weight, None);
                let b = bias.as_deref().map(|b| self.init(&bias_name, &c, b, None));
                (w, b, None)
            }
        };
        let (k, s, p) = (l.kernel as i64, l.stride as i64, l.padding as i64);
        let attrs = vec![
            attr_ints("dilations", vec![1, 1]),
            attr_int("group", 1),
            attr_ints("kernel_shape", vec![k, k]),
            attr_ints("pads", vec![p, p, p, p]),
            attr_ints("strides", vec![s, s]),
        ];
        let op = match l.kind {
            LayerKind::ConvTranspose => "ConvTranspose",
            LayerKind::Conv => "Conv",
        };
        let mut inputs = vec![input, weight_init.as_str()];
        if let Some(b) = &bias_init {
            inputs.push(b);
        }
        let mut conv = node(op, &names.conv, &inputs, &names.conv, attrs);
        if let Some(doc) = conv_doc {
            conv.doc_string = doc;
        }
        self.nodes.push(conv);
        let mut x = names.conv.clone();

        // Normalisation kept as a node.
        match (l.norm, &names.norm, &bn, norm) {
            (Norm::Batch, Some(n), Some((_, bn)), Some(t)) if !self.fold_bn => {
                let running = t.running.as_ref().context("checked above")?;
                let g = self.init(&t.weight.info.name, &c, &bn.gamma, None);
                let b = self.init(&t.bias.info.name, &c, &bn.beta, None);
                let m = self.init(&running.mean.info.name, &c, &bn.running_mean, None);
                let v = self.init(&running.var.info.name, &c, &bn.running_var, None);
                let attrs = vec![attr_float("epsilon", NORM_EPS as f32)];
                self.nodes.push(node(
                    "BatchNormalization",
                    n,
                    &[&x, &g, &b, &m, &v],
                    n,
                    attrs,
                ));
                x = n.clone();
            }
            (Norm::Instance, Some(n), _, Some(t)) => {
                let g = self.init(&t.weight.info.name, &c, &values(&t.weight)?, None);
                let b = self.init(&t.bias.info.name, &c, &values(&t.bias)?, None);
                let attrs = vec![attr_float("epsilon", NORM_EPS as f32)];
                self.nodes
                    .push(node("InstanceNormalization", n, &[&x, &g, &b], n, attrs));
                x = n.clone();
            }
            _ => {}
        }

        // Activation.
        let act = activation_name(names);
        let (op, attrs) = match l.activation {
            Activation::None => return Ok(x),
            Activation::Relu => ("Relu", vec![]),
            Activation::LeakyRelu => ("LeakyRelu", vec![attr_float("alpha", LEAKY_SLOPE as f32)]),
            Activation::Tanh => ("Tanh", vec![]),
        };
        self.nodes.push(node(op, &act, &[&x], &act, attrs));
        Ok(act)
    }
}

/// Checks that the generator is the architecture its header names.
fn check_architecture(
    generator: &Generator,
    header: &CheckpointHeader,
) -> Result<wgan_models::Preset> {
    let preset = header.preset()?;
    ensure!(
        preset.generator == generator.spec && preset.z_dim == generator.z_dim,
        "the generator does not have the architecture of preset '{}' with {} channel(s)",
        header.preset,
        header.channels
    );
    Ok(preset)
}

/// The ONNX model of `generator` (in eval mode: BatchNorm with running statistics), walking
/// its spec. `header` provides the preset (checked against the generator) and the metadata.
pub fn build_model(
    generator: &Generator,
    header: &CheckpointHeader,
    options: &crate::BuildOptions,
) -> Result<ModelProto> {
    options.check()?;
    let preset = check_architecture(generator, header)?;
    let spec: &NetSpec = &generator.spec;
    let mut b = GraphBuilder {
        fold_bn: options.fold_bn,
        nodes: vec![],
        initializers: vec![],
    };
    let mut x = crate::INPUT_NAME.to_string();
    let layers = spec.layers.iter().zip(spec.layer_names());
    for ((l, names), tensors) in layers.zip(generator.params.layers()) {
        x = b
            .layer(l, &names, tensors, &x)
            .with_context(|| format!("layer {}", names.conv))?;
    }
    // The last node's output is the graph output.
    let last = b.nodes.last_mut().context("the generator has no layers")?;
    ensure!(
        last.output[0] == x,
        "internal: last node output {} is not {x}",
        last.output[0]
    );
    last.output[0] = crate::OUTPUT_NAME.to_string();

    let batch = match options.batch {
        BatchDim::Dynamic => Dim::DimParam(BATCH_SYMBOL.into()),
        BatchDim::Fixed(n) => Dim::DimValue(n as i64),
    };
    let (z, c, side) = (
        preset.z_dim as i64,
        preset.channels as i64,
        preset.image_size as i64,
    );
    let input = f32_value_info(
        crate::INPUT_NAME,
        vec![
            batch.clone(),
            Dim::DimValue(z),
            Dim::DimValue(1),
            Dim::DimValue(1),
        ],
    );
    let output = f32_value_info(
        crate::OUTPUT_NAME,
        vec![
            batch,
            Dim::DimValue(c),
            Dim::DimValue(side),
            Dim::DimValue(side),
        ],
    );
    let mut input = input;
    input.doc_string = format!(
        "latents [N, {z}, 1, 1]: seed → z by {}",
        wgan_models::contract::LATENT_FUNCTION
    );
    let mut output = output;
    output.doc_string = format!("images [N, {c}, {side}, {side}], values in [-1, 1]");

    let graph = GraphProto {
        name: format!("wgan_generator_{}", preset.name),
        node: b.nodes,
        initializer: b.initializers,
        input: vec![input],
        output: vec![output],
        doc_string: format!(
            "WGAN-GP generator, preset {} ({c}×{side}×{side}, z {z}), eval mode, BatchNorm {}",
            preset.name,
            if options.fold_bn {
                "folded into the convolutions"
            } else {
                "kept"
            }
        ),
        ..Default::default()
    };
    Ok(ModelProto {
        ir_version: ir_version_for(options.opset),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: options.opset,
        }],
        producer_name: crate::PRODUCER_NAME.into(),
        producer_version: crate::PRODUCER_VERSION.into(),
        doc_string: format!(
            "Generator of a WGAN-GP checkpoint (preset {}, step {}, data {}).",
            preset.name, header.step, header.dataset
        ),
        graph: Some(graph),
        metadata_props: crate::metadata::props(&preset, header),
        ..Default::default()
    })
}

/// Number of initializer values of a model.
pub fn weight_count(model: &ModelProto) -> usize {
    model
        .graph
        .iter()
        .flat_map(|g| &g.initializer)
        .map(|t| t.dims.iter().product::<i64>() as usize)
        .sum()
}

#[cfg(test)]
mod tests;
