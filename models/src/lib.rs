//! WGAN-GP networks for candle.
//!
//! - [`spec`]: architectures as lists of layer specs, and the presets (`dcgan64`, `small`, `tiny`).
//! - [`params`]: named tensors in PyTorch `state_dict` naming, DCGAN initialisation, safetensors I/O.
//! - [`conv`]: convolutions as GEMMs with im2col/col2im (channels-last), fast to any order.
//! - [`layers`]: differentiable (twice) convolution, normalisation and activation blocks.
//! - [`nets`]: the [`Generator`] and [`Critic`] built from a preset.
//! - [`engine`]: explicit CPU forward/backward passes of both, second order included (the fast
//!   training path; checked against the candle modules' autograd).

pub mod checkpoint;
pub mod conv;
pub mod engine;
pub mod layers;
pub mod nets;
pub mod params;
pub mod reduce;
pub mod spec;

use std::sync::atomic::{AtomicBool, Ordering};

pub use layers::Mode;
pub use nets::{Critic, Generator};
pub use params::{Gradients, Params};
pub use spec::{preset, Preset, PRESETS};

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
