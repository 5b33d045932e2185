//! `runtime gen`: images from seeds, latents files or a latent walk, written as PNG files, a
//! grid, a looping GIF and/or raw `.npy`, every output and size checked before any work.

use super::args::{GenArgs, DEFAULT_GRID};
use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;
use wgan_models::outln;
use wgan_runtime::images::{
    image_file_name, save_png, BatchShape, GifWriter, GridCanvas, MAX_GRID_IMAGES,
};
use wgan_runtime::npy::{self, NpyWriter};
use wgan_runtime::onnx::{Contract, ModelInfo};
use wgan_runtime::output::Destination;
use wgan_runtime::walk::Walk;
use wgan_runtime::Generator;

pub(crate) fn gen(mut args: GenArgs) -> Result<()> {
    if args.out.is_none() && args.grid.is_none() && args.save_raw.is_none() && args.gif.is_none() {
        args.grid = Some(PathBuf::from(DEFAULT_GRID));
    }
    if let Some(psi) = args.truncation {
        wgan_runtime::latent::check_truncation(psi, "--truncation").map_err(anyhow::Error::from)?;
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
    let last = n.saturating_sub(1) as u64;
    let progress = progress_bar(n, args.quiet || n <= args.batch_size);
    let started = Instant::now();
    let mut sink = |first: usize, batch: &wgan_runtime::Batch| -> Result<()> {
        for i in 0..batch.shape.n {
            let index = first + i;
            if let Some(dir) = &args.out {
                let path = dir.join(image_file_name(index as u64, last));
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
                wgan_runtime::images::gif_frame_ms(args.frame_ms)
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
