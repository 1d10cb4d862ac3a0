//! [`MpiComm`]: the training loop's [`Communicator`] over MPI (`mpirun -np N recur train
//! ...`), built with the cargo feature `mpi`.
//!
//! The collective operations are MPI's (`MPI_Allreduce` with `MPI_SUM`, `MPI_Allgatherv`)
//! on `MPI_COMM_WORLD`, whose default error handler ends the whole run on a failure; a rank
//! that dies ends it too (the launcher names the rank).
//!
//! A step's gradients go in buckets, one per part of the model, each all-reduced with a
//! non-blocking `MPI_Iallreduce` as soon as the task's backward pass says the part is final
//! ([`Communicator::reduce_step`]), so that the head's all-reduce runs while the recurrent
//! stack's backward pass computes; every bucket is waited for before the optimizer's step.
//! `RECUR_MPI_OVERLAP=off` sends the whole buffer after the backward pass instead (one
//! blocking `MPI_Allreduce`), and `alternate` switches between the two step by step and
//! prints, on rank 0 at the end, the all-reduce time each left exposed (a measurement).

use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::request::{LocalScope, Request};
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator as _, CommunicatorCollectives as _};
use recur::train::{Communicator, GradBuffer, GradReady, StepStats};
use std::cell::RefCell;
use std::ops::Range;
use std::time::{Duration, Instant};

/// When the gradient buckets are all-reduced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Overlap {
    /// As the backward pass finishes each part (the default).
    On,
    /// All of them after the backward pass, in one blocking all-reduce.
    Off,
    /// `On` and `Off` every other step, timing both.
    Alternate,
}

/// The all-reduce time a step left exposed (not hidden behind the backward pass): in the
/// task's announcements (copies, starting the buckets) and after the backward pass, until
/// the last bucket is reduced. `[overlapped, blocking]`.
#[derive(Default)]
struct Timing {
    steps: [u64; 2],
    seconds: [Vec<f64>; 2],
}

/// The ranks of `MPI_COMM_WORLD`.
pub struct MpiComm {
    world: SimpleCommunicator,
    overlap: Overlap,
    /// How long a collective operation may wait for the other ranks.
    timeout: Option<Duration>,
    timing: RefCell<Timing>,
}

impl MpiComm {
    /// The world communicator (MPI must be initialized).
    pub fn world() -> MpiComm {
        let overlap = match std::env::var("RECUR_MPI_OVERLAP").as_deref() {
            Ok("off") => Overlap::Off,
            Ok("alternate") => Overlap::Alternate,
            _ => Overlap::On,
        };
        MpiComm {
            world: SimpleCommunicator::world(),
            overlap,
            timeout: None,
            timing: RefCell::new(Timing::default()),
        }
    }

