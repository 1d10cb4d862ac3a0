//! Dropout masks drawn row by row, for training on a share of a batch (data parallelism).
//!
//! Masks drawn from one generator over a whole batch depend on the batch: on its size, on
//! its padding, on the order the recurrent stack sorts its rows in. A rank that computes
//! rows 8..16 of a batch of 32 cannot draw the masks of those rows without drawing those of
//! rows 0..8 first. [`RowMasks`] gives every row of a batch its own generator instead: the
//! ChaCha8 stream `row` of the step's key. A row's masks then depend on the key and on the
//! row's index in the whole batch only, so that any split of the batch over ranks computes
//! the masks one process computing the whole batch does.
//!
//! ```
//! use recur::models::rows::RowMasks;
//! let m = RowMasks::new(7, 0.5);
//! let (mut a, mut b) = (vec![0f32; 6], vec![0f32; 6]);
//! m.fill(&mut m.rng(3), &mut a);
//! m.fill(&mut m.rng(3), &mut b);
//! assert_eq!(a, b);
//! assert!(a.iter().all(|&x| x == 0.0 || x == 2.0));
//! ```

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recur_kernels::Real;

/// The dropout of one training step, row by row: a key (drawn once per step by the caller,
/// the same on every rank) and the probability of dropping a value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowMasks {
    /// The step's key: the seed of every row's generator.
    pub key: u64,
    /// The probability of dropping a value, in `[0, 1)`.
    pub p: f64,
}

impl RowMasks {
    /// Masks of probability `p` for the step whose key is `key`.
    pub fn new(key: u64, p: f64) -> RowMasks {
        RowMasks { key, p }
    }

    /// The generator of row `row` of the whole batch.
    pub fn rng(&self, row: usize) -> ChaCha8Rng {
        let mut r = ChaCha8Rng::seed_from_u64(self.key);
        r.set_stream(row as u64);
        r
    }

    /// Fills `out` with the values of an inverted-dropout mask (as `nn.Dropout`): 0 with
    /// probability `p`, else `1 / (1 - p)`.
    pub fn fill<T: Real>(&self, rng: &mut ChaCha8Rng, out: &mut [T]) {
        let keep = 1.0 - self.p;
        let scale = T::from_f64(1.0 / keep);
        for x in out.iter_mut() {
            *x = if rng.gen::<f64>() < keep {
                scale
            } else {
                T::ZERO
            };
        }
    }
}
