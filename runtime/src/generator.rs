//! Loading an ONNX generator with options, running latents through it, sampling batches from a
//! seed, and timing it.

use crate::images::BatchShape;
use crate::latent::Rng;
use crate::onnx::{BatchDim, Contract, ModelInfo};
use anyhow::{bail, ensure, Context, Result};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

/// Which inference engine runs the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// tract: pure Rust, CPU only (feature `tract`, on by default).
    Tract,
    /// ONNX Runtime through `ort`, loading `libonnxruntime.so` at run time (feature `ort`).
    Ort,
}

impl Default for Backend {
    /// tract when compiled in, else ort.
    fn default() -> Self {
        if cfg!(feature = "tract") || !cfg!(feature = "ort") {
            Backend::Tract
        } else {
            Backend::Ort
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Tract => "tract",
            Backend::Ort => "ort",
        })
    }
}

impl FromStr for Backend {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "tract" => Ok(Backend::Tract),
            "ort" | "onnxruntime" => Ok(Backend::Ort),
            _ => bail!("unknown backend '{s}' (expected tract or ort)"),
        }
    }
}

impl Backend {
    /// Whether this build contains the backend.
    pub fn is_compiled(self) -> bool {
        match self {
            Backend::Tract => cfg!(feature = "tract"),
            Backend::Ort => cfg!(feature = "ort"),
        }
    }
}

/// An ONNX Runtime execution provider (the `ort` backend only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Cpu,
    Cuda,
    TensorRt,
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
            Provider::TensorRt => "tensorrt",
        })
    }
}

impl FromStr for Provider {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Provider::Cpu),
            "cuda" => Ok(Provider::Cuda),
            "tensorrt" | "trt" => Ok(Provider::TensorRt),
            _ => bail!("unknown execution provider '{s}' (expected cpu, cuda or tensorrt)"),
        }
    }
}

/// How to load a model.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub backend: Backend,
    /// Threads for the matrix products (tract's pool, ONNX Runtime's intra-op pool); `None`:
    /// one per available core.
    pub threads: Option<usize>,
    /// ONNX Runtime execution providers in priority order (ONNX Runtime falls back to its CPU
    /// provider for whatever they do not take). Empty means CPU.
    pub providers: Vec<Provider>,
    /// Make a provider that fails to register an error (otherwise it is a warning, see
    /// [`Generator::warnings`]).
    pub require_provider: bool,
    /// ONNX Runtime's shared library; see [`ort_library`] for the lookup order without it.
    pub ort_lib: Option<PathBuf>,
}

impl Options {
    pub fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }
}

/// Where ONNX Runtime's shared library is looked for, in order: `explicit` (`--ort-lib`),
/// `ORT_DYLIB_PATH`, `libonnxruntime.so` beside the executable, then a project-local `.venv`
/// (the `onnxruntime` wheel's `onnxruntime/capi/libonnxruntime.so*`) in the current directory or
/// one of its parents.
pub fn ort_library(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        ensure!(
            p.is_file(),
            "ONNX Runtime library {} does not exist (from --ort-lib)",
            p.display()
        );
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        ensure!(
            p.is_file(),
            "ONNX Runtime library {} does not exist (from ORT_DYLIB_PATH)",
            p.display()
        );
        return Ok(p);
    }
    let lib_name = if cfg!(target_os = "macos") {
        "libonnxruntime.dylib"
    } else if cfg!(windows) {
        "onnxruntime.dll"
    } else {
        "libonnxruntime.so"
    };
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        let p = dir.join(lib_name);
        if p.is_file() {
            return Ok(p);
        }
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        dirs.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    for dir in dirs {
        let lib_dir = dir.join(".venv/lib");
        let Ok(pythons) = std::fs::read_dir(&lib_dir) else {
            continue;
        };
        for py in pythons.flatten() {
            let capi = py.path().join("site-packages/onnxruntime/capi");
            let Ok(entries) = std::fs::read_dir(&capi) else {
                continue;
            };
            let mut libs: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(lib_name))
                })
                .collect();
            libs.sort();
            if let Some(p) = libs.into_iter().next() {
                return Ok(p);
            }
        }
    }
    bail!(
        "ONNX Runtime library not found: install the onnxruntime wheel (`scripts/test-env.sh` does) \
         and set ORT_DYLIB_PATH, or pass --ort-lib"
    )
}

