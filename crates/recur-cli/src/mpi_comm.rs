//! [`MpiComm`]: the training loop's [`Communicator`] over MPI (`mpirun -np N recur train
//! ...`), built with the cargo feature `mpi`.
//!
//! The collective operations are MPI's (`MPI_Allreduce` with `MPI_SUM`, `MPI_Allgatherv`)
//! on `MPI_COMM_WORLD`, whose default error handler ends the whole run on a failure; a rank
//! that dies ends it too (the launcher names the rank).

use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator as _, CommunicatorCollectives as _};
use recur::train::Communicator;

/// The ranks of `MPI_COMM_WORLD`.
pub struct MpiComm {
    world: SimpleCommunicator,
}

impl MpiComm {
    /// The world communicator (MPI must be initialized).
    pub fn world() -> MpiComm {
        MpiComm {
            world: SimpleCommunicator::world(),
        }
    }

    /// Ends every rank of the run with `status` (`MPI_Abort`).
    pub fn abort(&self, status: i32) -> ! {
        self.world.abort(status)
    }

    /// Waits until every rank is here.
    pub fn barrier(&self) {
        self.world.barrier();
    }
}

impl Communicator for MpiComm {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> recur::Result<()> {
        let send = buf.to_vec();
        self.world
            .all_reduce_into(&send[..], buf, SystemOperation::sum());
        Ok(())
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> recur::Result<()> {
        let send = buf.to_vec();
        self.world
            .all_reduce_into(&send[..], buf, SystemOperation::sum());
        Ok(())
    }
    fn all_gather(&self, bytes: &[u8]) -> recur::Result<Vec<Vec<u8>>> {
        let n = self.world.size() as usize;
        let mut counts = vec![0i32; n];
        let len = i32::try_from(bytes.len())
            .map_err(|_| recur::Error::Input(format!("{} bytes to gather", bytes.len())))?;
        self.world.all_gather_into(&len, &mut counts[..]);
        let mut displs = Vec::with_capacity(n);
        let mut total = 0i32;
        for &c in &counts {
            displs.push(total);
            total += c;
        }
        let mut all = vec![0u8; total as usize];
        {
            let mut part = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
            self.world.all_gather_varcount_into(bytes, &mut part);
        }
        Ok(counts
            .iter()
            .zip(&displs)
            .map(|(&c, &d)| all[d as usize..(d + c) as usize].to_vec())
            .collect())
    }
}

/// Options of `recur allreduce-bench` (under `mpirun`).
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Gradient sizes to time, in parameters, comma-separated: the loop all-reduces one f64
    /// buffer of that many values (and 3 more) per step.
    #[arg(long, value_delimiter = ',', required = true)]
    sizes: Vec<usize>,
    /// Timed all-reduces per size (after 3 untimed ones).
    #[arg(long, default_value_t = 30)]
    iters: usize,
}

/// Times the training loop's all-reduce (the f64 buffer of a step) for each size: rank 0
/// prints one JSON line per size with the median and minimum seconds.
pub fn bench(a: BenchArgs) -> Result<(), String> {
    if !mpi::environment::is_initialized() {
        return Err("run it under mpirun: `mpirun -np 2 recur allreduce-bench ...`".into());
    }
    let comm = MpiComm::world();
    if a.iters == 0 {
        return Err("--iters must be at least 1".into());
    }
    for &n in &a.sizes {
        let mut buf = vec![1.0f64; n + 3];
        let mut times = Vec::with_capacity(a.iters);
        for k in 0..a.iters + 3 {
            comm.barrier();
            let t = std::time::Instant::now();
            comm.all_reduce_sum_f64(&mut buf)
                .map_err(|e| e.to_string())?;
            if k >= 3 {
                times.push(t.elapsed().as_secs_f64());
            }
            buf.iter_mut().for_each(|x| *x = 1.0);
        }
        times.sort_by(f64::total_cmp);
        if comm.rank() == 0 {
            println!(
                "{}",
                serde_json::json!({
                    "ranks": comm.size(),
                    "params": n,
                    "bytes": (n + 3) * 8,
                    "median_seconds": times[times.len() / 2],
                    "min_seconds": times[0],
                })
            );
        }
    }
    Ok(())
}
