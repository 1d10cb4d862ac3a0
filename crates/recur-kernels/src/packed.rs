//! Matrix multiply with a right-hand side packed once and reused: the recurrent products
//! `h_{t-1} W_hhᵀ` (forward) and `dG_t W_hh` (backward) multiply by the same matrix at every
//! time step, so recur packs it once per call into the layout its microkernel reads.
//!
//! Layout of [`PackedB`]: B (k, n) cut into panels of [`NR`] = 16 columns; panel p holds
//! `B[0..k, 16p..16p+16]` as k rows of 16 contiguous values (zero-padded past n).
//! [`PackedB::matmul`] computes `C (m, n) [+]= A (m, k) · B` in tiles of [`MR`] × 16: on x86-64
//! with AVX2+FMA with a register-blocked microkernel (12 accumulators), elsewhere with a plain
//! loop; with several threads, the panels are split between them.

use crate::gemm::MatRef;
use crate::Real;
use std::any::TypeId;

/// Columns per panel.
pub const NR: usize = 16;
/// Rows per microkernel tile.
pub const MR: usize = 6;
/// From this many multiply-adds per product, [`PackedB::matmul`] splits panels across threads.
pub const THREADS_MIN: usize = 1 << 20;

/// A right-hand side B (k, n), packed into panels of [`NR`] columns.
#[derive(Clone, Debug, Default)]
pub struct PackedB<T> {
    k: usize,
    n: usize,
    /// (panels, k, NR)
    data: Vec<T>,
}

impl<T: Real> PackedB<T> {
    /// An empty packing, to be filled by [`PackedB::pack`] (which allocates once).
    pub fn new() -> PackedB<T> {
        PackedB {
            k: 0,
            n: 0,
            data: Vec::new(),
        }
    }

    /// Packs B (k, n), given as any strided view (e.g. `MatRef::new(w, n, k).t()` for `Wᵀ`).
    /// Reuses the buffer when it is large enough.
    pub fn pack(&mut self, b: MatRef<'_, T>) {
        let (k, n) = (b.rows, b.cols);
        let panels = n.div_ceil(NR);
        self.k = k;
        self.n = n;
        self.data.clear();
        self.data.resize(panels * k * NR, T::ZERO);
        for p in 0..panels {
            let cols = NR.min(n - p * NR);
            let dst = &mut self.data[p * k * NR..(p + 1) * k * NR];
            for kk in 0..k {
                for j in 0..cols {
                    dst[kk * NR + j] = b.data[kk * b.rs + (p * NR + j) * b.cs];
                }
            }
        }
    }

    /// Rows of B (the inner dimension).
    pub fn k(&self) -> usize {
        self.k
    }
    /// Columns of B.
    pub fn n(&self) -> usize {
        self.n
    }

    /// `C (m, n) = A (m, k) · B`, or `C += A · B` when `accumulate`. A and C are row-major with
    /// leading dimensions `lda` and `ldc`. Large products are split across threads.
    pub fn matmul(&self, m: usize, a: &[T], lda: usize, c: &mut [T], ldc: usize, accumulate: bool) {
        self.matmul_with(m, a, lda, c, ldc, accumulate, true)
    }

    /// `C (m, n) = A (m, k) · B + b1 + b2`, the bias rows (n) added to every row of the
    /// product in that order (`(A·B + b1) + b2`, as two separate additions after the product
    /// would give), while the tile is still in registers. `threads` as in
    /// [`PackedB::matmul_with`].
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_bias(
        &self,
        m: usize,
        a: &[T],
        lda: usize,
        c: &mut [T],
        ldc: usize,
        b1: Option<&[T]>,
        b2: Option<&[T]>,
        threads: bool,
    ) {
        let n = self.n;
        assert!(
            b1.is_none_or(|b| b.len() >= n) && b2.is_none_or(|b| b.len() >= n),
            "packed matmul: a bias is shorter than n = {n}"
        );
        self.run(m, a, lda, c, ldc, Ep::Bias(b1, b2), threads)
    }

