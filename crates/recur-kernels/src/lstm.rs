//! The LSTM's recurrent step as one kernel: the product `h_{t-1} W_hhᵀ` and the cell
//! arithmetic that follows it, applied to each tile of the product while it is still in
//! registers.
//!
//! [`LstmPackedB`] packs `W_hhᵀ` (H_out, 4H) gate-interleaved: panel p holds the 16 columns
//! `[i f g o]` of the hidden units `4p..4p+4`, so one 16-wide tile of the product (two 8-lane
//! vectors, `[i(4) f(4)]` and `[g(4) o(4)]`) holds all four gate pre-activations of the same
//! four units, and the microkernel of [`crate::packed`] can finish the step on its
//! accumulators: add the input part, apply the activations, update c and write h. Nothing of
//! size (n, 4H) is written back unless the activations are kept for the backward pass.
//!
//! The result equals [`crate::packed::PackedB::matmul`] (accumulating into the gates) followed
//! by [`crate::cells::lstm_forward`] to the rounding of the sums: every value is computed with
//! the same operations in the same order, the activations are the same vectorized functions.

use crate::packed::{SendPtr, NR, THREADS_MIN};
use crate::team::{self, Step};
use crate::Real;
use std::any::TypeId;

/// Hidden units per panel (16 columns = 4 gates × 4 units).
pub const UNITS: usize = NR / 4;

/// `W_hhᵀ` of an LSTM (H_out, 4H), packed gate-interleaved (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct LstmPackedB<T> {
    /// H_out: the inner dimension
    k: usize,
    /// H: hidden units
    h: usize,
    /// (panels, k, NR)
    data: Vec<T>,
}

impl<T: Real> LstmPackedB<T> {
    /// An empty packing, to be filled by [`LstmPackedB::pack`].
    pub fn new() -> LstmPackedB<T> {
        LstmPackedB {
            k: 0,
            h: 0,
            data: Vec::new(),
        }
    }

    /// Packs `w_hh` (4H, k) row-major — PyTorch's `weight_hh_l*`, gate blocks `[i f g o]` — as
    /// `W_hhᵀ` in gate-interleaved panels. Reuses the buffer when it is large enough.
    pub fn pack(&mut self, w_hh: &[T], h: usize, k: usize) {
        assert_eq!(
            w_hh.len(),
            4 * h * k,
            "LSTM W_hh: expected (4·{h}, {k}) values"
        );
        let panels = h.div_ceil(UNITS);
        self.k = k;
        self.h = h;
        self.data.clear();
        self.data.resize(panels * k * NR, T::ZERO);
        for p in 0..panels {
            let dst = &mut self.data[p * k * NR..(p + 1) * k * NR];
            for gate in 0..4 {
                for lane in 0..UNITS {
                    let u = p * UNITS + lane;
                    if u >= h {
                        continue;
                    }
                    let src = &w_hh[(gate * h + u) * k..(gate * h + u + 1) * k];
                    for (kk, &v) in src.iter().enumerate() {
                        dst[kk * NR + gate * UNITS + lane] = v;
                    }
                }
            }
        }
    }

    /// The hidden size H.
    pub fn h(&self) -> usize {
        self.h
    }
    /// The inner dimension (H_out, the size of h).
    pub fn k(&self) -> usize {
        self.k
    }

