//! Where this process is in a data-parallel run: alone, or one rank of several started by
//! an MPI launcher (`mpirun -np N recur train ...`, with the cargo feature `mpi`).
//!
//! A build without the feature refuses to start as one of several ranks: each would train
//! the whole model on its own and write the same files.

use recur::train::{Communicator, Local};

/// The environment variables MPI launchers give every rank its number of ranks in (Open
/// MPI's, then the PMI ones of MPICH, Slurm and others).
const SIZE_VARS: [&str; 2] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"];

/// The number of ranks a launcher says this process is one of, if it was started by one.
fn launcher_size() -> Option<usize> {
    SIZE_VARS
        .iter()
        .find_map(|v| std::env::var(v).ok())
        .and_then(|s| s.trim().parse().ok())
}

/// The run this process is part of; dropping it ends MPI (`MPI_Finalize`).
pub struct Dist {
    #[cfg(feature = "mpi")]
    universe: Option<mpi::environment::Universe>,
}

impl Dist {
    /// Joins the launcher's run when started by one (`train` is whether the command is
    /// `recur train`, the only one that runs on several ranks).
    pub fn start(train: bool) -> Result<Dist, String> {
        let size = launcher_size();
        if let Some(n) = size.filter(|&n| n > 1) {
            if !train {
                return Err(format!(
                    "started as one of {n} ranks: only `recur train` runs on several ranks"
                ));
            }
            if !cfg!(feature = "mpi") {
                return Err(format!(
                    "started as one of {n} ranks, but this recur was built without MPI: build it with `cargo build --release -p recur-cli --features mpi`"
                ));
            }
        }
        #[cfg(feature = "mpi")]
        {
            let universe = if size.is_some() && train {
                Some(mpi::initialize().ok_or("MPI was initialized already")?)
            } else {
                None
            };
            Ok(Dist { universe })
        }
        #[cfg(not(feature = "mpi"))]
        Ok(Dist {})
    }

    /// The communicator of the run: MPI's world, or [`Local`].
    pub fn comm(&self) -> Box<dyn Communicator> {
        #[cfg(feature = "mpi")]
        if self.universe.is_some() {
            return Box::new(crate::mpi_comm::MpiComm::world());
        }
        Box::new(Local)
    }

    /// [`Dist::comm`] whose training steps wait at most `seconds` for the other ranks
    /// (`--dist-timeout`; MPI only, alone there is nothing to wait for).
    pub fn comm_within(&self, seconds: Option<f64>) -> Result<Box<dyn Communicator>, String> {
        let timeout = match seconds {
            None => None,
            Some(s) if s.is_finite() && s > 0.0 => Some(std::time::Duration::from_secs_f64(s)),
            Some(s) => {
                return Err(format!(
                    "--dist-timeout must be a positive number of seconds, got {s}"
                ))
            }
        };
        #[cfg(feature = "mpi")]
        if self.universe.is_some() {
            return Ok(Box::new(
                crate::mpi_comm::MpiComm::world().with_timeout(timeout),
            ));
        }
        let _ = timeout;
        Ok(Box::new(Local))
    }

    /// This process's rank (0 when alone).
    pub fn rank(&self) -> usize {
        self.comm().rank()
    }

    /// Ends the whole run after a failure on this rank: with several ranks, prints the
    /// message with the rank's number and aborts every rank (the others may be waiting for
    /// this one in a collective operation); alone, returns.
    pub fn fail(&self, message: &str, status: u8) {
        #[cfg(feature = "mpi")]
        if self.universe.is_some() && self.comm().size() > 1 {
            let comm = crate::mpi_comm::MpiComm::world();
            eprintln!("error: rank {} of {}: {message}", comm.rank(), comm.size());
            comm.abort(i32::from(status));
        }
        let _ = (message, status);
    }
}

impl Drop for Dist {
    fn drop(&mut self) {
        #[cfg(feature = "mpi")]
        if let Some(u) = self.universe.take() {
            // Every rank ends together (rank 0 may still be writing its files).
            crate::mpi_comm::MpiComm::world().barrier();
            drop(u);
        }
    }
}

thread_local! {
    static RANK: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Records this process's rank for [`rank`].
pub fn set_rank(rank: usize) {
    RANK.with(|r| r.set(rank));
}

/// This process's rank in the run (0 when alone): only rank 0 prints the log.
pub fn rank() -> usize {
    RANK.with(|r| r.get())
}
