//! Weights stored in half precision (IEEE f16 or bfloat16) and widened to f32 on the fly.
//!
//! A streaming step of a recurrent layer reads every weight once per step and does two flops
//! per weight read, so it is bound by the bytes it reads, not by arithmetic. Storing the
//! weights in 16 bits halves those bytes (and for hidden 256 lets an LSTM's weights fit a
//! core's L2 cache). The products accumulate in f32; only the stored weights are rounded
//! (round to nearest, ties to even, by the `half` crate), so the error of a product is the
//! weight rounding error: a relative 2^-11 per weight for f16, 2^-8 for bf16.
//!
//! [`HalfMat::matvecs`] computes `y (n, rows) (+)= x (n, cols) · Wᵀ` for small `n` (the batch of
//! a stream): four weight rows at a time are widened once and applied to every input row while
//! they are in L1. [`naive::matvecs`] is the plain reference it is tested against.
//!
//! [`HalfCell`] steps one recurrent layer with such weights, or with int8 ones
//! ([`crate::quant`]).

use crate::quant::{padded, quantize_rows, QuantMat, QuantRows};

/// The 16-bit format of a [`HalfMat`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HalfKind {
    /// IEEE 754 binary16: 10-bit mantissa, range ±65504 (widened by F16C's `vcvtph2ps`).
    F16,
    /// bfloat16: the top half of an f32 (8-bit mantissa, f32's range).
    Bf16,
}

impl HalfKind {
    /// Rounds an f32 to this format (nearest, ties to even) and returns its bits.
    pub fn encode(self, x: f32) -> u16 {
        match self {
            HalfKind::F16 => half::f16::from_f32(x).to_bits(),
            HalfKind::Bf16 => half::bf16::from_f32(x).to_bits(),
        }
    }

    /// The f32 value of bits of this format (exact).
    pub fn decode(self, bits: u16) -> f32 {
        match self {
            HalfKind::F16 => half::f16::from_bits(bits).to_f32(),
            HalfKind::Bf16 => half::bf16::from_bits(bits).to_f32(),
        }
    }

    /// The largest finite magnitude of the format.
    pub fn max(self) -> f32 {
        match self {
            HalfKind::F16 => half::f16::MAX.to_f32(),
            HalfKind::Bf16 => half::bf16::MAX.to_f32(),
        }
    }
}

/// A row-major (rows, cols) matrix of 16-bit floats.
#[derive(Clone, Debug)]
pub struct HalfMat {
    rows: usize,
    cols: usize,
    kind: HalfKind,
    bits: Vec<u16>,
}

