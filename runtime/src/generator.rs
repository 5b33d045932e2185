//! Loading an ONNX generator with options, running latents through it and sampling batches
//! from a seed. The backends come from [`crate::engine`]'s implementations.

use crate::engine::{Backend, Engine, Options, Provider};
use crate::images::BatchShape;
use crate::latent::Rng;
use crate::onnx::{BatchDim, Contract, ModelInfo};
use anyhow::{bail, ensure, Context, Result};
use std::fmt;
use std::path::Path;

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
        crate::onnx::check_finite_weights(bytes)?;
        let providers: Vec<Provider> = options.providers.clone();
        if options.backend != Backend::Ort && providers.iter().any(|p| *p != Provider::Cpu) {
            bail!(
                "execution providers other than cpu need --backend ort (--backend {} runs on the CPU)",
                options.backend
            );
        }
        let (backend, engine, warnings) = load_engine(bytes, &contract, options)?;
        let mut generator = Generator {
            info,
            image: contract.image.unwrap_or([0; 3]),
            contract,
            engine,
            backend,
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
            BatchDim::Dynamic => 1,
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
            BatchDim::Dynamic => {
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
        each: impl FnMut(usize, &Batch) -> Result<()>,
    ) -> Result<()> {
        self.sample_truncated(seed, n, batch_size, None, each)
    }

    /// [`Generator::sample`] with the latents truncated to ±`truncation` when given (see
    /// [`crate::latent::truncate`]: image `i` stays independent of the others).
    pub fn sample_truncated(
        &mut self,
        seed: u64,
        n: usize,
        batch_size: usize,
        truncation: Option<f32>,
        mut each: impl FnMut(usize, &Batch) -> Result<()>,
    ) -> Result<()> {
        if let Some(psi) = truncation {
            crate::latent::check_truncation(psi, "the truncation").map_err(anyhow::Error::from)?;
        }
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
            if let Some(psi) = truncation {
                crate::latent::truncate(z, seed, first as u64, zd, psi);
            }
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

/// Largest model file read: protobuf messages, and so ONNX files without external data, end
/// at 2 GiB.
pub const MAX_MODEL_BYTES: u64 = 2 << 30;

/// Reads a model file, refusing a missing, empty or endless one (a device or pipe that does
/// not stop within [`MAX_MODEL_BYTES`]) with a clear message. A device or pipe whose first byte
/// cannot start an ONNX model (`/dev/zero`) is refused before anything more is read.
pub fn read_model(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let cannot = || format!("cannot read model {}", path.display());
    let file = std::fs::File::open(path).with_context(cannot)?;
    let bytes = if file.metadata().with_context(cannot)?.is_file() {
        wgan_models::limits::read_bounded(path, MAX_MODEL_BYTES, "model")?
    } else {
        // A device or pipe: one handle, read once, the first byte checked before the rest.
        let mut reader = file;
        let mut bytes = Vec::new();
        (&mut reader)
            .take(1)
            .read_to_end(&mut bytes)
            .with_context(cannot)?;
        if let Some(&tag) = bytes.first() {
            // A ModelProto starts with a field tag: field number 1 to 20, wire type 0 or 2.
            ensure!(
                matches!(tag & 7, 0 | 2) && (1..=20).contains(&(tag >> 3)),
                "model {} is not an ONNX model: it starts with byte 0x{tag:02x}, which no ONNX file starts with",
                path.display()
            );
        }
        reader
            .take(MAX_MODEL_BYTES)
            .read_to_end(&mut bytes)
            .with_context(cannot)?;
        ensure!(
            bytes.len() as u64 <= MAX_MODEL_BYTES,
            "model {} did not end within {}, the most an ONNX file can be",
            path.display(),
            wgan_models::limits::human(MAX_MODEL_BYTES)
        );
        bytes
    };
    ensure!(
        !bytes.is_empty(),
        "model {} is empty (0 bytes); expected an ONNX model",
        path.display()
    );
    Ok(bytes)
}

/// The backend `options` asks for, loaded, with its non-fatal warnings; `Auto` is `native` when
/// the whole graph is in its set, else tract (else ort), with the reason native was skipped in
/// the engine's description.
#[allow(unreachable_code, unused_variables, unused_mut)]
fn load_engine(
    bytes: &[u8],
    contract: &Contract,
    options: &Options,
) -> Result<(Backend, Box<dyn Engine>, Vec<String>)> {
    let mut warnings = Vec::new();
    let mut skipped: Option<String> = None;
    let backend = match options.backend {
        Backend::Auto => {
            #[cfg(feature = "native")]
            match crate::native::NativeEngine::load(bytes, contract, options) {
                Ok(e) => return Ok((Backend::Native, Box::new(e), warnings)),
                Err(crate::native::LoadError::Unsupported(why)) => skipped = Some(why.to_string()),
                Err(crate::native::LoadError::Failed(e)) => return Err(e),
            }
            if cfg!(feature = "tract") {
                Backend::Tract
            } else if cfg!(feature = "ort") {
                Backend::Ort
            } else {
                bail!(
                    "no backend in this build runs this model: {}",
                    skipped.unwrap_or_else(|| "no backend is compiled in".into())
                )
            }
        }
        b => b,
    };
    let engine: Box<dyn Engine> = match backend {
        #[cfg(feature = "native")]
        Backend::Native => Box::new(
            crate::native::NativeEngine::load(bytes, contract, options).map_err(|e| match e {
                crate::native::LoadError::Unsupported(why) => anyhow::anyhow!(
                    "the native backend cannot run this model (--backend tract or auto runs any graph tract supports): {why}"
                ),
                crate::native::LoadError::Failed(e) => e,
            })?,
        ),
        #[cfg(feature = "tract")]
        Backend::Tract => Box::new(crate::tract_backend::TractEngine::load(
            bytes, contract, options,
        )?),
        #[cfg(feature = "ort")]
        Backend::Ort => Box::new(crate::ort_backend::OrtEngine::load(
            bytes,
            contract,
            options,
            &mut warnings,
        )?),
        #[allow(unreachable_patterns)]
        b => bail!(
            "the {b} backend is not compiled into this build (rebuild with `--features {b}`)"
        ),
    };
    let engine: Box<dyn Engine> = match skipped {
        Some(why) => Box::new(Explained { inner: engine, why }),
        None => engine,
    };
    Ok((backend, engine, warnings))
}

/// A backend `auto` chose because the native one does not support the graph: its description
/// says why.
struct Explained {
    inner: Box<dyn Engine>,
    why: String,
}

impl Engine for Explained {
    fn run(&mut self, z: &[f32], n: usize) -> Result<(Vec<f32>, Vec<usize>)> {
        self.inner.run(z, n)
    }
    fn describe(&self) -> String {
        format!(
            "{} (auto: native skipped: {})",
            self.inner.describe(),
            self.why
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
