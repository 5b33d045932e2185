//! Collective operations between the ranks of a data-parallel run: element-wise sums, a
//! broadcast and an exchange of small messages, on one interface with three implementations:
//!
//! - [`Single`]: one process (the default build; no dependency, nothing to exchange);
//! - `Mpi` (`mpi.rs`, cargo feature `mpi`): ranks started by `mpirun` or SLURM's `srun`, on
//!   the MPI library the cluster runs (rsmpi on OpenMPI);
//! - [`local::Local`]: ranks as threads of one process, for tests that need no launcher.
//!
//! The trainer's data parallelism (see ARCHITECTURE.md, "Data-parallel training") needs only
//! these; every rank calls each operation in the same order. The BatchNorm statistics go
//! through [`BatchNormSync`], the kernels' [`CrossRank`]; candle's autograd path sums tensors
//! through a [`RankSum`] ([`rank_sum`]): host tensors on the collective, GPU tensors on NCCL
//! (`nccl.rs`, cargo feature `nccl`), whose communicator is set up over the collective.

pub mod local;
#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(feature = "nccl")]
pub mod nccl;

use anyhow::{bail, Result};
use candle_core::Device;
use std::sync::Arc;
use wgan_models::kernels::CrossRank;
use wgan_models::rank_sum::RankSum;

/// The ranks of a run (see the module documentation). Every method is collective: all ranks
/// call it, in the same order, and get the same answer.
pub trait Collective: Send + Sync {
    /// This process's rank, `0..size`.
    fn rank(&self) -> usize;
    /// Ranks in the run.
    fn size(&self) -> usize;
    /// Rank among the processes of this machine (the GPU ordinal on a GPU node).
    fn local_rank(&self) -> usize;
    /// Element-wise sum over the ranks, in place.
    fn sum_f64(&self, values: &mut [f64]);
    /// Element-wise sum over the ranks, in place.
    fn sum_f32(&self, values: &mut [f32]);
    /// Every rank's `message`, in rank order.
    fn gather_all(&self, message: &[u8]) -> Vec<Vec<u8>>;
    /// Waits for every rank.
    fn barrier(&self) {
        self.gather_all(&[]);
    }
    /// What the launcher is, for messages: "1 process", "MPI, 2 ranks".
    fn describe(&self) -> String;
}

/// One process: every collective is the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn local_rank(&self) -> usize {
        0
    }
    fn sum_f64(&self, _: &mut [f64]) {}
    fn sum_f32(&self, _: &mut [f32]) {}
    fn gather_all(&self, message: &[u8]) -> Vec<Vec<u8>> {
        vec![message.to_vec()]
    }
    fn describe(&self) -> String {
        "1 process".into()
    }
}

/// The kernels' BatchNorm hook on a [`Collective`].
pub struct BatchNormSync(pub Arc<dyn Collective>);

impl CrossRank for BatchNormSync {
    fn ranks(&self) -> usize {
        self.0.size()
    }
    fn sum(&self, values: &mut [f64]) {
        self.0.sum_f64(values)
    }
}

/// The sums over `ranks` that candle's autograd path needs on `device` (`None` for one
/// process): host tensors through the collective; on a GPU, NCCL in a build with the `nccl`
/// feature (its communicator is set up here, collectively), else an error.
pub fn rank_sum(ranks: &Arc<dyn Collective>, device: &Device) -> Result<Option<RankSum>> {
    if ranks.size() == 1 {
        return Ok(None);
    }
    let host = RankSum::on_host(Arc::new(BatchNormSync(ranks.clone())));
    if device.is_cpu() {
        return Ok(Some(host));
    }
    #[cfg(feature = "nccl")]
    {
        let nccl = agree(ranks.as_ref(), nccl::Nccl::new(ranks.as_ref(), device))?;
        Ok(Some(host.with_device(Arc::new(nccl))))
    }
    #[cfg(not(feature = "nccl"))]
    bail!(
        "data-parallel training over {} on a GPU needs NCCL: build the trainer with `--features nccl` (scripts/gpu/build-cuda.sh does), or train on --device cpu",
        ranks.describe()
    )
}