/// A batch of generated images, `f32` `[N, C, H, W]` with values in [-1, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub data: Vec<f32>,
    pub shape: BatchShape,
}

impl Batch {
    /// Image `i` as `[C, H, W]` values.
    pub fn image(&self, i: usize) -> &[f32] {
        let len = self.shape.image_len();
        &self.data[i * len..(i + 1) * len]
    }

    /// Image `i` as an 8-bit picture (C = 1 or 3).
    pub fn picture(&self, i: usize) -> Result<image::DynamicImage> {
        let s = self.shape;
        crate::images::to_image(self.image(i), s.channels, s.height, s.width)
    }
}

/// What a backend does: run exactly `n` latents (`n` = the model's batch when it is fixed) and
/// return the output values and shape.
pub(crate) trait Engine: Send {
    fn run(&mut self, z: &[f32], n: usize) -> Result<(Vec<f32>, Vec<usize>)>;
    /// One line saying what runs the model (backend, threads, providers).
    fn describe(&self) -> String;
}

/// A loaded generator: a checked contract plus a backend.
pub struct Generator {
    info: ModelInfo,
    contract: Contract,
    image: [usize; 3],
    engine: Box<dyn Engine>,
    backend: Backend,
    warnings: Vec<String>,
}

impl fmt::Debug for Generator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generator")
            .field("contract", &self.contract)
            .field("backend", &self.engine.describe())
            .finish()
    }
}

impl Generator {
    /// Loads an ONNX generator file.
    pub fn load(path: &Path, options: &Options) -> Result<Generator> {
        let bytes = read_model(path)?;
        Self::from_bytes(&bytes, options).with_context(|| format!("model {}", path.display()))
    }