    /// One LSTM step for rows 0..n:
    ///
    /// - `h_prev` (n, k), rows `ldh` apart: the previous h;
    /// - `gates` (n, 4H): in: the input part of the pre-activations (`x W_ihᵀ` plus the
    ///   biases); out, when `keep`: the activations `[i f g o]` (as
    ///   [`crate::cells::lstm_forward`] leaves them); unchanged otherwise;
    /// - `c_prev` (n, H): the previous cell state; `c_new` (n, H): out, `f*c_prev + i*g`;
    /// - `out` (n, H): out, `o * tanh(c_new)`.
    ///
    /// `threads`: the panels may be split across threads (false when the caller already runs
    /// one step per thread).
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &self,
        n: usize,
        h_prev: &[T],
        ldh: usize,
        gates: &mut [T],
        c_prev: &[T],
        c_new: &mut [T],
        out: &mut [T],
        keep: bool,
        threads: bool,
    ) {
        let (k, h) = (self.k, self.h);
        if n == 0 || h == 0 {
            return;
        }
        assert!(
            ldh >= k && h_prev.len() >= (n - 1) * ldh + k,
            "LSTM step: h_prev is too short"
        );
        assert!(
            gates.len() >= n * 4 * h
                && c_prev.len() >= n * h
                && c_new.len() >= n * h
                && out.len() >= n * h,
            "LSTM step: a buffer is too short"
        );
        let panels = h.div_ceil(UNITS);
        let threads = if threads {
            crate::num_threads().min(panels)
        } else {
            1
        };
        let bufs = Bufs {
            gates: SendPtr(gates.as_mut_ptr()),
            c_new: SendPtr(c_new.as_mut_ptr()),
            out: SendPtr(out.as_mut_ptr()),
        };
        if threads > 1 && n * 4 * h * k >= THREADS_MIN {
            self.split(0, panels, threads, n, h_prev, ldh, bufs, c_prev, keep);
        } else {
            self.panels(0, panels, n, h_prev, ldh, bufs, c_prev, keep);
        }
    }

    /// The whole time loop of one direction over a group of `b` rows, sorted by decreasing
    /// length, for an LSTM without projection (k = H):
    ///
    /// - `batch_sizes` (T): how many of the rows run at step t (the others keep their state);
    /// - `gates` (T, b, 4H): in, the input parts (as for [`LstmPackedB::step`]); out, when
    ///   `keep`, the activations of the rows that ran;
    /// - `hs`, `cs` (T+1, b, H): state slots. Forward: slot 0 holds the initial state and step
    ///   t writes slot t+1; `reverse`: slot T holds it and step t writes slot t.
    ///
    /// From `threads` ≥ 2 (and enough work per step), the hidden units are split between the
    /// threads of a [`crate::team`], each thread keeping its part of the weights for the whole
    /// loop; the result does not depend on the split.
    #[allow(clippy::too_many_arguments)]
    pub fn sequence(
        &self,
        b: usize,
        batch_sizes: &[usize],
        reverse: bool,
        gates: &mut [T],
        hs: &mut [T],
        cs: &mut [T],
        keep: bool,
        threads: usize,
    ) {
        let (k, h, tn) = (self.k, self.h, batch_sizes.len());
        assert_eq!(k, h, "LSTM sequence: needs k = H (no projection)");
        assert!(
            gates.len() >= tn * b * 4 * h
                && hs.len() >= (tn + 1) * b * h
                && cs.len() >= (tn + 1) * b * h,
            "LSTM sequence: a buffer is too short"
        );
        assert!(
            batch_sizes.iter().all(|&n| n <= b),
            "LSTM sequence: more running rows than rows"
        );
        if b == 0 || h == 0 || tn == 0 {
            return;
        }
        let panels = h.div_ceil(UNITS);
        let busiest = batch_sizes.iter().copied().max().unwrap_or(0);
        let chunks = team::chunks(busiest * 4 * h * k, threads, panels);
        let (g_ptr, h_ptr, c_ptr) = (
            SendPtr(gates.as_mut_ptr()),
            SendPtr(hs.as_mut_ptr()),
            SendPtr(cs.as_mut_ptr()),
        );
        let slot = b * h;
        team::run_steps(batch_sizes, reverse, chunks, &|st: Step, c| {
            let (t, n) = (st.t, st.n);
            // SAFETY: the slots prev and new are distinct and inside hs and cs (checked
            // above). During this step, the chunks read only slot prev (written by the
            // previous step, which the team has finished) and write only slot new: chunk 0
            // the rows n..b, every chunk its own hidden units of the rows 0..n, and its own
            // units of the step's gate rows. So no memory is written by two calls at once or
            // read while written.
            unsafe {
                let hp = std::slice::from_raw_parts(h_ptr.get().add(st.prev * slot), slot);
                let cp = std::slice::from_raw_parts(c_ptr.get().add(st.prev * slot), slot);
                let (hn, cn) = (
                    h_ptr.get().add(st.new * slot),
                    c_ptr.get().add(st.new * slot),
                );
                if c == 0 {
                    team::carry(h_ptr.get(), slot, h, st);
                    team::carry(c_ptr.get(), slot, h, st);
                }
                let bufs = Bufs {
                    gates: SendPtr(g_ptr.get().add(t * b * 4 * h)),
                    c_new: SendPtr(cn),
                    out: SendPtr(hn),
                };
                let (p0, p1) = (panels * c / chunks, panels * (c + 1) / chunks);
                if n > 0 {
                    self.panels(p0, p1, n, hp, h, bufs, cp, keep);
                }
            }
        });
    }

    /// Runs panels p0..p1 on `threads` threads by halving the range with `rayon::join`.
    #[allow(clippy::too_many_arguments)]
    fn split(
        &self,
        p0: usize,
        p1: usize,
        threads: usize,
        n: usize,
        h_prev: &[T],
        ldh: usize,
        bufs: Bufs<T>,
        c_prev: &[T],
        keep: bool,
    ) {
        if threads <= 1 || p1 - p0 <= 1 {
            self.panels(p0, p1, n, h_prev, ldh, bufs, c_prev, keep);
            return;
        }
        let mid = p0 + (p1 - p0) * (threads / 2) / threads;
        rayon::join(
            || self.split(p0, mid, threads / 2, n, h_prev, ldh, bufs, c_prev, keep),
            || {
                self.split(
                    mid,
                    p1,
                    threads - threads / 2,
                    n,
                    h_prev,
                    ldh,
                    bufs,
                    c_prev,
                    keep,
                )
            },
        );
    }

    /// Panels p0..p1 (hidden units 4·p0..4·p1) of the step. Writes only the columns of those
    /// units in `gates`, `c_new` and `out`.
    #[allow(clippy::too_many_arguments)]
    fn panels(
        &self,
        p0: usize,
        p1: usize,
        n: usize,
        h_prev: &[T],
        ldh: usize,
        bufs: Bufs<T>,
        c_prev: &[T],
        keep: bool,
    ) {
        #[cfg(target_arch = "x86_64")]
        if TypeId::of::<T>() == TypeId::of::<f32>() && crate::cpu::features().avx2_fma {
            let (a, b, cp) = (
                crate::as_f32(h_prev).unwrap(),
                crate::as_f32(&self.data).unwrap(),
                crate::as_f32(c_prev).unwrap(),
            );
            // SAFETY: T is f32 (same TypeId), so the pointers point at f32 values; the CPU has
            // AVX2+FMA; `step` checked that h_prev holds n rows of k values with stride ldh
            // and that gates, c_prev, c_new and out hold n rows; the packed buffer holds every
            // panel. Calls on disjoint panel ranges write disjoint columns.
            unsafe {
                avx2::panels(
                    p0,
                    p1,
                    n,
                    self.k,
                    self.h,
                    a,
                    ldh,
                    b,
                    bufs.gates.get() as *mut f32,
                    cp,
                    bufs.c_new.get() as *mut f32,
                    bufs.out.get() as *mut f32,
                    keep,
                )
            };
            return;
        }
        self.panels_naive(p0, p1, n, h_prev, ldh, bufs, c_prev, keep);
    }

    /// The plain loop over the packed layout (f64 and CPUs without AVX2+FMA).
    #[allow(clippy::too_many_arguments)]
    fn panels_naive(
        &self,
        p0: usize,
        p1: usize,
        n: usize,
        h_prev: &[T],
        ldh: usize,
        bufs: Bufs<T>,
        c_prev: &[T],
        keep: bool,
    ) {
        let (k, h) = (self.k, self.h);
        for p in p0..p1 {
            let panel = &self.data[p * k * NR..(p + 1) * k * NR];
            for r in 0..n {
                let mut sums = [T::ZERO; NR];
                for kk in 0..k {
                    let av = h_prev[r * ldh + kk];
                    for (s, &w) in sums.iter_mut().zip(&panel[kk * NR..(kk + 1) * NR]) {
                        *s += av * w;
                    }
                }
                for lane in 0..UNITS {
                    let u = p * UNITS + lane;
                    if u >= h {
                        break;
                    }
                    // SAFETY: r < n and u < h, so every index is inside the n rows `step`
                    // checked; other calls (other threads) touch other units u only.
                    unsafe {
                        let g = bufs.gates.get().add(r * 4 * h);
                        let pre = |gate: usize| *g.add(gate * h + u) + sums[gate * UNITS + lane];
                        let i = pre(0).sigmoid();
                        let f = pre(1).sigmoid();
                        let gg = pre(2).tanh();
                        let o = pre(3).sigmoid();
                        if keep {
                            *g.add(u) = i;
                            *g.add(h + u) = f;
                            *g.add(2 * h + u) = gg;
                            *g.add(3 * h + u) = o;
                        }
                        let c = f * c_prev[r * h + u] + i * gg;
                        *bufs.c_new.get().add(r * h + u) = c;
                        *bufs.out.get().add(r * h + u) = o * c.tanh();
                    }
                }
            }
        }
    }
}

