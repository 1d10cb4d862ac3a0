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
//!   so the kernels ([`QuantMat::matvecs_rows`] on the weights packed in blocks of 8 rows ×
//!   4 columns: AVX-512 VNNI `vpdpbusd` when the CPU has it, see [`vnni()`], else AVX2
//!   `vpmaddubsw` + `vpmaddwd`, else plain loops; [`Path`]) and the plain ones ([`naive`])
//!   give the same bits.
//! - [`QuantMat::gemm`]: the same product over many rows (a whole sequence's input
//!   projection), blocked for the caches and split across threads.

/// Quantized activation rows are padded to a multiple of this many bytes (with their zero
/// point; the weights are zero there).
pub const BLOCK: usize = 32;

/// The padded width of `cols` columns.
pub fn padded(cols: usize) -> usize {
    cols.div_ceil(BLOCK) * BLOCK
}

/// The largest `cols` whose integer sums cannot overflow i32 (|q| ≤ 127 times q_x ≤ 127).
pub const MAX_COLS: usize = (i32::MAX as usize) / (127 * 127);

/// Output rows per packed block of [`QuantMat`]: the eight i32 lanes of a 256-bit vector.
const ROWS: usize = 8;
/// Consecutive input bytes per lane: one `vpdpbusd` (or `vpmaddubsw` + `vpmaddwd`) quadruple.
const QUAD: usize = 4;
/// Input rows per tile of [`QuantMat::matvecs_rows`].
const TILE_R: usize = 4;

/// A (rows, cols) matrix of int8 weights with one scale per row, packed once for the kernels:
/// blocks of 8 output rows, and in each block the input columns in groups of 4, so that one
/// 32-byte load holds the 4 consecutive weights of each of the 8 rows (the lane layout of
/// `vpdpbusd`); the columns are zero-padded to a multiple of 4 and the rows to an even number
/// of blocks (tiles take two blocks at a time).
#[derive(Clone, Debug)]
pub struct QuantMat {
    rows: usize,
    cols: usize,
    /// `blocks · quads · 32` bytes: block b, quad g, row i (of the block), byte t at
    /// `(b · quads + g) · 32 + 4 i + t` holds `q[8 b + i, 4 g + t]`.
    packed: Vec<i8>,
    /// (blocks · 8): `max |w| / 127` (1 for an all-zero or padding row).
    scale: Vec<f32>,
    /// (blocks · 8): `Σ_k q[j, k]` (0 for padding).
    row_sum: Vec<i32>,
}

/// The kernels of the integer products: chosen once by CPU detection ([`Path::detected`]), or
/// any of [`Path::available_paths`] explicitly ([`QuantMat::matvecs_on`]). The sums are exact,
/// so every path gives the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Plain integer loops.
    Scalar,
    /// AVX2: `vpmaddubsw` (u8 × i8 pairs into i16, which cannot saturate for activations
    /// ≤ 127), `vpmaddwd` with ones, `vpaddd`.
    Avx2,
    /// AVX-512 VNNI `vpdpbusd` on 256-bit vectors (AVX-512 VL).
    Vnni,
}