/// The same `result` on every rank: an error on any rank becomes the error of every rank (the
/// first one, prefixed with its rank), so that no rank waits for one that gave up.
pub fn agree<T>(collective: &dyn Collective, result: Result<T>) -> Result<T> {
    if collective.size() == 1 {
        return result;
    }
    let mine = match &result {
        Ok(_) => Vec::new(),
        Err(e) => format!("{e:#}").into_bytes(),
    };
    let all = collective.gather_all(&mine);
    match result {
        Err(e) => Err(e),
        Ok(v) => match all.iter().position(|m| !m.is_empty()) {
            None => Ok(v),
            Some(r) => bail!("rank {r}: {}", String::from_utf8_lossy(&all[r])),
        },
    }
}

/// Rank 0's `bytes` on every rank.
pub fn broadcast(collective: &dyn Collective, bytes: &[u8]) -> Vec<u8> {
    if collective.rank() == 0 {
        collective.gather_all(bytes);
        bytes.to_vec()
    } else {
        collective.gather_all(&[]).swap_remove(0)
    }
}

/// The launchers' variables that give the number of processes of a job step, and whether one
/// of them says there is more than one: `OMPI_COMM_WORLD_SIZE` (OpenMPI's `mpirun`),
/// `PMI_SIZE` (MPICH, Intel MPI, `srun --mpi=pmi2`) and `SLURM_STEP_NUM_TASKS` (a SLURM job
/// step). Other `OMPI_*` variables and a plain `sbatch` job (which sets no step size) are not
/// launches.
pub fn launched_ranks(var: impl Fn(&str) -> Option<String>) -> Option<(String, usize)> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"]
        .into_iter()
        .find_map(|name| {
            let n: usize = var(name)?.trim().parse().ok()?;
            (n > 1).then(|| (name.to_string(), n))
        })
}

/// The ranks of this process's run: MPI's when the binary has the `mpi` feature and a launcher
/// started several processes, else one process. A build without `mpi` started as one of
/// several ranks refuses, since each rank would train alone on the same run folder.
pub fn from_environment() -> Result<Arc<dyn Collective>> {
    let launched = launched_ranks(|v| std::env::var(v).ok());
    #[cfg(feature = "mpi")]
    if launched.is_some() {
        return Ok(Arc::new(mpi::Mpi::initialize()?));
    }
    #[cfg(not(feature = "mpi"))]
    if let Some((var, n)) = launched {
        bail!(
            "this trainer was started as one of {n} ranks ({var}={n}) but is built without MPI: each rank would train alone on the same run folder; build it with `cargo build --release -p wgan-trainer --features mpi`, or start one process"
        );
    }
    let _ = launched;
    Ok(Arc::new(Single))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launches_are_told_from_other_environments() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            launched_ranks(env(&[("OMPI_COMM_WORLD_SIZE", "2")])),
            Some(("OMPI_COMM_WORLD_SIZE".into(), 2))
        );
        assert_eq!(
            launched_ranks(env(&[("SLURM_STEP_NUM_TASKS", "8")])),
            Some(("SLURM_STEP_NUM_TASKS".into(), 8))
        );
        assert_eq!(launched_ranks(env(&[("PMI_SIZE", "4")])).unwrap().1, 4);
        // One rank, other OpenMPI variables, a plain sbatch job: not a launch of several.
        assert_eq!(launched_ranks(env(&[("OMPI_COMM_WORLD_SIZE", "1")])), None);
        assert_eq!(
            launched_ranks(env(&[
                ("OMPI_ALLOW_RUN_AS_ROOT", "1"),
                ("OMPI_MCA_btl", "self"),
                ("SLURM_JOB_ID", "7"),
                ("SLURM_NTASKS", "4"),
            ])),
            None
        );
    }

    #[test]
    fn agreement_spreads_one_rank_s_error_to_all() {
        let ranks = local::Local::group(3);
        let results: Vec<Result<u32>> = std::thread::scope(|s| {
            let handles: Vec<_> = ranks
                .iter()
                .map(|c| {
                    let c = c.clone();
                    s.spawn(move || {
                        let mine = if c.rank() == 1 {
                            Err(anyhow::anyhow!("the data is not there"))
                        } else {
                            Ok(7)
                        };
                        agree(c.as_ref(), mine)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in &results {
            let e = format!("{:#}", r.as_ref().unwrap_err());
            assert!(e.contains("the data is not there"), "{e}");
        }
        assert!(format!("{:#}", results[0].as_ref().unwrap_err()).starts_with("rank 1:"));
    }
}
