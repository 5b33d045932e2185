//! The command line: `export onnx --checkpoint DIR|RUN_DIR --out FILE [options]`.
//!
//! The same program is built as `export` (for `cargo run -p wgan-export -- onnx …` and
//! `target/release/export onnx …`) and as `wgan-export`, the name to install: typed bare in a
//! shell, `export` is the shell's builtin.

use crate::{export_onnx, BatchDim, BuildOptions, ExportOptions, ExportReport, TOLERANCE};
use anyhow::Result;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;
use wgan_models::checkpoint::GeneratorWeights;

const AFTER_HELP: &str = "\
Note: `export` is also a shell builtin, so typed bare `export onnx …` runs the builtin and does
nothing. Run this program by path (target/release/export), through `cargo run -p wgan-export --`,
or install it under its unshadowed name: `cargo install --path export --bin wgan-export`.

Exit status: 0 on success, 2 on any error (one line on stderr starting with `error:`).";

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
    /// z_dim, channels, image size, preset, step, data set, output range, producer and the
    /// latent function. The file is written atomically: a failed export leaves no file.
    #[command(after_help = AFTER_HELP)]
    Onnx(OnnxArgs),
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

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn summary(r: &ExportReport, options: &ExportOptions) -> String {
    let mut s = format!(
        "wrote {} ({}): preset {}, step {}{}, opset {} (IR {}), batch {}, BatchNorm {}\n  ops: {}; {} weights; from {}",
        r.out.display(),
        human_bytes(r.bytes),
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

/// Parses the arguments and runs the command. Never returns for `--help`, `--version` (exit 0)
/// or a usage error (one `error:` line on stderr, exit 2; a bare call prints the help there).
pub fn run() -> Result<()> {
    let bin = std::env::args_os()
        .next()
        .and_then(|a| {
            PathBuf::from(a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "wgan-export".into());
    let cli = Cli::command()
        .bin_name(bin)
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
        .unwrap_or_else(|e| exit_on_usage_error(e));
    match cli.command {
        Command::Onnx(args) => {
            let options = args.options();
            let report = export_onnx(&args.checkpoint, &options)?;
            println!("{}", summary(&report, &options));
        }
    }
    Ok(())
}

/// Ends the process for a command-line parse result that is not a command: `--help` and
/// `--version` print to stdout and exit 0; a bare call prints the help on stderr and exits 2;
/// any other usage error is one `error: … (see --help)` line on stderr and exit status 2.
fn exit_on_usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            std::process::exit(0);
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            std::process::exit(2);
        }
        _ => {
            eprintln!(
                "error: {} (see --help)",
                usage_error_line(&e.render().to_string())
            );
            std::process::exit(2);
        }
    }
}

/// clap's rendered message on one line: the lines before `Usage:`, without the leading
/// `error: `, joined (after a line ending in `:` by a space, else by `; `).
pub fn usage_error_line(rendered: &str) -> String {
    let mut line = String::new();
    for l in rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
    {
        if !line.is_empty() {
            line.push_str(if line.ends_with(':') { " " } else { "; " });
        }
        line.push_str(l);
    }
    let line = line.strip_prefix("error: ").unwrap_or(&line).to_string();
    if line.is_empty() {
        "invalid arguments".into()
    } else {
        line
    }
}

/// An error's cause chain on one line.
pub fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs [`run`]; on error prints `error: <cause chain>` on stderr and exits with status 2.
pub fn main() {
    if let Err(e) = run() {
        eprintln!("error: {}", one_line(&e));
        std::process::exit(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MAX_OPSET, MIN_OPSET};

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
        let Command::Onnx(a) = cli.command;
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
    fn usage_errors_fit_on_one_line() {
        let line = |args: &[&str]| {
            let e = Cli::try_parse_from(args).unwrap_err();
            usage_error_line(&e.render().to_string())
        };
        assert_eq!(
            line(&["export", "onnx", "--out", "o.onnx"]),
            "the following required arguments were not provided: --checkpoint <DIR|RUN_DIR>"
        );
        let e = line(&[
            "export",
            "onnx",
            "--fold",
            "--checkpoint",
            "c",
            "--out",
            "o",
        ]);
        assert!(
            e.starts_with("unexpected argument '--fold' found; tip:") && e.contains("--fold-bn"),
            "{e}"
        );
        let e = line(&[
            "export",
            "onnx",
            "--checkpoint",
            "c",
            "--out",
            "o",
            "--opset",
            "x",
        ]);
        assert!(e.starts_with("invalid value 'x' for '--opset <N>'"), "{e}");
        assert_eq!(usage_error_line(""), "invalid arguments");
    }

    #[test]
    fn errors_fit_on_one_line() {
        let e = anyhow::anyhow!("inner\n  detail").context("outer");
        assert_eq!(one_line(&e), "outer: inner detail");
    }
}
