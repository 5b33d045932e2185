//! Generator runtime: the latent function, image output, and ONNX inference backends.
//!
//! It builds on `wgan-models` without candle (the ONNX contract, the latent function and the
//! output policy; see ARCHITECTURE.md). Without features this crate is only [`latent`] and
//! [`output`] (re-exported from there), [`images`], [`npy`], [`onnx`] (reading and checking an
//! ONNX file's interface) and the backend-independent [`Generator`] API (loading then says which
//! backend is missing); the inference backends and the CLI come with their features:
//!
//! | feature | what | depends on |
//! |---|---|---|
//! | `native` (default) | [`native`]: pure-Rust inference of generator graphs on the training engine's CPU kernels | wgan-models' `kernels` (gemm, rayon) |
//! | `tract` (default) | pure-Rust inference of any graph tract supports, one optimised plan per batch size, multithreaded | tract-onnx, tract-linalg |
//! | `ort` | ONNX Runtime, loaded at run time from `libonnxruntime.so` | ort (`load-dynamic`) |
//! | `cuda` | CUDA and TensorRT execution provider options (implies `ort`) | ort's `cuda`, `tensorrt` |
//! | `cli` (default) | the `runtime` binary | clap, indicatif |
//! | `serve` (default) | [`serve`]: `runtime serve`, HTTP generation with dynamic batching | axum, tokio, prometheus-client, tracing |
//!
//! It never depends on candle.
//!
//! ```no_run
//! use wgan_runtime::{Generator, Options};
//! let mut g = Generator::load("model.onnx".as_ref(), &Options::default())?;
//! let batch = g.generate(42, 16, 8)?; // images 0..16 of seed 42, in batches of 8
//! wgan_runtime::images::save_png(&wgan_runtime::images::grid(&batch.data, batch.shape, None)?, "grid.png".as_ref())?;
//! # anyhow::Ok(())
//! ```

mod bench;
mod engine;
mod generator;
pub mod images;
#[cfg(feature = "native")]
pub mod native;
pub mod onnx;
// The graph messages (nodes, attributes, weights) are read only by the native backend.
#[cfg_attr(not(feature = "native"), allow(dead_code))]
mod onnx_proto;
#[cfg(feature = "ort")]
mod ort_backend;
#[cfg(feature = "serve")]
pub mod serve;
#[cfg(feature = "tract")]
mod tract_backend;
pub mod walk;

pub use wgan_models::{latent, npy, output};

pub use bench::{bench, BenchRow};
pub use engine::{ort_library, Backend, Options, Provider};
pub use generator::{read_model, Batch, Generator};
