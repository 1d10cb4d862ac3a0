//! The GRU's whole time loop over a group of rows: at every step the recurrent product
//! `gh = h_{t-1} W_hhᵀ` (with `W_hhᵀ` packed once, see [`crate::packed`]) and the gate
//! arithmetic of [`crate::cells::gru_forward`].
//!
//! With several threads and a batch too small to give each thread its own rows, every step is
//! split by hidden units across a [`crate::team`]: thread c computes, for its units, the three
//! blocks `[r z n]` of the product and then the cell, which needs nothing from the other units.
//! That needs the units to fall on whole panels of 16 columns (H a multiple of 16); otherwise
//! the loop runs on one thread.

use crate::packed::{PackedB, SendPtr, NR};
use crate::team::{self, Step};
use crate::Real;

/// The time loop of one GRU direction over a group of `b` rows sorted by decreasing length:
///
/// - `hh_t`: `W_hhᵀ` (H, 3H) packed;
/// - `batch_sizes` (T): how many rows run at step t (the others keep their state);
/// - `gates` (T, b, 3H): in, `x W_ihᵀ + b_ih`; out, the activations `[r z n]` of the rows that
///   ran (as [`crate::cells::gru_forward`] leaves them);
/// - `hs` (T+1, b, H): state slots, forward: slot 0 holds h0 and step t writes slot t+1;
///   `reverse`: slot T holds it and step t writes slot t;
/// - `hn` (T, b, H): out, `W_hn h + b_hn` of the rows that ran;
/// - `gh` (b, 3H): scratch.
///
/// The result does not depend on `threads`.
#[allow(clippy::too_many_arguments)]
pub fn sequence<T: Real>(
    hh_t: &PackedB<T>,
    b_hh: Option<&[T]>,
    b: usize,
    batch_sizes: &[usize],
    reverse: bool,
    gates: &mut [T],
    hs: &mut [T],
    hn: &mut [T],
    gh: &mut [T],
    threads: usize,
) {
    let (h, tn) = (hh_t.k(), batch_sizes.len());
    assert_eq!(hh_t.n(), 3 * h, "GRU sequence: W_hhᵀ must be (H, 3H)");
    assert!(
        gates.len() >= tn * b * 3 * h
            && hs.len() >= (tn + 1) * b * h
            && hn.len() >= tn * b * h
            && gh.len() >= b * 3 * h
            && b_hh.is_none_or(|v| v.len() >= 3 * h),
        "GRU sequence: a buffer is too short"
    );
    assert!(
        batch_sizes.iter().all(|&n| n <= b),
        "GRU sequence: more running rows than rows"
    );
    if b == 0 || h == 0 || tn == 0 {
        return;
    }
    // Units go to threads a panel (16 units) at a time.
    let unit_panels = h / NR;
    let busiest = batch_sizes.iter().copied().max().unwrap_or(0);
    let chunks = if h % NR == 0 {
        team::chunks(busiest * 3 * h * h, threads, unit_panels)
    } else {
        1
    };
    let (g_ptr, h_ptr, n_ptr, gh_ptr) = (
        SendPtr(gates.as_mut_ptr()),
        SendPtr(hs.as_mut_ptr()),
        SendPtr(hn.as_mut_ptr()),
        SendPtr(gh.as_mut_ptr()),
    );
    let (slot, gh_len) = (b * h, b * 3 * h);
    team::run_steps(batch_sizes, reverse, chunks, &|st: Step, c| {
        let (t, n) = (st.t, st.n);
        let (u0, u1) = if chunks == 1 {
            (0, h)
        } else {
            (
                unit_panels * c / chunks * NR,
                unit_panels * (c + 1) / chunks * NR,
            )
        };
        // SAFETY: slots prev and new are distinct and inside hs (checked above), the step's
        // rows of gates and hn inside theirs, gh holds b rows of 3H. During this step the
        // chunks read only slot prev (finished by the previous step, which the team has
        // completed) and write: chunk 0 the rows n..b of slot new; every chunk, for its own
        // units u0..u1 only, the columns of gh, gates, hn and slot new of the rows 0..n (with
        // one chunk, the panels of gh may cover all columns). No memory is written by two
        // chunks at once or read while another writes it.
        unsafe {
            let hp = std::slice::from_raw_parts(h_ptr.get().add(st.prev * slot), slot);
            let hw = h_ptr.get().add(st.new * slot);
            if c == 0 {
                team::carry(h_ptr.get(), slot, h, st);
            }
            if n == 0 {
                return;
            }
            if chunks == 1 {
                hh_t.panels_ptr(
                    0,
                    (3 * h).div_ceil(NR),
                    n,
                    hp,
                    h,
                    gh_ptr.get(),
                    gh_len,
                    3 * h,
                    false,
                );
            } else {
                for blk in 0..3 {
                    let (p0, p1) = ((blk * h + u0) / NR, (blk * h + u1) / NR);
                    hh_t.panels_ptr(p0, p1, n, hp, h, gh_ptr.get(), gh_len, 3 * h, false);
                }
            }
            crate::cells::gru_forward_units(
                n,
                h,
                u0,
                u1,
                g_ptr.get().add(t * b * 3 * h),
                gh_ptr.get(),
                b_hh,
                hp.as_ptr(),
                n_ptr.get().add(t * slot),
                hw,
            );
        }
    });
}

