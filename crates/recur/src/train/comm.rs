//! What the training loop needs from a group of processes that train one model together.

use super::{Shard, StepStats, Task};
use crate::error::{Error, Result};
use std::ops::Range;

/// The ranks that train one model together (data parallelism): who this is, how many there
/// are, and the collective operations the loop uses. Every rank must call the collective
/// operations in the same order with buffers of the same length.
///
/// [`Local`] is the single process. An implementation over MPI (or threads) provides the
/// four required operations; [`Communicator::reduce_step`] has a default on top of them.
pub trait Communicator {
    /// This rank, `0..size()`.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// Replaces `buf` on every rank by the element-wise sum of the buffers of all ranks.
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()>;
    /// [`Communicator::all_reduce_sum_f64`] on f32 values.
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()>;
    /// The bytes of every rank, in rank order (the loop checks with it that all ranks were
    /// started with the same configuration).
    fn all_gather(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>>;

    /// One training step with the sum all-reduce of its gradient buffer: runs `step` (the
    /// task's forward and backward pass), which tells the [`GradReady`] it is given which
    /// parts of the gradient are final, as the backward pass finishes them, and at the end
    /// all of them; then adds the step's totals (units, loss, `stop`) and all-reduces.
    /// On return `buf` holds the sums over the ranks ([`GradBuffer::values`]).
    ///
    /// The default fills `buf` as `step` goes and all-reduces it in one
    /// [`Communicator::all_reduce_sum_f64`] after it (blocking). An implementation with
    /// non-blocking collectives starts the all-reduce of each part (a bucket) as soon as it
    /// is final, so that it overlaps the rest of the backward pass, and waits for every
    /// bucket before it returns. Every rank must all-reduce the same buckets in the same
    /// order (the parts from the last to the first, then the totals; see
    /// [`GradBuffer::bucket`]), whatever the times the parts became final, so that the
    /// sums, and the run, are the same from run to run.
    fn reduce_step(
        &self,
        buf: &mut GradBuffer,
        stop: bool,
        step: &mut dyn FnMut(&mut dyn GradReady) -> Result<StepStats>,
    ) -> Result<StepStats> {
        buf.begin();
        let stats = {
            let mut fill = Fill { buf: &mut *buf };
            step(&mut fill)?
        };
        buf.finish(&stats, stop)?;
        self.all_reduce_sum_f64(&mut buf.values)?;
        Ok(stats)
    }
}

/// What a task's backward pass tells the loop as it goes: which parts of the gradient (in
/// the order of [`Task::parts`]) are final for this step.
pub trait GradReady {
    /// The gradients of parts `first..` are final for this step: `grads` holds them (part
    /// `first`, then `first + 1`, ...), this rank's mean over `units` targets. Parts
    /// announced before are skipped; the parts of a call must be the last ones not yet
    /// announced, so backward passes announce them from the last part to the first.
    fn parts_final(&mut self, first: usize, units: u64, grads: &[&[f32]]) -> Result<()>;
}

/// The flat buffer of one step's gradients that the ranks sum: the parts' gradients, each
/// rank's mean weighted by its units (`units · grad`, exact in f64 for an f32 gradient and
/// fewer than 2^29 units), then three totals: the units, `units · loss`, and 1 if the rank
/// asks to stop. `P + 3` values for `P` parameters.
#[derive(Clone, Debug)]
pub struct GradBuffer {
    /// Where each part starts, and `P` at the end.
    offsets: Vec<usize>,
    values: Vec<f64>,
    /// Parts `next..` are filled in this step.
    next: usize,
}

impl GradBuffer {
    /// The buffer of parts of `lens` parameters each.
    pub fn new(lens: impl IntoIterator<Item = usize>) -> GradBuffer {
        let mut offsets = vec![0];
        for n in lens {
            offsets.push(offsets.last().copied().unwrap_or(0) + n);
        }
        let p = *offsets.last().expect("one offset");
        let parts = offsets.len() - 1;
        GradBuffer {
            offsets,
            values: vec![0.0; p + 3],
            next: parts,
        }
    }

