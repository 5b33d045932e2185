//! `runtime`: generate images with an ONNX generator (native, tract or ONNX Runtime), inspect a model,
//! time it. Exit statuses and error format are the workspace's CLI conventions
//! ([`wgan_models::cli`]).

mod engine_cli;
#[cfg(feature = "serve")]
mod serve_cli;

use engine_cli::{EngineArgs, DEFAULT_MODEL, DEFAULT_MODEL_NAME};

use anyhow::{bail, ensure, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use wgan_models::cli::EXIT_STATUS_HELP;
use wgan_models::outln;
use wgan_runtime::images::{save_png, BatchShape, GifWriter, GridCanvas, MAX_GRID_IMAGES};
use wgan_runtime::npy::{self, NpyWriter};
use wgan_runtime::onnx::{BatchDim, Contract, ModelInfo};
use wgan_runtime::output::Destination;
use wgan_runtime::walk::Walk;
use wgan_runtime::{Generator, Options};

/// The grid `gen` writes, in the current folder, when no output flag is given.
const DEFAULT_GRID: &str = "generated.png";

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
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    Serve(serve_cli::ServeArgs),
    /// Print the shell completion script for runtime (bash, zsh, fish, elvish, powershell).
    #[command(after_help = EXIT_STATUS_HELP)]
    Completions(wgan_models::cli::CompletionsArgs),
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct GenArgs {
    #[command(flatten)]
    engine: EngineArgs,
    /// Number of images (with --latents, the file's rows say how many).
    #[arg(long, default_value_t = 16, conflicts_with = "latents")]
    n: usize,
    /// Latents per model run; large N streams through batches of this size with bounded memory.
    #[arg(long, default_value_t = 64, value_name = "B")]
    batch_size: usize,
    /// Seed of the latents: image i of a seed is the same at any batch size.
    #[arg(long, default_value_t = 0, value_name = "S")]
    seed: u64,
    /// Write one PNG per image into DIR (created if missing), named 00000.png, 00001.png, ….
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Write all images as one grid PNG. Without --out, --grid and --save-raw, gen writes one
    /// grid to generated.png in the current folder (replacing it) and says so.
    #[arg(long, value_name = "FILE")]
    grid: Option<PathBuf>,
    /// Columns of the grid [default: about square].
    #[arg(long, value_name = "C")]
    grid_cols: Option<usize>,
    /// Read the latents from a .npy file, f32 [N, z_dim, 1, 1], instead of drawing them from --seed.
    #[arg(long, value_name = "FILE.npy", conflicts_with = "seed")]
    latents: Option<PathBuf>,
    /// Write the raw model output as .npy, f32 [N, C, H, W].
    #[arg(long, value_name = "FILE.npy")]
    save_raw: Option<PathBuf>,
    /// Walk between the latents of these seeds (the latent of seed S is image 0 of --seed S),
    /// spherically interpolated: --frames images from the first seed's to the last's.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "A,B[,C…]",
        conflicts_with_all = ["latents", "seed", "n"]
    )]
    interpolate: Option<Vec<u64>>,
    /// Frames of the walk in all, its first and last the seeds' own images (2 to 10000).
    #[arg(long, default_value_t = 32, value_name = "N", requires = "interpolate")]
    frames: usize,
    /// Write the images as one looping animated GIF, a frame each (a walk's frames in order).
    #[arg(long, value_name = "FILE.gif")]
    gif: Option<PathBuf>,
    /// How long each GIF frame shows, in milliseconds (20 to 655350, rounded to 10).
    #[arg(long, default_value_t = 80, value_name = "MS", requires = "gif")]
    frame_ms: u32,
    /// Truncation ψ: latent components beyond ±ψ are drawn again until within it (at least
    /// 0.01). A smaller ψ gives less varied images; too small a ψ shortens the latents below
    /// the lengths the generator was trained on. Image i of a seed depends on the seed, i and
    /// ψ only.
    #[arg(long, value_name = "PSI", conflicts_with = "latents")]
    truncation: Option<f32>,
    /// No progress bar and no summary line.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    engine: EngineArgs,
    /// Batch sizes to time, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,8,64",
        value_name = "B,…"
    )]
    batch_sizes: Vec<usize>,
    /// Timed runs per batch size (after two warm-up runs).
    #[arg(long, default_value_t = 10)]
    iters: usize,
}

