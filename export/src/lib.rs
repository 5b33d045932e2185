//! Checkpoint → ONNX generator export.
//!
//! The graph is built by walking the checkpoint preset's generator [`NetSpec`] — the same layer
//! list the candle [`Generator`](wgan_models::Generator) is built from — so a new preset needs no exporter change.
//! The file follows the workspace's ONNX generator contract ([`wgan_models::contract`]; see
//! ARCHITECTURE.md): input `z`
//! `[N, z_dim, 1, 1]` f32 with a symbolic `N` (or a fixed batch), output `image` `[N, C, H, W]`
//! in [-1, 1], opset 17 by default with IR version 8 (other opsets get the IR version ONNX pairs
//! them with: [`graph::ir_version_for`]), only standard ops, and `metadata_props`
//! (see [`metadata`]) so the runtime needs no side file.
//!
//! - [`graph`]: [`build_model`], the `ModelProto` (tract-onnx's prost types) from a generator.
//! - [`fold`]: BatchNorm (eval form) folded into the preceding convolution.
//! - [`write`](mod@write): encoding and atomic writes ([`write_model_atomic`]).
//! - [`verify`]: candle's reference output and [`verify_with_tract`].
//! - [`test_data`]: an ONNX-backend-style `test_data_set_0/` beside the model.
//! - [`triton`]: a Triton Inference Server model repository (`config.pbtxt` + `1/model.onnx`).
//! - `cli` (feature `cli`, default): the `export` / `wgan-export` command line.
//!
//! [`NetSpec`]: wgan_models::spec::NetSpec

pub mod fold;
pub mod graph;
pub mod messages;
pub mod metadata;
pub mod test_data;
pub mod triton;
pub mod verify;
pub mod write;

#[cfg(feature = "cli")]
pub mod cli;

pub use graph::{
    build_model, ir_version_for, BuildOptions, DEFAULT_OPSET, IR_VERSION, MAX_OPSET, MIN_OPSET,
};
pub use test_data::{write_test_data, TEST_DATA_DIR};
pub use verify::{candle_images, verify_with_tract, VerifyReport, TOLERANCE};
pub use write::{encode_model, write_model_atomic};

/// The protobuf types (tract-onnx's prost-generated ONNX IR 8 types).
pub use tract_onnx::pb;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use wgan_models::checkpoint::{self, CheckpointHeader, GeneratorWeights};

pub use wgan_models::contract::{BatchDim, INPUT_NAME, OUTPUT_NAME};
/// Version of this exporter (`wgan.producer` = `wgan-export <version>`).
pub const PRODUCER_VERSION: &str = env!("CARGO_PKG_VERSION");
/// `producer_name` of exported models.
pub const PRODUCER_NAME: &str = "wgan-export";

/// Everything [`export_onnx`] can be asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportOptions {
    /// Where the `.onnx` file goes (written atomically).
    pub out: PathBuf,
    /// Graph options: opset, batch dimension, BatchNorm folding.
    pub build: BuildOptions,
    /// Run the written file through tract and compare with candle (fails above [`TOLERANCE`]).
    pub verify: bool,
    /// Also write `test_data_set_0/` (input `z`, expected `image` from candle) beside the model.
    pub test_data: bool,
    /// Seed of the latents used by the verification and the test data
    /// ([`wgan_models::latent::latents`]).
    pub seed: u64,
    /// Number of latents for the verification and the test data. With a fixed batch it must
    /// be that batch (`None`: 4 with a symbolic batch, the batch otherwise).
    pub samples: Option<usize>,
    /// Which generator of the checkpoint: its moving average when it has one (default), or
    /// the trained weights.
    pub weights: GeneratorWeights,
}

impl ExportOptions {
    /// Defaults: opset 17, symbolic batch, BatchNorm folded, no verification, no test data,
    /// seed 42.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self {
            out: out.into(),
            build: BuildOptions::default(),
            verify: false,
            test_data: false,
            seed: 42,
            samples: None,
            weights: GeneratorWeights::Auto,
        }
    }

    /// The number of samples to use, checked against a fixed batch.
    pub fn sample_count(&self) -> Result<usize> {
        match (self.build.batch, self.samples) {
            (_, Some(0)) => bail!("--samples must be at least 1"),
            (BatchDim::Fixed(b), Some(n)) if n != b => {
                bail!("--samples {n} does not fit a model with a fixed batch of {b}")
            }
            (BatchDim::Fixed(b), _) => Ok(b),
            (BatchDim::Dynamic, Some(n)) => Ok(n),
            (BatchDim::Dynamic, None) => Ok(4),
        }
    }
}

