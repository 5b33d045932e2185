//! The command line: `export onnx --checkpoint DIR|RUN_DIR --out FILE [options]` and
//! `export triton --checkpoint DIR|RUN_DIR --repo DIR [options]`.
//!
//! The same program is built as `export` (for `cargo run -p wgan-export -- onnx …` and
//! `target/release/export onnx …`) and as `wgan-export`, the name to install: typed bare in a
//! shell, `export` is the shell's builtin.

use crate::{export_onnx, BatchDim, BuildOptions, ExportOptions, ExportReport, TOLERANCE};
use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use wgan_models::checkpoint::GeneratorWeights;
use wgan_models::outln;

const AFTER_HELP: &str = "\
Note: `export` is also a shell builtin, so typed bare `export onnx …` runs the builtin and does
nothing. Run this program by path (target/release/export), through `cargo run -p wgan-export --`,
or install it under its unshadowed name: `cargo install --path export --bin wgan-export`.

Exit status: 0 on success, 2 on any error (bad arguments, bad input, a failed run).";

/// Export a WGAN-GP generator checkpoint as an ONNX model.
#[derive(Parser, Debug)]
#[command(name = "wgan-export", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a checkpoint's generator (eval mode) as an ONNX file.
    ///
    /// Input `z` f32 [N, z_dim, 1, 1], output `image` f32 [N, C, H, W] in [-1, 1]; the IR version
    /// that ONNX pairs with the opset (8 for the default opset 17); only standard ops
    /// (ConvTranspose, BatchNormalization or folded, Relu, Tanh); metadata_props `wgan.*` carry
    /// z_dim, channels, image size, preset, both widths, step, data set, output range, producer and the
    /// latent function. The file is written atomically: a failed export leaves no file.
    #[command(after_help = AFTER_HELP)]
    Onnx(OnnxArgs),
    /// Write a Triton Inference Server model repository for a checkpoint's generator:
    /// REPO/NAME/config.pbtxt (platform onnxruntime_onnx, max_batch_size, input z [z_dim, 1, 1],
    /// output image [C, H, W], dynamic batching, instance group) and REPO/NAME/1/model.onnx.
    /// Serve it with `tritonserver --model-repository REPO`.
    #[command(after_help = AFTER_HELP)]
    Triton(TritonArgs),
    /// Print the shell completion script for this binary (bash, zsh, fish, elvish,
    /// powershell), under the name it was started as.
    #[command(after_help = AFTER_HELP)]
    Completions(wgan_models::cli::CompletionsArgs),
}

#[derive(Args, Debug)]
struct TritonArgs {
    /// Checkpoint directory, or a run directory whose checkpoints/latest names one.
    #[arg(long, value_name = "DIR|RUN_DIR")]
    checkpoint: PathBuf,
    /// The model repository folder (created if missing); the model goes into REPO/NAME/.
    #[arg(long, value_name = "DIR")]
    repo: PathBuf,
    /// The model's name (its folder in the repository).
    #[arg(long, default_value = "wgan_generator")]
    name: String,
    /// Largest batch Triton forms.
    #[arg(long, default_value_t = 64)]
    max_batch_size: usize,
    /// Batch sizes Triton's dynamic batcher prefers, comma-separated [default: 8, 16, 32 and
    /// 64, those not above --max-batch-size].
    #[arg(long, value_delimiter = ',', value_name = "B,…")]
    preferred_batch_sizes: Vec<usize>,
    /// How long the dynamic batcher may hold a request for a larger batch, in microseconds.
    #[arg(long, default_value_t = 1000)]
    max_queue_delay_us: u64,
    /// Run the instances on GPUs (KIND_GPU) instead of CPUs.
    #[arg(long)]
    gpu: bool,
    /// Model instances running concurrently.
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// Which generator to export: auto (the moving average when the run kept one), ema or raw.
    #[arg(long, value_name = "WEIGHTS", default_value = "auto")]
    weights: GeneratorWeights,
}

