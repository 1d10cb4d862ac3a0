//! A minimal owned n-dimensional array: a shape and a row-major buffer.

use crate::error::{fmt_shape, Error, Result};
use recur_kernels::Real;

/// An owned row-major array.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<T> {
    shape: Vec<usize>,
    data: Vec<T>,
}

impl<T: Real> Tensor<T> {
    /// A tensor of `shape` holding `data` (row-major); an error if the sizes disagree.
    pub fn new(shape: &[usize], data: Vec<T>) -> Result<Tensor<T>> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::Input(format!(
                "a tensor of shape {} needs {n} values, got {}",
                fmt_shape(shape),
                data.len()
            )));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            data,
        })
    }
    /// Zeros of `shape`.
    pub fn zeros(shape: &[usize]) -> Tensor<T> {
        Tensor {
            shape: shape.to_vec(),
            data: vec![T::ZERO; shape.iter().product()],
        }
    }
    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// The values, row-major.
    pub fn data(&self) -> &[T] {
        &self.data
    }
    /// The values, row-major, mutable.
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }
    /// Takes the values out.
    pub fn into_data(self) -> Vec<T> {
        self.data
    }
    /// Converts every element (e.g. f32 → f64).
    pub fn cast<U: Real>(&self) -> Tensor<U> {
        Tensor {
            shape: self.shape.clone(),
            data: self.data.iter().map(|x| U::from_f64(x.to_f64())).collect(),
        }
    }
    /// The index, one coordinate per dimension, of the first NaN or infinite value, if any.
    pub fn first_non_finite(&self) -> Option<Vec<usize>> {
        let flat = self.data.iter().position(|v| !v.is_finite())?;
        let mut idx = vec![0; self.shape.len()];
        let mut rest = flat;
        for (i, &d) in self.shape.iter().enumerate().rev() {
            idx[i] = rest % d;
            rest /= d;
        }
        Some(idx)
    }

    /// The same values under another shape with as many elements.
    pub fn reshape(self, shape: &[usize]) -> Result<Tensor<T>> {
        Tensor::new(shape, self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_non_finite_gives_the_multi_index() {
        let mut t: Tensor<f32> = Tensor::zeros(&[2, 3, 4]);
        assert_eq!(t.first_non_finite(), None);
        // (1, 2, 1) is flat index 12 + 8 + 1 = 21; (1, 2, 0) is 20 and comes first.
        t.data_mut()[21] = f32::INFINITY;
        assert_eq!(t.first_non_finite(), Some(vec![1, 2, 1]));
        t.data_mut()[20] = f32::NAN;
        assert_eq!(t.first_non_finite(), Some(vec![1, 2, 0]));
    }
}