impl Path {
    /// The paths this CPU can run, the plain one first.
    pub fn available_paths() -> Vec<Path> {
        let mut v = vec![Path::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                v.push(Path::Avx2);
                if std::arch::is_x86_feature_detected!("avx512vnni")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    v.push(Path::Vnni);
                }
            }
        }
        v
    }

    /// The path the products use: VNNI when the CPU has it (see [`vnni()`]), else AVX2, else
    /// the plain loops (also with `RECUR_KERNELS=naive`).
    pub fn detected() -> Path {
        static P: std::sync::OnceLock<Path> = std::sync::OnceLock::new();
        *P.get_or_init(|| {
            if vnni() {
                Path::Vnni
            } else if cfg!(target_arch = "x86_64") && crate::cpu::features().avx2_fma {
                Path::Avx2
            } else {
                Path::Scalar
            }
        })
    }
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
        let blocks = rows.div_ceil(2 * ROWS) * 2;
        let quads = cols.div_ceil(QUAD);
        let mut packed = vec![0i8; blocks * quads * ROWS * QUAD];
        let mut scale = vec![1.0f32; blocks * ROWS];
        let mut row_sum = vec![0i32; blocks * ROWS];
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
                packed[Self::at(quads, j, k)] = v;
                s += v as i32;
            }
            row_sum[j] = s;
        }
        QuantMat {
            rows,
            cols,
            packed,
            scale,
            row_sum,
        }
    }

    /// The index in `packed` of weight (j, k).
    #[inline]
    fn at(quads: usize, j: usize, k: usize) -> usize {
        ((j / ROWS * quads + k / QUAD) * ROWS + j % ROWS) * QUAD + k % QUAD
    }

    /// The int8 weight (j, k).
    fn weight(&self, j: usize, k: usize) -> i8 {
        self.packed[Self::at(self.cols.div_ceil(QUAD), j, k)]
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The int8 weights, row-major (rows, cols).
    pub fn values(&self) -> Vec<i8> {
        (0..self.rows)
            .flat_map(|j| (0..self.cols).map(move |k| self.weight(j, k)))
            .collect()
    }

    /// The scale of every row.
    pub fn scales(&self) -> &[f32] {
        &self.scale[..self.rows]
    }

    /// The weights as the kernel sees them, `s_w[j] · q[j, k]`, row-major (rows, cols).
    pub fn dequantized(&self) -> Vec<f32> {
        (0..self.rows)
            .flat_map(|j| (0..self.cols).map(move |k| self.scale[j] * self.weight(j, k) as f32))
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
        self.matvecs_rows_on(Path::detected(), j0, j1, n, x, y, ldy, accumulate)
    }

    /// [`QuantMat::matvecs_rows`] on the given path.
    ///
    /// # Safety
    /// As [`QuantMat::matvecs_rows`]; `path` one of [`Path::available_paths`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn matvecs_rows_on(
        &self,
        path: Path,
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
        if j0 == j1 || n == 0 {
            return;
        }
        let quads = self.cols.div_ceil(QUAD);
        let pair = 2 * ROWS * QUAD * quads; // bytes of two blocks
                                            // Input rows in blocks that stay in cache (L2) while every pair of weight blocks
                                            // (16 rows) passes over them, four rows at a time.
        let rb = (BLOCK_BYTES / ld.max(1)).clamp(TILE_R, 1 << 16) / TILE_R * TILE_R;
        let (p0, p1) = (j0 / (2 * ROWS), (j1 - 1) / (2 * ROWS) + 1);
        let mut r0 = 0;
        while r0 < n {
            let rend = (r0 + rb).min(n);
            for p in p0..p1 {
                let w = &self.packed[p * pair..(p + 1) * pair];
                let jt = p * 2 * ROWS;
                let mut r = r0;
                while r < rend {
                    let nr = (rend - r).min(TILE_R);
                    let xs: [&[u8]; TILE_R] =
                        std::array::from_fn(|i| &x.q[(r + i.min(nr - 1)) * ld..][..ld]);
                    let e = Epilogue {
                        y: y.add(r * ldy + jt),
                        ldy,
                        sx: &x.scale[r..r + nr],
                        zx: &x.zero[r..r + nr],
                        sw: &self.scale[jt..jt + 2 * ROWS],
                        rs: &self.row_sum[jt..jt + 2 * ROWS],
                        lo: j0.max(jt) - jt,
                        hi: j1.min(jt + 2 * ROWS) - jt,
                        accumulate,
                    };
                    tile(path, nr, xs, w, quads, &e);
                    r += nr;
                }
            }
            r0 = rend;
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
        let tile = 2 * ROWS;
        let chunks = if work < crate::packed::THREADS_MIN {
            1
        } else {
            threads.clamp(1, self.rows.div_ceil(tile))
        };
        let bound = |c: usize| {
            if c == chunks {
                self.rows
            } else {
                c * self.rows / chunks / tile * tile
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
        self.matvecs_on(Path::detected(), n, x, y, ldy, accumulate)
    }

    /// [`QuantMat::matvecs`] on the given path (which must be one of
    /// [`Path::available_paths`]; panics otherwise): every path gives the same bits.
    pub fn matvecs_on(
        &self,
        path: Path,
        n: usize,
        x: &QuantRows<'_>,
        y: &mut [f32],
        ldy: usize,
        accumulate: bool,
    ) {
        assert!(
            Path::available_paths().contains(&path),
            "QuantMat: {path:?} is not available on this CPU"
        );
        assert!(ldy >= self.rows);
        if n == 0 || self.rows == 0 {
            return;
        }
        assert!(
            y.len() >= (n - 1) * ldy + self.rows,
            "QuantMat::matvecs: output too small"
        );
        // SAFETY: y holds the n rows (asserted), the exclusive borrow gives every column, and
        // the path is available (asserted).
        unsafe { self.matvecs_rows_on(path, 0, self.rows, n, x, y.as_mut_ptr(), ldy, accumulate) }
    }
}

/// Where a tile's sums go: `y[i, l] (+)= sw[l] · sx[i] · (dot − zx[i] · rs[l])` for the
/// tile's input rows `i` and its 16 weight rows `l` with `lo ≤ l < hi` (the others belong to
/// another chunk or are padding).
struct Epilogue<'a> {
    /// Element (0, 0) of the tile in the output.
    y: *mut f32,
    ldy: usize,
    sx: &'a [f32],
    zx: &'a [i32],
    sw: &'a [f32],
    rs: &'a [i32],
    lo: usize,
    hi: usize,
    accumulate: bool,
}

impl Epilogue<'_> {
    /// Writes the sum of input row `i` and weight row `l` (`lo ≤ l < hi`).
    ///
    /// # Safety
    /// `y` points at the tile's rows, whose columns `lo..hi` are the caller's to write.
    #[inline]
    unsafe fn put(&self, i: usize, l: usize, dot: i32) {
        let v = self.sw[l] * self.sx[i] * (dot - self.zx[i] * self.rs[l]) as f32;
        let out = self.y.add(i * self.ldy + l);
        *out = if self.accumulate { *out + v } else { v };
    }
}

