//! The Elman RNN's whole time loop over a group of rows: at every step
//! `a = x W_ihᵀ + b + h_{t-1} W_hhᵀ` (the input part computed before the loop, `W_hhᵀ` packed
//! once, see [`crate::packed`]) and `h_t = tanh(a)` or `relu(a)`.
//!
//! With several threads and a batch too small to give each thread its own rows, every step is
//! split by hidden units (whole panels of 16) across a [`crate::team`].

use crate::packed::{PackedB, SendPtr, NR};
use crate::team::{self, Step};
use crate::Real;

/// The time loop of one RNN direction over a group of `b` rows sorted by decreasing length:
///
/// - `hh_t`: `W_hhᵀ` (H, H) packed;
/// - `batch_sizes` (T): how many rows run at step t (the others keep their state);
/// - `gates` (T, b, H): in, `x W_ihᵀ + b_ih + b_hh`; out, the pre-activations `a` of the rows
///   that ran;
/// - `hs` (T+1, b, H): state slots, forward: slot 0 holds h0 and step t writes slot t+1;
///   `reverse`: slot T holds it and step t writes slot t.
///
/// The result does not depend on `threads`.
#[allow(clippy::too_many_arguments)]
pub fn sequence<T: Real>(
    hh_t: &PackedB<T>,
    relu: bool,
    b: usize,
    batch_sizes: &[usize],
    reverse: bool,
    gates: &mut [T],
    hs: &mut [T],
    threads: usize,
) {
    let (h, tn) = (hh_t.k(), batch_sizes.len());
    assert_eq!(hh_t.n(), h, "RNN sequence: W_hhᵀ must be (H, H)");
    assert!(
        gates.len() >= tn * b * h && hs.len() >= (tn + 1) * b * h,
        "RNN sequence: a buffer is too short"
    );
    assert!(
        batch_sizes.iter().all(|&n| n <= b),
        "RNN sequence: more running rows than rows"
    );
    if b == 0 || h == 0 || tn == 0 {
        return;
    }
    let panels = h.div_ceil(NR);
    let busiest = batch_sizes.iter().copied().max().unwrap_or(0);
    let chunks = team::chunks(busiest * h * h, threads, panels);
    let (g_ptr, h_ptr) = (SendPtr(gates.as_mut_ptr()), SendPtr(hs.as_mut_ptr()));
    let slot = b * h;
    team::run_steps(batch_sizes, reverse, chunks, &|st: Step, c| {
        let (t, n) = (st.t, st.n);
        let (p0, p1) = (panels * c / chunks, panels * (c + 1) / chunks);
        let (u0, u1) = (p0 * NR, (p1 * NR).min(h));
        // SAFETY: slots prev and new are distinct and inside hs, the step's rows of gates
        // inside gates (checked above). During this step the chunks read only slot prev
        // (finished by the previous step, which the team has completed) and write: chunk 0
        // the rows n..b of slot new; every chunk the columns u0..u1 (its panels) of the rows
        // 0..n of the step's gates and of slot new. No memory is written by two chunks at once
        // or read while another writes it.
        unsafe {
            let hp = std::slice::from_raw_parts(h_ptr.get().add(st.prev * slot), slot);
            let hw = h_ptr.get().add(st.new * slot);
            if c == 0 {
                team::carry(h_ptr.get(), slot, h, st);
            }
            if n == 0 {
                return;
            }
            let g = g_ptr.get().add(t * slot);
            hh_t.panels_ptr(p0, p1, n, hp, h, g, slot, h, true);
            for r in 0..n {
                let a = std::slice::from_raw_parts(g.add(r * h + u0), u1 - u0);
                let out = std::slice::from_raw_parts_mut(hw.add(r * h + u0), u1 - u0);
                crate::cells::rnn_forward(a, out, relu);
            }
        }
    });
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

    /// `sequence` on `threads` threads against a loop of plain steps (product accumulated into
    /// the gates, then the activation): bit for bit.
    fn check<T: Real>(b: usize, h: usize, batch_sizes: &[usize], threads: usize, relu: bool) {
        let tn = batch_sizes.len();
        let w: Vec<T> = vals(h * h, 1, 0.01);
        let mut hh_t = PackedB::new();
        hh_t.pack(MatRef::new(&w, h, h).t());
        let g0: Vec<T> = vals(tn * b * h, 3, 0.2);
        let h0: Vec<T> = vals(b * h, 5, 0.1);
        for reverse in [false, true] {
            let first = if reverse { tn } else { 0 };
            let slot = b * h;
            let mut want = (g0.clone(), vec![T::ZERO; (tn + 1) * slot]);
            want.1[first * slot..(first + 1) * slot].copy_from_slice(&h0);
            let mut got = want.clone();
            let (g, hs) = (&mut want.0, &mut want.1);
            for kk in 0..tn {
                let Step {
                    t,
                    n,
                    prev: p,
                    new: q,
                } = Step::of(kk, batch_sizes, reverse);
                let hp = hs[p * slot..(p + 1) * slot].to_vec();
                hs[q * slot + n * h..(q + 1) * slot].copy_from_slice(&hp[n * h..]);
                let gt = &mut g[t * slot..(t + 1) * slot];
                hh_t.matmul_with(n, &hp, h, gt, h, true, false);
                cells::rnn_forward(&gt[..n * h], &mut hs[q * slot..q * slot + n * h], relu);
            }
            sequence(
                &hh_t,
                relu,
                b,
                batch_sizes,
                reverse,
                &mut got.0,
                &mut got.1,
                threads,
            );
            assert!(
                got == want,
                "b={b} h={h} threads={threads} reverse={reverse} relu={relu}"
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
            // Above team::MIN_WORK (H = 410: 26 panels, the last one partial), one row, rows
            // finishing at different steps, no running row at a step, a size below team::MIN_WORK.
            const { assert!(410 * 410 >= team::MIN_WORK && 4 * 20 * 20 < team::MIN_WORK) };
            for threads in [1, 2, 3] {
                for relu in [false, true] {
                    check::<f32>(3, 410, &[3, 3, 2, 1, 1], threads, relu);
                    check::<f32>(1, 410, &[1; 5], threads, relu);
                    check::<f64>(2, 410, &[2, 1, 0], threads, relu);
                    check::<f32>(4, 20, &[4, 3], threads, relu);
                }
            }
            check::<f32>(2, 32, &[], 2, true);
        });
    }
}
