//! int8 weights and dynamically quantized activations, in the manner of PyTorch's
//! `torch.ao.quantization.quantize_dynamic` on x86 (fbgemm):
//!
//! - weights: int8, symmetric, one scale per output row (channel): `w ≈ s_w[j] · q[j, k]` with
//!   `q ∈ [-127, 127]`, `s_w[j] = max_k |w[j, k]| / 127`;
//! - activations: quantized at every call, affine u8 with fbgemm's `reduce_range` (7 bits, so
//!   that `vpmaddubsw`'s pairwise i16 sums cannot saturate: 2 · 127 · 127 < 2^15):
//!   `x ≈ s_x · (q_x − z_x)`, `q_x ∈ [0, 127]`, the range [min(x, 0), max(x, 0)], one scale
//!   per input row (PyTorch uses one per tensor; per row makes a stream's result independent of
//!   the other streams of its batch);
//! - `y[j] = s_w[j] · s_x · (Σ_k q[j, k] q_x[k] − z_x Σ_k q[j, k])`: the integer sum is exact,
//!   so the kernels ([`QuantMat::matvecs_rows`]: AVX-512 VNNI `vpdpbusd` when the CPU has
//!   it, see [`vnni()`], else AVX2 `vpmaddubsw` + `vpmaddwd`) and the plain ones ([`naive`])
//!   give the same bits.
//! - [`QuantMat::gemm`]: the same product over many rows (a whole sequence's input
//!   projection), blocked for the caches and split across threads.

/// Columns are stored in blocks of this many (zero-padded): one 256-bit load of int8 weights.
pub const BLOCK: usize = 32;

/// The padded width of `cols` columns.
pub fn padded(cols: usize) -> usize {
    cols.div_ceil(BLOCK) * BLOCK
}

/// The largest `cols` whose integer sums cannot overflow i32 (|q| ≤ 127 times q_x ≤ 127).
pub const MAX_COLS: usize = (i32::MAX as usize) / (127 * 127);

/// A row-major (rows, cols) matrix of int8 weights with one scale per row.
#[derive(Clone, Debug)]
pub struct QuantMat {
    rows: usize,
    cols: usize,
    /// (rows, padded(cols)), zero beyond `cols`.
    q: Vec<i8>,
    /// (rows): `max |w| / 127` (1 for an all-zero row).
    scale: Vec<f32>,
    /// (rows): `Σ_k q[j, k]`.
    row_sum: Vec<i32>,
}