/// A tile: the integer sums `Σ_k x[i][k] · q[16 p + l, k]` of the first `nr` input rows `x`
/// (each at least `4 · quads` bytes) and the pair `p` of packed blocks `w`, dequantized into
/// the output by `e`.
///
/// # Safety
/// `e.y` points at the tile's `nr` rows, whose columns `e.lo..e.hi` are the caller's to write;
/// `path` is available.
#[inline]
unsafe fn tile(path: Path, nr: usize, x: [&[u8]; TILE_R], w: &[i8], quads: usize, e: &Epilogue) {
    debug_assert!(w.len() == 2 * ROWS * QUAD * quads && (1..=TILE_R).contains(&nr));
    debug_assert!(x.iter().all(|r| r.len() >= QUAD * quads));
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::Vnni => {
            // SAFETY: the caller checked the path is available (AVX2, AVX-512 VNNI and VL);
            // the rows hold 4 · quads bytes, w two blocks of quads 32-byte groups, and the
            // output is the caller's.
            simd::tile::<true>(nr, x, w, quads, e)
        }
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => {
            // SAFETY: as above, with AVX2 present.
            simd::tile::<false>(nr, x, w, quads, e)
        }
        _ => {
            let mut acc = [[0i32; 2 * ROWS]; TILE_R];
            naive::tile(nr, x, w, quads, &mut acc);
            for (i, a) in acc.iter().enumerate().take(nr) {
                for (l, &dot) in a.iter().enumerate().take(e.hi).skip(e.lo) {
                    // SAFETY: the caller's columns of the tile's rows.
                    e.put(i, l, dot);
                }
            }
        }
    }
}

/// The bytes of a cache block of [`QuantMat::matvecs_rows`] (input rows).
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

pub mod naive {
    //! The plain integer products the SIMD kernels are tested against.

    use super::{padded, QuantMat, QuantRows, QUAD, ROWS, TILE_R};

    /// [`super::tile`] as plain loops over the packed layout (the [`super::Path::Scalar`]
    /// path).
    pub(super) fn tile(
        nr: usize,
        x: [&[u8]; TILE_R],
        w: &[i8],
        quads: usize,
        acc: &mut [[i32; 2 * ROWS]; TILE_R],
    ) {
        if quads == 0 {
            return;
        }
        for (i, a) in acc.iter_mut().enumerate().take(nr) {
            for (b, block) in w.chunks_exact(quads * ROWS * QUAD).enumerate() {
                for (g, group) in block.chunks_exact(ROWS * QUAD).enumerate() {
                    let xq = &x[i][g * QUAD..(g + 1) * QUAD];
                    for (l, lane) in group.chunks_exact(QUAD).enumerate() {
                        a[b * ROWS + l] += lane
                            .iter()
                            .zip(xq)
                            .map(|(&q, &v)| q as i32 * v as i32)
                            .sum::<i32>();
                    }
                }
            }
        }
    }

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
                for k in 0..m.cols {
                    dot += x.q[r * ld + k] as i64 * m.weight(j, k) as i64;
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
    use super::{Epilogue, QUAD, ROWS, TILE_R};
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
        // SAFETY: the caller guarantees the features; the instruction touches only registers.
        std::arch::asm!(
            "{{evex}} vpdpbusd {a}, {x}, {w}",
            a = inout(ymm_reg) a,
            x = in(ymm_reg) x,
            w = in(ymm_reg) w,
            options(pure, nomem, nostack, preserves_flags),
        );
        a
    }