/// Packs `w_ih` (G·H, input) and `w_hh` (G·H, H), row-major with G gate blocks of H rows, for
/// the fused one-row steps: per slice of 8 hidden units, the columns of `w_ih` then of `w_hh`,
/// each column as G × 8 values (the slice's rows of every gate side by side; units beyond H
/// are zero).
pub(crate) fn pack_gate_slices(
    gates: usize,
    h: usize,
    input: usize,
    w_ih: &[f32],
    w_hh: &[f32],
) -> Vec<f32> {
    let slices = h.div_ceil(8);
    let mut w = Vec::with_capacity(slices * 8 * gates * (input + h));
    for s in 0..slices {
        for (m, k_len) in [(w_ih, input), (w_hh, h)] {
            for k in 0..k_len {
                for gate in 0..gates {
                    for j in 0..8 {
                        let u = s * 8 + j;
                        w.push(if u < h {
                            m[(gate * h + u) * k_len + k]
                        } else {
                            0.0
                        });
                    }
                }
            }
        }
    }
    w
}

/// One GRU step for one row with the weights packed for it (f32): per slice of 8 hidden units,
/// the columns of `W_ih` then of `W_hh`, each column as 24 values, the r, z and n rows of the
/// slice's units side by side (units beyond H are zero). One pass over `x` and one over `h`
/// give the three products of a slice, and the cell runs on them while they are in registers.
///
/// PyTorch's GRU: r = σ(W_ir x + b_ir + W_hr h + b_hr), z likewise,
/// n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)), h' = (1 − z) ⊙ n + z ⊙ h.
#[derive(Clone, Debug, Default)]
pub struct GruStepPacked {
    h: usize,
    input: usize,
    w: Vec<f32>,
    /// `[b_ir + b_hr, b_iz + b_hz, b_in, b_hn]`, each padded to a whole number of slices.
    bias: Vec<f32>,
}

