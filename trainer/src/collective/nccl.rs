//! Sums of GPU tensors over the ranks of a data-parallel run through NCCL (cargo feature
//! `nccl`): the [`DeviceSum`] behind candle's autograd path on GPUs (gradient averaging and
//! SyncBatchNorm, see `wgan_models::rank_sum`).
//!
//! Rank 0 makes NCCL's unique id and hands it to the others over the run's [`Collective`]
//! (MPI); then every rank joins the communicator on its GPU, with candle's stream of that
//! device, so that each sum is queued between the kernels that produce and read its buffer.

use super::{agree, broadcast, Collective};
use anyhow::{bail, Context, Result};
use candle_core::cuda::cudarc::driver::CudaSlice;
use candle_core::cuda::cudarc::nccl::{Comm, Id, ReduceOp};
use candle_core::Device;
use std::ffi::c_char;
use wgan_models::rank_sum::DeviceSum;

/// Bytes of NCCL's unique id.
const ID_BYTES: usize = 128;

/// One rank's NCCL communicator.
pub struct Nccl {
    comm: Comm,
}

// SAFETY: a communicator may be used from any thread as long as two calls on it never run at
// once; the trainer makes its collective calls one at a time (the critic steps on their own
// thread, then the generator step), in the same order on every rank.
unsafe impl Send for Nccl {}
// SAFETY: as above.
unsafe impl Sync for Nccl {}

impl Nccl {
    /// Joins the NCCL communicator of `ranks` on `device` (a GPU). Collective: every rank
    /// calls it, in the same place of its run.
    pub fn new(ranks: &dyn Collective, device: &Device) -> Result<Self> {
        let Device::Cuda(cuda) = device else {
            bail!("NCCL sums GPU tensors, and this rank's device is {device:?}");
        };
        let id = match ranks.rank() {
            0 => Some(Id::new().map_err(|e| anyhow::anyhow!("{e:?}"))),
            _ => None,
        }
        .transpose()
        .context("cannot make NCCL's unique id (is libnccl.so.2 installed?)");
        let id = agree(ranks, id)?;
        let mine: Vec<u8> = id
            .as_ref()
            .map(|id| id.internal().iter().map(|&c| c as u8).collect())
            .unwrap_or_default();
        let bytes = broadcast(ranks, &mine);
        let internal: [c_char; ID_BYTES] = bytes
            .iter()
            .map(|&b| b as c_char)
            .collect::<Vec<_>>()
            .try_into()
            .map_err(|_| anyhow::anyhow!("NCCL's unique id from rank 0 is not {ID_BYTES} bytes"))?;
        let comm = Comm::from_rank(
            cuda.cuda_stream(),
            ranks.rank(),
            ranks.size(),
            Id::uninit(internal),
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "rank {} cannot join the NCCL communicator of {} ranks: {e:?}",
                ranks.rank(),
                ranks.size()
            )
        })?;
        Ok(Self { comm })
    }

    /// A communicator of this process alone on `device`: the smoke test of a build (every
    /// sum is the identity, but it runs through NCCL).
    pub fn alone(device: &Device) -> Result<Self> {
        Self::new(&super::Single, device)
    }
}

fn nccl_error(e: impl std::fmt::Debug) -> candle_core::Error {
    candle_core::Error::Msg(format!("NCCL all-reduce failed: {e:?}"))
}

impl DeviceSum for Nccl {
    fn sum_f32(&self, values: &mut CudaSlice<f32>) -> candle_core::Result<()> {
        self.comm
            .all_reduce_in_place(values, &ReduceOp::Sum)
            .map(drop)
            .map_err(nccl_error)
    }

    fn sum_f64(&self, values: &mut CudaSlice<f64>) -> candle_core::Result<()> {
        self.comm
            .all_reduce_in_place(values, &ReduceOp::Sum)
            .map(drop)
            .map_err(nccl_error)
    }
}