    /// The same sum with AVX2: `vpmaddubsw` (pairs into i16; no saturation as the
    /// activations are ≤ 127), `vpmaddwd` with ones (pairs into i32), `vpaddd`.
    ///
    /// # Safety
    /// AVX2 present.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn madd(acc: __m256i, x: __m256i, w: __m256i, ones: __m256i) -> __m256i {
        _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(x, w), ones))
    }

    /// `R` input rows against two packed blocks: 2R accumulators of 8 rows each, the four
    /// activation bytes of a quad broadcast as one i32, no horizontal sums; then the eight
    /// outputs of each accumulator dequantized at once (the same operations, in the same
    /// order, as [`Epilogue::put`]).
    ///
    /// # Safety
    /// AVX2 present (and AVX-512 VNNI + VL when `VNNI`); every `x[i]` holds `4 · quads`
    /// bytes, `w` two blocks of `quads` 32-byte groups; `e` as for [`super::tile`].
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn tile_r<const VNNI: bool, const R: usize>(
        x: [&[u8]; TILE_R],
        w: &[i8],
        quads: usize,
        e: &Epilogue,
    ) {
        let ones = _mm256_set1_epi16(1);
        let mut a = [[_mm256_setzero_si256(); 2]; R];
        let b0 = w.as_ptr();
        let b1 = b0.add(quads * ROWS * QUAD);
        let xp: [*const u8; R] = std::array::from_fn(|i| x[i].as_ptr());
        for g in 0..quads {
            let w0 = _mm256_loadu_si256(b0.add(g * 32) as *const __m256i);
            let w1 = _mm256_loadu_si256(b1.add(g * 32) as *const __m256i);
            for i in 0..R {
                let v = (xp[i].add(g * QUAD) as *const i32).read_unaligned();
                let xb = _mm256_set1_epi32(v);
                if VNNI {
                    a[i][0] = dpbusd(a[i][0], xb, w0);
                    a[i][1] = dpbusd(a[i][1], xb, w1);
                } else {
                    a[i][0] = madd(a[i][0], xb, w0, ones);
                    a[i][1] = madd(a[i][1], xb, w1, ones);
                }
            }
        }
        for b in 0..2 {
            let l0 = b * ROWS;
            if e.lo <= l0 && l0 + ROWS <= e.hi {
                let sw = _mm256_loadu_ps(e.sw.as_ptr().add(l0));
                let rs = _mm256_loadu_si256(e.rs.as_ptr().add(l0) as *const __m256i);
                for (i, ai) in a.iter().enumerate() {
                    let corr = _mm256_mullo_epi32(_mm256_set1_epi32(e.zx[i]), rs);
                    let v = _mm256_cvtepi32_ps(_mm256_sub_epi32(ai[b], corr));
                    let mut f = _mm256_mul_ps(_mm256_mul_ps(sw, _mm256_set1_ps(e.sx[i])), v);
                    let out = e.y.add(i * e.ldy + l0);
                    if e.accumulate {
                        f = _mm256_add_ps(_mm256_loadu_ps(out), f);
                    }
                    _mm256_storeu_ps(out, f);
                }
            } else {
                for (i, ai) in a.iter().enumerate() {
                    let mut d = [0i32; ROWS];
                    _mm256_storeu_si256(d.as_mut_ptr() as *mut __m256i, ai[b]);
                    for l in e.lo.max(l0)..e.hi.min(l0 + ROWS) {
                        e.put(i, l, d[l - l0]);
                    }
                }
            }
        }
    }

    /// [`super::tile`] with `vpdpbusd` (`VNNI`) or AVX2.
    ///
    /// # Safety
    /// As [`tile_r`], and `1 ≤ nr ≤ 4`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn tile<const VNNI: bool>(
        nr: usize,
        x: [&[u8]; TILE_R],
        w: &[i8],
        quads: usize,
        e: &Epilogue,
    ) {
        match nr {
            1 => tile_r::<VNNI, 1>(x, w, quads, e),
            2 => tile_r::<VNNI, 2>(x, w, quads, e),
            3 => tile_r::<VNNI, 3>(x, w, quads, e),
            _ => tile_r::<VNNI, 4>(x, w, quads, e),
        }
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