/// The outputs of a step, shared between the threads that each write their own units.
struct Bufs<T> {
    gates: SendPtr<T>,
    c_new: SendPtr<T>,
    out: SendPtr<T>,
}

impl<T: Copy> Clone for Bufs<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: Copy> Copy for Bufs<T> {}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::UNITS;
    use crate::packed::avx2::acc_tile;
    use crate::packed::{MR, NR};
    use crate::simd::{sigmoid8, tanh8};
    use std::arch::x86_64::*;

    /// Panels p0..p1 of the fused step (see [`super::LstmPackedB::step`]).
    ///
    /// Safety: AVX2+FMA available; `a` holds n rows (stride lda) of k values; `gates` n rows
    /// of 4H, `c_prev`, `c_new`, `out` n rows of H; `b` every panel of k × 16 values.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn panels(
        p0: usize,
        p1: usize,
        n: usize,
        k: usize,
        h: usize,
        a: &[f32],
        lda: usize,
        b: &[f32],
        gates: *mut f32,
        c_prev: &[f32],
        c_new: *mut f32,
        out: *mut f32,
        keep: bool,
    ) {
        let ap = a.as_ptr();
        let o = Out {
            h,
            gates,
            c_prev: c_prev.as_ptr(),
            c_new,
            out,
            keep,
        };
        // Row blocks of about 512 KiB of h_prev, as in the plain packed product.
        let mc = ((1usize << 17) / k.max(1) / MR).max(1) * MR;
        if n == 1 {
            one_row(&o, p0, p1, k, ap, b.as_ptr());
            return;
        }
        let mut i0 = 0;
        while i0 < n {
            let i1 = (i0 + mc).min(n);
            // cache lines of one panel, and how many of the next panel's to fetch per tile
            let lines = k * NR / 16;
            let per_tile = lines.div_ceil((i1 - i0).div_ceil(MR));
            for p in p0..p1 {
                let bp = b.as_ptr().add(p * k * NR);
                let mut i = i0;
                while i < i1 {
                    let rows = MR.min(i1 - i);
                    let a = ap.add(i * lda);
                    // The next panel comes from L3 (W_hh is larger than L2): fetch it into L2
                    // a slice per tile while this panel is being used.
                    if p + 1 < p1 {
                        let first = (i - i0) / MR * per_tile;
                        let next = bp.add(k * NR);
                        for l in first..(first + per_tile).min(lines) {
                            _mm_prefetch::<_MM_HINT_T1>(next.add(l * 16) as *const i8);
                        }
                    }
                    // The input parts of these rows' gates come from memory, 4 panels to a
                    // cache line: fetch the lines that panel p + 4 will read.
                    if p % 4 == 0 && p + 4 < p1 {
                        for r in i..i + rows {
                            let g = gates.add(r * 4 * h + (p + 4) * UNITS);
                            for gate in 0..4 {
                                _mm_prefetch::<_MM_HINT_T0>(g.add(gate * h) as *const i8);
                            }
                        }
                    }
                    match rows {
                        6 => finish(&o, i, p, &acc_tile::<6, 1>(k, a, lda, bp)),
                        5 => finish(&o, i, p, &acc_tile::<5, 1>(k, a, lda, bp)),
                        4 => finish(&o, i, p, &acc_tile::<4, 1>(k, a, lda, bp)),
                        3 => finish(&o, i, p, &acc_tile::<3, 2>(k, a, lda, bp)),
                        2 => finish(&o, i, p, &acc_tile::<2, 2>(k, a, lda, bp)),
                        _ => finish(&o, i, p, &acc_tile::<1, 4>(k, a, lda, bp)),
                    }
                    i += MR;
                }
            }
            i0 = i1;
        }
    }

    /// Where the epilogue reads and writes.
    struct Out {
        h: usize,
        gates: *mut f32,
        c_prev: *const f32,
        c_new: *mut f32,
        out: *mut f32,
        keep: bool,
    }

    /// The lane mask for the first `cnt` (≤ 4) of 4 lanes.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[inline(always)]
    unsafe fn mask4(cnt: usize) -> __m128i {
        _mm_cmpgt_epi32(_mm_set1_epi32(cnt as i32), _mm_setr_epi32(0, 1, 2, 3))
    }

    /// # Safety
    /// The CPU has AVX2; `p` points at `min(cnt, 4)` readable f32.
    #[inline(always)]
    unsafe fn ld4(p: *const f32, cnt: usize) -> __m128 {
        if cnt >= UNITS {
            _mm_loadu_ps(p)
        } else {
            _mm_maskload_ps(p, mask4(cnt))
        }
    }

    /// `[lo(4) hi(4)]` from two places.
    ///
    /// # Safety
    /// The CPU has AVX2; `lo` and `hi` each point at `min(cnt, 4)` readable f32.
    #[inline(always)]
    unsafe fn pair(lo: *const f32, hi: *const f32, cnt: usize) -> __m256 {
        _mm256_set_m128(ld4(hi, cnt), ld4(lo, cnt))
    }

    /// # Safety
    /// The CPU has AVX2; `p` points at `min(cnt, 4)` writable f32.
    #[inline(always)]
    unsafe fn st4(p: *mut f32, v: __m128, cnt: usize) {
        if cnt >= UNITS {
            _mm_storeu_ps(p, v)
        } else {
            _mm_maskstore_ps(p, mask4(cnt), v)
        }
    }

    /// The epilogue of one tile: rows i0..i0+R, units 4p..4p+4. `acc[r]` holds `h W_hhᵀ` of
    /// row i0+r as `[i f]` and `[g o]` (4 lanes each). Rows are taken two at a time (see
    /// [`cell2`]).
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; rows i0..i0+R and units 4p..4p+4 lie inside `o`'s buffers, and
    /// no other thread writes those units of those rows meanwhile.
    #[inline(always)]
    unsafe fn finish<const R: usize>(o: &Out, i0: usize, p: usize, acc: &[[__m256; 2]; R]) {
        let u0 = p * UNITS;
        let cnt = UNITS.min(o.h - u0);
        let mut r = 0;
        while r + 1 < R {
            let (x, y) = (Slot(i0 + r, u0, cnt), Slot(i0 + r + 1, u0, cnt));
            cell2(o, acc[r], acc[r + 1], x, y, true);
            r += 2;
        }
        if r < R {
            let x = Slot(i0 + r, u0, cnt);
            cell2(o, acc[r], acc[r], x, x, false);
        }
    }

    /// Four hidden units of one row: (row, first unit, how many units are real).
    #[derive(Clone, Copy)]
    pub(super) struct Slot(usize, usize, usize);

    /// The cell update of two slots x and y (two rows of the same units, or the same row of
    /// two groups of units), so that every activation call fills its 8 lanes: 5 calls per
    /// pair, as [`crate::simd::lstm_forward`] makes for 8 units of one row. `ax`, `ay`: the
    /// recurrent parts `[i f]`, `[g o]`; y is stored only when `both`.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; both slots lie inside `o`'s buffers, and no other thread
    /// writes their units meanwhile.
    #[inline(always)]
    unsafe fn cell2(o: &Out, ax: [__m256; 2], ay: [__m256; 2], x: Slot, y: Slot, both: bool) {
        let h = o.h;
        let gx = o.gates.add(x.0 * 4 * h + x.1);
        let gy = o.gates.add(y.0 * 4 * h + y.1);
        // [i f] of x, [i f] of y, [g g'] and [o o'] of (x, y): pre-activations = input part
        // + recurrent part (the same single addition as the unfused path).
        let ifx = _mm256_add_ps(ax[0], pair(gx, gx.add(h), x.2));
        let ify = _mm256_add_ps(ay[0], pair(gy, gy.add(h), y.2));
        let gox = _mm256_add_ps(ax[1], pair(gx.add(2 * h), gx.add(3 * h), x.2));
        let goy = _mm256_add_ps(ay[1], pair(gy.add(2 * h), gy.add(3 * h), y.2));
        let sx = sigmoid8(ifx);
        let sy = sigmoid8(ify);
        let gg = tanh8(_mm256_permute2f128_ps(gox, goy, 0x20));
        let oo = sigmoid8(_mm256_permute2f128_ps(gox, goy, 0x31));
        let ii = _mm256_permute2f128_ps(sx, sy, 0x20);
        let ff = _mm256_permute2f128_ps(sx, sy, 0x31);
        let (ex, ey) = (x.0 * h + x.1, y.0 * h + y.1);
        let cp = _mm256_set_m128(ld4(o.c_prev.add(ey), y.2), ld4(o.c_prev.add(ex), x.2));
        let c = _mm256_fmadd_ps(ff, cp, _mm256_mul_ps(ii, gg));
        let hv = _mm256_mul_ps(oo, tanh8(c));
        // x: the low halves
        if o.keep {
            st4(gx, _mm256_castps256_ps128(ii), x.2);
            st4(gx.add(h), _mm256_castps256_ps128(ff), x.2);
            st4(gx.add(2 * h), _mm256_castps256_ps128(gg), x.2);
            st4(gx.add(3 * h), _mm256_castps256_ps128(oo), x.2);
        }
        st4(o.c_new.add(ex), _mm256_castps256_ps128(c), x.2);
        st4(o.out.add(ex), _mm256_castps256_ps128(hv), x.2);
        if both {
            // y: the high halves
            if o.keep {
                st4(gy, _mm256_extractf128_ps(ii, 1), y.2);
                st4(gy.add(h), _mm256_extractf128_ps(ff, 1), y.2);
                st4(gy.add(2 * h), _mm256_extractf128_ps(gg, 1), y.2);
                st4(gy.add(3 * h), _mm256_extractf128_ps(oo, 1), y.2);
            }
            st4(o.c_new.add(ey), _mm256_extractf128_ps(c, 1), y.2);
            st4(o.out.add(ey), _mm256_extractf128_ps(hv, 1), y.2);
        }
    }

    /// A single row (a streaming step): panels taken two at a time, so that the cell update
    /// pairs two groups of units instead of wasting half of every activation call.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `a` holds the row's k inputs, `b` the packed panels p0..p1,
    /// `o` one row; no other thread writes the units of panels p0..p1 meanwhile.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn one_row(o: &Out, p0: usize, p1: usize, k: usize, a: *const f32, b: *const f32) {
        let slot = |p: usize| Slot(0, p * UNITS, UNITS.min(o.h - p * UNITS));
        let mut p = p0;
        while p + 1 < p1 {
            let ax = acc_tile::<1, 4>(k, a, k, b.add(p * k * NR));
            let ay = acc_tile::<1, 4>(k, a, k, b.add((p + 1) * k * NR));
            cell2(o, ax[0], ay[0], slot(p), slot(p + 1), true);
            p += 2;
        }
        if p < p1 {
            let ax = acc_tile::<1, 4>(k, a, k, b.add(p * k * NR));
            cell2(o, ax[0], ax[0], slot(p), slot(p), false);
        }
    }
}

