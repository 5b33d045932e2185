//! Sums over the ranks of a data-parallel run as a differentiable candle op: the synchronised
//! BatchNorm of the candle modules (the GPU path) and the averaging of their gradients. See
//! ARCHITECTURE.md, "Data-parallel training".
//!
//! The forward of [`RankSum::sum`] adds a tensor element-wise over the ranks, and every rank
//! gets the total. Its backward adds the incoming gradient over the ranks in the same way:
//! every rank's loss depends on the total, so the gradient of the sum of the ranks' losses
//! with respect to one rank's input is the sum of their gradients with respect to the total.
//! Autograd through it therefore gives SyncBatchNorm's gradient without a hand-written
//! backward. Host tensors go through a [`CrossRank`] (the run's collective on host buffers:
//! MPI, or threads in tests); CUDA tensors through a `DeviceSum` (NCCL in the trainer's
//! `nccl` build), queued on candle's stream of the device.
//!
//! Every rank must call [`RankSum::sum`] in the same order, forward and backward; ranks that
//! build the same graph do.

use crate::kernels::CrossRank;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use std::sync::Arc;

/// Element-wise sums of device buffers over the ranks, in place, with the same result on
/// every rank, queued on candle's stream of the buffer's device.
#[cfg(feature = "cuda")]
pub trait DeviceSum: Send + Sync {
    fn sum_f32(&self, values: &mut candle_core::cuda::cudarc::driver::CudaSlice<f32>)
        -> Result<()>;
    fn sum_f64(&self, values: &mut candle_core::cuda::cudarc::driver::CudaSlice<f64>)
        -> Result<()>;
}

/// The sums of one data-parallel run (see the module documentation).
#[derive(Clone)]
pub struct RankSum {
    host: Arc<dyn CrossRank>,
    #[cfg(feature = "cuda")]
    device: Option<Arc<dyn DeviceSum>>,
}

impl RankSum {
    /// Sums of host tensors through `host`; a CUDA tensor is an error until
    /// [`RankSum::with_device`] gives a device path.
    pub fn on_host(host: Arc<dyn CrossRank>) -> Self {
        Self {
            host,
            #[cfg(feature = "cuda")]
            device: None,
        }
    }

    /// The same, with `device` for CUDA tensors.
    #[cfg(feature = "cuda")]
    pub fn with_device(mut self, device: Arc<dyn DeviceSum>) -> Self {
        self.device = Some(device);
        self
    }

    /// Ranks in the run.
    pub fn ranks(&self) -> usize {
        self.host.ranks()
    }

    /// `x` added element-wise over the ranks (f32 or f64, any shape): the same tensor on every
    /// rank. Differentiable (see the module documentation).
    pub fn sum(&self, x: &Tensor) -> Result<Tensor> {
        x.contiguous()?.apply_op1(AllReduce(self.clone()))
    }
}

/// A fresh copy of `s`'s elements `start..end`, summed over the ranks by `sum`.
#[cfg(feature = "cuda")]
fn summed_copy<T>(
    s: &candle_core::CudaStorage,
    (start, end): (usize, usize),
    sum: impl FnOnce(&mut candle_core::cuda::cudarc::driver::CudaSlice<T>) -> Result<()>,
) -> Result<candle_core::CudaStorage>
where
    T: candle_core::cuda::CudaDType + candle_core::cuda::cudarc::driver::DeviceRepr,
{
    let dev = s.device.clone();
    let src = s.as_cuda_slice::<T>()?.slice(start..end);
    // SAFETY: every element is written by the copy below before it is read.
    let mut dst = unsafe { dev.alloc::<T>(end - start) }?;
    dev.memcpy_dtod(&src, &mut dst)?;
    sum(&mut dst)?;
    Ok(candle_core::CudaStorage::wrap_cuda_slice(dst, dev))
}

/// The candle op behind [`RankSum::sum`].
struct AllReduce(RankSum);

fn contiguous(l: &Layout) -> Result<(usize, usize)> {
    l.contiguous_offsets().ok_or_else(|| {
        candle_core::Error::Msg("a sum over the ranks needs a contiguous input".into())
    })
}

impl CustomOp1 for AllReduce {
    fn name(&self) -> &'static str {
        "sum-over-ranks"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (start, end) = contiguous(l)?;
        let out = match s {
            CpuStorage::F32(d) => {
                let mut v: Vec<f64> = d[start..end].iter().map(|&x| x as f64).collect();
                self.0.host.sum(&mut v);
                CpuStorage::F32(v.into_iter().map(|x| x as f32).collect())
            }
            CpuStorage::F64(d) => {
                let mut v = d[start..end].to_vec();
                self.0.host.sum(&mut v);
                CpuStorage::F64(v)
            }
            _ => candle_core::bail!("a sum over the ranks supports f32 and f64"),
        };
        Ok((out, l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        use candle_core::DType;
        let Some(sum) = &self.0.device else {
            candle_core::bail!(
                "GPU tensors are summed over the ranks by NCCL, which this run has not set up"
            )
        };
        let range = contiguous(l)?;
        let out = match s.dtype() {
            DType::F32 => summed_copy::<f32>(s, range, |v| sum.sum_f32(v))?,
            DType::F64 => summed_copy::<f64>(s, range, |v| sum.sum_f64(v))?,
            d => candle_core::bail!("a sum over the ranks supports f32 and f64, not {d:?}"),
        };
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.0.sum(grad)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use std::sync::Mutex;

    /// Two "ranks" played by one thread: rank 1's contribution is fixed, so the sum is
    /// `x + other` and its gradient is the gradient's sum `g + other_grad`.
    struct Pretend {
        others: Mutex<Vec<Vec<f64>>>,
    }

    impl CrossRank for Pretend {
        fn ranks(&self) -> usize {
            2
        }
        fn sum(&self, values: &mut [f64]) {
            let other = self.others.lock().unwrap().remove(0);
            for (v, o) in values.iter_mut().zip(other) {
                *v += o;
            }
        }
    }

    #[test]
    fn forward_adds_and_backward_adds_the_gradients() {
        let host = Arc::new(Pretend {
            // The forward's other contribution, then the backward's.
            others: Mutex::new(vec![vec![10.0, 20.0, 30.0], vec![0.5, 0.25, 0.125]]),
        });
        let sum = RankSum::on_host(host.clone());
        assert_eq!(sum.ranks(), 2);
        let x = Var::new(&[1f64, 2.0, 3.0], &Device::Cpu).unwrap();
        let y = sum.sum(x.as_tensor()).unwrap();
        assert_eq!(y.to_vec1::<f64>().unwrap(), [11.0, 22.0, 33.0]);
        // loss = Σ w·y with w = (1, 2, 3): this rank's ∂/∂y is w, the other's is given.
        let w = Tensor::new(&[1f64, 2.0, 3.0], &Device::Cpu).unwrap();
        let grads = (y * w).unwrap().sum_all().unwrap().backward().unwrap();
        let g = grads.get(x.as_tensor()).unwrap().to_vec1::<f64>().unwrap();
        assert_eq!(g, [1.5, 2.25, 3.125]);
        assert!(host.others.lock().unwrap().is_empty(), "one sum each way");
    }
}