    /// [`PackedB::matmul`] on the calling thread only when `threads` is false (the caller
    /// already runs one such product per thread).
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_with(
        &self,
        m: usize,
        a: &[T],
        lda: usize,
        c: &mut [T],
        ldc: usize,
        accumulate: bool,
        threads: bool,
    ) {
        let ep = if accumulate { Ep::Add } else { Ep::Store };
        self.run(m, a, lda, c, ldc, ep, threads)
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        m: usize,
        a: &[T],
        lda: usize,
        c: &mut [T],
        ldc: usize,
        ep: Ep<'_, T>,
        threads: bool,
    ) {
        let (k, n) = (self.k, self.n);
        if m == 0 || n == 0 {
            return;
        }
        assert!(lda >= k && ldc >= n, "packed matmul: leading dimensions");
        assert!(
            a.len() >= (m - 1) * lda + k,
            "packed matmul: A is too short"
        );
        assert!(
            c.len() >= (m - 1) * ldc + n,
            "packed matmul: C is too short"
        );
        let panels = n.div_ceil(NR);
        let threads = if threads {
            crate::num_threads().min(panels)
        } else {
            1
        };
        if threads > 1 && m * n * k >= THREADS_MIN {
            let cptr = SendPtr(c.as_mut_ptr());
            self.split(0, panels, threads, m, a, lda, cptr, c.len(), ldc, ep);
        } else {
            self.panels(0, panels, m, a, lda, c, ldc, ep);
        }
    }

    /// Runs panels p0..p1 on `threads` threads by halving the range with `rayon::join` (whose
    /// jobs live on the stack: nothing is allocated per call).
    #[allow(clippy::too_many_arguments)]
    fn split(
        &self,
        p0: usize,
        p1: usize,
        threads: usize,
        m: usize,
        a: &[T],
        lda: usize,
        c: SendPtr<T>,
        clen: usize,
        ldc: usize,
        acc: Ep<'_, T>,
    ) {
        if threads <= 1 || p1 - p0 <= 1 {
            // SAFETY: every call of `split` covers a panel range disjoint from the others, so
            // the columns of C written here are written by no other thread; `matmul` holds the
            // exclusive borrow of C until all of them return.
            let c = unsafe { std::slice::from_raw_parts_mut(c.get(), clen) };
            self.panels(p0, p1, m, a, lda, c, ldc, acc);
            return;
        }
        let mid = p0 + (p1 - p0) * (threads / 2) / threads;
        rayon::join(
            || self.split(p0, mid, threads / 2, m, a, lda, c, clen, ldc, acc),
            || self.split(mid, p1, threads - threads / 2, m, a, lda, c, clen, ldc, acc),
        );
    }