impl QuantMat {
    /// Quantizes the row-major (rows, cols) f32 matrix `w` (round to nearest, ties to even).
    /// Panics if `cols > MAX_COLS` or a value is not finite.
    pub fn from_f32(w: &[f32], rows: usize, cols: usize) -> QuantMat {
        assert_eq!(
            w.len(),
            rows * cols,
            "QuantMat: {rows}x{cols} needs {} values",
            rows * cols
        );
        assert!(cols <= MAX_COLS, "QuantMat: at most {MAX_COLS} columns");
        let ld = padded(cols);
        let mut q = vec![0i8; rows * ld];
        let mut scale = vec![1.0f32; rows];
        let mut row_sum = vec![0i32; rows];
        for j in 0..rows {
            let row = &w[j * cols..(j + 1) * cols];
            assert!(
                row.iter().all(|x| x.is_finite()),
                "QuantMat: non-finite weight"
            );
            let max = row.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            if max > 0.0 {
                scale[j] = stable_scale(max);
            }
            let mut s = 0i32;
            for (k, &x) in row.iter().enumerate() {
                let v = round_even(x / scale[j]).clamp(-127.0, 127.0) as i8;
                q[j * ld + k] = v;
                s += v as i32;
            }
            row_sum[j] = s;
        }
        QuantMat {
            rows,
            cols,
            q,
            scale,
            row_sum,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The int8 weights, row-major (rows, cols) (without the padding).
    pub fn values(&self) -> Vec<i8> {
        let ld = padded(self.cols);
        (0..self.rows)
            .flat_map(|j| self.q[j * ld..j * ld + self.cols].iter().copied())
            .collect()
    }

    /// The scale of every row.
    pub fn scales(&self) -> &[f32] {
        &self.scale
    }

    /// The weights as the kernel sees them, `s_w[j] · q[j, k]`, row-major (rows, cols).
    pub fn dequantized(&self) -> Vec<f32> {
        let ld = padded(self.cols);
        (0..self.rows)
            .flat_map(|j| (0..self.cols).map(move |k| self.scale[j] * self.q[j * ld + k] as f32))
            .collect()
    }

    /// `y[r, j] (+)= s_w[j] · s_x[r] · (Σ_k q[j, k] q_x[r, k] − z_x[r] · Σ_k q[j, k])` for the
    /// weight rows `j0..j1` and the `n` quantized input rows of `x` (see [`quantize_rows`]),
    /// writing through a pointer so that threads can fill different columns of the same rows.
    ///
    /// # Safety
    /// `y` points at `n` rows of stride `ldy ≥ j1` whose columns `j0..j1` nothing else reads
    /// or writes during the call.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn matvecs_rows(
        &self,
        j0: usize,
        j1: usize,
        n: usize,
        x: &QuantRows<'_>,
        y: *mut f32,
        ldy: usize,
        accumulate: bool,
    ) {
        let ld = padded(self.cols);
        assert!(j0 <= j1 && j1 <= self.rows && ldy >= j1);
        assert!(x.ld == ld && x.q.len() >= n * ld && x.scale.len() >= n && x.zero.len() >= n);
        let w = |j: usize| &self.q[j * ld..(j + 1) * ld];
        let xrow = |r: usize| &x.q[r * ld..(r + 1) * ld];
        let put = |r: usize, j: usize, dot: i32| {
            let v = self.scale[j] * x.scale[r] * (dot - x.zero[r] * self.row_sum[j]) as f32;
            let out = y.add(r * ldy + j);
            *out = if accumulate { *out + v } else { v };
        };
        // Blocks that stay in cache: JB weight rows (L2) against RB input rows (L2), inside
        // them four weight rows (L1) against two input rows at a time, so that every load of
        // weights serves two rows and every load of an input row four weight rows.
        let jb = (BLOCK_BYTES / ld).clamp(4, 1 << 16) / 4 * 4;
        let rb = (BLOCK_BYTES / ld).clamp(2, 1 << 16) / 2 * 2;
        let mut jb0 = j0;
        while jb0 < j1 {
            let jb1 = (jb0 + jb).min(j1);
            let mut r0 = 0;
            while r0 < n {
                let r1 = (r0 + rb).min(n);
                let mut j = jb0;
                while j + 4 <= jb1 {
                    let ws = [w(j), w(j + 1), w(j + 2), w(j + 3)];
                    let mut r = r0;
                    while r + 2 <= r1 {
                        let d = dot4x2_u8_i8([xrow(r), xrow(r + 1)], ws);
                        for (q, &v) in d[0].iter().enumerate() {
                            put(r, j + q, v);
                        }
                        for (q, &v) in d[1].iter().enumerate() {
                            put(r + 1, j + q, v);
                        }
                        r += 2;
                    }
                    if r < r1 {
                        for (q, &v) in dot4_u8_i8(xrow(r), ws).iter().enumerate() {
                            put(r, j + q, v);
                        }
                    }
                    j += 4;
                }
                for j in j..jb1 {
                    for r in r0..r1 {
                        put(r, j, dot_u8_i8(xrow(r), w(j)));
                    }
                }
                r0 = r1;
            }
            jb0 = jb1;
        }
    }

    /// `y (n, rows) (+)= x · Wᵀ` as [`QuantMat::matvecs`], the weight rows split across up to
    /// `threads` threads ([`crate::team`]) when the product is large enough to pay for them:
    /// the batched input projection of a whole sequence.
    pub fn gemm(
        &self,
        n: usize,
        x: &QuantRows<'_>,
        y: &mut [f32],
        ldy: usize,
        accumulate: bool,
        threads: usize,
    ) {
        assert!(ldy >= self.rows);
        if n == 0 || self.rows == 0 {
            return;
        }
        assert!(
            y.len() >= (n - 1) * ldy + self.rows,
            "QuantMat::gemm: output too small"
        );
        let work = n * self.rows * padded(self.cols);
        let chunks = if work < crate::packed::THREADS_MIN {
            1
        } else {
            threads.clamp(1, self.rows.div_ceil(4))
        };
        let bound = |c: usize| {
            if c == chunks {
                self.rows
            } else {
                c * self.rows / chunks / 4 * 4
            }
        };
        struct Out(*mut f32);
        // SAFETY: the pointer is only used inside the team below, whose chunks write disjoint
        // columns of y.
        unsafe impl Sync for Out {}
        let out = Out(y.as_mut_ptr());
        crate::team::run(1, chunks, &|_, c| {
            let out = &out;
            // SAFETY: y holds the n rows (asserted); chunk c writes only the columns
            // bound(c)..bound(c+1), which no other chunk touches.
            unsafe { self.matvecs_rows(bound(c), bound(c + 1), n, x, out.0, ldy, accumulate) }
        });
    }

    /// [`QuantMat::matvecs_rows`] over every row, into a slice.
    pub fn matvecs(
        &self,
        n: usize,
        x: &QuantRows<'_>,
        y: &mut [f32],
        ldy: usize,
        accumulate: bool,
    ) {
        assert!(ldy >= self.rows);
        if n == 0 || self.rows == 0 {
            return;
        }
        assert!(
            y.len() >= (n - 1) * ldy + self.rows,
            "QuantMat::matvecs: output too small"
        );
        // SAFETY: y holds the n rows (asserted) and the exclusive borrow gives every column.
        unsafe { self.matvecs_rows(0, self.rows, n, x, y.as_mut_ptr(), ldy, accumulate) }
    }
}

/// The bytes of a cache block of [`QuantMat::matvecs_rows`] (weights or input rows).
const BLOCK_BYTES: usize = 64 << 10;

/// `max / 127`, moved by at most a few ulps to a value `s` with `(s · 127) / 127 == s` in f32:
/// then the weights dequantized as `s · q` (whose largest magnitude is `s · 127`) quantize
/// again to the same `q` and the same scale, so a model saved as int8 and loaded back steps
/// with exactly the weights it was saved with. The move is below 1e-6 relative.
fn stable_scale(max: f32) -> f32 {
    let s = max / 127.0;
    let fixed = |v: f32| v.is_finite() && v > 0.0 && (v * 127.0) / 127.0 == v;
    for k in 0..16u32 {
        for v in [
            f32::from_bits(s.to_bits() + k),
            f32::from_bits(s.to_bits().saturating_sub(k)),
        ] {
            if fixed(v) {
                return v;
            }
        }
    }
    s
}

/// `v` rounded to the nearest integer, ties to even, as `f32::round_ties_even` for the values
/// a quantizer rounds (|v| ≤ 2^22; larger ones are clamped first, and every caller clamps
/// the result to at most 255 in magnitude): adding and subtracting 1.5 · 2^23 leaves no
/// fraction bits, so the addition itself rounds, to nearest even. Unlike
/// `round_ties_even`, which without SSE4.1 is a call to libm's `rintf` per value, this
/// vectorizes.
#[inline(always)]
fn round_even(v: f32) -> f32 {
    const M: f32 = 12_582_912.0; // 1.5 · 2^23
    (v.clamp(-4_194_304.0, 4_194_304.0) + M) - M
}

/// Quantized activation rows: `q` (n, ld) u8 in [0, 127], one scale and zero point per row.
pub struct QuantRows<'a> {
    pub q: &'a [u8],
    pub ld: usize,
    pub scale: &'a [f32],
    pub zero: &'a [i32],
}