    /// The number of parts.
    pub fn parts(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The number of parameters `P`.
    pub fn params(&self) -> usize {
        self.values.len() - 3
    }

    /// The values of bucket `k` in [`GradBuffer::values`]: part `k` for `k < parts()`, the
    /// three totals for `k == parts()`. The buckets are all-reduced from part `parts() - 1`
    /// down to part 0, then the totals.
    pub fn bucket(&self, k: usize) -> Range<usize> {
        if k < self.parts() {
            self.offsets[k]..self.offsets[k + 1]
        } else {
            self.params()..self.params() + 3
        }
    }

    /// The whole buffer: `P` weighted gradients, the units, the weighted loss, the stop flag.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// [`GradBuffer::values`], to write (by an all-reduce).
    pub fn values_mut(&mut self) -> &mut [f64] {
        &mut self.values
    }

    /// Which parts a call of [`GradReady::parts_final`] fills: `first..next` (possibly
    /// empty), after checking its gradients fit. Marks them filled.
    pub fn announce(&mut self, first: usize, grads: &[&[f32]]) -> Result<Range<usize>> {
        let parts = self.parts();
        let fits = first <= parts
            && grads.len() == parts - first
            && grads
                .iter()
                .enumerate()
                .all(|(i, g)| g.len() == self.bucket(first + i).len());
        if !fits {
            return Err(Error::Input(format!(
                "gradient parts {first}.. announced with {} buffers that do not fit the {parts} parts of the model",
                grads.len()
            )));
        }
        let newly = first.min(self.next)..self.next;
        self.next = newly.start;
        Ok(newly)
    }

    /// Writes `units · g` of `grads` (zeros when `units` is 0) into `dst`.
    pub fn weigh(dst: &mut [f64], grads: &[f32], units: u64) {
        let u = units as f64;
        for (d, &g) in dst.iter_mut().zip(grads) {
            *d = if units == 0 { 0.0 } else { g as f64 * u };
        }
    }

    /// Before a step: no part is filled yet.
    pub fn begin(&mut self) {
        self.next = self.parts();
    }

    /// After the step: checks every part was announced and writes the totals (the loss
    /// weighted by the units).
    pub fn finish(&mut self, stats: &StepStats, stop: bool) -> Result<()> {
        if self.next != 0 {
            return Err(Error::Input(format!(
                "the step announced gradient parts {}.. only, of {}",
                self.next,
                self.parts()
            )));
        }
        let p = self.params();
        self.values[p..].copy_from_slice(&GradBuffer::totals(stats, stop));
        Ok(())
    }

    /// The three totals of a step: the units, the loss weighted by them, 1 for `stop`.
    pub fn totals(stats: &StepStats, stop: bool) -> [f64; 3] {
        let u = stats.units as f64;
        let loss = if stats.units == 0 {
            0.0
        } else {
            stats.loss * u
        };
        [u, loss, f64::from(u8::from(stop))]
    }
}

/// The default [`GradReady`]: copies the parts into the buffer.
struct Fill<'a> {
    buf: &'a mut GradBuffer,
}

impl GradReady for Fill<'_> {
    fn parts_final(&mut self, first: usize, units: u64, grads: &[&[f32]]) -> Result<()> {
        for k in self.buf.announce(first, grads)? {
            let r = self.buf.bucket(k);
            GradBuffer::weigh(&mut self.buf.values[r], grads[k - first], units);
        }
        Ok(())
    }
}