    /// Panels p0..p1 of `C = A · B` (columns 16·p0..16·p1; `C += A · B` when `accumulate`),
    /// C given as a pointer to `clen` values, for threads that write disjoint column ranges of
    /// one buffer.
    ///
    /// Safety: `c` points at `clen` values holding m rows (stride ldc) of n values; A holds m
    /// rows (stride lda) of k values; no other thread touches these columns of C meanwhile.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn panels_ptr(
        &self,
        p0: usize,
        p1: usize,
        m: usize,
        a: &[T],
        lda: usize,
        c: *mut T,
        clen: usize,
        ldc: usize,
        accumulate: bool,
    ) {
        debug_assert!(p1 <= self.n.div_ceil(NR) && lda >= self.k && ldc >= self.n);
        debug_assert!(
            m == 0 || (a.len() >= (m - 1) * lda + self.k && clen >= (m - 1) * ldc + self.n)
        );
        // SAFETY: the caller guarantees that c holds clen values and that only these panels'
        // columns are written through it, by this call alone (as in `split`).
        let c = std::slice::from_raw_parts_mut(c, clen);
        let ep = if accumulate { Ep::Add } else { Ep::Store };
        self.panels(p0, p1, m, a, lda, c, ldc, ep);
    }

    /// Panels p0..p1 of the product.
    #[allow(clippy::too_many_arguments)]
    fn panels(
        &self,
        p0: usize,
        p1: usize,
        m: usize,
        a: &[T],
        lda: usize,
        c: &mut [T],
        ldc: usize,
        acc: Ep<'_, T>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if TypeId::of::<T>() == TypeId::of::<f32>() && crate::cpu::features().avx2_fma {
            let (a, b) = (
                crate::as_f32(a).unwrap(),
                crate::as_f32(&self.data).unwrap(),
            );
            let c = crate::as_f32_mut(c).unwrap();
            let ep = match acc {
                Ep::Store => Ep::Store,
                Ep::Add => Ep::Add,
                Ep::Bias(b1, b2) => {
                    Ep::Bias(b1.and_then(crate::as_f32), b2.and_then(crate::as_f32))
                }
            };
            // SAFETY: the CPU has AVX2+FMA; `matmul` checked that A holds m rows of k values
            // with stride lda and C m rows of n values with stride ldc, and the packed buffer
            // holds every panel; `matmul_bias` checked that the biases hold n values.
            unsafe { avx2::panels(p0, p1, m, self.k, self.n, a, lda, b, c, ldc, ep) };
            return;
        }
        self.panels_naive(p0, p1, m, a, lda, c, ldc, acc);
    }

    /// The plain loop over the packed layout (f64, CPUs without AVX2, and the reference).
    #[allow(clippy::too_many_arguments)]
    pub fn panels_naive(
        &self,
        p0: usize,
        p1: usize,
        m: usize,
        a: &[T],
        lda: usize,
        c: &mut [T],
        ldc: usize,
        acc: Ep<'_, T>,
    ) {
        let (k, n) = (self.k, self.n);
        for p in p0..p1 {
            let cols = NR.min(n - p * NR);
            let panel = &self.data[p * k * NR..(p + 1) * k * NR];
            for i in 0..m {
                let mut sums = [T::ZERO; NR];
                for kk in 0..k {
                    let av = a[i * lda + kk];
                    for j in 0..NR {
                        sums[j] += av * panel[kk * NR + j];
                    }
                }
                for (j, &sum) in sums.iter().enumerate().take(cols) {
                    let col = p * NR + j;
                    let dst = &mut c[i * ldc + col];
                    *dst = match acc {
                        Ep::Store => sum,
                        Ep::Add => *dst + sum,
                        Ep::Bias(b1, b2) => {
                            let v = sum + b1.map_or(T::ZERO, |b| b[col]);
                            v + b2.map_or(T::ZERO, |b| b[col])
                        }
                    };
                }
            }
        }
    }
}

/// What a product does with C: overwrite it, add to it, or overwrite it with the product plus
/// up to two bias rows (n values each).
pub enum Ep<'a, T> {
    /// `C = A·B`
    Store,
    /// `C += A·B`
    Add,
    /// `C = (A·B + b1) + b2` (a missing bias adds nothing)
    Bias(Option<&'a [T]>, Option<&'a [T]>),
}

impl<T> Clone for Ep<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Ep<'_, T> {}

#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub(crate) *mut T);
// SAFETY: used only to hand disjoint column ranges of one buffer to scoped threads.
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}
impl<T> SendPtr<T> {
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use super::{Ep, MR, NR};
    use std::arch::x86_64::*;