/// One LSTM step for one row with the weights packed for it (f32): per slice of 8 hidden
/// units, the columns of `W_ih` then of `W_hh`, each column as 32 values, the i, f, g and o
/// rows of the slice's units side by side (units beyond H are zero). One pass over `x` and one
/// over `h` give the four gate pre-activations of a slice (the two biases summed once), and the
/// cell runs on them while they are in registers.
///
/// PyTorch's LSTM: i = σ(W_ii x + b_ii + W_hi h + b_hi), f, g (tanh) and o likewise,
/// c' = f ⊙ c + i ⊙ g, h' = o ⊙ tanh(c').
#[derive(Clone, Debug, Default)]
pub struct LstmStepPacked {
    h: usize,
    input: usize,
    w: Vec<f32>,
    /// `b_ih + b_hh` of the gates i, f, g, o, each padded to a whole number of slices.
    bias: Vec<f32>,
}

impl LstmStepPacked {
    /// Packs `w_ih` (4H, input) and `w_hh` (4H, H), row-major in PyTorch's gate order i, f, g,
    /// o, and the biases (4H each, absent = zero).
    pub fn new(
        h: usize,
        input: usize,
        w_ih: &[f32],
        w_hh: &[f32],
        b_ih: Option<&[f32]>,
        b_hh: Option<&[f32]>,
    ) -> LstmStepPacked {
        assert!(
            w_ih.len() == 4 * h * input
                && w_hh.len() == 4 * h * h
                && b_ih.is_none_or(|b| b.len() == 4 * h)
                && b_hh.is_none_or(|b| b.len() == 4 * h),
            "LstmStepPacked: weight shapes"
        );
        let slices = h.div_ceil(8);
        let hp = slices * 8;
        let w = crate::gru::pack_gate_slices(4, h, input, w_ih, w_hh);
        let at = |b: Option<&[f32]>, i: usize| b.map_or(0.0, |b| b[i]);
        let mut bias = vec![0.0; 4 * hp];
        for gate in 0..4 {
            for u in 0..h {
                bias[gate * hp + u] = at(b_ih, gate * h + u) + at(b_hh, gate * h + u);
            }
        }
        LstmStepPacked { h, input, w, bias }
    }

