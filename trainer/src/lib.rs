//! WGAN-GP trainer on candle.
//!
//! - [`data`]: image folders, MNIST IDX, CIFAR-10 binary, the embedded MNIST, the background loader.
//! - [`wgan`]: the critic objective with its gradient penalty, and the generator loss.
//! - [`adam`]: Adam with checkpointable state.
//! - [`second_order`]: keeping candle's second-order gradients on where the penalty needs them.
//! - [`train`]: the loop, sampling, checkpoints and resume; [`config`]: what a run is.
//! - [`checkpoints`], [`metrics`]: files of a run directory.
//! - [`eval`]: a checkpoint's generator against held-out images (`trainer eval`).
//! - [`parity`]: one training step on a device against the CPU engine (`trainer check-device`).
//! - [`cli`]: the `trainer` command line.

pub mod adam;
pub mod checkpoints;
pub mod cli;
pub mod config;
pub mod data;
pub mod eval;
pub mod metrics;
pub mod parity;
pub mod second_order;
pub mod train;
pub mod wgan;
