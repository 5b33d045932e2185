//! A Triton Inference Server model repository for a checkpoint's generator:
//! `REPO/NAME/1/model.onnx` (the symbolic-batch export of [`crate::export_onnx`]) and
//! `REPO/NAME/config.pbtxt`, Triton's `ModelConfig` message in protobuf text format: platform
//! `onnxruntime_onnx`, `max_batch_size`, input `z` with dims `[z_dim, 1, 1]` and output `image`
//! with dims `[C, H, W]` (Triton adds the batch dimension), `dynamic_batching` with preferred
//! batch sizes and a queue delay, and one instance group (`KIND_CPU`, or `KIND_GPU`). The tests
//! parse the file with the `ModelConfig` schema Triton's client package ships.

use crate::{export_onnx, ExportOptions, ExportReport, INPUT_NAME, OUTPUT_NAME};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use wgan_models::checkpoint::GeneratorWeights;

/// How the repository's model is configured.
#[derive(Clone, Debug)]
pub struct TritonOptions {
    /// The model's name in the repository (a folder name).
    pub name: String,
    /// Triton's `max_batch_size`: the largest batch it forms.
    pub max_batch_size: usize,
    /// Batch sizes the dynamic batcher prefers (each at most `max_batch_size`).
    pub preferred_batch_sizes: Vec<usize>,
    /// How long the dynamic batcher may hold a request to form a larger batch.
    pub max_queue_delay_us: u64,
    /// `KIND_GPU` instead of `KIND_CPU`.
    pub gpu: bool,
    /// Model instances (copies that run concurrently).
    pub instances: usize,
    /// Which generator of the checkpoint.
    pub weights: GeneratorWeights,
}

impl TritonOptions {
    /// Checks the options; the error names the flag.
    pub fn check(&self) -> Result<()> {
        let valid_name = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            && !self.name.starts_with('.');
        if !valid_name {
            bail!(
                "--name '{}' is not a usable model folder name: use letters, digits, '_', '-' and '.'",
                self.name
            );
        }
        // Triton reads both as int32.
        if !(1..=i32::MAX as usize).contains(&self.max_batch_size) {
            bail!(
                "--max-batch-size must be between 1 and {} (Triton's int32)",
                i32::MAX
            );
        }
        if !(1..=i32::MAX as usize).contains(&self.instances) {
            bail!(
                "--instances must be between 1 and {} (Triton's int32)",
                i32::MAX
            );
        }
        if let Some(&b) = self
            .preferred_batch_sizes
            .iter()
            .find(|&&b| b == 0 || b > self.max_batch_size)
        {
            bail!(
                "--preferred-batch-sizes: {b} is not between 1 and --max-batch-size {}",
                self.max_batch_size
            );
        }
        Ok(())
    }
}

/// What [`export_triton`] wrote.
pub struct TritonReport {
    /// The model's folder, `REPO/NAME`.
    pub model_dir: PathBuf,
    pub config: PathBuf,
    /// The ONNX export (`REPO/NAME/1/model.onnx`).
    pub onnx: ExportReport,
}

/// `config.pbtxt` for a generator with latents of `z_dim` and images `[c, h, w]`.
pub fn config_pbtxt(options: &TritonOptions, z_dim: usize, [c, h, w]: [usize; 3]) -> String {
    let list = |v: &[usize]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"# Triton model configuration of a WGAN-GP generator (written by wgan-export).
name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: {max_batch}
input [
  {{
    name: "{input}"
    data_type: TYPE_FP32
    dims: [ {z_dim}, 1, 1 ]
  }}
]
output [
  {{
    name: "{output}"
    data_type: TYPE_FP32
    dims: [ {c}, {h}, {w} ]
  }}
]
dynamic_batching {{
  preferred_batch_size: [ {preferred} ]
  max_queue_delay_microseconds: {delay}
}}
instance_group [
  {{
    count: {count}
    kind: {kind}
  }}
]
"#,
        name = options.name,
        max_batch = options.max_batch_size,
        input = INPUT_NAME,
        output = OUTPUT_NAME,
        preferred = list(&options.preferred_batch_sizes),
        delay = options.max_queue_delay_us,
        count = options.instances,
        kind = if options.gpu { "KIND_GPU" } else { "KIND_CPU" },
    )
}

/// Writes the model repository `repo/NAME/` for the generator of `checkpoint` (a checkpoint or
/// run directory). The ONNX file and the configuration are each written atomically.
pub fn export_triton(
    checkpoint: &Path,
    repo: &Path,
    options: &TritonOptions,
) -> Result<TritonReport> {
    options.check()?;
    // A bad checkpoint, or a repository inside it, is reported before any folder is made.
    let checkpoint_dir = wgan_models::checkpoint::resolve(checkpoint)?;
    wgan_models::output::check_not_an_input("--repo", repo, &[&checkpoint_dir])?;
    let model_dir = repo.join(&options.name);
    let version_dir = model_dir.join("1");
    std::fs::create_dir_all(&version_dir)
        .with_context(|| format!("cannot create {}", version_dir.display()))?;
    let mut onnx_options = ExportOptions::new(version_dir.join("model.onnx"));
    onnx_options.weights = options.weights;
    let onnx = export_onnx(checkpoint, &onnx_options)?;
    let preset = onnx.header.preset()?;
    let config = model_dir.join("config.pbtxt");
    let text = config_pbtxt(
        options,
        preset.z_dim,
        [preset.channels, preset.image_size, preset.image_size],
    );
    wgan_models::output::write_atomic(&config, text.as_bytes())?;
    Ok(TritonReport {
        model_dir,
        config,
        onnx,
    })
}