    /// Hidden size H.
    pub fn hidden(&self) -> usize {
        self.h
    }

    /// Input size.
    pub fn input(&self) -> usize {
        self.input
    }

    /// `h_new`, `c_new` (H each) = one step from `x` (input), `h_prev` and `c_prev` (H each).
    /// Does not allocate. With more than one thread allowed ([`crate::num_threads`]) and a
    /// step of at least [`team::MIN_WORK`] multiply-adds, half of the units run on a helper
    /// thread kept awake across calls ([`crate::duo`]); the result is the same bit for bit.
    pub fn step(
        &self,
        x: &[f32],
        h_prev: &[f32],
        c_prev: &[f32],
        h_new: &mut [f32],
        c_new: &mut [f32],
    ) {
        self.step_threads(x, h_prev, c_prev, h_new, c_new, crate::num_threads());
    }

    /// [`Self::step`] with at most `threads` threads.
    pub(crate) fn step_threads(
        &self,
        x: &[f32],
        h_prev: &[f32],
        c_prev: &[f32],
        h_new: &mut [f32],
        c_new: &mut [f32],
        threads: usize,
    ) {
        let (h, input) = (self.h, self.input);
        assert!(
            x.len() == input
                && h_prev.len() == h
                && c_prev.len() == h
                && h_new.len() == h
                && c_new.len() == h,
            "LstmStepPacked::step: buffer sizes"
        );
        let slices = h.div_ceil(8);
        #[cfg(target_arch = "x86_64")]
        if crate::cpu::features().avx2_fma {
            let (ho, co) = (SendPtr(h_new.as_mut_ptr()), SendPtr(c_new.as_mut_ptr()));
            // Half of the slices on each core when the step is large enough: each keeps
            // reading its half of the weights (from its own caches when they fit).
            crate::duo::halves(slices, 4 * h * (input + h), threads, &|s0, s1| {
                // SAFETY: AVX2 and FMA are present (checked once by `cpu::features`); `w`
                // holds `slices` packed slices and `bias` 4 × 8 × slices values (built by
                // `new` for these sizes), x, h_prev and c_prev have the lengths checked
                // above, and h_new and c_new (`&mut`s, so they overlap no input) hold H values
                // each, of which this part writes units 8 s0 .. min(8 s1, H) only; the two
                // parts' ranges are disjoint.
                unsafe {
                    crate::simd::lstm_step_panels(
                        self.w.as_ptr(),
                        self.bias.as_ptr(),
                        input,
                        h,
                        s0,
                        s1,
                        x.as_ptr(),
                        h_prev.as_ptr(),
                        c_prev.as_ptr(),
                        ho.get().add(8 * s0),
                        co.get().add(8 * s0),
                    );
                }
            });
            return;
        }
        let _ = (slices, threads);
        self.step_plain(x, h_prev, c_prev, h_new, c_new);
    }