/// One step of `task` on its `shard` with the gradients of all ranks summed through `comm`
/// ([`Communicator::reduce_step`]): every rank's gradients become `Σ units_r · grad_r /
/// Σ units_r`, its loss the same mean of the losses; returns the step's loss and units over
/// all ranks, and whether any rank asked to stop. The sums run in f64, so the reduced
/// gradient differs from one process's whole-batch gradient only by the order of the sums.
pub(super) fn step_on(
    comm: &dyn Communicator,
    task: &mut dyn Task,
    shard: Shard,
    buf: &mut GradBuffer,
    stop: bool,
) -> Result<(StepStats, bool)> {
    let local = comm.reduce_step(buf, stop, &mut |ready| {
        let stats = task.train_batch_announcing(shard, ready)?;
        let parts = task.parts();
        let grads: Vec<&[f32]> = parts.iter().map(|p| &*p.grads).collect();
        ready.parts_final(0, stats.units, &grads)?;
        Ok(stats)
    })?;
    let p = buf.params();
    let v = buf.values();
    let total = v[p];
    if total <= 0.0 {
        return Err(Error::Input(
            "a training batch with no targets on any rank".into(),
        ));
    }
    // Parameters kept in f64 (Task::parts_f64): one more all-reduce, weighted the same way.
    let wide_n: usize = task.parts_f64().iter().map(|p| p.grads.len()).sum();
    if wide_n > 0 {
        let u = local.units as f64;
        let mut wide = Vec::with_capacity(wide_n);
        for part in task.parts_f64() {
            wide.extend(
                part.grads
                    .iter()
                    .map(|&g| if local.units == 0 { 0.0 } else { g * u }),
            );
        }
        comm.all_reduce_sum_f64(&mut wide)?;
        let mut k = 0;
        for part in task.parts_f64() {
            for g in part.grads.iter_mut() {
                *g = wide[k] / total;
                k += 1;
            }
        }
    }
    let mut k = 0;
    for part in task.parts() {
        for g in part.grads.iter_mut() {
            *g = (v[k] / total) as f32;
            k += 1;
        }
    }
    let stats = StepStats {
        loss: v[p + 1] / total,
        units: total as u64,
    };
    Ok((stats, v[p + 2] > 0.0))
}

/// One process: rank 0 of 1; the collective operations leave the buffers as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Local;

impl Communicator for Local {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum_f64(&self, _buf: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn all_reduce_sum_f32(&self, _buf: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn all_gather(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        Ok(vec![bytes.to_vec()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two simulated ranks summed by hand: the default reduce_step weighs every part by the
    /// units, whatever order the parts were announced in, and checks every part came.
    #[test]
    fn the_default_reduce_step_weighs_the_parts_and_wants_them_all() {
        let mut buf = GradBuffer::new([2, 1, 3]);
        assert_eq!((buf.parts(), buf.params()), (3, 6));
        assert_eq!((buf.bucket(1), buf.bucket(3)), (2..3, 6..9));
        let g = [vec![1.0f32, 2.0], vec![3.0], vec![4.0, 5.0, 6.5]];
        let stats = Local
            .reduce_step(&mut buf, true, &mut |ready| {
                ready.parts_final(2, 4, &[&g[2]])?;
                // Announced again with more parts: part 2 is not written twice.
                ready.parts_final(1, 4, &[&g[1], &[9.0, 9.0, 9.0]])?;
                ready.parts_final(0, 4, &[&g[0], &g[1], &g[2]])?;
                Ok(StepStats {
                    loss: 0.5,
                    units: 4,
                })
            })
            .unwrap();
        assert_eq!(stats.units, 4);
        assert_eq!(
            buf.values(),
            &[4.0, 8.0, 12.0, 16.0, 20.0, 26.0, 4.0, 2.0, 1.0]
        );
        // A step that forgets part 0 is an error.
        let e = Local
            .reduce_step(&mut buf, false, &mut |ready| {
                ready.parts_final(1, 1, &[&g[1], &g[2]])?;
                Ok(StepStats {
                    loss: 0.0,
                    units: 1,
                })
            })
            .unwrap_err();
        assert!(e.to_string().contains("parts 1.. only"), "{e}");
        let e = Local
            .reduce_step(&mut GradBuffer::new([2]), false, &mut |ready| {
                ready.parts_final(0, 1, &[&[1.0]])?;
                Ok(StepStats {
                    loss: 0.0,
                    units: 1,
                })
            })
            .unwrap_err();
        assert!(e.to_string().contains("do not fit"), "{e}");
    }
}