impl TritonArgs {
    fn options(&self) -> crate::triton::TritonOptions {
        let preferred = match self.preferred_batch_sizes.is_empty() {
            false => self.preferred_batch_sizes.clone(),
            true => {
                let mut v: Vec<usize> = [8, 16, 32, 64]
                    .into_iter()
                    .filter(|&b| b <= self.max_batch_size)
                    .collect();
                if v.is_empty() {
                    v.push(self.max_batch_size.max(1));
                }
                v
            }
        };
        crate::triton::TritonOptions {
            name: self.name.clone(),
            max_batch_size: self.max_batch_size,
            preferred_batch_sizes: preferred,
            max_queue_delay_us: self.max_queue_delay_us,
            gpu: self.gpu,
            instances: self.instances,
            weights: self.weights,
        }
    }
}

#[derive(Args, Debug)]
struct OnnxArgs {
    /// Checkpoint directory (holds state.json and generator.safetensors), or a run directory
    /// whose checkpoints/latest names one.
    #[arg(long, value_name = "DIR|RUN_DIR")]
    checkpoint: PathBuf,

    /// The ONNX file to write (replaced atomically if it exists; its directory must exist).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,

    /// ONNX opset of the default domain (13–21). The file's IR version follows it: 8 for
    /// opsets 13–18, 9 for 19–20, 10 for 21.
    #[arg(long, value_name = "N", default_value_t = crate::DEFAULT_OPSET)]
    opset: i64,

    /// Batch dimension: `dynamic` for a symbolic `N` (one file for every batch size), or a fixed
    /// batch size.
    #[arg(long, value_name = "dynamic|N", default_value = "dynamic")]
    batch: BatchDim,

    /// Fold each BatchNorm (running statistics) into the preceding ConvTranspose's weight and
    /// bias (the default).
    #[arg(long, conflicts_with = "keep_bn")]
    fold_bn: bool,

    /// Keep BatchNorm as BatchNormalization nodes (inference form) instead of folding it.
    #[arg(long)]
    keep_bn: bool,

    /// Run the written file through tract on seeded latents (batch 1 and --samples) and compare
    /// with candle's output; fail, writing nothing, if they differ by more than 1e-4.
    #[arg(long)]
    verify: bool,

    /// Also write test_data_set_0/input_0.pb and output_0.pb (TensorProto files, as the ONNX
    /// backend tests lay them out) beside the model: the latents of --seed and candle's images.
    #[arg(long)]
    test_data: bool,

    /// Seed of the latents used by --verify and --test-data (the runtime's latent function).
    #[arg(long, value_name = "SEED", default_value_t = 42)]
    seed: u64,

    /// Number of latents for --verify and --test-data [default: 4, or the fixed --batch].
    #[arg(long, value_name = "N")]
    samples: Option<usize>,

    /// Which generator to export: auto (the moving average when the run kept one with
    /// `train --ema`, else the trained weights), ema or raw.
    #[arg(long, value_name = "WEIGHTS", default_value = "auto")]
    weights: GeneratorWeights,
}

impl OnnxArgs {
    fn options(&self) -> ExportOptions {
        ExportOptions {
            out: self.out.clone(),
            build: BuildOptions {
                opset: self.opset,
                batch: self.batch,
                fold_bn: !self.keep_bn,
            },
            verify: self.verify,
            test_data: self.test_data,
            seed: self.seed,
            samples: self.samples,
            weights: self.weights,
        }
    }
}