impl HalfMat {
    /// Rounds the row-major (rows, cols) f32 matrix `w` to `kind`. Values beyond the format's
    /// range become ±infinity (f16 only; see [`HalfKind::max`]).
    pub fn from_f32(w: &[f32], rows: usize, cols: usize, kind: HalfKind) -> HalfMat {
        assert_eq!(
            w.len(),
            rows * cols,
            "HalfMat: {rows}x{cols} needs {} values",
            rows * cols
        );
        HalfMat {
            rows,
            cols,
            kind,
            bits: w.iter().map(|&x| kind.encode(x)).collect(),
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn kind(&self) -> HalfKind {
        self.kind
    }

    /// The stored bits, row-major.
    pub fn bits(&self) -> &[u16] {
        &self.bits
    }

    /// The stored values widened to f32, row-major.
    pub fn to_f32(&self) -> Vec<f32> {
        self.bits.iter().map(|&b| self.kind.decode(b)).collect()
    }

    /// `y[r, j] (+)= Σ_c W[j, c] · x[r, c]` for the `n` rows of `x` (row stride `ldx`, at least
    /// `cols` values used per row) and of `y` (row stride `ldy`, `rows` values written per
    /// row); `accumulate` adds to `y` instead of overwriting it.
    pub fn matvecs(
        &self,
        n: usize,
        x: &[f32],
        ldx: usize,
        y: &mut [f32],
        ldy: usize,
        accumulate: bool,
    ) {
        assert!(
            ldy >= self.rows,
            "HalfMat::matvecs: output stride too small"
        );
        if n == 0 || self.rows == 0 {
            return;
        }
        assert!(
            y.len() >= (n - 1) * ldy + self.rows,
            "HalfMat::matvecs: output too small"
        );
        // SAFETY: y holds the n rows of stride ldy (asserted), and the exclusive borrow
        // gives this call every column.
        unsafe { self.matvecs_rows(0, self.rows, n, x, ldx, y.as_mut_ptr(), ldy, accumulate) }
    }

    /// [`HalfMat::matvecs`] for the weight rows (output columns) `j0..j1` only, writing
    /// through a pointer so that threads can fill different columns of the same rows.
    ///
    /// # Safety
    /// `y` points at `n` rows of stride `ldy ≥ j1`, whose columns `j0..j1` nothing else reads
    /// or writes during the call.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn matvecs_rows(
        &self,
        j0: usize,
        j1: usize,
        n: usize,
        x: &[f32],
        ldx: usize,
        y: *mut f32,
        ldy: usize,
        accumulate: bool,
    ) {
        let cols = self.cols;
        assert!(j0 <= j1 && j1 <= self.rows && ldx >= cols && ldy >= j1);
        if n == 0 || j0 == j1 {
            return;
        }
        assert!(
            x.len() >= (n - 1) * ldx + cols,
            "HalfMat::matvecs: input too small"
        );
        #[cfg(target_arch = "x86_64")]
        {
            let f = crate::cpu::features();
            if f.avx2_fma && f.f16c {
                // SAFETY: AVX2, FMA and F16C are present (checked above); x holds the n rows
                // (asserted) and y's columns j0..j1 are this call's (the caller's contract).
                simd::matvecs(self, j0, j1, n, x.as_ptr(), ldx, y, ldy, accumulate);
                return;
            }
        }
        // The plain loop of `naive::matvecs`, on the rows j0..j1.
        for r in 0..n {
            let xr = &x[r * ldx..r * ldx + cols];
            for j in j0..j1 {
                let wr = &self.bits[j * cols..(j + 1) * cols];
                let mut s = 0.0f32;
                for (&b, &xv) in wr.iter().zip(xr) {
                    s += self.kind.decode(b) * xv;
                }
                let out = y.add(r * ldy + j);
                *out = if accumulate { *out + s } else { s };
            }
        }
    }
}

pub mod naive {
    //! The plain reference of [`super::HalfMat::matvecs`]: widen each weight, multiply-add in
    //! f32, columns in order.
    use super::HalfMat;

    pub fn matvecs(
        w: &HalfMat,
        n: usize,
        x: &[f32],
        ldx: usize,
        y: &mut [f32],
        ldy: usize,
        accumulate: bool,
    ) {
        let (rows, cols) = (w.rows, w.cols);
        for r in 0..n {
            let xr = &x[r * ldx..r * ldx + cols];
            for j in 0..rows {
                let wr = &w.bits[j * cols..(j + 1) * cols];
                let mut s = 0.0f32;
                for (&b, &xv) in wr.iter().zip(xr) {
                    s += w.kind.decode(b) * xv;
                }
                let out = &mut y[r * ldy + j];
                *out = if accumulate { *out + s } else { s };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{HalfKind, HalfMat};
    use std::arch::x86_64::*;

    /// Eight 16-bit values at `p` widened to f32.
    ///
    /// # Safety
    /// `p` points at 8 readable u16; the CPU has AVX2 and F16C.
    #[inline(always)]
    unsafe fn widen8(kind: HalfKind, p: *const u16) -> __m256 {
        let v = _mm_loadu_si128(p as *const __m128i);
        match kind {
            HalfKind::F16 => _mm256_cvtph_ps(v),
            HalfKind::Bf16 => _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16)),
        }
    }

    /// The sums of the 8 lanes of a, b, c, d as one 4-lane vector [Σa, Σb, Σc, Σd].
    ///
    /// # Safety
    /// The CPU has AVX.
    #[inline(always)]
    unsafe fn hsum4(a: __m256, b: __m256, c: __m256, d: __m256) -> __m128 {
        let ab = _mm256_hadd_ps(a, b); // a01 a23 b01 b23 | a45 a67 b45 b67
        let cd = _mm256_hadd_ps(c, d);
        let abcd = _mm256_hadd_ps(ab, cd); // a0123 b0123 c0123 d0123 | a4567 ...
        _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1))
    }