/// Out of memory is an `error:` line and exit status 2, not an abort (see
/// `wgan_models::cli::ExitOnOutOfMemory`).
#[global_allocator]
static ALLOC: wgan_models::cli::ExitOnOutOfMemory = wgan_models::cli::ExitOnOutOfMemory;

fn main() -> ExitCode {
    wgan_models::cli::main(run)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Gen(args) => gen(args),
        Command::Info { model, file } => info(model.or(file).as_deref()),
        Command::Bench(args) => bench(args),
        #[cfg(feature = "serve")]
        Command::Serve(args) => serve_cli::serve(args),
        Command::Completions(args) => Ok(wgan_models::cli::print_completions::<Cli>(&args)?),
    }
}

fn gen(mut args: GenArgs) -> Result<()> {
    if args.out.is_none() && args.grid.is_none() && args.save_raw.is_none() && args.gif.is_none() {
        args.grid = Some(PathBuf::from(DEFAULT_GRID));
    }
    if let Some(psi) = args.truncation {
        wgan_runtime::latent::check_truncation(psi, "--truncation").map_err(anyhow::Error::msg)?;
    }
    let walk = match &args.interpolate {
        Some(seeds) => Some(
            Walk::new(seeds.clone(), args.frames, args.truncation).map_err(|e| {
                let seeds: Vec<String> = seeds.iter().map(u64::to_string).collect();
                anyhow::anyhow!(
                    "--interpolate {} --frames {}: {e}",
                    seeds.join(","),
                    args.frames
                )
            })?,
        ),
        None => None,
    };
    ensure!(
        wgan_runtime::images::GIF_FRAME_MS.contains(&args.frame_ms),
        "--frame-ms {} is outside the 20 to 655350 ms a GIF frame can show",
        args.frame_ms
    );
    ensure!(args.batch_size > 0, "--batch-size must be at least 1");
    if args.latents.is_none() {
        ensure!(args.n > 0, "--n must be at least 1");
    }
    if let Some(c) = args.grid_cols {
        ensure!(c > 0, "--grid-cols must be at least 1");
    }
    let options = args.engine.options()?;
    // Read the inputs and make the output folder before the (possibly slow) model load.
    let (bytes, name) = args.engine.model_bytes()?;
    let info = ModelInfo::parse(&bytes).with_context(|| format!("model {name}"))?;
    let contract = Contract::check(&info).with_context(|| format!("model {name}"))?;
    let latents = match (&args.latents, &walk) {
        (Some(p), _) => Some(read_latents(p, contract.z_dim)?),
        (None, Some(w)) => Some(w.latents(contract.z_dim)),
        (None, None) => None,
    };
    let n = latents
        .as_ref()
        .map_or(args.n, |z| z.len() / contract.z_dim);
    check_sizes(&args, n, &contract)?;
    check_outputs(&args)?;
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output folder {}", dir.display()))?;
        let probe = dir.join(format!(".runtime-write-test-{}", std::process::id()));
        std::fs::write(&probe, b"")
            .with_context(|| format!("cannot write into output folder {}", dir.display()))?;
        let _ = std::fs::remove_file(probe);
    }
    for (flag, f, ext) in [
        ("--grid", &args.grid, "png"),
        ("--save-raw", &args.save_raw, "npy"),
        ("--gif", &args.gif, "gif"),
    ] {
        if let Some(f) = f {
            check_output_file(flag, f, ext)?;
        }
    }

    let mut generator =
        Generator::from_bytes(&bytes, &options).with_context(|| format!("model {name}"))?;
    for w in generator.warnings() {
        eprintln!("warning: {w}");
    }
    let [c, h, w] = generator.image_shape();
    if args.out.is_some() || args.grid.is_some() || args.gif.is_some() {
        ensure!(
            c == 1 || c == 3,
            "the model makes {c}-channel images; PNG and GIF output need 1 or 3 channels (use --save-raw alone)"
        );
    }
    let shape = BatchShape {
        n,
        channels: c,
        height: h,
        width: w,
    };
    let mut grid = match &args.grid {
        Some(_) => Some(GridCanvas::new(shape, args.grid_cols)?),
        None => None,
    };
    let mut raw = match &args.save_raw {
        Some(p) => Some(NpyWriter::create(p, &[n, c, h, w])?),
        None => None,
    };
    let mut gif = match &args.gif {
        Some(p) => Some(GifWriter::create(p, [c, h, w], args.frame_ms)?),
        None => None,
    };
    let digits = (n.saturating_sub(1).to_string().len()).max(5);
    let progress = progress_bar(n, args.quiet || n <= args.batch_size);
    let started = Instant::now();
    let mut sink = |first: usize, batch: &wgan_runtime::Batch| -> Result<()> {
        for i in 0..batch.shape.n {
            let index = first + i;
            if let Some(dir) = &args.out {
                let path = dir.join(format!("{index:0digits$}.png"));
                save_png(&batch.picture(i)?, &path)?;
            }
            if let Some(g) = grid.as_mut() {
                g.put(index, batch.image(i))?;
            }
            if let Some(g) = gif.as_mut() {
                g.push(batch.image(i))?;
            }
        }
        if let Some(r) = raw.as_mut() {
            r.write(&batch.data)?;
        }
        progress.inc(batch.shape.n as u64);
        Ok(())
    };
    match &latents {
        Some(z) => generator.run_batches(z, args.batch_size, &mut sink)?,
        None => {
            generator.sample_truncated(args.seed, n, args.batch_size, args.truncation, &mut sink)?
        }
    }
    progress.finish_and_clear();
    if let (Some(g), Some(p)) = (grid, &args.grid) {
        save_png(&g.finish(), p)?;
    }
    if let Some(r) = raw {
        r.finish()?;
    }
    if let Some(g) = gif {
        g.finish()?;
    }
    if !args.quiet {
        let mut wrote = Vec::new();
        if let Some(d) = &args.out {
            wrote.push(format!("{n} PNG files in {}", d.display()));
        }
        if let Some(g) = &args.grid {
            wrote.push(format!("grid {}", g.display()));
        }
        if let Some(r) = &args.save_raw {
            wrote.push(format!("raw output {} [{n}, {c}, {h}, {w}]", r.display()));
        }
        if let Some(g) = &args.gif {
            wrote.push(format!(
                "looping GIF {} at {} ms a frame",
                g.display(),
                (args.frame_ms + 5) / 10 * 10
            ));
        }
        let mut from = match (&args.latents, &walk) {
            (Some(p), _) => format!("latents {}", p.display()),
            (None, Some(w)) => {
                let seeds: Vec<String> = w.seeds.iter().map(u64::to_string).collect();
                format!("a walk through seeds {}", seeds.join(" → "))
            }
            (None, None) => format!("seed {}", args.seed),
        };
        if let Some(psi) = args.truncation {
            from.push_str(&format!(", truncation {psi}"));
        }
        outln!(
            "wrote {} ({n} images from {from}, {:.2} s, {})",
            wrote.join(", "),
            started.elapsed().as_secs_f64(),
            generator.describe()
        )?;
    }
    Ok(())
}