fn summary(r: &ExportReport, options: &ExportOptions) -> String {
    let mut s = format!(
        "wrote {} ({}): preset {}, step {}{}, opset {} (IR {}), batch {}, BatchNorm {}\n  ops: {}; {} weights; from {}",
        r.out.display(),
        wgan_models::limits::human(r.bytes),
        r.header.preset,
        r.header.step,
        if r.ema { " (moving-average weights)" } else { "" },
        r.opset,
        r.ir_version,
        options.build.batch,
        if options.build.fold_bn { "folded" } else { "kept" },
        r.ops_summary(),
        r.weights,
        r.checkpoint.display(),
    );
    if let Some(v) = &r.verify {
        let per: Vec<String> = v
            .batches
            .iter()
            .map(|(n, d)| format!("batch {n}: {d:.2e}"))
            .collect();
        s += &format!(
            "\n  verify: tract vs candle, seed {}, max abs diff {:.2e} ({}) ≤ {TOLERANCE:e}: ok",
            v.seed,
            v.max_abs_diff,
            per.join(", ")
        );
    }
    if let Some(dir) = &r.test_data {
        s += &format!("\n  test data: {}", dir.display());
    }
    s
}

/// Runs a parsed command line.
fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Onnx(args) => {
            let options = args.options();
            let report = export_onnx(&args.checkpoint, &options)?;
            outln!("{}", summary(&report, &options))?;
        }
        Command::Completions(args) => wgan_models::cli::print_completions::<Cli>(&args)?,
        Command::Triton(args) => {
            let options = args.options();
            let r = crate::triton::export_triton(&args.checkpoint, &args.repo, &options)?;
            outln!(
                "wrote Triton model {}: {} and {} ({}, preset {}, step {}{}); serve it with: tritonserver --model-repository {}",
                options.name,
                r.config.display(),
                r.onnx.out.display(),
                wgan_models::limits::human(r.onnx.bytes),
                r.onnx.header.preset,
                r.onnx.header.step,
                if r.onnx.ema { ", moving-average weights" } else { "" },
                args.repo.display()
            )?;
        }
    }
    Ok(())
}

/// The body of both binaries (`export`, `wgan-export`): the workspace's CLI conventions
/// ([`wgan_models::cli`]).
pub fn main() -> ExitCode {
    wgan_models::cli::main(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MAX_OPSET, MIN_OPSET};
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid_and_parses() {
        Cli::command().debug_assert();
        // The help states the accepted opsets.
        let help = Cli::command()
            .find_subcommand_mut("onnx")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(
            help.contains(&format!("({MIN_OPSET}–{MAX_OPSET})")),
            "{help}"
        );
        assert!(help.contains("wgan-export"), "{help}");
        let cli = Cli::try_parse_from([
            "export",
            "onnx",
            "--checkpoint",
            "c",
            "--out",
            "o.onnx",
            "--keep-bn",
            "--batch",
            "8",
        ])
        .unwrap();
        let Command::Onnx(a) = cli.command else {
            panic!("parsed as another command")
        };
        let o = a.options();
        assert_eq!(
            o.build,
            BuildOptions {
                opset: 17,
                batch: BatchDim::Fixed(8),
                fold_bn: false
            }
        );
        assert!(Cli::try_parse_from([
            "export",
            "onnx",
            "--checkpoint",
            "c",
            "--out",
            "o",
            "--fold-bn",
            "--keep-bn"
        ])
        .is_err());
        assert!(Cli::try_parse_from([
            "export",
            "onnx",
            "--checkpoint",
            "c",
            "--out",
            "o",
            "--batch",
            "0"
        ])
        .is_err());
    }

    #[test]
    fn usage_errors_name_the_argument() {
        let message = |args: &[&str]| Cli::try_parse_from(args).unwrap_err().render().to_string();
        let e = message(&["export", "onnx", "--out", "o.onnx"]);
        assert!(
            e.contains("the following required arguments were not provided")
                && e.contains("--checkpoint <DIR|RUN_DIR>"),
            "{e}"
        );
        let e = message(&[
            "export",
            "onnx",
            "--fold",
            "--checkpoint",
            "c",
            "--out",
            "o",
        ]);
        assert!(
            e.contains("unexpected argument '--fold' found") && e.contains("--fold-bn"),
            "{e}"
        );
        let e = message(&[
            "export",
            "onnx",
            "--checkpoint",
            "c",
            "--out",
            "o",
            "--opset",
            "x",
        ]);
        assert!(e.contains("invalid value 'x' for '--opset <N>'"), "{e}");
    }
}
