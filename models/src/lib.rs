//! The ground floor of the workspace (see ARCHITECTURE.md): what every other crate agrees on.
//!
//! Always built, without candle:
//! - [`spec`]: architectures as lists of layer specs, and the presets (`dcgan64`, `small`, `tiny`).
//! - [`tensors`]: a network's tensors typed per layer, with their `state_dict` names.
//! - [`contract`]: the ONNX generator contract (input and output names, metadata keys, batch
//!   dimension), written by the exporter and checked by the runtime.
//! - [`latent`]: the latent function `seed → z` shared by training, export and every backend.
//! - [`checkpoint`]: the checkpoint layout and header (loading networks needs `candle`).
//! - [`limits`]: overflow-checked sizes and the memory check made before large allocations.
//! - [`output`]: the one output policy (atomic writes; devices and pipes written in place).
//! - [`npy`]: `.npy` files of `f32` arrays, read and streamed out.
//! - [`images`] (feature `images`): generator output as images, grids and PNG files.
//! - [`cli`] (feature `cli`): the exit path and conventions every binary shares; [`signals`]:
//!   what SIGINT, SIGTERM, SIGHUP and SIGXFSZ do in every binary.
//!
//! With the `kernels` feature (no candle): [`kernels`], the CPU kernels (GEMM, im2col/col2im,
//! fused bias + activation, normalisation) that the training engine and the runtime's native
//! backend share.
//!
//! With the `candle` feature (which includes `kernels`), the networks and the training engine:
//! - [`params`]: named tensors in PyTorch `state_dict` naming, DCGAN initialisation, safetensors I/O.
//! - [`conv`]: convolutions as GEMMs with im2col/col2im (channels-last), fast to any order.
//! - [`layers`]: differentiable (twice) convolution, normalisation and activation blocks.
//! - [`nets`]: the `Generator` and `Critic` built from a preset.
//! - [`engine`]: explicit CPU forward/backward passes of both, second order included (the fast
//!   training path; checked against the candle modules' autograd).
//! - [`rank_sum`]: a differentiable sum over the ranks of a data-parallel run (SyncBatchNorm and
//!   gradient averaging on candle's autograd, host buffers or NCCL).

pub mod checkpoint;
#[cfg(feature = "cli")]
pub mod cli;
pub mod contract;
#[cfg(feature = "images")]
pub mod images;
#[cfg(feature = "kernels")]
pub mod kernels;
pub mod latent;
pub mod limits;
pub mod npy;
pub mod output;
#[cfg(feature = "cli")]
pub mod signals;
pub mod spec;
pub mod tensors;

#[cfg(feature = "candle")]
pub mod conv;
#[cfg(feature = "candle")]
pub mod engine;
#[cfg(feature = "candle")]
pub mod layers;
#[cfg(feature = "candle")]
pub mod nets;
#[cfg(feature = "candle")]
pub mod params;
#[cfg(feature = "candle")]
pub mod rank_sum;
#[cfg(feature = "candle")]
pub mod reduce;

#[cfg(feature = "candle")]
pub use candle_support::*;
pub use spec::{preset, Preset, PRESETS};

#[cfg(feature = "candle")]
mod candle_support {
    use std::sync::atomic::{AtomicBool, Ordering};

    pub use crate::layers::Mode;
    pub use crate::nets::{Critic, Generator};
    pub use crate::params::{Gradients, Params};

    static GENERIC_OPS_ON_CPU: AtomicBool = AtomicBool::new(false);

    /// Makes the candle modules run on the CPU through the device-neutral forms that every other
    /// device uses (generic tensor ops instead of this crate's CPU custom ops), so that the GPU's
    /// code path can be checked on a machine without one. Process-wide; off by default.
    pub fn use_generic_ops_on_cpu(on: bool) {
        GENERIC_OPS_ON_CPU.store(on, Ordering::Relaxed);
    }

    /// Whether tensors on `device` go through the CPU custom ops (im2col, col2im, channel sums).
    pub(crate) fn cpu_custom_ops(device: &candle_core::Device) -> bool {
        device.is_cpu() && !GENERIC_OPS_ON_CPU.load(Ordering::Relaxed)
    }
}
