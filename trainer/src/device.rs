//! Device specs (`cpu`, `cuda`, `cuda:N`) and opening the device they name.

use anyhow::{bail, Context, Result};
use candle_core::Device;

/// Parses `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(spec: &str) -> Result<Device> {
    let ordinal = match cuda_ordinal(spec)? {
        None => return Ok(Device::Cpu),
        Some(n) => n,
    };
    if !candle_core::utils::cuda_is_available() {
        bail!("device '{spec}' needs a build with CUDA support: rebuild with `--features cuda` (see docs/platforms.md), or use --device cpu");
    }
    Device::new_cuda(ordinal).with_context(|| format!("cannot open CUDA device {ordinal}"))
}

/// The device one rank of a data-parallel run trains on: as [`parse_device`], except that a
/// plain `cuda` is the GPU of the rank's place on its machine (`cuda:<local rank>`), one GPU
/// per rank as `mpirun` or `srun` place them. `cuda:N` is taken as given (as with
/// `CUDA_VISIBLE_DEVICES` set per rank).
pub fn parse_rank_device(spec: &str, local_rank: usize) -> Result<Device> {
    match spec {
        "cuda" => parse_device(&format!("cuda:{local_rank}")),
        _ => parse_device(spec),
    }
}

/// A device spec that is none of `cpu`, `cuda`, `cuda:N`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown device '{0}': use cpu, cuda or cuda:N")]
pub struct UnknownDevice(pub String);

/// The CUDA device a device spec names: `cpu` → `None`, `cuda` → 0, `cuda:N` → N; anything
/// else is an error naming the spec and the accepted forms.
pub fn cuda_ordinal(spec: &str) -> Result<Option<usize>, UnknownDevice> {
    match spec {
        "cpu" => Ok(None),
        "cuda" => Ok(Some(0)),
        s => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Ok(Some(n)),
            _ => Err(UnknownDevice(spec.to_string())),
        },
    }
}
