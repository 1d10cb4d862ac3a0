//! What the training loop needs from a group of processes that train one model together.

use crate::error::Result;

/// The ranks that train one model together (data parallelism): who this is, how many there
/// are, and the two collective operations the loop uses. Every rank must call the collective
/// operations in the same order with buffers of the same length.
///
/// [`Local`] is the single process. An implementation over MPI (or threads) provides the
/// same four operations.
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