/// Reads `[N, z_dim, 1, 1]` f32 latents, every one finite: a NaN or infinity is an error naming
/// the first such value's flat index (and its latent and component).
fn read_latents(path: &Path, z_dim: usize) -> Result<Vec<f32>> {
    let a = npy::read_f32(path)?;
    match a.shape.as_slice() {
        [n, z, 1, 1] if *z == z_dim && *n > 0 => {}
        _ => bail!(
            "latents {} have shape {:?}; the model takes [N, {z_dim}, 1, 1] with N ≥ 1",
            path.display(),
            a.shape
        ),
    }
    if let Some(i) = a.data.iter().position(|v| !v.is_finite()) {
        bail!(
            "latents {} hold {} at index {i} (latent {}, component {}); latents must be finite",
            path.display(),
            a.data[i],
            i / z_dim,
            i % z_dim
        );
    }
    Ok(a.data)
}

/// Sizes checked before the model is loaded: a grid holds at most [`MAX_GRID_IMAGES`], and one
/// batch of latents and images (the least any backend holds) must fit in the memory
/// available.
fn check_sizes(args: &GenArgs, n: usize, contract: &Contract) -> Result<()> {
    ensure!(
        n <= MAX_GEN_IMAGES,
        "--n must be at most {MAX_GEN_IMAGES} (a trillion images per run)"
    );
    if let (Some(raw), Some([c, h, w])) = (&args.save_raw, contract.image) {
        // The .npy holds every value: it must fit on its file system.
        let bytes = (n as u128) * (c * h * w) as u128 * 4;
        if let Some(free) = free_disk(raw) {
            ensure!(
                bytes <= free as u128,
                "--save-raw {} of {n} images needs {} of disk space and its file system has {} free: ask for fewer images, or write them as PNGs with --out",
                raw.display(),
                wgan_models::limits::human(bytes.min(u64::MAX as u128) as u64),
                wgan_models::limits::human(free)
            );
        }
    }
    if args.grid.is_some() {
        ensure!(
            n <= MAX_GRID_IMAGES,
            "--grid draws at most {MAX_GRID_IMAGES} images into one PNG and {n} were asked for: write them as files with --out DIR, or the raw values with --save-raw FILE.npy"
        );
    }
    check_batch_memory("--batch-size", args.batch_size.min(n.max(1)), contract)
}

