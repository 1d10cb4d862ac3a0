//! `nn.Embedding`: a lookup table of vectors, one row per token id.

use crate::error::{Error, Result};
use rand::{Rng, SeedableRng};
use recur_kernels::Real;

/// A table of `num_embeddings` vectors of size `embedding_dim`, the equivalent of
/// `torch.nn.Embedding(num_embeddings, embedding_dim)` (no `padding_idx`, no `max_norm`).
///
/// The parameter is `weight`, (num, dim) row-major; gradients use the same layout.
///
/// ```
/// use recur::nn::Embedding;
/// let emb: Embedding<f64> = Embedding::new(5, 3, 0);
/// let ids = [4, 0, 4];
/// let mut out = vec![0.0; 3 * 3]; // (N=3, dim=3)
/// emb.forward(&ids, &mut out).unwrap();
/// assert_eq!(&out[..3], &emb.weight()[12..15]);
/// // d loss / d out = ones: row 4 gets the gradient twice, row 0 once.
/// let mut grads = emb.zeros_like_params();
/// emb.backward(&ids, &[1.0; 9], &mut grads).unwrap();
/// assert_eq!(&grads[12..15], &[2.0, 2.0, 2.0]);
/// assert_eq!(&grads[0..3], &[1.0, 1.0, 1.0]);
/// ```
#[derive(Clone, Debug)]
pub struct Embedding<T = f32> {
    num: usize,
    dim: usize,
    /// (num, dim)
    weight: Vec<T>,
}

/// Draws from N(0, 1) with the Box–Muller transform (two values per pair of uniforms).
pub(crate) fn normal_values(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        // u1 in (0, 1] so that ln(u1) is finite.
        let u1: f64 = 1.0 - rng.gen::<f64>();
        let u2: f64 = rng.gen::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let a = 2.0 * std::f64::consts::PI * u2;
        out.push(r * a.cos());
        out.push(r * a.sin());
    }
    out.truncate(n);
    out
}

impl<T: Real> Embedding<T> {
    /// A new table with PyTorch's default initialization: every weight drawn from N(0, 1),
    /// from a generator seeded with `seed`.
    pub fn new(num_embeddings: usize, embedding_dim: usize, seed: u64) -> Embedding<T> {
        let weight = normal_values(num_embeddings * embedding_dim, seed)
            .into_iter()
            .map(T::from_f64)
            .collect();
        Embedding {
            num: num_embeddings,
            dim: embedding_dim,
            weight,
        }
    }

    /// A table with the given weight, (num, dim) row-major.
    pub fn from_params(
        num_embeddings: usize,
        embedding_dim: usize,
        weight: Vec<T>,
    ) -> Result<Embedding<T>> {
        let want = num_embeddings * embedding_dim;
        if weight.len() != want {
            return Err(Error::Input(format!(
                "Embedding({num_embeddings}, {embedding_dim}) weight: expected {want} values, got {}",
                weight.len()
            )));
        }
        Ok(Embedding {
            num: num_embeddings,
            dim: embedding_dim,
            weight,
        })
    }

    /// `num_embeddings`: the number of rows (token ids `0..num`).
    pub fn num_embeddings(&self) -> usize {
        self.num
    }
    /// `embedding_dim`: the size of each vector.
    pub fn embedding_dim(&self) -> usize {
        self.dim
    }
    /// The number of parameters, num·dim.
    pub fn num_params(&self) -> usize {
        self.weight.len()
    }
    /// The weight, (num, dim) row-major.
    pub fn weight(&self) -> &[T] {
        &self.weight
    }
    /// All parameters (the weight), flat.
    pub fn params(&self) -> &[T] {
        &self.weight
    }
    /// All parameters, flat, mutable (for optimizers).
    pub fn params_mut(&mut self) -> &mut [T] {
        &mut self.weight
    }
    /// A zeroed gradient buffer with the parameters' layout.
    pub fn zeros_like_params(&self) -> Vec<T> {
        vec![T::ZERO; self.weight.len()]
    }

    fn check_ids(&self, what: &str, ids: &[usize]) -> Result<()> {
        if let Some((k, &id)) = ids.iter().enumerate().find(|(_, &id)| id >= self.num) {
            return Err(Error::Input(format!(
                "Embedding.{what}: ids[{k}] = {id} is out of range for {} embeddings",
                self.num
            )));
        }
        Ok(())
    }

    /// Forward: `out[r] = weight[ids[r]]` for every row.
    ///
    /// - `ids`: (n), each in `0..num_embeddings`
    /// - `out`: (n, dim), overwritten
    ///
    /// Errors if an id is out of range; panics if `out` has the wrong size.
    pub fn forward(&self, ids: &[usize], out: &mut [T]) -> Result<()> {
        let d = self.dim;
        assert_eq!(
            out.len(),
            ids.len() * d,
            "Embedding.forward: out must be (n, dim) = ({}, {d})",
            ids.len()
        );
        self.check_ids("forward", ids)?;
        if d == 0 {
            return Ok(());
        }
        for (row, &id) in out.chunks_exact_mut(d).zip(ids) {
            row.copy_from_slice(&self.weight[id * d..(id + 1) * d]);
        }
        Ok(())
    }

    /// Backward of [`Embedding::forward`]: scatter-adds every row of `dy` into the gradient
    /// row of its id, `grads[ids[r]] += dy[r]` (an id that occurs several times gets the sum).
    ///
    /// - `ids`: (n), the forward ids
    /// - `dy`: (n, dim), d loss / d out
    /// - `grads`: (num, dim), the parameter layout
    ///
    /// Errors if an id is out of range; panics if a buffer has the wrong size.
    pub fn backward(&self, ids: &[usize], dy: &[T], grads: &mut [T]) -> Result<()> {
        let d = self.dim;
        assert_eq!(
            dy.len(),
            ids.len() * d,
            "Embedding.backward: dy must be (n, dim) = ({}, {d})",
            ids.len()
        );
        assert_eq!(
            grads.len(),
            self.weight.len(),
            "Embedding.backward: grads must have the parameters' length"
        );
        self.check_ids("backward", ids)?;
        if d == 0 {
            return Ok(());
        }
        for (row, &id) in dy.chunks_exact(d).zip(ids) {
            for (g, &v) in grads[id * d..(id + 1) * d].iter_mut().zip(row) {
                *g += v;
            }
        }
        Ok(())
    }
}