    /// With a time-out: a collective operation of a training step that waits longer than
    /// `timeout` for the other ranks (one of them hangs) ends the run.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> MpiComm {
        self.timeout = timeout;
        self
    }

    /// Ends every rank of the run with `status` (`MPI_Abort`).
    pub fn abort(&self, status: i32) -> ! {
        self.world.abort(status)
    }

    /// Waits until every rank is here.
    pub fn barrier(&self) {
        self.world.barrier();
    }

    /// Waits for `r`, within the time-out if there is one (then ends the run, naming this
    /// rank and what it waited for).
    fn wait<'a, D: ?Sized, S: mpi::request::Scope<'a>>(&self, r: Request<'a, D, S>, what: &str) {
        let Some(limit) = self.timeout else {
            r.wait_without_status();
            return;
        };
        let t0 = Instant::now();
        let mut r = r;
        loop {
            match r.test() {
                Ok(_) => return,
                Err(again) => r = again,
            }
            if t0.elapsed() > limit {
                eprintln!(
                    "error: rank {} of {}: no answer from the other ranks for {} s in {what} (--dist-timeout): a rank hangs or is stopped; ending the run (the last checkpoint is whole: resume it with --resume)",
                    self.rank(),
                    self.size(),
                    limit.as_secs_f64()
                );
                self.world.abort(2);
            }
            std::thread::yield_now();
        }
    }

    /// The sum all-reduce of `buf`, within the time-out.
    fn all_reduce<T: mpi::datatype::Equivalence + Copy>(&self, buf: &mut [T], what: &str) {
        let send = buf.to_vec();
        if self.timeout.is_none() {
            self.world
                .all_reduce_into(&send[..], buf, SystemOperation::sum());
            return;
        }
        mpi::request::scope(|scope| {
            let r =
                self.world
                    .immediate_all_reduce_into(scope, &send[..], buf, SystemOperation::sum());
            self.wait(r, what);
        });
    }

    /// [`Communicator::reduce_step`] with a bucket per part, each started as the task says
    /// it is final (from the last part to the first), then the totals; waits for them all.
    fn overlapped(
        &self,
        buf: &mut GradBuffer,
        stop: bool,
        step: &mut dyn FnMut(&mut dyn GradReady) -> recur::Result<StepStats>,
    ) -> recur::Result<(StepStats, f64)> {
        buf.begin();
        let parts = buf.parts();
        let p = buf.params();
        let ranges: Vec<Range<usize>> = (0..=parts).map(|k| buf.bucket(k)).collect();
        let mut recv = vec![0.0f64; p + 3];
        let (stats, exposed) = {
            let (send_g, send_t) = buf.values_mut().split_at_mut(p);
            let (recv_g, recv_t) = recv.split_at_mut(p);
            mpi::request::scope(|scope| {
                let mut sink = Buckets {
                    world: &self.world,
                    scope,
                    ranges: &ranges,
                    send: Some(send_g),
                    recv: Some(recv_g),
                    next: parts,
                    pending: Vec::new(),
                    seconds: 0.0,
                };
                let result = step(&mut sink);
                let t0 = Instant::now();
                let result = result.and_then(|stats| {
                    if sink.next != 0 {
                        return Err(recur::Error::Input(format!(
                            "the step announced gradient parts {}.. only, of {parts}",
                            sink.next
                        )));
                    }
                    send_t.copy_from_slice(&GradBuffer::totals(&stats, stop));
                    let r = self.world.immediate_all_reduce_into(
                        scope,
                        &*send_t,
                        &mut *recv_t,
                        SystemOperation::sum(),
                    );
                    sink.pending.push(r);
                    Ok(stats)
                });
                // Every bucket started is waited for, also after an error (the buffers
                // must outlive MPI's use of them; the error then ends the run).
                for r in std::mem::take(&mut sink.pending) {
                    self.wait(r, "the all-reduce of a step's gradients");
                }
                result.map(|s| (s, sink.seconds + t0.elapsed().as_secs_f64()))
            })?
        };
        buf.values_mut().copy_from_slice(&recv);
        Ok((stats, exposed))
    }

    /// [`Communicator::reduce_step`] in one blocking all-reduce after the step.
    fn blocking(
        &self,
        buf: &mut GradBuffer,
        stop: bool,
        step: &mut dyn FnMut(&mut dyn GradReady) -> recur::Result<StepStats>,
    ) -> recur::Result<(StepStats, f64)> {
        buf.begin();
        let mut fill = Timed {
            buf: &mut *buf,
            seconds: 0.0,
        };
        let stats = step(&mut fill)?;
        let seconds = fill.seconds;
        let t0 = Instant::now();
        buf.finish(&stats, stop)?;
        self.all_reduce(buf.values_mut(), "the all-reduce of a step's gradients");
        Ok((stats, seconds + t0.elapsed().as_secs_f64()))
    }
}

/// The buckets of one step: the parts not yet started are the prefix `send` of the buffer
/// (its gradients), received into `recv`; parts `next..` are started.
struct Buckets<'a, 's> {
    world: &'a SimpleCommunicator,
    scope: &'s LocalScope<'a>,
    ranges: &'a [Range<usize>],
    send: Option<&'a mut [f64]>,
    recv: Option<&'a mut [f64]>,
    next: usize,
    pending: Vec<Request<'a, [f64], &'s LocalScope<'a>>>,
    /// Seconds spent in [`GradReady::parts_final`].
    seconds: f64,
}