/// Checks that generating `samples` images for verification or test data fits in the memory
/// available, before anything is generated: a lower bound of two copies (candle's and
/// tract's) of every layer's activations.
fn check_sample_memory(generator: &wgan_models::Generator, samples: usize) -> Result<()> {
    let per_sample = generator.spec.activation_values(1);
    let what = format!("generating {samples} sample(s) to check the model");
    let values = wgan_models::limits::count(&what, &[samples, per_sample, 2])?;
    wgan_models::limits::check_memory(
        &what,
        wgan_models::limits::bytes(&what, values, 4)?,
        "use a smaller --samples (or --batch for a fixed batch)",
    )
}

/// What [`export_onnx`] did.
#[derive(Clone, Debug)]
pub struct ExportReport {
    /// The checkpoint directory the generator came from (after resolving a run directory).
    pub checkpoint: PathBuf,
    pub header: CheckpointHeader,
    /// Whether the exported weights are the generator's moving average.
    pub ema: bool,
    pub out: PathBuf,
    /// Size of the written file in bytes.
    pub bytes: u64,
    pub opset: i64,
    /// The file's ONNX IR version ([`ir_version_for`] the opset).
    pub ir_version: i64,
    /// Node count per op type.
    pub ops: BTreeMap<String, usize>,
    /// Number of initializer values (weights).
    pub weights: usize,
    pub verify: Option<VerifyReport>,
    /// The test-data directory, when written.
    pub test_data: Option<PathBuf>,
}

impl ExportReport {
    /// `ConvTranspose×5 Relu×4 Tanh×1`.
    pub fn ops_summary(&self) -> String {
        self.ops
            .iter()
            .map(|(k, v)| format!("{k}×{v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Node count per op type of a model.
pub fn op_counts(model: &pb::ModelProto) -> BTreeMap<String, usize> {
    let mut ops = BTreeMap::new();
    for node in model.graph.iter().flat_map(|g| &g.node) {
        *ops.entry(node.op_type.clone()).or_insert(0) += 1;
    }
    ops
}

/// Loads the generator (`weights`: the moving average or the trained weights) of a checkpoint
/// (or of a run directory's latest checkpoint) in f32 on the CPU.
pub fn load_checkpoint(
    checkpoint: &Path,
    weights: GeneratorWeights,
) -> Result<checkpoint::LoadedGenerator> {
    let dir = checkpoint::resolve(checkpoint).context("cannot find a checkpoint")?;
    checkpoint::load_generator(&dir, weights, DType::F32, &Device::Cpu)
        .with_context(|| format!("cannot load the generator of checkpoint {}", dir.display()))
}

/// Exports the generator of `checkpoint` (a checkpoint directory or a run directory) to
/// `options.out`. Options are checked before anything is loaded; the model is written to a
/// temporary file beside `out`, verified there when asked, and renamed into place only when
/// everything succeeded, so a failed export never leaves a partial (or unverified) `.onnx`.
pub fn export_onnx(checkpoint: &Path, options: &ExportOptions) -> Result<ExportReport> {
    options.build.check()?;
    let samples = options.sample_count()?;
    write::check_output_path(&options.out)?;
    let checkpoint_dir = checkpoint::resolve(checkpoint).context("cannot find a checkpoint")?;
    wgan_models::output::check_not_an_input("--out", &options.out, &[&checkpoint_dir])?;
    if options.test_data {
        if let wgan_models::output::Destination::InPlace(device) =
            wgan_models::output::Destination::of(&options.out)?
        {
            bail!(
                "--test-data is written beside the model, but {} is a device or pipe: export to a file in a folder",
                device.display()
            );
        }
    }
    let checkpoint::LoadedGenerator {
        mut generator,
        header,
        dir,
        ema,
    } = load_checkpoint(checkpoint, options.weights)?;
    if options.verify || options.test_data {
        check_sample_memory(&generator, samples)?;
    }
    let model = build_model(&generator, &header, &options.build)?;
    let bytes = encode_model(&model);
    let staged = write::stage(&options.out, &bytes)?;
    let verify = if options.verify {
        let batches = match options.build.batch {
            BatchDim::Dynamic if samples != 1 => vec![1, samples],
            _ => vec![samples],
        };
        let report = verify_with_tract(
            staged.staged_path().context("a staged model has a path")?,
            &mut generator,
            options.seed,
            &batches,
        )
        .context("verification with tract failed; nothing was written")?;
        if !report.passed() {
            bail!(
                "verification failed: tract and candle differ by {:e} (tolerance {TOLERANCE:e}); nothing was written",
                report.max_abs_diff
            );
        }
        Some(report)
    } else {
        None
    };
    let test_data = if options.test_data {
        let parent = wgan_models::output::parent_dir(&options.out);
        Some(write_test_data(
            parent,
            &mut generator,
            options.seed,
            samples,
        )?)
    } else {
        None
    };
    staged.commit()?;
    Ok(ExportReport {
        checkpoint: dir,
        header,
        ema,
        out: options.out.clone(),
        bytes: bytes.len() as u64,
        opset: options.build.opset,
        ir_version: model.ir_version,
        ops: op_counts(&model),
        weights: graph::weight_count(&model),
        verify,
        test_data,
    })
}
