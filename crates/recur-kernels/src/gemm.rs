//! Matrix multiply `C (m, n) = [C +] A (m, k) · B (k, n)` over strided views of flat buffers.
//!
//! Views carry a row stride and a column stride, so a transposed operand is the same buffer with
//! its strides swapped ([`MatRef::t`]). [`matmul`] checks every view against its buffer and
//! then calls the `gemm` crate (run-time CPU dispatch: AVX-512, AVX2+FMA, scalar);
//! [`matmul_naive`] is the plain triple loop it is tested against.

use crate::Real;

/// A read-only strided matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    /// The buffer the view points into.
    pub data: &'a [T],
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance between consecutive rows, in elements.
    pub rs: usize,
    /// Distance between consecutive columns, in elements.
    pub cs: usize,
}

/// A mutable strided matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    /// The buffer the view points into.
    pub data: &'a mut [T],
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance between consecutive rows, in elements.
    pub rs: usize,
    /// Distance between consecutive columns, in elements.
    pub cs: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A dense row-major (rows, cols) matrix at the start of `data`.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }
    /// A row-major (rows, cols) matrix whose rows are `ld` elements apart.
    pub fn strided(data: &'a [T], rows: usize, cols: usize, ld: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            rs: ld,
            cs: 1,
        }
    }
    /// The transpose (no copy).
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }
    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1)
                .checked_mul(self.rs)
                .and_then(|a| (self.cols - 1).checked_mul(self.cs).map(|b| (a, b)))
                .and_then(|(a, b)| a.checked_add(b))
                .is_some_and(|last| last < self.data.len())
    }
}

impl<'a, T> MatMut<'a, T> {
    /// A dense row-major (rows, cols) matrix at the start of `data`.
    pub fn new(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        MatMut {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }
    /// A row-major (rows, cols) matrix whose rows are `ld` elements apart.
    pub fn strided(data: &'a mut [T], rows: usize, cols: usize, ld: usize) -> Self {
        MatMut {
            data,
            rows,
            cols,
            rs: ld,
            cs: 1,
        }
    }
    fn fits(&self) -> bool {
        MatRef {
            data: &*self.data,
            rows: self.rows,
            cols: self.cols,
            rs: self.rs,
            cs: self.cs,
        }
        .fits()
    }
}

/// How the work of one multiply may be split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Par {
    /// On the calling thread only (the per-time-step multiplies).
    Seq,
    /// On up to [`crate::num_threads`] threads (the multiplies hoisted out of the time loop).
    Threads,
}

fn check<T>(c: &MatMut<'_, T>, a: &MatRef<'_, T>, b: &MatRef<'_, T>) {
    assert!(
        a.rows == c.rows && b.cols == c.cols && a.cols == b.rows,
        "matmul shapes: C {}x{} = A {}x{} * B {}x{}",
        c.rows,
        c.cols,
        a.rows,
        a.cols,
        b.rows,
        b.cols
    );
    assert!(
        a.fits() && b.fits() && c.fits(),
        "matmul view out of its buffer"
    );
}

/// `C = A·B`, or `C += A·B` when `accumulate`.
///
/// Panics if the shapes disagree or a view reaches outside its buffer (a bug in the caller:
/// shapes are validated before any data reaches the kernels).
pub fn matmul<T: Real>(
    c: MatMut<'_, T>,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
    par: Par,
) {
    check(&c, &a, &b);
    if c.rows == 0 || c.cols == 0 {
        return;
    }
    if a.cols == 0 {
        if !accumulate {
            for i in 0..c.rows {
                for j in 0..c.cols {
                    c.data[i * c.rs + j * c.cs] = T::ZERO;
                }
            }
        }
        return;
    }
    let threads = crate::num_threads();
    let parallelism = match par {
        Par::Threads if threads > 1 => gemm::Parallelism::Rayon(threads),
        _ => gemm::Parallelism::None,
    };
    // SAFETY: `check` proved that every (i, j) index of the three views, with the given strides,
    // lies inside its slice, and `c` is borrowed mutably so it cannot alias `a` or `b`. The
    // strides fit in isize because they index existing slices. `gemm` reads A and B and writes
    // C only at those indices.
    unsafe {
        gemm::gemm(
            c.rows,
            c.cols,
            a.cols,
            c.data.as_mut_ptr(),
            c.cs as isize,
            c.rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The naive reference for [`matmul`]: a triple loop summing in f64.
pub fn matmul_naive<T: Real>(
    c: MatMut<'_, T>,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
) {
    check(&c, &a, &b);
    for i in 0..c.rows {
        for j in 0..c.cols {
            let mut s = 0.0f64;
            for p in 0..a.cols {
                s += a.data[i * a.rs + p * a.cs].to_f64() * b.data[p * b.rs + j * b.cs].to_f64();
            }
            let dst = &mut c.data[i * c.rs + j * c.cs];
            *dst = if accumulate {
                T::from_f64(dst.to_f64() + s)
            } else {
                T::from_f64(s)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    fn run<T: Real>(m: usize, n: usize, k: usize, ta: bool, tb: bool, acc: bool, tol: f64) {
        let a: Vec<T> = fill(m * k + 3, 1).into_iter().map(T::from_f64).collect();
        let b: Vec<T> = fill(k * n + 5, 2).into_iter().map(T::from_f64).collect();
        let c0: Vec<T> = fill(m * n * 2 + 1, 3)
            .into_iter()
            .map(T::from_f64)
            .collect();
        let av = if ta {
            MatRef::new(&a, k, m).t()
        } else {
            MatRef::new(&a, m, k)
        };
        let bv = if tb {
            MatRef::new(&b, n, k).t()
        } else {
            MatRef::new(&b, k, n)
        };
        let (mut c1, mut c2) = (c0.clone(), c0.clone());
        // C rows are 2n apart: exercises a strided destination.
        matmul(
            MatMut::strided(&mut c1, m, n, 2 * n),
            av,
            bv,
            acc,
            Par::Threads,
        );
        matmul_naive(MatMut::strided(&mut c2, m, n, 2 * n), av, bv, acc);
        for (x, y) in c1.iter().zip(&c2) {
            assert!(
                (x.to_f64() - y.to_f64()).abs() <= tol * (1.0 + y.to_f64().abs()),
                "m={m} n={n} k={k} ta={ta} tb={tb} acc={acc}: {x} vs {y}"
            );
        }
    }

    #[test]
    fn fast_matches_naive_on_awkward_sizes() {
        let sizes = [0, 1, 2, 3, 7, 8, 9, 16, 17, 33, 65];
        for &m in &sizes {
            for &n in &[0, 1, 5, 16, 31] {
                for &k in &[0, 1, 4, 13, 64] {
                    for (ta, tb, acc) in [
                        (false, false, false),
                        (true, false, true),
                        (false, true, false),
                        (true, true, true),
                    ] {
                        run::<f32>(m, n, k, ta, tb, acc, 1e-5);
                        run::<f64>(m, n, k, ta, tb, acc, 1e-13);
                    }
                }
            }
        }
        run::<f32>(200, 300, 150, false, true, true, 1e-4);
    }

    #[test]
    #[should_panic(expected = "out of its buffer")]
    fn views_are_bounds_checked() {
        let a = [1.0f32; 4];
        let b = [1.0f32; 4];
        let mut c = [0.0f32; 3];
        matmul(
            MatMut::new(&mut c, 2, 2),
            MatRef::new(&a, 2, 2),
            MatRef::new(&b, 2, 2),
            false,
            Par::Seq,
        );
    }
}