impl GruStepPacked {
    /// Packs `w_ih` (3H, input) and `w_hh` (3H, H), row-major in PyTorch's gate order r, z, n,
    /// and the biases (3H each, absent = zero).
    pub fn new(
        h: usize,
        input: usize,
        w_ih: &[f32],
        w_hh: &[f32],
        b_ih: Option<&[f32]>,
        b_hh: Option<&[f32]>,
    ) -> GruStepPacked {
        assert!(
            w_ih.len() == 3 * h * input
                && w_hh.len() == 3 * h * h
                && b_ih.is_none_or(|b| b.len() == 3 * h)
                && b_hh.is_none_or(|b| b.len() == 3 * h),
            "GruStepPacked: weight shapes"
        );
        let slices = h.div_ceil(8);
        let hp = slices * 8;
        let w = pack_gate_slices(3, h, input, w_ih, w_hh);
        let at = |b: Option<&[f32]>, i: usize| b.map_or(0.0, |b| b[i]);
        let mut bias = vec![0.0; 4 * hp];
        for u in 0..h {
            bias[u] = at(b_ih, u) + at(b_hh, u);
            bias[hp + u] = at(b_ih, h + u) + at(b_hh, h + u);
            bias[2 * hp + u] = at(b_ih, 2 * h + u);
            bias[3 * hp + u] = at(b_hh, 2 * h + u);
        }
        GruStepPacked { h, input, w, bias }
    }

    /// Hidden size H.
    pub fn hidden(&self) -> usize {
        self.h
    }

    /// Input size.
    pub fn input(&self) -> usize {
        self.input
    }

    /// `h_new` (H) = one step from `x` (input) and `h_prev` (H). Does not allocate. With more
    /// than one thread allowed ([`crate::num_threads`]) and a step of at least
    /// [`crate::team::MIN_WORK`] multiply-adds, half of the units run on a helper thread kept
    /// awake across calls ([`crate::duo`]); the result is the same bit for bit.
    pub fn step(&self, x: &[f32], h_prev: &[f32], h_new: &mut [f32]) {
        self.step_threads(x, h_prev, h_new, crate::num_threads());
    }

    /// [`Self::step`] with at most `threads` threads.
    pub(crate) fn step_threads(
        &self,
        x: &[f32],
        h_prev: &[f32],
        h_new: &mut [f32],
        threads: usize,
    ) {
        let (h, input) = (self.h, self.input);
        assert!(
            x.len() == input && h_prev.len() == h && h_new.len() == h,
            "GruStepPacked::step: buffer sizes"
        );
        let slices = h.div_ceil(8);
        #[cfg(target_arch = "x86_64")]
        if crate::cpu::features().avx2_fma {
            let out = SendPtr(h_new.as_mut_ptr());
            // Half of the slices on each core when the step is large enough: each keeps its
            // half of the weights in its own L2 cache from step to step.
            crate::duo::halves(slices, 3 * h * (input + h), threads, &|s0, s1| {
                // SAFETY: AVX2 and FMA are present (checked once by `cpu::features`); `w`
                // holds `slices` packed slices and `bias` 4 × 8 × slices values (built by
                // `new` for these sizes), x and h_prev have the lengths checked above, and
                // h_new (a `&mut`, so overlapping neither) holds H values, of which this part
                // writes units 8 s0 .. min(8 s1, H) only; the two parts' ranges are disjoint.
                unsafe {
                    crate::simd::gru_step_panels(
                        self.w.as_ptr(),
                        self.bias.as_ptr(),
                        input,
                        h,
                        s0,
                        s1,
                        x.as_ptr(),
                        h_prev.as_ptr(),
                        out.get().add(8 * s0),
                    );
                }
            });
            return;
        }
        let _ = (slices, threads);
        self.step_plain(x, h_prev, h_new);
    }

