//! The `runtime` command line's arguments: the subcommands and their documented flags (the
//! model-loading flags every command shares are [`super::engine::EngineArgs`]; `serve`'s are
//! [`super::serve::ServeArgs`]).

use super::engine::EngineArgs;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use wgan_models::cli::EXIT_STATUS_HELP;

/// The grid `gen` writes, in the current folder, when no output flag is given.
pub(crate) const DEFAULT_GRID: &str = "generated.png";

#[derive(Parser)]
#[command(
    name = "runtime",
    version,
    about = "Generate images with an ONNX WGAN-GP generator, in pure Rust (native or tract) or through ONNX Runtime",
    long_about = "Generate images with an ONNX WGAN-GP generator, in pure Rust — the native backend (the \
training engine's kernels) when the whole graph is in its set, else tract — or through ONNX Runtime \
(`--backend ort`, in builds with the `ort` feature).\n\n\
A generator takes z, f32 [N, z_dim, 1, 1], and returns image, f32 [N, C, H, W] in [-1, 1]; the \
contract is checked on load. Without --model, the model embedded in the binary is used.\n\n\
Image i of seed S is the same at any batch size and with either backend (up to float rounding).",
    after_help = EXIT_STATUS_HELP
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Generate N images, or a latent walk between seeds: PNG files, one grid, a looping GIF
    /// and/or the raw output as .npy (by default one grid, generated.png in the current
    /// folder).
    #[command(after_help = EXIT_STATUS_HELP)]
    Gen(GenArgs),
    /// Print a model's contract, metadata and graph summary.
    #[command(after_help = EXIT_STATUS_HELP)]
    Info {
        /// ONNX generator file [default: the model embedded in the binary] (as for gen and
        /// bench).
        #[arg(long, value_name = "FILE", conflicts_with = "file")]
        model: Option<PathBuf>,
        /// The same file, given as a positional argument.
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Print a latency table (median, p90, min, images/s) per batch size.
    #[command(after_help = EXIT_STATUS_HELP)]
    Bench(BenchArgs),
    /// Serve generation over HTTP with dynamic batching: POST /v1/generate with {"n": 16,
    /// "seed": 42}, {"walk": {"seeds": [1, 2], "frames": 16}} or {"z": [[…]]} answers a PNG
    /// grid, .npy, JSON or a zip of PNGs; GET / is a page that shows the model and its images;
    /// GET /v1/model, /healthz, /readyz, /metrics. SIGTERM or Ctrl-C drains the queue and exits
    /// 0.
    #[cfg(feature = "serve")]
    #[command(after_help = EXIT_STATUS_HELP)]
    Serve(super::serve::ServeArgs),
    /// Print the shell completion script for runtime (bash, zsh, fish, elvish, powershell).
    #[command(after_help = EXIT_STATUS_HELP)]
    Completions(wgan_models::cli::CompletionsArgs),
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub(crate) struct GenArgs {
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    /// Number of images (with --latents, the file's rows say how many).
    #[arg(long, default_value_t = 16, conflicts_with = "latents")]
    pub(crate) n: usize,
    /// Latents per model run; large N streams through batches of this size with bounded memory.
    #[arg(long, default_value_t = 64, value_name = "B")]
    pub(crate) batch_size: usize,
    /// Seed of the latents: image i of a seed is the same at any batch size.
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub(crate) seed: u64,
    /// Write one PNG per image into DIR (created if missing), named 00000.png, 00001.png, ….
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// Write all images as one grid PNG. Without --out, --grid and --save-raw, gen writes one
    /// grid to generated.png in the current folder (replacing it) and says so.
    #[arg(long, value_name = "FILE")]
    pub(crate) grid: Option<PathBuf>,
    /// Columns of the grid [default: about square].
    #[arg(long, value_name = "C")]
    pub(crate) grid_cols: Option<usize>,
    /// Read the latents from a .npy file, f32 [N, z_dim, 1, 1], instead of drawing them from --seed.
    #[arg(long, value_name = "FILE.npy", conflicts_with = "seed")]
    pub(crate) latents: Option<PathBuf>,
    /// Write the raw model output as .npy, f32 [N, C, H, W].
    #[arg(long, value_name = "FILE.npy")]
    pub(crate) save_raw: Option<PathBuf>,
    /// Walk between the latents of these seeds (the latent of seed S is image 0 of --seed S),
    /// spherically interpolated: --frames images from the first seed's to the last's.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "A,B[,C…]",
        conflicts_with_all = ["latents", "seed", "n"]
    )]
    pub(crate) interpolate: Option<Vec<u64>>,
    /// Frames of the walk in all, its first and last the seeds' own images (2 to 10000).
    #[arg(long, default_value_t = 32, value_name = "N", requires = "interpolate")]
    pub(crate) frames: usize,
    /// Write the images as one looping animated GIF, a frame each (a walk's frames in order).
    #[arg(long, value_name = "FILE.gif")]
    pub(crate) gif: Option<PathBuf>,
    /// How long each GIF frame shows, in milliseconds (20 to 655350, rounded to 10).
    #[arg(long, default_value_t = 80, value_name = "MS", requires = "gif")]
    pub(crate) frame_ms: u32,
    /// Truncation ψ: latent components beyond ±ψ are drawn again until within it (at least
    /// 0.01). A smaller ψ gives less varied images; too small a ψ shortens the latents below
    /// the lengths the generator was trained on. Image i of a seed depends on the seed, i and
    /// ψ only.
    #[arg(long, value_name = "PSI", conflicts_with = "latents")]
    pub(crate) truncation: Option<f32>,
    /// No progress bar and no summary line.
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

#[derive(Args)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    /// Batch sizes to time, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,8,64",
        value_name = "B,…"
    )]
    pub(crate) batch_sizes: Vec<usize>,
    /// Timed runs per batch size (after two warm-up runs).
    #[arg(long, default_value_t = 10)]
    pub(crate) iters: usize,
}