    /// See [`HalfMat::matvecs`].
    ///
    /// # Safety
    /// AVX2, FMA and F16C present; `xp` and `yp` hold the n rows at their strides, and the
    /// columns `j0..rows` of `yp`'s rows are this call's (checked by the caller).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn matvecs(
        w: &HalfMat,
        j0: usize,
        rows: usize,
        n: usize,
        xp: *const f32,
        ldx: usize,
        yp: *mut f32,
        ldy: usize,
        accumulate: bool,
    ) {
        let (cols, kind) = (w.cols, w.kind);
        let c8 = cols / 8 * 8;
        let wp = w.bits.as_ptr();
        let mut j = j0;
        // Four weight rows at a time: widened per block of 8 columns, applied to every input
        // row (the four rows stay in L1 across the inputs).
        while j + 4 <= rows {
            let w0 = wp.add(j * cols);
            let (w1, w2, w3) = (w0.add(cols), w0.add(2 * cols), w0.add(3 * cols));
            for r in 0..n {
                let xr = xp.add(r * ldx);
                let (mut a0, mut a1, mut a2, mut a3) = (
                    _mm256_setzero_ps(),
                    _mm256_setzero_ps(),
                    _mm256_setzero_ps(),
                    _mm256_setzero_ps(),
                );
                let mut c = 0;
                while c < c8 {
                    let xv = _mm256_loadu_ps(xr.add(c));
                    a0 = _mm256_fmadd_ps(widen8(kind, w0.add(c)), xv, a0);
                    a1 = _mm256_fmadd_ps(widen8(kind, w1.add(c)), xv, a1);
                    a2 = _mm256_fmadd_ps(widen8(kind, w2.add(c)), xv, a2);
                    a3 = _mm256_fmadd_ps(widen8(kind, w3.add(c)), xv, a3);
                    c += 8;
                }
                let mut s = [0.0f32; 4];
                _mm_storeu_ps(s.as_mut_ptr(), hsum4(a0, a1, a2, a3));
                for c in c8..cols {
                    let xv = *xr.add(c);
                    s[0] += kind.decode(*w0.add(c)) * xv;
                    s[1] += kind.decode(*w1.add(c)) * xv;
                    s[2] += kind.decode(*w2.add(c)) * xv;
                    s[3] += kind.decode(*w3.add(c)) * xv;
                }
                let yr = yp.add(r * ldy + j);
                for (q, &v) in s.iter().enumerate() {
                    *yr.add(q) = if accumulate { *yr.add(q) + v } else { v };
                }
            }
            j += 4;
        }
        // The last rows, one at a time.
        while j < rows {
            let w0 = wp.add(j * cols);
            for r in 0..n {
                let xr = xp.add(r * ldx);
                let mut a0 = _mm256_setzero_ps();
                let mut c = 0;
                while c < c8 {
                    a0 = _mm256_fmadd_ps(widen8(kind, w0.add(c)), _mm256_loadu_ps(xr.add(c)), a0);
                    c += 8;
                }
                let z = _mm256_setzero_ps();
                let mut s = _mm_cvtss_f32(hsum4(a0, z, z, z));
                for c in c8..cols {
                    s += kind.decode(*w0.add(c)) * *xr.add(c);
                }
                let yr = yp.add(r * ldy + j);
                *yr = if accumulate { *yr + s } else { s };
            }
            j += 1;
        }
    }
}

/// The cell kinds a [`HalfCell`] steps (PyTorch's equations; see [`crate::cells`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CellKind {
    Lstm,
    Gru,
    RnnTanh,
    RnnRelu,
}