    /// [`Self::step`] in plain scalar code on the same layout.
    pub fn step_plain(
        &self,
        x: &[f32],
        h_prev: &[f32],
        c_prev: &[f32],
        h_new: &mut [f32],
        c_new: &mut [f32],
    ) {
        let (h, input) = (self.h, self.input);
        let hp = h.div_ceil(8) * 8;
        let stride = 32 * (input + h);
        let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
        for u in 0..h {
            let (s, j) = (u / 8, u % 8);
            let p = &self.w[s * stride..(s + 1) * stride];
            let mut acc = [0.0f32; 4];
            for (g, a) in acc.iter_mut().enumerate() {
                *a = self.bias[g * hp + u];
            }
            for (k, &v) in x.iter().chain(h_prev).enumerate() {
                for (g, a) in acc.iter_mut().enumerate() {
                    *a += p[32 * k + 8 * g + j] * v;
                }
            }
            let (i, f, g, o) = (sig(acc[0]), sig(acc[1]), acc[2].tanh(), sig(acc[3]));
            let c = f * c_prev[u] + i * g;
            c_new[u] = c;
            h_new[u] = o * c.tanh();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cells::naive;
    use crate::gemm::{matmul_naive, MatMut, MatRef};

    fn vals(len: usize, seed: usize, scale: f64) -> Vec<f64> {
        (0..len)
            .map(|i| (((i * 7 + seed * 13) % 29) as f64 - 14.0) * scale)
            .collect()
    }

    /// The fused step against `h W_hhᵀ` (triple loop in f64) followed by the scalar cell.
    fn check<T: Real>(n: usize, h: usize, k: usize, keep: bool, threads: bool, tol: f64) {
        let conv = |v: Vec<f64>| v.into_iter().map(T::from_f64).collect::<Vec<T>>();
        let ldh = k + 3;
        let w = conv(vals(4 * h * k, 1, 0.03));
        let hp = conv(vals(n * ldh, 2, 0.1));
        let g0 = conv(vals(n * 4 * h, 3, 0.2));
        let cp = conv(vals(n * h, 4, 0.3));
        // reference
        let mut g_ref = g0.clone();
        matmul_naive(
            MatMut::new(&mut g_ref, n, 4 * h),
            MatRef::strided(&hp, n, k, ldh),
            MatRef::new(&w, 4 * h, k).t(),
            true,
        );
        let (mut c_ref, mut m_ref) = (vec![T::ZERO; n * h], vec![T::ZERO; n * h]);
        naive::lstm_forward(n, h, &mut g_ref, &cp, &mut c_ref, &mut m_ref);
        // fused
        let mut pb = LstmPackedB::new();
        pb.pack(&w, h, k);
        let mut g = g0.clone();
        let (mut c, mut m) = (vec![T::ZERO; n * h], vec![T::ZERO; n * h]);
        pb.step(n, &hp, ldh, &mut g, &cp, &mut c, &mut m, keep, threads);
        let close = |x: &[T], y: &[T], what: &str| {
            for (j, (a, b)) in x.iter().zip(y).enumerate() {
                let (a, b) = (a.to_f64(), b.to_f64());
                assert!(
                    (a - b).abs() <= tol * (1.0 + b.abs()),
                    "n={n} h={h} k={k} keep={keep}: {what}[{j}] {a} vs {b}"
                );
            }
        };
        close(&c, &c_ref, "c_new");
        close(&m, &m_ref, "h");
        if keep {
            close(&g, &g_ref, "gates");
        } else {
            assert!(g == g0, "gates changed without keep");
        }
    }

    #[test]
    fn fused_step_matches_product_then_cell() {
        for &n in &[0usize, 1, 2, 3, 5, 6, 7, 13] {
            for &h in &[1usize, 3, 4, 5, 8, 17] {
                for &k in &[0usize, 1, 2, 7, 33] {
                    for keep in [false, true] {
                        check::<f32>(n, h, k, keep, false, 2e-5);
                        check::<f64>(n, h, k, keep, false, 1e-12);
                    }
                }
            }
        }
    }

    /// `sequence` on `threads` threads against a loop of single-threaded steps: the same
    /// kernel on the same panels, so bit for bit.
    fn check_sequence<T: Real>(b: usize, h: usize, batch_sizes: &[usize], threads: usize) {
        let conv = |v: Vec<f64>| v.into_iter().map(T::from_f64).collect::<Vec<T>>();
        let tn = batch_sizes.len();
        let mut pb = LstmPackedB::new();
        pb.pack(&conv(vals(4 * h * h, 1, 0.01)), h, h);
        let g0 = conv(vals(tn * b * 4 * h, 3, 0.2));
        let init = conv(vals(2 * b * h, 5, 0.1));
        for reverse in [false, true] {
            for keep in [false, true] {
                let first = if reverse { tn } else { 0 };
                let slot = b * h;
                let mut want = (
                    g0.clone(),
                    vec![T::ZERO; (tn + 1) * slot],
                    vec![T::ZERO; (tn + 1) * slot],
                );
                want.1[first * slot..(first + 1) * slot].copy_from_slice(&init[..slot]);
                want.2[first * slot..(first + 1) * slot].copy_from_slice(&init[slot..]);
                let mut got = want.clone();
                let (g, hs, cs) = (&mut want.0, &mut want.1, &mut want.2);
                for kk in 0..tn {
                    let Step {
                        t,
                        n,
                        prev: p,
                        new: q,
                    } = Step::of(kk, batch_sizes, reverse);
                    let (hp, cp) = (
                        hs[p * slot..(p + 1) * slot].to_vec(),
                        cs[p * slot..(p + 1) * slot].to_vec(),
                    );
                    hs[q * slot + n * h..(q + 1) * slot].copy_from_slice(&hp[n * h..]);
                    cs[q * slot + n * h..(q + 1) * slot].copy_from_slice(&cp[n * h..]);
                    let (hq, cq) = (
                        &mut hs[q * slot..(q + 1) * slot],
                        &mut cs[q * slot..(q + 1) * slot],
                    );
                    pb.step(n, &hp, h, &mut g[t * b * 4 * h..], &cp, cq, hq, keep, false);
                }
                pb.sequence(
                    b,
                    batch_sizes,
                    reverse,
                    &mut got.0,
                    &mut got.1,
                    &mut got.2,
                    keep,
                    threads,
                );
                assert!(
                    got == want,
                    "b={b} h={h} threads={threads} reverse={reverse} keep={keep}"
                );
            }
        }
    }

    #[test]
    fn sequence_split_across_threads_matches_single_steps() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            // Above team::MIN_WORK: 3 rows, H = 130 (33 panels, the last one partial), rows finishing
            // at different steps; one row; and a size that stays on one thread.
            const { assert!(3 * 4 * 130 * 130 >= team::MIN_WORK && 4 * 4 * 20 * 20 < team::MIN_WORK) };
            for threads in [1, 2, 3] {
                check_sequence::<f32>(3, 130, &[3, 3, 2, 2, 1, 1, 1], threads);
                check_sequence::<f32>(1, 200, &[1; 9], threads);
                check_sequence::<f64>(3, 130, &[3, 2, 0], threads);
                check_sequence::<f32>(4, 20, &[4, 3], threads);
            }
            check_sequence::<f32>(2, 1, &[2], 2);
            check_sequence::<f32>(2, 130, &[], 2);
        });
    }

    #[test]
    fn fused_step_split_across_threads_matches() {
        crate::set_num_threads(2);
        // n·4H·k above THREADS_MIN, H not a multiple of 4
        check::<f32>(64, 130, 256, true, true, 2e-5);
        check::<f32>(9, 257, 300, false, true, 2e-5);
        // one row (a streaming step), an odd number of panels on each thread
        check::<f32>(1, 257, 1100, true, true, 2e-5);
    }

    /// The packed one-row step against a naive f64 LSTM step, and split between two threads
    /// against one (bit for bit), on awkward sizes; H = 201 and 256 with input 33 are above
    /// team::MIN_WORK.
    #[test]
    fn packed_step_matches_naive_step() {
        const { assert!(4 * 201 * (201 + 33) >= team::MIN_WORK) };
        let val = |len: usize, seed: usize, scale: f32| -> Vec<f32> {
            (0..len)
                .map(|i| (((i * 7 + seed * 13) % 29) as f32 - 14.0) * scale)
                .collect()
        };
        for h in [1, 3, 7, 8, 9, 15, 16, 17, 33, 100, 201, 256] {
            for input in [1, 2, 5, 16, 33] {
                if h > 100 && input != 33 {
                    continue;
                }
                for bias in [false, true] {
                    let w_ih = val(4 * h * input, 1, 0.03);
                    let w_hh = val(4 * h * h, 2, 0.02);
                    let (b_ih, b_hh) = (val(4 * h, 3, 0.05), val(4 * h, 4, 0.07));
                    let (bi, bh) = (bias.then_some(&b_ih[..]), bias.then_some(&b_hh[..]));
                    let (x, hp, cp) = (val(input, 5, 0.2), val(h, 6, 0.06), val(h, 7, 0.3));
                    let dot = |w: &[f32], row: usize, v: &[f32]| -> f64 {
                        v.iter()
                            .enumerate()
                            .map(|(k, &a)| w[row * v.len() + k] as f64 * a as f64)
                            .sum()
                    };
                    let bv = |b: Option<&[f32]>, i: usize| b.map_or(0.0, |b| b[i] as f64);
                    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
                    let pre = |g: usize, u: usize| {
                        let r = g * h + u;
                        dot(&w_ih, r, &x) + bv(bi, r) + dot(&w_hh, r, &hp) + bv(bh, r)
                    };
                    let p = LstmStepPacked::new(h, input, &w_ih, &w_hh, bi, bh);
                    let mut out = vec![(vec![9.0; h], vec![9.0; h]); 3];
                    let [fast, plain, split] = &mut out[..] else {
                        unreachable!()
                    };
                    p.step_threads(&x, &hp, &cp, &mut fast.0, &mut fast.1, 1);
                    p.step_plain(&x, &hp, &cp, &mut plain.0, &mut plain.1);
                    p.step_threads(&x, &hp, &cp, &mut split.0, &mut split.1, 2);
                    assert_eq!(fast, split, "h={h} input={input}");
                    for (u, &c0) in cp.iter().enumerate() {
                        let c = sig(pre(1, u)) * c0 as f64 + sig(pre(0, u)) * pre(2, u).tanh();
                        let hv = sig(pre(3, u)) * c.tanh();
                        for (gh, gc) in [(fast.0[u], fast.1[u]), (plain.0[u], plain.1[u])] {
                            assert!(
                                (gh as f64 - hv).abs() < 1e-5 && (gc as f64 - c).abs() < 1e-5,
                                "h={h} input={input} bias={bias} u={u}: {gh} {gc} vs {hv} {c}"
                            );
                        }
                    }
                }
            }
        }
    }
}