    /// Loads an ONNX generator from its bytes.
    #[allow(unreachable_code, unused_mut, unused_variables)]
    pub fn from_bytes(bytes: &[u8], options: &Options) -> Result<Generator> {
        ensure!(
            options.backend.is_compiled(),
            "the {0} backend is not compiled into this build (rebuild with `--features {0}`)",
            options.backend
        );
        let info = ModelInfo::parse(bytes)?;
        let contract = Contract::check(&info)?;
        let providers: Vec<Provider> = options.providers.clone();
        if options.backend == Backend::Tract && providers.iter().any(|p| *p != Provider::Cpu) {
            bail!("execution providers other than cpu need --backend ort (tract runs on the CPU)");
        }
        let mut warnings = Vec::new();
        let engine: Box<dyn Engine> = match options.backend {
            #[cfg(feature = "tract")]
            Backend::Tract => Box::new(crate::tract_backend::TractEngine::load(
                bytes, &contract, options,
            )?),
            #[cfg(feature = "ort")]
            Backend::Ort => Box::new(crate::ort_backend::OrtEngine::load(
                bytes,
                &contract,
                options,
                &mut warnings,
            )?),
            #[allow(unreachable_patterns)]
            b => bail!(
                "the {b} backend is not compiled into this build (rebuild with `--features {b}`)"
            ),
        };
        let mut generator = Generator {
            info,
            image: contract.image.unwrap_or([0; 3]),
            contract,
            engine,
            backend: options.backend,
            warnings,
        };
        if generator.contract.image.is_none() {
            // The file leaves the image shape open: run one batch of zeros to learn it.
            let n = generator.exec_batch();
            let z = vec![0f32; n * generator.contract.z_dim];
            let (_, shape) = generator
                .engine
                .run(&z, n)
                .context("running a probe batch")?;
            match shape.as_slice() {
                [m, c, h, w] if *m == n && c * h * w > 0 => {
                    generator.image = [*c, *h, *w];
                    generator.contract.image = Some(generator.image);
                }
                _ => bail!("the model's output has shape {shape:?} for {n} latents; a generator's output is image as [N, C, H, W]"),
            }
        }
        Ok(generator)
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn contract(&self) -> &Contract {
        &self.contract
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// One line saying what runs the model.
    pub fn describe(&self) -> String {
        self.engine.describe()
    }

    /// Non-fatal problems met while loading (e.g. an execution provider that did not register).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn z_dim(&self) -> usize {
        self.contract.z_dim
    }

    /// `[C, H, W]` of one image.
    pub fn image_shape(&self) -> [usize; 3] {
        self.image
    }

    /// The latents of images `0..n` for `seed` (see [`crate::latent`]).
    pub fn latents(&self, seed: u64, n: usize) -> Vec<f32> {
        crate::latent::latents(seed, n, self.z_dim())
    }

    fn exec_batch(&self) -> usize {
        match self.contract.batch {
            BatchDim::Fixed(k) => k,
            BatchDim::Symbolic(_) => 1,
        }
    }

    /// Runs the given latents (`n · z_dim` values, `[n, z_dim, 1, 1]`) in one go (split into the
    /// model's fixed batch when it has one).
    pub fn run(&mut self, z: &[f32]) -> Result<Batch> {
        let zd = self.z_dim();
        ensure!(
            !z.is_empty() && z.len().is_multiple_of(zd),
            "{} latent values are not a whole number of z vectors of {zd}",
            z.len()
        );
        let n = z.len() / zd;
        let [c, h, w] = self.image;
        let shape = BatchShape {
            n,
            channels: c,
            height: h,
            width: w,
        };
        let check = |got: &[usize], n: usize| -> Result<()> {
            ensure!(
                got == [n, c, h, w],
                "the model returned shape {got:?} for {n} latents; expected [{n}, {c}, {h}, {w}]"
            );
            Ok(())
        };
        match self.contract.batch {
            BatchDim::Symbolic(_) => {
                let (data, got) = self.engine.run(z, n)?;
                check(&got, n)?;
                Ok(Batch { data, shape })
            }
            BatchDim::Fixed(k) => {
                let mut data = Vec::with_capacity(n * shape.image_len());
                let mut padded = vec![0f32; k * zd];
                for chunk in z.chunks(k * zd) {
                    let m = chunk.len() / zd;
                    let input = if m == k {
                        chunk
                    } else {
                        padded[..chunk.len()].copy_from_slice(chunk);
                        padded[chunk.len()..].fill(0.0);
                        &padded[..]
                    };
                    let (out, got) = self.engine.run(input, k)?;
                    check(&got, k)?;
                    data.extend_from_slice(&out[..m * shape.image_len()]);
                }
                Ok(Batch { data, shape })
            }
        }
    }

    /// Runs latents in batches of `batch_size`, handing each result to `each(first_index,
    /// batch)`: memory stays bounded by one batch.
    pub fn run_batches(
        &mut self,
        z: &[f32],
        batch_size: usize,
        mut each: impl FnMut(usize, &Batch) -> Result<()>,
    ) -> Result<()> {
        ensure!(batch_size > 0, "the batch size must be at least 1");
        let zd = self.z_dim();
        let mut first = 0;
        for chunk in z.chunks(batch_size * zd) {
            let batch = self.run(chunk)?;
            each(first, &batch)?;
            first += batch.shape.n;
        }
        Ok(())
    }

    /// Samples images `0..n` of `seed` in batches of `batch_size`, handing each batch to
    /// `each(first_index, batch)`. The latents continue one stream across batches, so image `i`
    /// is the same whatever the batch size (and equals `run(&latents(seed, n))`'s image `i`).
    pub fn sample(
        &mut self,
        seed: u64,
        n: usize,
        batch_size: usize,
        mut each: impl FnMut(usize, &Batch) -> Result<()>,
    ) -> Result<()> {
        ensure!(n > 0, "the number of images must be at least 1");
        ensure!(batch_size > 0, "the batch size must be at least 1");
        let zd = self.z_dim();
        let mut rng = Rng::new(seed);
        let mut z = vec![0f32; batch_size.min(n) * zd];
        let mut first = 0;
        while first < n {
            let m = batch_size.min(n - first);
            let z = &mut z[..m * zd];
            rng.fill_normal(z);
            let batch = self.run(z)?;
            each(first, &batch)?;
            first += m;
        }
        Ok(())
    }

    /// Images `0..n` of `seed`, all in memory (see [`Generator::sample`]).
    pub fn generate(&mut self, seed: u64, n: usize, batch_size: usize) -> Result<Batch> {
        let [c, h, w] = self.image;
        let mut data = Vec::with_capacity(n * c * h * w);
        self.sample(seed, n, batch_size, |_, b| {
            data.extend_from_slice(&b.data);
            Ok(())
        })?;
        Ok(Batch {
            data,
            shape: BatchShape {
                n,
                channels: c,
                height: h,
                width: w,
            },
        })
    }
}

/// Reads a model file, refusing a missing or empty one with a clear message.
pub fn read_model(path: &Path) -> Result<Vec<u8>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read model {}", path.display()))?;
    ensure!(
        !bytes.is_empty(),
        "model {} is empty (0 bytes); expected an ONNX model",
        path.display()
    );
    Ok(bytes)
}