/// Most images one `gen` makes.
const MAX_GEN_IMAGES: usize = 1_000_000_000_000;

/// Bytes free to this process on the file system where `file` goes (`None` for a device or
/// when unknown).
fn free_disk(file: &Path) -> Option<u64> {
    if matches!(Destination::of(file), Ok(Destination::InPlace(_))) {
        return None;
    }
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` a buffer statvfs fills on success.
    let ok = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } == 0;
    // SAFETY: statvfs succeeded, so it initialised `st`.
    ok.then(|| {
        let st = unsafe { st.assume_init() };
        // The field types differ between targets (u32 on some 32-bit ones).
        #[allow(clippy::unnecessary_cast)]
        (st.f_bavail as u64).saturating_mul(st.f_frsize as u64)
    })
}

/// Fails when one batch of latents and images (the least any backend holds) does not fit in
/// the memory available.
pub(crate) fn check_batch_memory(flag: &str, batch: usize, contract: &Contract) -> Result<()> {
    check_images_memory(flag, batch, 1, contract)
}

/// Checks that `copies` buffers of `n` latents and images (f32) fit in the memory available,
/// naming `flag n` otherwise.
pub(crate) fn check_images_memory(
    flag: &str,
    n: usize,
    copies: usize,
    contract: &Contract,
) -> Result<()> {
    let image = contract.image.map_or(0, |[c, h, w]| c * h * w);
    let per_image = contract.z_dim.saturating_add(image);
    let what = format!("{flag} {n}");
    let values = wgan_models::limits::count(&what, &[n, per_image, copies])?;
    wgan_models::limits::check_memory(
        &what,
        wgan_models::limits::bytes(&what, values, 4)?,
        &format!("use a smaller {flag} (the images are the same at any batch size)"),
    )
}

/// Checks an output file of `flag` before any work: its folder exists, it is not a folder or
/// a block device, and it is named `.ext`, since a file named otherwise (say `grid.jpg`) would
/// get a PNG or `.npy` under a misleading name. Names without an extension, and existing
/// devices and FIFOs (written in place whatever their name), pass the name check.
fn check_output_file(flag: &str, file: &Path, ext: &str) -> Result<()> {
    let dest = Destination::of(file)?;
    if !matches!(dest, Destination::InPlace(_)) {
        if let Some(e) = file.extension().and_then(|e| e.to_str()) {
            ensure!(
                e.eq_ignore_ascii_case(ext),
                "{flag} writes .{ext} files, but {} ends in .{e}: name it .{ext}",
                file.display()
            );
        }
    }
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    ensure!(
        dir.is_dir(),
        "cannot write {}: folder {} does not exist",
        file.display(),
        dir.display()
    );
    Ok(())
}

/// Refuses outputs that would overwrite an input (the model, the latents) or write into a
/// checkpoint folder, and two outputs on one path (`--grid x.png --out x.png` would make the
/// folder and then fail to write the grid), before anything is created.
fn check_outputs(args: &GenArgs) -> Result<()> {
    let inputs: Vec<&Path> = [args.engine.model_path(), args.latents.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    let outputs: Vec<(&str, &Path)> = [
        ("--grid", args.grid.as_deref()),
        ("--save-raw", args.save_raw.as_deref()),
        ("--out", args.out.as_deref()),
        ("--gif", args.gif.as_deref()),
    ]
    .into_iter()
    .filter_map(|(flag, p)| Some((flag, p?)))
    .filter(|(_, p)| !matches!(Destination::of(p), Ok(Destination::InPlace(_))))
    .collect();
    for (flag, out) in &outputs {
        wgan_models::output::check_not_an_input(flag, out, &inputs)?;
    }
    for (i, (a, pa)) in outputs.iter().enumerate() {
        for (b, pb) in &outputs[i + 1..] {
            let same = match (std::fs::canonicalize(pa), std::fs::canonicalize(pb)) {
                (Ok(x), Ok(y)) => x == y,
                _ => pa == pb,
            };
            ensure!(
                !same,
                "{a} {} and {b} {} name the same path: give each output its own",
                pa.display(),
                pb.display()
            );
        }
    }
    Ok(())
}

fn progress_bar(n: usize, hidden: bool) -> indicatif::ProgressBar {
    if hidden {
        return indicatif::ProgressBar::hidden();
    }
    // Draws on stderr, and only when stderr is a terminal.
    let bar = indicatif::ProgressBar::new(n as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} images, {per_sec}, eta {eta}",
        )
        .expect("valid template"),
    );
    bar
}

fn info(file: Option<&Path>) -> Result<()> {
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

/// Most timed runs `bench --iters` takes.
const MAX_BENCH_ITERS: usize = 1_000_000;

fn bench(args: BenchArgs) -> Result<()> {
    ensure!(
        !args.batch_sizes.is_empty(),
        "--batch-sizes needs at least one size"
    );
    ensure!(
        args.batch_sizes.iter().all(|&b| b > 0),
        "--batch-sizes must all be at least 1"
    );
    ensure!(args.iters > 0, "--iters must be at least 1");
    ensure!(
        args.iters <= MAX_BENCH_ITERS,
        "--iters must be at most {MAX_BENCH_ITERS} (the timings are kept to take the median)"
    );
    let (mut generator, name) = args.engine.load()?;
    for &b in &args.batch_sizes {
        check_batch_memory("--batch-sizes", b, generator.contract())?;
    }
    outln!("model:   {name} ({})", generator.contract().summary())?;
    outln!("backend: {}", generator.describe())?;
    outln!(
        "{:>6} {:>12} {:>12} {:>12} {:>12}",
        "batch",
        "median ms",
        "p90 ms",
        "min ms",
        "images/s"
    )?;
    for &b in &args.batch_sizes {
        let row = wgan_runtime::bench(&mut generator, &[b], args.iters)?.remove(0);
        outln!(
            "{:>6} {:>12.2} {:>12.2} {:>12.2} {:>12.1}",
            row.batch,
            row.median_ms,
            row.p90_ms,
            row.min_ms,
            row.images_per_s
        )?;
    }
    Ok(())
}
