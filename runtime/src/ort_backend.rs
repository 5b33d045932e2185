//! The ONNX Runtime backend, through `ort` with `load-dynamic`: `libonnxruntime.so` (the one
//! the PyPI wheel `onnxruntime` ships; `onnxruntime-gpu` adds CUDA and TensorRT) is loaded at
//! run time from the path [`crate::ort_library`] finds. Nothing is downloaded or linked.

use crate::engine::{ort_library, Engine, Options, Provider};
use crate::onnx::Contract;
use anyhow::{anyhow, bail, Context, Result};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// ONNX Runtime allows one environment per process, and a process loads one library.
static ENV: OnceLock<(ort::environment::Environment, PathBuf)> = OnceLock::new();

fn environment(options: &Options) -> Result<&'static (ort::environment::Environment, PathBuf)> {
    if let Some(env) = ENV.get() {
        return Ok(env);
    }
    // Two threads loading their first model at once must not both build an environment.
    static INIT: Mutex<()> = Mutex::new(());
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(env) = ENV.get() {
        return Ok(env);
    }
    let lib = ort_library(options.ort_lib.as_deref())?;
    // Loading an arbitrary file runs its initialisers; guard against a panic in ort as well.
    let loaded = std::panic::catch_unwind(|| ort::init_from(&lib))
        .map_err(|_| anyhow!("loading ONNX Runtime from {} panicked", lib.display()))?;
    let builder = loaded.map_err(|e| anyhow!("cannot load ONNX Runtime: {e}"))?;
    let env = builder
        .with_name("wgan-runtime")
        .with_telemetry(false)
        .build()
        .map_err(|e| anyhow!("cannot create an ONNX Runtime environment: {}", e.message()))?;
    Ok(ENV.get_or_init(|| (env, lib)))
}

fn ort_err<R>(what: &str) -> impl FnOnce(ort::Error<R>) -> anyhow::Error + '_ {
    move |e| anyhow!("{what}: {}", e.message())
}

pub(crate) struct OrtEngine {
    session: Session,
    input: String,
    output: String,
    describe: String,
}

impl OrtEngine {
    pub(crate) fn load(
        bytes: &[u8],
        contract: &Contract,
        options: &Options,
        warnings: &mut Vec<String>,
    ) -> Result<Self> {
        let (env, lib) = environment(options)?;
        let threads = options.threads();
        let mut builder = Session::builder(env)
            .map_err(ort_err("cannot create an ONNX Runtime session"))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(ort_err("cannot set the optimisation level"))?
            .with_intra_threads(threads)
            .map_err(ort_err("cannot set the thread count"))?;
        let mut active = Vec::new();
        for &p in &options.providers {
            if p == Provider::Cpu {
                continue; // ONNX Runtime's CPU provider is always there, as the last resort.
            }
            match register(&mut builder, p) {
                Ok(()) => active.push(p.to_string()),
                Err(e) if options.require_provider => {
                    return Err(e.context(format!(
                        "execution provider {p} is required (--require-provider)"
                    )))
                }
                Err(e) => warnings.push(format!(
                    "execution provider {p} not used, falling back: {e:#}"
                )),
            }
        }
        active.push("cpu".into());
        let session = builder
            .commit_from_memory(bytes)
            .map_err(ort_err("ONNX Runtime cannot load the model"))?;
        let name = |o: &ort::value::Outlet| o.name().to_string();
        let input = session
            .inputs()
            .first()
            .map(name)
            .context("the session has no input")?;
        let output = session
            .outputs()
            .first()
            .map(name)
            .context("the session has no output")?;
        if input != contract.input || output != contract.output {
            bail!(
                "ONNX Runtime sees input '{input}' and output '{output}'; the file declares '{}' and '{}'",
                contract.input,
                contract.output
            );
        }
        let describe = format!(
            "onnxruntime from {} (providers {}, {threads} intra-op thread{})",
            lib.display(),
            active.join(" > "),
            if threads == 1 { "" } else { "s" }
        );
        Ok(OrtEngine {
            session,
            input,
            output,
            describe,
        })
    }
}

fn register(builder: &mut ort::session::builder::SessionBuilder, p: Provider) -> Result<()> {
    #[cfg(feature = "cuda")]
    use ort::ep::ExecutionProvider;
    match p {
        Provider::Cpu => Ok(()),
        #[cfg(feature = "cuda")]
        Provider::Cuda => {
            let available = ort::ep::CUDA::is_available().unwrap_or(false);
            if !available {
                bail!("this ONNX Runtime library has no CUDA provider (install the onnxruntime-gpu wheel)");
            }
            ort::ep::CUDA::default()
                .build()
                .register(builder)
                .map_err(|e| anyhow!("{}", e.message()))
        }
        #[cfg(feature = "cuda")]
        Provider::TensorRt => {
            let available = ort::ep::TensorRT::is_available().unwrap_or(false);
            if !available {
                bail!("this ONNX Runtime library has no TensorRT provider (install the onnxruntime-gpu wheel)");
            }
            ort::ep::TensorRT::default()
                .build()
                .register(builder)
                .map_err(|e| anyhow!("{}", e.message()))
        }
        #[cfg(not(feature = "cuda"))]
        Provider::Cuda | Provider::TensorRt => {
            let _ = builder;
            bail!("not compiled with CUDA support (rebuild with `--features cuda`)")
        }
    }
}

impl Engine for OrtEngine {
    fn run(&mut self, z: &[f32], n: usize) -> Result<(Vec<f32>, Vec<usize>)> {
        let zd = z.len() / n;
        let tensor = TensorRef::from_array_view(([n, zd, 1, 1], z))
            .map_err(ort_err("cannot make the input tensor"))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(ort_err("ONNX Runtime failed to run the model"))?;
        let value = outputs
            .get(self.output.as_str())
            .with_context(|| format!("ONNX Runtime returned no output '{}'", self.output))?;
        let (shape, data) = value
            .try_extract_tensor::<f32>()
            .map_err(ort_err("the output is not an f32 tensor"))?;
        let shape = shape.iter().map(|&d| d.max(0) as usize).collect();
        Ok((data.to_vec(), shape))
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}
