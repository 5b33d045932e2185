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

pub use layers::Mode;
pub use nets::{Critic, Generator};
pub use params::{Gradients, Params};
pub use spec::{preset, Preset, PRESETS};