/// Quantizes the `n` rows of `x` (stride `ldx`, `cols` values each) into `q` (stride
/// `padded(cols)`, padded with the row's zero point), `scale` and `zero` (n each).
#[allow(clippy::too_many_arguments)]
pub fn quantize_rows(
    n: usize,
    x: &[f32],
    ldx: usize,
    cols: usize,
    q: &mut [u8],
    scale: &mut [f32],
    zero: &mut [i32],
) {
    let ld = padded(cols);
    assert!(ldx >= cols && q.len() >= n * ld && scale.len() >= n && zero.len() >= n);
    for r in 0..n {
        let row = &x[r * ldx..r * ldx + cols];
        let (lo, hi) = row
            .iter()
            .fold((0.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let s = if hi > lo { (hi - lo) / 127.0 } else { 1.0 };
        let z = round_even(-lo / s).clamp(0.0, 127.0);
        let qr = &mut q[r * ld..(r + 1) * ld];
        for (o, &v) in qr.iter_mut().zip(row) {
            *o = (round_even(v / s) + z).clamp(0.0, 127.0) as u8;
        }
        qr[cols..].fill(z as u8);
        scale[r] = s;
        zero[r] = z as i32;
    }
}

/// `Σ_k x[k] · w[k]` over equal lengths that are a multiple of [`BLOCK`].
fn dot_u8_i8(x: &[u8], w: &[i8]) -> i32 {
    debug_assert!(x.len() == w.len() && x.len().is_multiple_of(BLOCK));
    #[cfg(target_arch = "x86_64")]
    if vnni() {
        // SAFETY: AVX-512 VNNI and VL are present (checked); equal lengths, multiples of 32.
        return unsafe { vnni::dot4_u8_i8(x, [w, w, w, w]) }[0];
    }
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::features().avx2_fma {
        // SAFETY: AVX2 is present (checked); the slices have equal lengths, multiples of 32.
        return unsafe { simd::dot_u8_i8(x, w) };
    }
    naive::dot_u8_i8(x, w)
}

/// [`dot_u8_i8`] of `x` with four weight rows at once.
fn dot4_u8_i8(x: &[u8], w: [&[i8]; 4]) -> [i32; 4] {
    debug_assert!(w.iter().all(|r| r.len() == x.len()) && x.len().is_multiple_of(BLOCK));
    #[cfg(target_arch = "x86_64")]
    if vnni() {
        // SAFETY: AVX-512 VNNI and VL are present (checked); equal lengths, multiples of 32.
        return unsafe { vnni::dot4_u8_i8(x, w) };
    }
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::features().avx2_fma {
        // SAFETY: AVX2 is present (checked); the five slices have equal lengths, multiples of
        // 32.
        return unsafe { simd::dot4_u8_i8(x, w) };
    }
    w.map(|r| naive::dot_u8_i8(x, r))
}

/// [`dot_u8_i8`] of two input rows with four weight rows at once: `out[r][q] = x[r] · w[q]`.
fn dot4x2_u8_i8(x: [&[u8]; 2], w: [&[i8]; 4]) -> [[i32; 4]; 2] {
    debug_assert!(w.iter().all(|r| r.len() == x[0].len()) && x[1].len() == x[0].len());
    #[cfg(target_arch = "x86_64")]
    if vnni() {
        // SAFETY: AVX-512 VNNI and VL are present (checked); equal lengths, multiples of 32.
        return unsafe { vnni::dot4x2_u8_i8(x, w) };
    }
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::features().avx2_fma {
        // SAFETY: AVX2 is present (checked); the six slices have equal lengths, multiples of
        // 32.
        return unsafe { simd::dot4x2_u8_i8(x, w) };
    }
    x.map(|xr| w.map(|r| naive::dot_u8_i8(xr, r)))
}

/// Whether the integer products use AVX-512 VNNI's `vpdpbusd` on 256-bit vectors (u8 × i8
/// quadruples summed straight into i32: one instruction where AVX2 needs three). Detected
/// once; off with the AVX2 kernels (`RECUR_KERNELS=naive`) or with `RECUR_KERNELS=avx2`.
/// The sums are exact either way, so every path gives the same bits.
pub fn vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static V: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *V.get_or_init(|| {
            crate::cpu::features().avx2_fma
                && !std::env::var("RECUR_KERNELS").is_ok_and(|v| v == "avx2")
                && std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx512vl")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::*;

    /// `acc + Σ` of the four u8 × i8 products of each 32-bit lane of `x` and `w`
    /// (`vpdpbusd`, EVEX-encoded: AVX-512 VNNI + VL). Inline assembly rather than the
    /// intrinsic, which needs a newer Rust than the crate's minimum.
    ///
    /// # Safety
    /// AVX-512 VNNI and VL present.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn dpbusd(acc: __m256i, x: __m256i, w: __m256i) -> __m256i {
        let mut a = acc;
        std::arch::asm!(
            "{{evex}} vpdpbusd {a}, {x}, {w}",
            a = inout(ymm_reg) a,
            x = in(ymm_reg) x,
            w = in(ymm_reg) w,
            options(pure, nomem, nostack, preserves_flags),
        );
        a
    }

    /// Two input rows against four weight rows with `vpdpbusd` (256-bit, AVX-512 VL):
    /// eight i32 accumulators, each instruction 32 exact multiply-adds.
    ///
    /// # Safety
    /// AVX2, AVX-512 VNNI and VL present; `x[0]`, `x[1]` and every `w[q]` of equal length, a
    /// multiple of 32.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot4x2_u8_i8(x: [&[u8]; 2], w: [&[i8]; 4]) -> [[i32; 4]; 2] {
        let mut a = [_mm256_setzero_si256(); 4];
        let mut b = [_mm256_setzero_si256(); 4];
        let n = x[0].len();
        let mut k = 0;
        while k < n {
            let x0 = _mm256_loadu_si256(x[0].as_ptr().add(k) as *const __m256i);
            let x1 = _mm256_loadu_si256(x[1].as_ptr().add(k) as *const __m256i);
            for q in 0..4 {
                let wv = _mm256_loadu_si256(w[q].as_ptr().add(k) as *const __m256i);
                a[q] = dpbusd(a[q], x0, wv);
                b[q] = dpbusd(b[q], x1, wv);
            }
            k += 32;
        }
        [super::simd::reduce4(a), super::simd::reduce4(b)]
    }

    /// One input row against four weight rows with `vpdpbusd`.
    ///
    /// # Safety
    /// As [`dot4x2_u8_i8`]: the features present, equal lengths, multiples of 32.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot4_u8_i8(x: &[u8], w: [&[i8]; 4]) -> [i32; 4] {
        let mut a = [_mm256_setzero_si256(); 4];
        let n = x.len();
        let mut k = 0;
        while k < n {
            let xv = _mm256_loadu_si256(x.as_ptr().add(k) as *const __m256i);
            for q in 0..4 {
                let wv = _mm256_loadu_si256(w[q].as_ptr().add(k) as *const __m256i);
                a[q] = dpbusd(a[q], xv, wv);
            }
            k += 32;
        }
        super::simd::reduce4(a)
    }
}