/// One row of [`bench`]: latency of one `run` of `batch` latents.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchRow {
    pub batch: usize,
    pub iters: usize,
    pub median_ms: f64,
    pub p90_ms: f64,
    /// The fastest run: the least disturbed by other work on a shared machine.
    pub min_ms: f64,
    /// `batch / median`.
    pub images_per_s: f64,
}

/// Times `iters` runs per batch size (after two warm-up runs that also build tract's plan for
/// that size), with fixed latents of seed 0.
pub fn bench(
    generator: &mut Generator,
    batch_sizes: &[usize],
    iters: usize,
) -> Result<Vec<BenchRow>> {
    ensure!(iters > 0, "bench needs at least one iteration");
    let mut rows = Vec::new();
    for &b in batch_sizes {
        ensure!(b > 0, "batch sizes must be at least 1");
        let z = generator.latents(0, b);
        for _ in 0..2 {
            generator.run(&z)?;
        }
        let mut times = Vec::with_capacity(iters);
        for _ in 0..iters {
            let t = Instant::now();
            std::hint::black_box(generator.run(&z)?);
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        let median_ms = quantile(&times, 0.5);
        rows.push(BenchRow {
            batch: b,
            iters,
            median_ms,
            p90_ms: quantile(&times, 0.9),
            min_ms: times[0],
            images_per_s: b as f64 / (median_ms / 1e3),
        });
    }
    Ok(rows)
}

/// Linear-interpolated quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_backends_and_providers() {
        assert_eq!("tract".parse::<Backend>().unwrap(), Backend::Tract);
        assert_eq!("ORT".parse::<Backend>().unwrap(), Backend::Ort);
        assert!("torch".parse::<Backend>().is_err());
        assert_eq!("trt".parse::<Provider>().unwrap(), Provider::TensorRt);
        assert!("rocm"
            .parse::<Provider>()
            .unwrap_err()
            .to_string()
            .contains("expected cpu, cuda or tensorrt"));
    }

    #[test]
    fn quantiles_interpolate() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert!((quantile(&v, 0.9) - 4.6).abs() < 1e-12);
        assert_eq!(quantile(&[7.0], 0.9), 7.0);
    }

    #[test]
    fn explicit_ort_library_must_exist() {
        let e = ort_library(Some(Path::new("/nonexistent/libonnxruntime.so"))).unwrap_err();
        assert!(
            e.to_string().contains("does not exist (from --ort-lib)"),
            "{e}"
        );
    }

    #[test]
    fn missing_backends_and_other_contracts_are_errors() {
        let bytes = crate::onnx::tests::model(
            &[(
                "x",
                1,
                vec![crate::onnx::Dim::Fixed(1), crate::onnx::Dim::Fixed(784)],
            )],
            &[(
                "y",
                1,
                vec![crate::onnx::Dim::Fixed(1), crate::onnx::Dim::Fixed(10)],
            )],
            &[],
        );
        for backend in [Backend::Tract, Backend::Ort] {
            let options = Options {
                backend,
                ..Options::default()
            };
            let e = Generator::from_bytes(&bytes, &options)
                .unwrap_err()
                .to_string();
            if backend.is_compiled() {
                assert!(e.contains("a generator takes z"), "{e}");
            } else {
                assert!(
                    e.contains(&format!("rebuild with `--features {backend}`")),
                    "{e}"
                );
            }
        }
    }
}