impl GradReady for Buckets<'_, '_> {
    fn parts_final(&mut self, first: usize, units: u64, grads: &[&[f32]]) -> recur::Result<()> {
        let t0 = Instant::now();
        let parts = self.ranges.len() - 1;
        let fits = first <= parts
            && grads.len() == parts - first
            && grads
                .iter()
                .enumerate()
                .all(|(i, g)| g.len() == self.ranges[first + i].len());
        if !fits {
            return Err(recur::Error::Input(format!(
                "gradient parts {first}.. announced with {} buffers that do not fit the {parts} parts of the model",
                grads.len()
            )));
        }
        while self.next > first {
            let k = self.next - 1;
            let at = self.ranges[k].start;
            let (send, bucket) = self.send.take().expect("the unsent parts").split_at_mut(at);
            let (recv, into) = self.recv.take().expect("the unsent parts").split_at_mut(at);
            self.send = Some(send);
            self.recv = Some(recv);
            GradBuffer::weigh(bucket, grads[k - first], units);
            let r = self.world.immediate_all_reduce_into(
                self.scope,
                &*bucket,
                into,
                SystemOperation::sum(),
            );
            self.pending.push(r);
            self.next = k;
        }
        // Calls into MPI move the buckets already started on (Open MPI has no progress
        // thread of its own).
        self.pending = std::mem::take(&mut self.pending)
            .into_iter()
            .filter_map(|r| r.test().err())
            .collect();
        self.seconds += t0.elapsed().as_secs_f64();
        Ok(())
    }
}

/// The blocking [`GradReady`]: copies the parts into the buffer, timed.
struct Timed<'a> {
    buf: &'a mut GradBuffer,
    seconds: f64,
}

impl GradReady for Timed<'_> {
    fn parts_final(&mut self, first: usize, units: u64, grads: &[&[f32]]) -> recur::Result<()> {
        let t0 = Instant::now();
        for k in self.buf.announce(first, grads)? {
            let r = self.buf.bucket(k);
            GradBuffer::weigh(&mut self.buf.values_mut()[r], grads[k - first], units);
        }
        self.seconds += t0.elapsed().as_secs_f64();
        Ok(())
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
        self.all_reduce(buf, "an all-reduce");
        Ok(())
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> recur::Result<()> {
        self.all_reduce(buf, "an all-reduce");
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
    fn reduce_step(
        &self,
        buf: &mut GradBuffer,
        stop: bool,
        step: &mut dyn FnMut(&mut dyn GradReady) -> recur::Result<StepStats>,
    ) -> recur::Result<StepStats> {
        let k = self.timing.borrow().steps.iter().sum::<u64>();
        let overlapped = match self.overlap {
            Overlap::On => true,
            Overlap::Off => false,
            Overlap::Alternate => k % 2 == 0,
        };
        let (stats, seconds) = if overlapped {
            self.overlapped(buf, stop, step)?
        } else {
            self.blocking(buf, stop, step)?
        };
        let mut t = self.timing.borrow_mut();
        let i = usize::from(!overlapped);
        t.steps[i] += 1;
        if self.overlap == Overlap::Alternate {
            t.seconds[i].push(seconds);
        }
        Ok(stats)
    }
}

impl Drop for MpiComm {
    /// With `RECUR_MPI_OVERLAP=alternate`, rank 0 prints the mean and the median exposed
    /// all-reduce time per step of each way (one JSON line on stderr).
    fn drop(&mut self) {
        let t = self.timing.borrow();
        if self.overlap == Overlap::Alternate && self.rank() == 0 && t.steps[0] + t.steps[1] > 0 {
            let mean = |i: usize| t.seconds[i].iter().sum::<f64>() / t.steps[i].max(1) as f64;
            let median = |i: usize| {
                let mut v = t.seconds[i].clone();
                v.sort_by(f64::total_cmp);
                v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
            };
            eprintln!(
                "{}",
                serde_json::json!({
                    "ranks": self.size(),
                    "overlapped_steps": t.steps[0],
                    "overlapped_exposed_seconds_mean": mean(0),
                    "overlapped_exposed_seconds_median": median(0),
                    "blocking_steps": t.steps[1],
                    "blocking_exposed_seconds_mean": mean(1),
                    "blocking_exposed_seconds_median": median(1),
                })
            );
        }
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