impl CellKind {
    /// The gate blocks stacked along the weights' rows.
    pub fn gates(self) -> usize {
        match self {
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
            CellKind::RnnTanh | CellKind::RnnRelu => 1,
        }
    }
}

/// How a [`HalfCell`] stores its weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// 16-bit floats, widened on the fly ([`HalfMat`]).
    Half(HalfKind),
    /// int8 per output row, activations quantized at every step ([`crate::quant`]).
    Int8,
}

/// One weight matrix in its compact format.
#[derive(Clone, Debug)]
enum Store {
    Half(HalfMat),
    Int8(QuantMat),
}

/// The input rows of a product: f32 (row stride) for 16-bit weights, quantized for int8; or
/// for the input product, its result already made (`Pre`, (n, G·H)).
enum Operand<'a> {
    F32(&'a [f32], usize),
    Q(QuantRows<'a>),
    Pre(&'a [f32]),
}

/// What a step gets for its input: the rows of x, or their projection x · W_ihᵀ.
enum StepInput<'a> {
    X(&'a [f32]),
    Projected(&'a [f32]),
}

impl Store {
    fn new(w: &[f32], rows: usize, cols: usize, format: Format) -> Store {
        match format {
            Format::Half(kind) => Store::Half(HalfMat::from_f32(w, rows, cols, kind)),
            Format::Int8 => Store::Int8(QuantMat::from_f32(w, rows, cols)),
        }
    }

    /// `y[r, j0..j1] (+)= x[r] · W[j0..j1]ᵀ` for rows 0..n.
    ///
    /// # Safety
    /// As [`HalfMat::matvecs_rows`]: `y` holds n rows of stride `ldy ≥ j1` whose columns
    /// `j0..j1` are this call's alone.
    #[allow(clippy::too_many_arguments)]
    unsafe fn rows_into(
        &self,
        j0: usize,
        j1: usize,
        n: usize,
        x: &Operand<'_>,
        y: *mut f32,
        ldy: usize,
        accumulate: bool,
    ) {
        match (self, x) {
            (Store::Half(m), Operand::F32(x, ld)) => {
                m.matvecs_rows(j0, j1, n, x, *ld, y, ldy, accumulate)
            }
            (Store::Int8(m), Operand::Q(q)) => m.matvecs_rows(j0, j1, n, q, y, ldy, accumulate),
            _ => unreachable!("operand of the wrong kind for the weights"),
        }
    }
}

/// One recurrent layer (one direction) with compact weights (16-bit floats or int8), stepped
/// one time step at a time: the products read the compact weights, the cell arithmetic is the
/// f32 kernel of [`crate::cells`].
#[derive(Clone, Debug)]
pub struct HalfCell {
    kind: CellKind,
    format: Format,
    h: usize,
    hout: usize,
    input: usize,
    /// (G·H, input)
    w_ih: Store,
    /// (G·H, H_out)
    w_hh: Store,
    /// LSTM projection: (P, H)
    w_hr: Option<Store>,
    /// (G·H): `b_ih` (+ `b_hh` but for the GRU, which adds `b_hh` in its gate kernel).
    bias: Vec<f32>,
    /// GRU: (3H) `b_hh`.
    b_hh: Option<Vec<f32>>,
}

/// The scratch of [`HalfCell::step`] (rows 0..n used): `gates` (n, G·H) always; the GRU's
/// `gh` (n, 3H) and `hn` (n, H); a projected LSTM's `m` (n, H); for int8 weights `q`, `qs`,
/// `qz` of [`HalfCell::quant_scratch`] sizes. Unused ones may be empty.
pub struct HalfScratch<'a> {
    pub gates: &'a mut [f32],
    pub gh: &'a mut [f32],
    pub hn: &'a mut [f32],
    pub m: &'a mut [f32],
    pub q: &'a mut [u8],
    pub qs: &'a mut [f32],
    pub qz: &'a mut [i32],
}

/// Raw pointers handed to the threads of a step; each thread writes only its own columns.
#[derive(Clone, Copy)]
struct StepPtrs {
    gates: *mut f32,
    gh: *mut f32,
    hn: *mut f32,
    c: *mut f32,
    /// `m` of a projected LSTM, else `h_new`.
    out: *mut f32,
}
// SAFETY: the pointers are only dereferenced inside `HalfCell::step`'s team, where every
// chunk writes disjoint columns (its hidden units) and reads only what no chunk writes.
unsafe impl Send for StepPtrs {}
unsafe impl Sync for StepPtrs {}

impl HalfCell {
    /// A layer from PyTorch-layout f32 weights (`weight_ih` (G·H, input), `weight_hh`
    /// (G·H, H_out), `weight_hr` (P, H), the biases (G·H)), stored in `format`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: CellKind,
        hidden: usize,
        input: usize,
        w_ih: &[f32],
        w_hh: &[f32],
        w_hr: Option<&[f32]>,
        b_ih: Option<&[f32]>,
        b_hh: Option<&[f32]>,
        format: Format,
    ) -> HalfCell {
        let g = kind.gates() * hidden;
        assert!(
            w_hr.is_none() || kind == CellKind::Lstm,
            "projection: LSTM only"
        );
        let hout = w_hr.map_or(hidden, |w| w.len() / hidden.max(1));
        assert!(b_ih.is_none_or(|b| b.len() == g) && b_hh.is_none_or(|b| b.len() == g));
        let mut bias = b_ih.map_or_else(|| vec![0.0; g], <[f32]>::to_vec);
        let gru = kind == CellKind::Gru;
        if let (false, Some(b)) = (gru, b_hh) {
            for (s, &x) in bias.iter_mut().zip(b) {
                *s += x;
            }
        }
        HalfCell {
            kind,
            format,
            h: hidden,
            hout,
            input,
            w_ih: Store::new(w_ih, g, input, format),
            w_hh: Store::new(w_hh, g, hout, format),
            w_hr: w_hr.map(|w| Store::new(w, hout, hidden, format)),
            bias,
            b_hh: if gru { b_hh.map(<[f32]>::to_vec) } else { None },
        }
    }

    pub fn kind(&self) -> CellKind {
        self.kind
    }

    /// How the weights are stored.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The sizes of the int8 scratch (`q`, `qs`, `qz` of [`HalfScratch`]) for `n` rows; zero
    /// for 16-bit weights.
    pub fn quant_scratch(&self, n: usize) -> (usize, usize, usize) {
        match self.format {
            Format::Half(_) => (0, 0, 0),
            Format::Int8 => {
                let cols = padded(self.input) + padded(self.hout) + padded(self.h);
                (n * cols, 3 * n, 3 * n)
            }
        }
    }

    /// The input size.
    pub fn input_size(&self) -> usize {
        self.input
    }

    /// The gate rows, G·H.
    pub fn gate_rows(&self) -> usize {
        self.kind.gates() * self.h
    }

    /// The input projection of `n` rows at once, `y (n, G·H) = x (n, input) · W_ihᵀ` (no
    /// bias): for int8 weights the rows of `x` are quantized first, each with its own scale
    /// and zero point as [`HalfCell::step`] quantizes them, and multiplied by the blocked
    /// integer kernel ([`QuantMat::gemm`], the weight rows split across up to `threads`
    /// threads). Feed the rows of `y` to [`HalfCell::step_projected`].
    pub fn project(&self, n: usize, x: &[f32], y: &mut [f32], threads: usize) {
        let (input, g) = (self.input, self.gate_rows());
        assert!(x.len() >= n * input && y.len() >= n * g);
        match &self.w_ih {
            Store::Half(m) => m.matvecs(n, x, input, y, g, false),
            Store::Int8(m) => {
                let ld = padded(input);
                let (mut q, mut sc, mut z) = (vec![0u8; n * ld], vec![0.0f32; n], vec![0i32; n]);
                quantize_rows(n, x, input, input, &mut q, &mut sc, &mut z);
                let rows = QuantRows {
                    q: &q,
                    ld,
                    scale: &sc,
                    zero: &z,
                };
                m.gemm(n, &rows, y, g, false, threads);
            }
        }
    }

    /// One time step of rows 0..n: `x` (n, input), `h_prev` (n, H_out), `c` (n, H) the LSTM's
    /// cell state, updated in place (empty otherwise), `h_new` (n, H_out) out. With
    /// `threads` ≥ 2 and enough work the hidden units are split across a team of threads
    /// ([`crate::team`]), each reading its own rows of the weights.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &self,
        n: usize,
        x: &[f32],
        h_prev: &[f32],
        c: &mut [f32],
        h_new: &mut [f32],
        s: HalfScratch<'_>,
        threads: usize,
    ) {
        assert!(x.len() >= n * self.input);
        self.step_in(n, StepInput::X(x), h_prev, c, h_new, s, threads)
    }

    /// [`HalfCell::step`] with the input projection already made: `pre` (n, G·H) holds
    /// `x · W_ihᵀ` of this step (a block of [`HalfCell::project`]'s output); the biases are
    /// added here.
    #[allow(clippy::too_many_arguments)]
    pub fn step_projected(
        &self,
        n: usize,
        pre: &[f32],
        h_prev: &[f32],
        c: &mut [f32],
        h_new: &mut [f32],
        s: HalfScratch<'_>,
        threads: usize,
    ) {
        assert!(pre.len() >= n * self.gate_rows());
        self.step_in(n, StepInput::Projected(pre), h_prev, c, h_new, s, threads)
    }

    #[allow(clippy::too_many_arguments)]
    fn step_in(
        &self,
        n: usize,
        input: StepInput<'_>,
        h_prev: &[f32],
        c: &mut [f32],
        h_new: &mut [f32],
        s: HalfScratch<'_>,
        threads: usize,
    ) {
        let (h, hout, g) = (self.h, self.hout, self.kind.gates() * self.h);
        let (lstm, gru) = (self.kind == CellKind::Lstm, self.kind == CellKind::Gru);
        let proj = self.w_hr.is_some();
        assert!(h_prev.len() >= n * hout && h_new.len() >= n * hout);
        assert!(s.gates.len() >= n * g);
        assert!(!lstm || c.len() >= n * h);
        assert!(!gru || (s.gh.len() >= n * g && s.hn.len() >= n * h));
        assert!(!proj || s.m.len() >= n * h);
        let (nq, nqs, nqz) = self.quant_scratch(n);
        assert!(s.q.len() >= nq && s.qs.len() >= nqs && s.qz.len() >= nqz);
        // The operands: as they are for 16-bit weights; quantized once per step for int8 (x
        // and h_prev each with their own per-row scales, as PyTorch's dynamic quantization
        // quantizes each product's input).
        let (ox, oh, rest_m) = match self.format {
            Format::Half(_) => (
                match input {
                    StepInput::X(x) => Operand::F32(x, self.input),
                    StepInput::Projected(p) => Operand::Pre(p),
                },
                Operand::F32(h_prev, hout),
                None,
            ),
            Format::Int8 => {
                let (pi, ph) = (padded(self.input) * n, padded(hout) * n);
                let (q_x, q) = s.q.split_at_mut(pi);
                let (q_h, q_m) = q.split_at_mut(ph);
                let (sx, qs) = s.qs.split_at_mut(n);
                let (sh, qs_m) = qs.split_at_mut(n);
                let (zx, qz) = s.qz.split_at_mut(n);
                let (zh, qz_m) = qz.split_at_mut(n);
                quantize_rows(n, h_prev, hout, hout, q_h, sh, zh);
                (
                    match input {
                        StepInput::X(x) => {
                            quantize_rows(n, x, self.input, self.input, q_x, sx, zx);
                            Operand::Q(QuantRows {
                                q: q_x,
                                ld: padded(self.input),
                                scale: sx,
                                zero: zx,
                            })
                        }
                        StepInput::Projected(p) => Operand::Pre(p),
                    },
                    Operand::Q(QuantRows {
                        q: q_h,
                        ld: padded(hout),
                        scale: sh,
                        zero: zh,
                    }),
                    Some((q_m, qs_m, qz_m)),
                )
            }
        };
        let p = StepPtrs {
            gates: s.gates.as_mut_ptr(),
            gh: s.gh.as_mut_ptr(),
            hn: s.hn.as_mut_ptr(),
            c: c.as_mut_ptr(),
            out: if proj {
                s.m.as_mut_ptr()
            } else {
                h_new.as_mut_ptr()
            },
        };
        // A projected LSTM needs every unit of m before its projection: one chunk. A team for
        // a single step pays a thread wake-up (tens of µs when the other thread sleeps), so
        // only a step of the size from which the packed products split does so too (a
        // streaming LSTM of hidden 256 at batch 1 measured 0.013 ms alone, 0.02-0.05 ms in a
        // team of 2).
        let work = n * g * (self.input + hout);
        let chunks = if proj || work < crate::packed::THREADS_MIN {
            1
        } else {
            threads.clamp(1, h.div_ceil(8))
        };
        // Chunk c owns the hidden units bound(c)..bound(c+1) (multiples of 8 but the last).
        let bound = |c: usize| {
            if c == chunks {
                h
            } else {
                c * h / chunks / 8 * 8
            }
        };
        let relu = self.kind == CellKind::RnnRelu;
        crate::team::run(1, chunks, &|_, chunk| {
            let (u0, u1) = (bound(chunk), bound(chunk + 1));
            // The whole struct (not its fields, which are not Sync) is what the closure captures.
            let p = &p;
            // SAFETY: the buffers hold n rows (asserted above); this chunk writes only the
            // columns of its units u0..u1 (of every gate block, of c, hn and the output), and
            // reads the operands and the weights, which no chunk writes.
            unsafe {
                for blk in 0..self.kind.gates() {
                    let (j0, j1) = (blk * h + u0, blk * h + u1);
                    if let Operand::Pre(pre) = &ox {
                        for r in 0..n {
                            let row = p.gates.add(r * g);
                            for j in j0..j1 {
                                *row.add(j) = self.bias[j] + pre[r * g + j];
                            }
                        }
                    } else {
                        for r in 0..n {
                            let row = p.gates.add(r * g);
                            for j in j0..j1 {
                                *row.add(j) = self.bias[j];
                            }
                        }
                        self.w_ih.rows_into(j0, j1, n, &ox, p.gates, g, true);
                    }
                    if gru {
                        self.w_hh.rows_into(j0, j1, n, &oh, p.gh, g, false);
                    } else {
                        self.w_hh.rows_into(j0, j1, n, &oh, p.gates, g, true);
                    }
                }
                match self.kind {
                    CellKind::Lstm => {
                        crate::cells::lstm_forward_units(n, h, u0, u1, p.gates, p.c, p.out)
                    }
                    CellKind::Gru => crate::cells::gru_forward_units(
                        n,
                        h,
                        u0,
                        u1,
                        p.gates,
                        p.gh,
                        self.b_hh.as_deref(),
                        h_prev.as_ptr(),
                        p.hn,
                        p.out,
                    ),
                    CellKind::RnnTanh | CellKind::RnnRelu => {
                        crate::cells::rnn_forward_units(n, h, u0, u1, p.gates, p.out, relu)
                    }
                }
            }
        });
        // h_new (n, P) = m (n, H) · W_hrᵀ
        match &self.w_hr {
            None => {}
            Some(Store::Half(hr)) => hr.matvecs(n, s.m, h, h_new, hout, false),
            Some(Store::Int8(hr)) => {
                let (q_m, qs_m, qz_m) = rest_m.expect("int8 scratch");
                let (sm, zm) = (&mut qs_m[..n], &mut qz_m[..n]);
                quantize_rows(n, s.m, h, h, q_m, sm, zm);
                let rows = QuantRows {
                    q: q_m,
                    ld: padded(h),
                    scale: sm,
                    zero: zm,
                };
                hr.matvecs(n, &rows, h_new, hout, false);
            }
        }
    }
}
