//! What every inference backend shares: which backend and execution providers to use
//! ([`Backend`], [`Provider`], [`Options`]), where ONNX Runtime's library is ([`ort_library`]),
//! and the [`Engine`] trait a backend implements. Each backend file depends only on this module
//! and [`crate::onnx`]; [`crate::Generator`] builds them.

use anyhow::{bail, ensure, Result};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Which inference engine runs the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Backend {
    /// `native` when the whole graph is in its set, else tract (else ort).
    Auto,
    /// The training engine's CPU kernels: pure Rust, generator graphs only (feature `native`,
    /// on by default).
    Native,
    /// tract: pure Rust, CPU only, any ONNX graph it supports (feature `tract`, on by default).
    Tract,
    /// ONNX Runtime through `ort`, loading `libonnxruntime.so` at run time (feature `ort`).
    #[cfg_attr(feature = "cli", value(alias = "onnxruntime"))]
    Ort,
}

impl Default for Backend {
    /// [`Backend::Auto`] when a pure-Rust backend is compiled in, else ort.
    fn default() -> Self {
        if cfg!(feature = "native") || cfg!(feature = "tract") || !cfg!(feature = "ort") {
            Backend::Auto
        } else {
            Backend::Ort
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Auto => "auto",
            Backend::Native => "native",
            Backend::Tract => "tract",
            Backend::Ort => "ort",
        })
    }
}

impl FromStr for Backend {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Backend::Auto),
            "native" => Ok(Backend::Native),
            "tract" => Ok(Backend::Tract),
            "ort" | "onnxruntime" => Ok(Backend::Ort),
            _ => bail!("unknown backend '{s}' (expected auto, native, tract or ort)"),
        }
    }
}

impl Backend {
    /// Whether this build contains the backend.
    pub fn is_compiled(self) -> bool {
        match self {
            Backend::Auto => true,
            Backend::Native => cfg!(feature = "native"),
            Backend::Tract => cfg!(feature = "tract"),
            Backend::Ort => cfg!(feature = "ort"),
        }
    }
}

/// An ONNX Runtime execution provider (the `ort` backend only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Provider {
    Cpu,
    Cuda,
    #[cfg_attr(feature = "cli", value(name = "tensorrt", alias = "trt"))]
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

/// What a backend does: run exactly `n` latents (`n` = the model's batch when it is fixed) and
/// return the output values and shape.
pub(crate) trait Engine: Send {
    fn run(&mut self, z: &[f32], n: usize) -> Result<(Vec<f32>, Vec<usize>)>;
    /// One line saying what runs the model (backend, threads, providers).
    fn describe(&self) -> String;
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
    fn explicit_ort_library_must_exist() {
        let e = ort_library(Some(Path::new("/nonexistent/libonnxruntime.so"))).unwrap_err();
        assert!(
            e.to_string().contains("does not exist (from --ort-lib)"),
            "{e}"
        );
    }
}
