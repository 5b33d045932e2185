//! `runtime info`: a model's contract, metadata and graph summary.

use super::engine::{DEFAULT_MODEL, DEFAULT_MODEL_NAME};
use anyhow::{Context, Result};
use std::path::Path;
use wgan_models::outln;
use wgan_runtime::onnx::{BatchDim, Contract, ModelInfo};
use wgan_runtime::{Generator, Options};

pub(crate) fn info(file: Option<&Path>) -> Result<()> {
    let (bytes, name) = match file {
        Some(p) => (wgan_runtime::read_model(p)?, p.display().to_string()),
        None => (DEFAULT_MODEL.to_vec(), DEFAULT_MODEL_NAME.to_string()),
    };
    let info = ModelInfo::parse(&bytes).with_context(|| format!("model {name}"))?;
    let mut contract = Contract::check(&info).with_context(|| format!("model {name}"))?;
    // What `--backend auto` runs it with (and the image size when the file leaves it open).
    let loaded = Generator::from_bytes(&bytes, &Options::default());
    if let (None, Ok(g)) = (contract.image, &loaded) {
        contract.image = Some(g.image_shape());
    }
    let producer = [info.producer_name.as_str(), info.producer_version.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    outln!("model:      {name}")?;
    outln!(
        "file:       {} bytes, ONNX IR {}, opset {}, producer {}",
        info.file_bytes,
        info.ir_version,
        info.opset(),
        if producer.is_empty() {
            "unknown"
        } else {
            &producer
        }
    )?;
    outln!("contract:   {} (f32)", contract.summary())?;
    let batch = match &contract.batch {
        BatchDim::Dynamic => format!("any (symbolic '{}')", contract.batch_symbol),
        BatchDim::Fixed(n) => format!("fixed to {n}"),
    };
    outln!("batch:      {batch}")?;
    outln!("z_dim:      {}", contract.z_dim)?;
    match &loaded {
        Ok(g) => outln!("backend:    {} (what --backend auto runs)", g.describe())?,
        Err(e) => outln!("backend:    none of this build's backends loads it: {e:#}")?,
    }
    match contract.image {
        Some([c, h, w]) => outln!(
            "image:      {c} channel{} × {h} × {w}",
            if c == 1 { "" } else { "s" }
        )?,
        None => outln!("image:      unknown (not declared, and no backend could run the model)")?,
    }
    for note in &contract.notes {
        outln!("note:       {note}")?;
    }
    outln!(
        "parameters: {} in {} initializers",
        info.parameters,
        info.initializers
    )?;
    let ops: Vec<String> = info
        .ops
        .iter()
        .map(|(op, n)| format!("{op} ×{n}"))
        .collect();
    outln!("ops:        {}", ops.join(", "))?;
    #[cfg(feature = "native")]
    {
        outln!(
            "native set: {} (a chain from z to the image)",
            wgan_runtime::native::ops::names()
        )?;
        outln!(
            "            and, folded where every input is a constant, {}",
            wgan_runtime::native::fold::names()
        )?;
    }
    if info.metadata.is_empty() {
        outln!("metadata:   none")?;
    } else {
        outln!("metadata:")?;
        let width = info
            .metadata
            .iter()
            .map(|(k, _)| k.len())
            .max()
            .unwrap_or(0);
        for (k, v) in &info.metadata {
            outln!("  {k:width$} = {v}")?;
        }
    }
    Ok(())
}
