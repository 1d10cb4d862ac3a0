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
    /// The same values under another shape with as many elements.
    pub fn reshape(self, shape: &[usize]) -> Result<Tensor<T>> {
        Tensor::new(shape, self.data)
    }
}