    /// Panels p0..p1 of `C = [C +] A · B`, B packed (see [`super::PackedB`]).
    ///
    /// Safety: AVX2+FMA available; A holds m rows (stride lda) of k values, C m rows (stride
    /// ldc) of n values, b every panel of k × 16 values.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn panels(
        p0: usize,
        p1: usize,
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        lda: usize,
        b: &[f32],
        c: &mut [f32],
        ldc: usize,
        acc: Ep<'_, f32>,
    ) {
        let ap = a.as_ptr();
        let cp = c.as_mut_ptr();
        // Row blocks of about 256 KiB of A (kept in L2, half of it, while every panel of B
        // sweeps over them): a tall A is then read once, not once per panel. (512 KiB blocks,
        // the whole L2, ran k = 128 products at 55 instead of 73 GFLOP/s on one core.)
        let mc = ((1usize << 16) / k.max(1) / MR).max(1) * MR;
        let mut i0 = 0;
        while i0 < m {
            let i1 = (i0 + mc).min(m);
            for p in p0..p1 {
                let bp = b.as_ptr().add(p * k * NR);
                let cols = NR.min(n - p * NR);
                let mut i = i0;
                while i < i1 {
                    let rows = MR.min(i1 - i);
                    tile(
                        rows,
                        cols,
                        k,
                        ap.add(i * lda),
                        lda,
                        bp,
                        cp.add(i * ldc + p * NR),
                        ldc,
                        acc,
                        p * NR,
                    );
                    i += MR;
                }
            }
            i0 = i1;
        }
    }

    /// One tile of `rows` (≤ 6) × `cols` (≤ 16) outputs over the whole inner dimension.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `a` holds `rows` rows of k values at stride `lda`, `b` the
    /// packed panel, `c` `rows` rows of at least `col + cols` values at stride `ldc`, which
    /// nothing else writes meanwhile.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        rows: usize,
        cols: usize,
        k: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        acc: Ep<'_, f32>,
        col: usize,
    ) {
        // U: k-steps interleaved, so that every tile keeps about 8 independent FMA chains
        // (FMA latency 4 cycles, 2 per cycle).
        match rows {
            6 => tile_r::<6, 1>(cols, k, a, lda, b, c, ldc, acc, col),
            5 => tile_r::<5, 1>(cols, k, a, lda, b, c, ldc, acc, col),
            4 => tile_r::<4, 1>(cols, k, a, lda, b, c, ldc, acc, col),
            3 => tile_r::<3, 2>(cols, k, a, lda, b, c, ldc, acc, col),
            2 => tile_r::<2, 2>(cols, k, a, lda, b, c, ldc, acc, col),
            _ => tile_r::<1, 4>(cols, k, a, lda, b, c, ldc, acc, col),
        }
    }

    /// R rows × 16 columns: 2·R·U accumulators, k unrolled by U.
    ///
    /// # Safety
    /// As [`tile`], with `rows == R`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_r<const R: usize, const U: usize>(
        cols: usize,
        k: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        acc: Ep<'_, f32>,
        col: usize,
    ) {
        let s = acc_tile::<R, U>(k, a, lda, b);
        // The bias values of these columns (zero past n), as two 8-lane halves.
        let bias = |b: Option<&[f32]>| {
            let mut t = [0f32; NR];
            if let Some(b) = b {
                for (j, x) in t.iter_mut().enumerate().take(cols) {
                    *x = b[col + j];
                }
            }
            [
                _mm256_loadu_ps(t.as_ptr()),
                _mm256_loadu_ps(t.as_ptr().add(8)),
            ]
        };
        let (b1, b2) = match acc {
            Ep::Bias(b1, b2) => (Some(bias(b1)), Some(bias(b2))),
            _ => (None, None),
        };
        for (r, &[mut v0, mut v1]) in s.iter().enumerate() {
            let cr = c.add(r * ldc);
            if let (Some(b1), Some(b2)) = (b1, b2) {
                v0 = _mm256_add_ps(_mm256_add_ps(v0, b1[0]), b2[0]);
                v1 = _mm256_add_ps(_mm256_add_ps(v1, b1[1]), b2[1]);
            }
            let add = matches!(acc, Ep::Add);
            if cols == NR {
                if add {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(cr));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(cr.add(8)));
                }
                _mm256_storeu_ps(cr, v0);
                _mm256_storeu_ps(cr.add(8), v1);
            } else {
                let mut tmp = [0f32; NR];
                _mm256_storeu_ps(tmp.as_mut_ptr(), v0);
                _mm256_storeu_ps(tmp.as_mut_ptr().add(8), v1);
                for (j, &v) in tmp.iter().enumerate().take(cols) {
                    let d = cr.add(j);
                    *d = if add { *d + v } else { v };
                }
            }
        }
    }

    /// The R × 16 products of one tile, `Σ_kk A[r, kk] · B[kk, 0..16]`, as two 8-lane halves
    /// per row: 2·R·U accumulators, k unrolled by U (partial sums added at the end).
    ///
    /// Safety: AVX2+FMA available (inlined into `target_feature` functions only); A holds R
    /// rows (stride lda) of k values, b a panel of k × 16 values.
    #[inline(always)]
    pub(crate) unsafe fn acc_tile<const R: usize, const U: usize>(
        k: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
    ) -> [[__m256; 2]; R] {
        let mut s = [[[_mm256_setzero_ps(); 2]; R]; U];
        let mut kk = 0;
        while kk + U <= k {
            for (u, su) in s.iter_mut().enumerate() {
                let b0 = _mm256_loadu_ps(b.add((kk + u) * NR));
                let b1 = _mm256_loadu_ps(b.add((kk + u) * NR + 8));
                for (r, sr) in su.iter_mut().enumerate() {
                    let x = _mm256_broadcast_ss(&*a.add(r * lda + kk + u));
                    sr[0] = _mm256_fmadd_ps(x, b0, sr[0]);
                    sr[1] = _mm256_fmadd_ps(x, b1, sr[1]);
                }
            }
            kk += U;
        }
        while kk < k {
            let b0 = _mm256_loadu_ps(b.add(kk * NR));
            let b1 = _mm256_loadu_ps(b.add(kk * NR + 8));
            for (r, sr) in s[0].iter_mut().enumerate() {
                let x = _mm256_broadcast_ss(&*a.add(r * lda + kk));
                sr[0] = _mm256_fmadd_ps(x, b0, sr[0]);
                sr[1] = _mm256_fmadd_ps(x, b1, sr[1]);
            }
            kk += 1;
        }
        let mut out = s[0];
        for su in s.iter().skip(1) {
            for (o, x) in out.iter_mut().zip(su) {
                o[0] = _mm256_add_ps(o[0], x[0]);
                o[1] = _mm256_add_ps(o[1], x[1]);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::{matmul_naive, MatMut};

    #[test]
    fn bias_epilogue_matches_product_then_two_additions() {
        // Bit for bit: the fused epilogue makes the same two additions in the same order.
        for &m in &[1usize, 5, 6, 13] {
            for &n in &[1usize, 15, 16, 17, 40] {
                for &k in &[0usize, 3, 33] {
                    let a: Vec<f32> = (0..m * k)
                        .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1)
                        .collect();
                    let w: Vec<f32> = (0..n * k)
                        .map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.1)
                        .collect();
                    let b1: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
                    let b2: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos() * 1e-3).collect();
                    let mut pb = PackedB::new();
                    pb.pack(MatRef::new(&w, n, k).t());
                    for (x1, x2) in [
                        (Some(&b1[..]), Some(&b2[..])),
                        (Some(&b1[..]), None),
                        (None, None),
                    ] {
                        let mut want = vec![7f32; m * n];
                        pb.matmul(m, &a, k, &mut want, n, false);
                        for row in want.chunks_exact_mut(n) {
                            for (j, v) in row.iter_mut().enumerate() {
                                if let Some(b) = x1 {
                                    *v += b[j];
                                }
                                if let Some(b) = x2 {
                                    *v += b[j];
                                }
                            }
                        }
                        let mut got = vec![7f32; m * n];
                        pb.matmul_bias(m, &a, k, &mut got, n, x1, x2, true);
                        assert_eq!(got, want, "m={m} n={n} k={k}");
                        // and the plain loop (f64) agrees with the f64 product
                        let a64: Vec<f64> = a.iter().map(|&x| x as f64).collect();
                        let w64: Vec<f64> = w.iter().map(|&x| x as f64).collect();
                        let (c1, c2) = (
                            x1.map(|b| b.iter().map(|&x| x as f64).collect::<Vec<_>>()),
                            x2.map(|b| b.iter().map(|&x| x as f64).collect::<Vec<_>>()),
                        );
                        let mut pb64 = PackedB::new();
                        pb64.pack(MatRef::new(&w64, n, k).t());
                        let mut got64 = vec![7f64; m * n];
                        pb64.matmul_bias(
                            m,
                            &a64,
                            k,
                            &mut got64,
                            n,
                            c1.as_deref(),
                            c2.as_deref(),
                            false,
                        );
                        for (x, y) in got64.iter().zip(&want) {
                            assert!((x - *y as f64).abs() <= 1e-5 * (1.0 + y.abs() as f64));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn packed_matches_naive_on_awkward_sizes() {
        for &m in &[0usize, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 13, 64] {
            for &n in &[1usize, 3, 15, 16, 17, 33, 100] {
                for &k in &[0usize, 1, 2, 7, 64] {
                    for acc in [false, true] {
                        let a: Vec<f32> = (0..m * (k + 2))
                            .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1)
                            .collect();
                        // B given as Wᵀ with W (n, k) row-major, as the engine uses it.
                        let w: Vec<f32> = (0..n * k)
                            .map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.1)
                            .collect();
                        let c0: Vec<f32> = (0..m * (n + 3)).map(|i| (i % 3) as f32).collect();
                        let mut pb = PackedB::new();
                        pb.pack(MatRef::new(&w, n, k).t());
                        let mut c1 = c0.clone();
                        pb.matmul(m, &a, k + 2, &mut c1, n + 3, acc);
                        let mut c2 = c0.clone();
                        matmul_naive(
                            MatMut::strided(&mut c2, m, n, n + 3),
                            MatRef::strided(&a, m, k, k + 2),
                            MatRef::new(&w, n, k).t(),
                            acc,
                        );
                        for (x, y) in c1.iter().zip(&c2) {
                            assert!(
                                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                                "m={m} n={n} k={k} acc={acc}: {x} vs {y}"
                            );
                        }
                        // The plain loop over the packed layout agrees too (f64).
                        let a64: Vec<f64> = a.iter().map(|&x| x as f64).collect();
                        let w64: Vec<f64> = w.iter().map(|&x| x as f64).collect();
                        let mut pb64 = PackedB::new();
                        pb64.pack(MatRef::new(&w64, n, k).t());
                        let mut c3: Vec<f64> = c0.iter().map(|&x| x as f64).collect();
                        pb64.matmul(m, &a64, k + 2, &mut c3, n + 3, acc);
                        for (x, y) in c3.iter().zip(&c2) {
                            assert!((x - *y as f64).abs() <= 1e-4 * (1.0 + y.abs() as f64));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn threaded_split_matches() {
        crate::set_num_threads(2);
        let (m, n, k) = (64, 1000, 300);
        let a: Vec<f32> = (0..m * k).map(|i| ((i % 17) as f32 - 8.0) * 0.01).collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i % 23) as f32 - 11.0) * 0.01)
            .collect();
        let mut pb = PackedB::new();
        pb.pack(MatRef::new(&w, n, k).t());
        let mut c1 = vec![0f32; m * n];
        pb.matmul(m, &a, k, &mut c1, n, false);
        let mut c2 = vec![0f32; m * n];
        matmul_naive(
            MatMut::new(&mut c2, m, n),
            MatRef::new(&a, m, k),
            MatRef::new(&w, n, k).t(),
            false,
        );
        for (x, y) in c1.iter().zip(&c2) {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()));
        }
    }
}
