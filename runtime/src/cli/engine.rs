//! The flags every `runtime` command shares to load a model (`--model`, `--backend`,
//! `--provider`, `--threads`, `--ort-lib`), and loading it (part of the `runtime` binary).

use anyhow::{ensure, Context, Result};
use clap::Args;
use std::path::PathBuf;
use wgan_runtime::{Backend, Generator, Options, Provider};

/// The model used without `--model`: embedded in the binary. A `small`-preset generator trained
/// on the bundled MNIST digits and exported by `export onnx` (model card:
/// `runtime/assets/README.md`).
pub(crate) const DEFAULT_MODEL: &[u8] = include_bytes!("../../assets/mnist-small.onnx");
pub(crate) const DEFAULT_MODEL_NAME: &str = "<embedded mnist-small.onnx>";

#[derive(Args)]
pub(crate) struct EngineArgs {
    /// ONNX generator file [default: the model embedded in the binary].
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Inference backend: auto (native when the whole graph is in its set, else tract), native
    /// (pure Rust on the training engine's kernels; generator graphs), tract (pure Rust, any
    /// graph it supports) or ort (ONNX Runtime; needs the `ort` feature and libonnxruntime.so).
    #[arg(long, value_enum, ignore_case = true, default_value_t = Backend::default())]
    backend: Backend,
    /// ONNX Runtime execution providers in priority order, comma-separated (cpu, cuda,
    /// tensorrt); ONNX Runtime's CPU provider is always the last resort. A provider that fails
    /// to register is a warning, or an error with --require-provider. CUDA and TensorRT need a
    /// build with the `cuda` feature and the onnxruntime-gpu wheel's library.
    #[arg(long, value_enum, ignore_case = true, value_delimiter = ',')]
    provider: Vec<Provider>,
    /// Fail when a requested execution provider cannot be registered.
    #[arg(long)]
    require_provider: bool,
    /// Threads for the matrix products (the native and tract pools, ONNX Runtime's intra-op
    /// threads) [default: one per core].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// ONNX Runtime's shared library. Without it: $ORT_DYLIB_PATH, then libonnxruntime.so
    /// beside this executable, then .venv/lib/python3*/site-packages/onnxruntime/capi/ in the
    /// current directory or a parent (`scripts/test-env.sh` makes that .venv).
    #[arg(long, value_name = "PATH")]
    ort_lib: Option<PathBuf>,
}

impl EngineArgs {
    pub(crate) fn options(&self) -> Result<Options> {
        let backend = self.backend;
        ensure!(
            backend.is_compiled(),
            "the {backend} backend is not compiled into this build (rebuild with `--features {backend}`)"
        );
        let providers = self.provider.clone();
        if let Some(t) = self.threads {
            ensure!(t > 0, "--threads must be at least 1");
            wgan_models::limits::check_threads("--threads", t)?;
        }
        Ok(Options {
            backend,
            threads: self.threads,
            providers,
            require_provider: self.require_provider,
            ort_lib: self.ort_lib.clone(),
        })
    }

    /// The model file given with `--model`, if any.
    pub(crate) fn model_path(&self) -> Option<&std::path::Path> {
        self.model.as_deref()
    }

    pub(crate) fn model_bytes(&self) -> Result<(Vec<u8>, String)> {
        match &self.model {
            Some(p) => Ok((wgan_runtime::read_model(p)?, p.display().to_string())),
            None => Ok((DEFAULT_MODEL.to_vec(), DEFAULT_MODEL_NAME.to_string())),
        }
    }

    pub(crate) fn load(&self) -> Result<(Generator, String)> {
        let options = self.options()?;
        let (bytes, name) = self.model_bytes()?;
        let generator =
            Generator::from_bytes(&bytes, &options).with_context(|| format!("model {name}"))?;
        for w in generator.warnings() {
            eprintln!("warning: {w}");
        }
        Ok((generator, name))
    }
}
