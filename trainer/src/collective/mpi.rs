//! The [`Collective`] of ranks started by an MPI launcher (`mpirun`, SLURM's `srun`), through
//! rsmpi on the MPI library the machine has (OpenMPI from Debian's packages here).
//!
//! MPI is initialised with `MPI_THREAD_SERIALIZED` and every call goes through one mutex: the
//! trainer calls collectives from whichever thread of its pool runs the step, one at a time.

use super::Collective;
use anyhow::{bail, Result};
use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Threading;
use std::sync::Mutex;

/// The world communicator of an MPI job.
pub struct Mpi {
    world: Mutex<SimpleCommunicator>,
    rank: usize,
    size: usize,
    local_rank: usize,
    /// Kept alive for the process's life: dropping it finalises MPI.
    _universe: Universe,
}

// SAFETY: MPI runs with MPI_THREAD_SERIALIZED, which allows calls from any thread as long as
// no two are concurrent; every use of the communicator holds `world`'s lock.
unsafe impl Send for Mpi {}
// SAFETY: as above.
unsafe impl Sync for Mpi {}

impl Mpi {
    /// Joins the MPI job this process was launched in.
    pub fn initialize() -> Result<Self> {
        let Some((universe, threading)) = mpi::initialize_with_threading(Threading::Serialized)
        else {
            bail!("MPI is already initialised in this process");
        };
        if threading < Threading::Serialized {
            bail!(
                "this MPI library provides thread level {threading:?}; the trainer needs Serialized"
            );
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let local_rank = [
            "OMPI_COMM_WORLD_LOCAL_RANK",
            "MPI_LOCALRANKID",
            "SLURM_LOCALID",
        ]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
        .unwrap_or(0);
        Ok(Self {
            world: Mutex::new(world),
            rank,
            size,
            local_rank,
            _universe: universe,
        })
    }

    fn world(&self) -> std::sync::MutexGuard<'_, SimpleCommunicator> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn local_rank(&self) -> usize {
        self.local_rank
    }
    fn sum_f64(&self, values: &mut [f64]) {
        let send = values.to_vec();
        self.world()
            .all_reduce_into(&send[..], values, SystemOperation::sum());
    }
    fn sum_f32(&self, values: &mut [f32]) {
        let send = values.to_vec();
        self.world()
            .all_reduce_into(&send[..], values, SystemOperation::sum());
    }
    fn gather_all(&self, message: &[u8]) -> Vec<Vec<u8>> {
        // Every message carries one leading byte: OpenMPI refuses an all-gather of nothing.
        let mut framed = Vec::with_capacity(message.len() + 1);
        framed.push(1u8);
        framed.extend_from_slice(message);
        let message = &framed[..];
        let world = self.world();
        let mut lengths = vec![0u64; self.size];
        world.all_gather_into(&(message.len() as u64), &mut lengths[..]);
        let counts: Vec<i32> = lengths.iter().map(|&l| l as i32).collect();
        let displs: Vec<i32> = counts
            .iter()
            .scan(0i32, |acc, &c| {
                let d = *acc;
                *acc += c;
                Some(d)
            })
            .collect();
        let mut all = vec![0u8; lengths.iter().sum::<u64>() as usize];
        {
            let mut partition = PartitionMut::new(&mut all[..], counts.clone(), &displs[..]);
            world.all_gather_varcount_into(message, &mut partition);
        }
        counts
            .iter()
            .zip(&displs)
            .map(|(&c, &d)| all[d as usize + 1..(d + c) as usize].to_vec())
            .collect()
    }
    fn describe(&self) -> String {
        format!("MPI, {} ranks", self.size)
    }
}