    /// [`Self::step`] in plain scalar code on the same layout.
    pub fn step_plain(&self, x: &[f32], h_prev: &[f32], h_new: &mut [f32]) {
        let (h, input) = (self.h, self.input);
        let hp = h.div_ceil(8) * 8;
        let stride = 24 * (input + h);
        let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
        for (u, out) in h_new.iter_mut().enumerate().take(h) {
            let (s, j) = (u / 8, u % 8);
            let p = &self.w[s * stride..(s + 1) * stride];
            let mut acc = [0.0f32; 6];
            for (k, &xv) in x.iter().enumerate() {
                for g in 0..3 {
                    acc[g] += p[24 * k + 8 * g + j] * xv;
                }
            }
            let q = &p[24 * input..];
            for (k, &hv) in h_prev.iter().enumerate() {
                for g in 0..3 {
                    acc[3 + g] += q[24 * k + 8 * g + j] * hv;
                }
            }
            let r = sig(acc[0] + acc[3] + self.bias[u]);
            let z = sig(acc[1] + acc[4] + self.bias[hp + u]);
            let n = (acc[2] + self.bias[2 * hp + u] + r * (acc[5] + self.bias[3 * hp + u])).tanh();
            *out = (1.0 - z) * n + z * h_prev[u];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cells;
    use crate::gemm::MatRef;

    fn vals<T: Real>(len: usize, seed: usize, scale: f64) -> Vec<T> {
        (0..len)
            .map(|i| T::from_f64((((i * 7 + seed * 13) % 29) as f64 - 14.0) * scale))
            .collect()
    }

    /// `sequence` on `threads` threads against a loop of plain steps (product, then
    /// `cells::gru_forward`): bit for bit.
    fn check<T: Real>(b: usize, h: usize, batch_sizes: &[usize], threads: usize, bias: bool) {
        let tn = batch_sizes.len();
        let w: Vec<T> = vals(3 * h * h, 1, 0.01);
        let mut hh_t = PackedB::new();
        hh_t.pack(MatRef::new(&w, 3 * h, h).t());
        let b_hh: Vec<T> = vals(3 * h, 2, 0.05);
        let b_hh = bias.then_some(&b_hh[..]);
        let g0: Vec<T> = vals(tn * b * 3 * h, 3, 0.2);
        let h0: Vec<T> = vals(b * h, 5, 0.1);
        for reverse in [false, true] {
            let first = if reverse { tn } else { 0 };
            let slot = b * h;
            let mut want = (
                g0.clone(),
                vec![T::ZERO; (tn + 1) * slot],
                vec![T::ZERO; tn * slot],
            );
            want.1[first * slot..(first + 1) * slot].copy_from_slice(&h0);
            let mut got = want.clone();
            let (g, hs, hn) = (&mut want.0, &mut want.1, &mut want.2);
            let mut gh = vec![T::ZERO; b * 3 * h];
            for kk in 0..tn {
                let Step {
                    t,
                    n,
                    prev: p,
                    new: q,
                } = Step::of(kk, batch_sizes, reverse);
                let hp = hs[p * slot..(p + 1) * slot].to_vec();
                hs[q * slot + n * h..(q + 1) * slot].copy_from_slice(&hp[n * h..]);
                if n == 0 {
                    continue;
                }
                hh_t.matmul_with(n, &hp, h, &mut gh, 3 * h, false, false);
                cells::gru_forward(
                    n,
                    h,
                    &mut g[t * b * 3 * h..(t + 1) * b * 3 * h],
                    &gh,
                    b_hh,
                    &hp,
                    &mut hn[t * slot..(t + 1) * slot],
                    &mut hs[q * slot..(q + 1) * slot],
                );
            }
            let mut scratch = vec![T::ZERO; b * 3 * h];
            sequence(
                &hh_t,
                b_hh,
                b,
                batch_sizes,
                reverse,
                &mut got.0,
                &mut got.1,
                &mut got.2,
                &mut scratch,
                threads,
            );
            assert!(
                got == want,
                "b={b} h={h} threads={threads} reverse={reverse} bias={bias}"
            );
        }
    }

    #[test]
    fn sequence_split_across_threads_matches_plain_steps() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            // Above team::MIN_WORK with H a multiple of 16 (split), H = 150 (not: one thread), one row,
            // rows finishing at different steps, no running row at a step, a tiny size.
            const { assert!(2 * 3 * 160 * 160 >= team::MIN_WORK && 3 * 150 * 150 * 3 >= team::MIN_WORK) };
            for threads in [1, 2, 3] {
                check::<f32>(3, 160, &[3, 3, 2, 1, 1], threads, true);
                check::<f32>(1, 208, &[1; 6], threads, false);
                check::<f32>(3, 150, &[3, 2, 2], threads, true);
                check::<f64>(2, 160, &[2, 1, 0], threads, true);
                check::<f32>(4, 16, &[4, 3], threads, true);
            }
            check::<f32>(2, 32, &[], 2, true);
        });
    }
    /// The naive GRU step straight from PyTorch's formulas, in f64.
    #[allow(clippy::too_many_arguments)]
    fn naive_step(
        h: usize,
        input: usize,
        w_ih: &[f32],
        w_hh: &[f32],
        b_ih: Option<&[f32]>,
        b_hh: Option<&[f32]>,
        x: &[f32],
        hp: &[f32],
    ) -> Vec<f64> {
        let dot = |m: &[f32], row: usize, k: usize, v: &[f32]| -> f64 {
            (0..k).map(|i| m[row * k + i] as f64 * v[i] as f64).sum()
        };
        let bv = |b: Option<&[f32]>, i: usize| b.map_or(0.0, |b| b[i] as f64);
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        (0..h)
            .map(|u| {
                let r =
                    sig(dot(w_ih, u, input, x) + bv(b_ih, u) + dot(w_hh, u, h, hp) + bv(b_hh, u));
                let z = sig(dot(w_ih, h + u, input, x)
                    + bv(b_ih, h + u)
                    + dot(w_hh, h + u, h, hp)
                    + bv(b_hh, h + u));
                let n = (dot(w_ih, 2 * h + u, input, x)
                    + bv(b_ih, 2 * h + u)
                    + r * (dot(w_hh, 2 * h + u, h, hp) + bv(b_hh, 2 * h + u)))
                .tanh();
                (1.0 - z) * n + z * hp[u] as f64
            })
            .collect()
    }

    #[test]
    fn packed_step_matches_naive_step() {
        // H = 201 and 256 with input 33: above team::MIN_WORK, so split between two threads
        // (201: 26 slices, the last one partial).
        const { assert!(3 * 201 * (201 + 33) >= team::MIN_WORK) };
        for h in [1, 3, 7, 8, 9, 15, 16, 17, 33, 100, 201, 256] {
            for input in [1, 2, 5, 16, 33] {
                if h > 100 && input != 33 {
                    continue;
                }
                for bias in [false, true] {
                    let w_ih: Vec<f32> = vals(3 * h * input, 1, 0.03);
                    let w_hh: Vec<f32> = vals(3 * h * h, 2, 0.02);
                    let b_ih: Vec<f32> = vals(3 * h, 3, 0.05);
                    let b_hh: Vec<f32> = vals(3 * h, 4, 0.07);
                    let (bi, bh) = (bias.then_some(&b_ih[..]), bias.then_some(&b_hh[..]));
                    let x: Vec<f32> = vals(input, 5, 0.2);
                    let hp: Vec<f32> = vals(h, 6, 0.06);
                    let want = naive_step(h, input, &w_ih, &w_hh, bi, bh, &x, &hp);
                    let p = GruStepPacked::new(h, input, &w_ih, &w_hh, bi, bh);
                    let (mut fast, mut plain) = (vec![9.0; h], vec![9.0; h]);
                    p.step(&x, &hp, &mut fast);
                    p.step_plain(&x, &hp, &mut plain);
                    // Split between two threads when the step is large enough: the same bits.
                    let mut split = vec![9.0; h];
                    p.step_threads(&x, &hp, &mut split, 2);
                    assert_eq!(fast, split, "h={h} input={input}");
                    for u in 0..h {
                        for got in [fast[u], plain[u]] {
                            assert!(
                                (got as f64 - want[u]).abs() < 1e-5,
                                "h={h} input={input} bias={bias} u={u}: {got} vs {}",
                                want[u]
                            );
                        }
                    }
                }
            }
        }
    }
}
