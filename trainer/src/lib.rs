//! WGAN-GP trainer on candle.
//!
//! - [`data`]: image folders, MNIST IDX, CIFAR-10 binary, the embedded MNIST, the background loader.
//! - [`wgan`]: the critic objective with its gradient penalty, and the generator loss.
//! - [`adam`]: Adam with checkpointable state; [`ema`]: the moving average of the generator.
//! - [`second_order`]: keeping candle's second-order gradients on where the penalty needs them.
//! - [`train`]: the loop, sampling, checkpoints and resume; [`config`]: what a run is.
//! - [`checkpoints`], [`metrics`]: files of a run directory; [`plot`]: their line charts.
//! - [`eval`]: a checkpoint's generator against held-out images (`trainer eval`).
//! - [`classifier`]: the MNIST digit classifier behind eval's digit measures
//!   (`trainer classifier`).
//! - [`parity`]: one training step on a device against the CPU engine (`trainer check-device`).
//! - [`cli`]: the `trainer` command line.

pub mod adam;
pub mod checkpoints;
pub mod classifier;
pub mod cli;
pub mod collective;
pub mod config;
pub mod config_file;
pub mod data;
pub mod device;
pub mod ema;
pub mod eval;
pub mod metrics;
pub mod parity;
pub mod plot;
pub mod progress;
pub mod run_data;
pub mod run_dir;
pub mod second_order;
pub mod tensorboard;
pub mod train;
pub mod wgan;