pub mod naive {
    //! The plain integer products the AVX2 kernels are tested against.

    use super::{padded, QuantMat, QuantRows};

    /// `Σ_k x[k] · w[k]` in i32.
    pub fn dot_u8_i8(x: &[u8], w: &[i8]) -> i32 {
        x.iter().zip(w).map(|(&a, &b)| a as i32 * b as i32).sum()
    }

    /// [`QuantMat::matvecs`] as plain loops: one integer sum per (row, weight row), in i64,
    /// dequantized with the same formula.
    pub fn matvecs(
        m: &QuantMat,
        n: usize,
        x: &QuantRows<'_>,
        y: &mut [f32],
        ldy: usize,
        accumulate: bool,
    ) {
        let ld = padded(m.cols);
        for r in 0..n {
            for j in 0..m.rows {
                let mut dot = 0i64;
                for k in 0..ld {
                    dot += x.q[r * ld + k] as i64 * m.q[j * ld + k] as i64;
                }
                let dot = i32::try_from(dot).expect("the sum fits i32");
                let v = m.scale[j] * x.scale[r] * (dot - x.zero[r] * m.row_sum[j]) as f32;
                let o = &mut y[r * ldy + j];
                *o = if accumulate { *o + v } else { v };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    /// See [`super::dot_u8_i8`]: `vpmaddubsw` (u8 × i8 pairs summed into i16, which cannot
    /// saturate for u8 ≤ 127 and |i8| ≤ 127), `vpmaddwd` with ones (pairs of i16 into i32),
    /// two accumulators.
    ///
    /// # Safety
    /// AVX2 present; `x` and `w` of equal length, a multiple of 32.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot_u8_i8(x: &[u8], w: &[i8]) -> i32 {
        let ones = _mm256_set1_epi16(1);
        let (mut a0, mut a1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let (xp, wp) = (x.as_ptr(), w.as_ptr());
        let n = x.len();
        let mut k = 0;
        while k + 64 <= n {
            let p0 = _mm256_maddubs_epi16(
                _mm256_loadu_si256(xp.add(k) as *const __m256i),
                _mm256_loadu_si256(wp.add(k) as *const __m256i),
            );
            let p1 = _mm256_maddubs_epi16(
                _mm256_loadu_si256(xp.add(k + 32) as *const __m256i),
                _mm256_loadu_si256(wp.add(k + 32) as *const __m256i),
            );
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(p0, ones));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(p1, ones));
            k += 64;
        }
        if k < n {
            let p0 = _mm256_maddubs_epi16(
                _mm256_loadu_si256(xp.add(k) as *const __m256i),
                _mm256_loadu_si256(wp.add(k) as *const __m256i),
            );
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(p0, ones));
        }
        let a = _mm256_add_epi32(a0, a1);
        let s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s)
    }

    /// Four [`dot_u8_i8`]s sharing the loads of `x`; the sums reduced together.
    ///
    /// # Safety
    /// AVX2 present; `x` and every `w[q]` of equal length, a multiple of 32.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot4_u8_i8(x: &[u8], w: [&[i8]; 4]) -> [i32; 4] {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_si256(); 4];
        let n = x.len();
        let mut k = 0;
        while k < n {
            let xv = _mm256_loadu_si256(x.as_ptr().add(k) as *const __m256i);
            for q in 0..4 {
                let wv = _mm256_loadu_si256(w[q].as_ptr().add(k) as *const __m256i);
                let p = _mm256_madd_epi16(_mm256_maddubs_epi16(xv, wv), ones);
                acc[q] = _mm256_add_epi32(acc[q], p);
            }
            k += 32;
        }
        // [Σa0 Σa1 Σa2 Σa3] from four 8-lane sums.
        let ab = _mm256_hadd_epi32(acc[0], acc[1]);
        let cd = _mm256_hadd_epi32(acc[2], acc[3]);
        let abcd = _mm256_hadd_epi32(ab, cd);
        let s = _mm_add_epi32(
            _mm256_castsi256_si128(abcd),
            _mm256_extracti128_si256(abcd, 1),
        );
        let mut out = [0i32; 4];
        _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, s);
        out
    }

    /// Two input rows against four weight rows: eight accumulators, every load of a weight
    /// block used twice and every load of an input block four times.
    ///
    /// # Safety
    /// AVX2 present; `x[0]`, `x[1]` and every `w[q]` of equal length, a multiple of 32.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot4x2_u8_i8(x: [&[u8]; 2], w: [&[i8]; 4]) -> [[i32; 4]; 2] {
        let ones = _mm256_set1_epi16(1);
        let mut a = [_mm256_setzero_si256(); 4];
        let mut b = [_mm256_setzero_si256(); 4];
        let n = x[0].len();
        let mut k = 0;
        while k < n {
            let x0 = _mm256_loadu_si256(x[0].as_ptr().add(k) as *const __m256i);
            let x1 = _mm256_loadu_si256(x[1].as_ptr().add(k) as *const __m256i);
            for q in 0..4 {
                let wv = _mm256_loadu_si256(w[q].as_ptr().add(k) as *const __m256i);
                let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(x0, wv), ones);
                let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(x1, wv), ones);
                a[q] = _mm256_add_epi32(a[q], p0);
                b[q] = _mm256_add_epi32(b[q], p1);
            }
            k += 32;
        }
        [reduce4(a), reduce4(b)]
    }

    /// The four horizontal sums of four 8-lane i32 vectors.
    ///
    /// # Safety
    /// AVX2 present.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn reduce4(acc: [__m256i; 4]) -> [i32; 4] {
        let ab = _mm256_hadd_epi32(acc[0], acc[1]);
        let cd = _mm256_hadd_epi32(acc[2], acc[3]);
        let abcd = _mm256_hadd_epi32(ab, cd);
        let s = _mm_add_epi32(
            _mm256_castsi256_si128(abcd),
            _mm256_extracti128_si256(abcd, 1),
        );
        let mut out = [0i32; 4];
        _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, s);
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_even_is_round_ties_even() {
        let mut v: Vec<f32> = (-2000..=2000).map(|k| k as f32 * 0.25).collect();
        v.extend((-300..300).map(|k| k as f32 * 0.1 + 0.5));
        v.extend([
            0.5,
            -0.5,
            1.5,
            2.5,
            -2.5,
            126.5,
            127.49999,
            -0.0,
            f32::MIN_POSITIVE,
            4_194_303.5,
        ]);
        for x in v {
            assert_eq!(super::round_even(x), x.round_ties_even(), "{x}");
        }
    }
}
