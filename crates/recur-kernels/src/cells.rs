//! The element-wise part of one time step of each cell, forward and backward, for `n` rows
//! (batch elements) at once. The matrix products around them are done by the caller with
//! [`crate::gemm::matmul`]; these kernels are what runs between them while the data is in cache.
//!
//! Notation (PyTorch's): H = hidden size; every buffer is row-major with one row per batch
//! element; LSTM gate blocks are `[i | f | g | o]`, GRU blocks `[r | z | n]`.

use crate::Real;
use crate::{as_f32, as_f32_mut};
use std::any::TypeId;

/// Whether the AVX2+FMA kernels apply to element type `T` on this CPU.
fn fast<T: 'static>() -> bool {
    TypeId::of::<T>() == TypeId::of::<f32>() && crate::cpu::features().avx2_fma
}

/// LSTM step, forward: see [`naive::lstm_forward`].
pub fn lstm_forward<T: Real>(
    n: usize,
    h: usize,
    gates: &mut [T],
    c_prev: &[T],
    c_new: &mut [T],
    m: &mut [T],
) {
    assert!(
        gates.len() >= n * 4 * h
            && c_prev.len() >= n * h
            && c_new.len() >= n * h
            && m.len() >= n * h
    );
    #[cfg(target_arch = "x86_64")]
    if fast::<T>() {
        let (g, cp, cn, mm) = (
            as_f32_mut(gates).unwrap(),
            as_f32(c_prev).unwrap(),
            as_f32_mut(c_new).unwrap(),
            as_f32_mut(m).unwrap(),
        );
        // SAFETY: the CPU has AVX2 and FMA (checked by `fast`), and every slice holds at least
        // the n rows the kernel touches (asserted above).
        unsafe { crate::simd::lstm_forward(n, h, g, cp, cn, mm) };
        return;
    }
    naive::lstm_forward(n, h, gates, c_prev, c_new, m)
}

/// LSTM step, backward: see [`naive::lstm_backward`].
#[allow(clippy::too_many_arguments)]
pub fn lstm_backward<T: Real>(
    n: usize,
    h: usize,
    gates: &[T],
    c_prev: &[T],
    c_new: &[T],
    dm: &[T],
    dc: &mut [T],
    dgates: &mut [T],
) {
    assert!(gates.len() >= n * 4 * h && dgates.len() >= n * 4 * h);
    assert!(
        c_prev.len() >= n * h && c_new.len() >= n * h && dm.len() >= n * h && dc.len() >= n * h
    );
    #[cfg(target_arch = "x86_64")]
    if fast::<T>() {
        // SAFETY: AVX2+FMA present (checked by `fast`); slice lengths asserted above.
        unsafe {
            crate::simd::lstm_backward(
                n,
                h,
                as_f32(gates).unwrap(),
                as_f32(c_prev).unwrap(),
                as_f32(c_new).unwrap(),
                as_f32(dm).unwrap(),
                as_f32_mut(dc).unwrap(),
                as_f32_mut(dgates).unwrap(),
            )
        };
        return;
    }
    naive::lstm_backward(n, h, gates, c_prev, c_new, dm, dc, dgates)
}

/// GRU step, forward: see [`naive::gru_forward`].
#[allow(clippy::too_many_arguments)]
pub fn gru_forward<T: Real>(
    n: usize,
    h: usize,
    gi: &mut [T],
    gh: &[T],
    b_hh: Option<&[T]>,
    h_prev: &[T],
    hn: &mut [T],
    h_new: &mut [T],
) {
    assert!(
        gi.len() >= n * 3 * h && gh.len() >= n * 3 * h && b_hh.is_none_or(|b| b.len() >= 3 * h)
    );
    assert!(h_prev.len() >= n * h && hn.len() >= n * h && h_new.len() >= n * h);
    #[cfg(target_arch = "x86_64")]
    if fast::<T>() {
        // SAFETY: AVX2+FMA present (checked by `fast`); slice lengths asserted above.
        unsafe {
            crate::simd::gru_forward(
                n,
                h,
                as_f32_mut(gi).unwrap(),
                as_f32(gh).unwrap(),
                b_hh.map(|b| as_f32(b).unwrap()),
                as_f32(h_prev).unwrap(),
                as_f32_mut(hn).unwrap(),
                as_f32_mut(h_new).unwrap(),
            )
        };
        return;
    }
    naive::gru_forward(n, h, gi, gh, b_hh, h_prev, hn, h_new)
}

/// [`gru_forward`] for the hidden units u0..u1 of rows 0..n only, through pointers (rows of
/// 3H values for `gi` and `gh`, of H for `h_prev`, `hn`, `h_new`), for threads that each
/// update their own units of the same rows. Touches only those units' columns.
///
/// Safety: every pointer holds n such rows; `b_hh` holds 3H values; no other thread touches
/// these columns meanwhile.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gru_forward_units<T: Real>(
    n: usize,
    h: usize,
    u0: usize,
    u1: usize,
    gi: *mut T,
    gh: *const T,
    b_hh: Option<&[T]>,
    h_prev: *const T,
    hn: *mut T,
    h_new: *mut T,
) {
    debug_assert!(u0 <= u1 && u1 <= h && b_hh.is_none_or(|b| b.len() >= 3 * h));
    #[cfg(target_arch = "x86_64")]
    if fast::<T>() {
        // SAFETY: T is f32 (checked by `fast`, with AVX2+FMA), so the pointers point at f32
        // values; the caller guarantees the rows and the exclusive columns.
        crate::simd::gru_forward_units(
            n,
            h,
            u0,
            u1,
            gi as *mut f32,
            gh as *const f32,
            b_hh.map_or(std::ptr::null(), |b| b.as_ptr() as *const f32),
            h_prev as *const f32,
            hn as *mut f32,
            h_new as *mut f32,
        );
        return;
    }
    // The same arithmetic as `naive::gru_forward`, on the units u0..u1.
    // SAFETY (every dereference below): r < n and j < u1 ≤ h index inside the n rows the
    // caller guarantees, in the columns it gives this call alone.
    for r in 0..n {
        let (a, b) = (gi.add(r * 3 * h), gh.add(r * 3 * h));
        for j in u0..u1 {
            let (br, bz, bn) = match b_hh {
                Some(bias) => (bias[j], bias[h + j], bias[2 * h + j]),
                None => (T::ZERO, T::ZERO, T::ZERO),
            };
            let rg = (*a.add(j) + *b.add(j) + br).sigmoid();
            let zg = (*a.add(h + j) + *b.add(h + j) + bz).sigmoid();
            let hnj = *b.add(2 * h + j) + bn;
            let ng = (*a.add(2 * h + j) + rg * hnj).tanh();
            *a.add(j) = rg;
            *a.add(h + j) = zg;
            *a.add(2 * h + j) = ng;
            let k = r * h + j;
            *hn.add(k) = hnj;
            *h_new.add(k) = (T::ONE - zg) * ng + zg * *h_prev.add(k);
        }
    }
}

/// [`lstm_forward`] for the hidden units u0..u1 of rows 0..n only, through pointers, with the
/// cell state updated in place: `gates` rows of 4H (pre-activations in, `[i f g o]` out), `c`
/// rows of H (c_prev in, c_new out), `m` rows of H (out: `o tanh(c_new)`). For threads that
/// each update their own units of the same rows; touches only those units' columns.
///
/// Safety: every pointer holds n such rows; no other thread touches these columns meanwhile.
pub(crate) unsafe fn lstm_forward_units<T: Real>(
    n: usize,
    h: usize,
    u0: usize,
    u1: usize,
    gates: *mut T,
    c: *mut T,
    m: *mut T,
) {
    debug_assert!(u0 <= u1 && u1 <= h);
    #[cfg(target_arch = "x86_64")]
    if fast::<T>() {
        // SAFETY: T is f32 (checked by `fast`, with AVX2+FMA); the caller guarantees the rows
        // and the exclusive columns.
        crate::simd::lstm_forward_units(
            n,
            h,
            u0,
            u1,
            gates as *mut f32,
            c as *const f32,
            c as *mut f32,
            m as *mut f32,
        );
        return;
    }
    // The arithmetic of `naive::lstm_forward`, on the units u0..u1.
    // SAFETY (every dereference below): r < n and j < u1 <= h index inside the rows the
    // caller guarantees, in the columns it gives this call alone.
    for r in 0..n {
        let g = gates.add(r * 4 * h);
        for j in u0..u1 {
            let i = (*g.add(j)).sigmoid();
            let f = (*g.add(h + j)).sigmoid();
            let gg = (*g.add(2 * h + j)).tanh();
            let o = (*g.add(3 * h + j)).sigmoid();
            *g.add(j) = i;
            *g.add(h + j) = f;
            *g.add(2 * h + j) = gg;
            *g.add(3 * h + j) = o;
            let k = r * h + j;
            let cv = f * *c.add(k) + i * gg;
            *c.add(k) = cv;
            *m.add(k) = o * cv.tanh();
        }
    }
}

/// `out = act(a)` (tanh or relu) for the units u0..u1 of rows 0..n (rows of H), through
/// pointers.
///
/// Safety: both pointers hold n rows of H; no other thread touches these columns meanwhile.
pub(crate) unsafe fn rnn_forward_units<T: Real>(
    n: usize,
    h: usize,
    u0: usize,
    u1: usize,
    a: *const T,
    out: *mut T,
    relu: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if !relu && fast::<T>() {
        // SAFETY: T is f32 with AVX2+FMA (checked by `fast`); rows and columns per the caller.
        crate::simd::tanh_units(n, h, u0, u1, a as *const f32, out as *mut f32);
        return;
    }
    // SAFETY: r < n, j < u1 <= h: inside the caller's rows, in its columns.
    for r in 0..n {
        for j in u0..u1 {
            let x = *a.add(r * h + j);
            *out.add(r * h + j) = if relu { x.relu() } else { x.tanh() };
        }
    }
}

/// GRU step, backward: see [`naive::gru_backward`] (plain arithmetic, vectorized by the
/// compiler).
#[allow(clippy::too_many_arguments)]
pub fn gru_backward<T: Real>(
    n: usize,
    h: usize,
    gates: &[T],
    hn: &[T],
    h_prev: &[T],
    dh: &mut [T],
    dgi: &mut [T],
    dhn: &mut [T],
) {
    naive::gru_backward(n, h, gates, hn, h_prev, dh, dgi, dhn)
}

/// Elman RNN step, forward: see [`naive::rnn_forward`].
pub fn rnn_forward<T: Real>(a: &[T], h_new: &mut [T], relu: bool) {
    assert_eq!(a.len(), h_new.len());
    #[cfg(target_arch = "x86_64")]
    if !relu && fast::<T>() {
        // SAFETY: AVX2+FMA present (checked by `fast`); the lengths are equal (asserted).
        unsafe { crate::simd::tanh_to(as_f32(a).unwrap(), as_f32_mut(h_new).unwrap()) };
        return;
    }
    naive::rnn_forward(a, h_new, relu)
}

/// Elman RNN step, backward: see [`naive::rnn_backward`].
pub fn rnn_backward<T: Real>(h_new: &[T], dh: &[T], da: &mut [T], relu: bool) {
    naive::rnn_backward(h_new, dh, da, relu)
}

/// `x = sigmoid(x)`, vectorized where possible.
pub fn sigmoid_inplace<T: Real>(x: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if fast::<T>() {
        // SAFETY: AVX2+FMA present (checked by `fast`).
        unsafe { crate::simd::sigmoid_inplace(as_f32_mut(x).unwrap()) };
        return;
    }
    for v in x {
        *v = v.sigmoid();
    }
}

/// `x = tanh(x)`, vectorized where possible.
pub fn tanh_inplace<T: Real>(x: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if fast::<T>() {
        // SAFETY: AVX2+FMA present (checked by `fast`).
        unsafe { crate::simd::tanh_inplace(as_f32_mut(x).unwrap()) };
        return;
    }
    for v in x {
        *v = v.tanh();
    }
}

pub mod naive {
    //! The plain scalar kernels: the reference every fast path is tested against, and the
    //! path for f64 and for CPUs without AVX2+FMA.
    use crate::Real;

    /// LSTM step, forward.
    ///
    /// - `gates` (n, 4H): in: the pre-activations `x W_ihᵀ + b_ih + h W_hhᵀ + b_hh`;
    ///   out: the activations `[i | f | g | o]` (kept for the backward pass).
    /// - `c_prev` (n, H): the previous cell state; `c_new` (n, H): out, `f*c_prev + i*g`.
    /// - `m` (n, H): out, `o * tanh(c_new)` (the hidden state before any projection).
    pub fn lstm_forward<T: Real>(
        n: usize,
        h: usize,
        gates: &mut [T],
        c_prev: &[T],
        c_new: &mut [T],
        m: &mut [T],
    ) {
        let gates = &mut gates[..n * 4 * h];
        let (c_prev, c_new, m) = (&c_prev[..n * h], &mut c_new[..n * h], &mut m[..n * h]);
        for r in 0..n {
            let g = &mut gates[r * 4 * h..(r + 1) * 4 * h];
            for j in 0..h {
                let i = g[j].sigmoid();
                let f = g[h + j].sigmoid();
                let gg = g[2 * h + j].tanh();
                let o = g[3 * h + j].sigmoid();
                g[j] = i;
                g[h + j] = f;
                g[2 * h + j] = gg;
                g[3 * h + j] = o;
                let c = f * c_prev[r * h + j] + i * gg;
                c_new[r * h + j] = c;
                m[r * h + j] = o * c.tanh();
            }
        }
    }

    /// LSTM step, backward.
    ///
    /// - `gates` (n, 4H): the activations saved by [`lstm_forward`]; `c_prev`, `c_new` (n, H).
    /// - `dm` (n, H): the gradient with respect to `m = o * tanh(c_new)`.
    /// - `dc` (n, H): in: the gradient reaching `c_new` from the next step; out: the gradient with
    ///   respect to `c_prev`.
    /// - `dgates` (n, 4H): out, the gradient with respect to the pre-activations.
    #[allow(clippy::too_many_arguments)]
    pub fn lstm_backward<T: Real>(
        n: usize,
        h: usize,
        gates: &[T],
        c_prev: &[T],
        c_new: &[T],
        dm: &[T],
        dc: &mut [T],
        dgates: &mut [T],
    ) {
        for r in 0..n {
            let g = &gates[r * 4 * h..(r + 1) * 4 * h];
            let dg = &mut dgates[r * 4 * h..(r + 1) * 4 * h];
            for j in 0..h {
                let (i, f, gg, o) = (g[j], g[h + j], g[2 * h + j], g[3 * h + j]);
                let k = r * h + j;
                let tc = c_new[k].tanh();
                let dmk = dm[k];
                let dct = dc[k] + dmk * o * (T::ONE - tc * tc);
                dg[j] = dct * gg * i * (T::ONE - i);
                dg[h + j] = dct * c_prev[k] * f * (T::ONE - f);
                dg[2 * h + j] = dct * i * (T::ONE - gg * gg);
                dg[3 * h + j] = dmk * tc * o * (T::ONE - o);
                dc[k] = dct * f;
            }
        }
    }

    /// GRU step, forward (PyTorch's "reset-after" form).
    ///
    /// - `gi` (n, 3H): in: `x W_ihᵀ + b_ih`; out: the activations `[r | z | n]`.
    /// - `gh` (n, 3H): `h_prev W_hhᵀ` without bias; `b_hh` (3H) is added here when present.
    /// - `h_prev` (n, H); `hn` (n, H): out, `W_hn h_prev + b_hn` (kept for the backward pass);
    ///   `h_new` (n, H): out, `(1 - z) * n + z * h_prev`.
    #[allow(clippy::too_many_arguments)]
    pub fn gru_forward<T: Real>(
        n: usize,
        h: usize,
        gi: &mut [T],
        gh: &[T],
        b_hh: Option<&[T]>,
        h_prev: &[T],
        hn: &mut [T],
        h_new: &mut [T],
    ) {
        for r in 0..n {
            let a = &mut gi[r * 3 * h..(r + 1) * 3 * h];
            let b = &gh[r * 3 * h..(r + 1) * 3 * h];
            for j in 0..h {
                let (br, bz, bn) = match b_hh {
                    Some(bias) => (bias[j], bias[h + j], bias[2 * h + j]),
                    None => (T::ZERO, T::ZERO, T::ZERO),
                };
                let rg = (a[j] + b[j] + br).sigmoid();
                let zg = (a[h + j] + b[h + j] + bz).sigmoid();
                let hnj = b[2 * h + j] + bn;
                let ng = (a[2 * h + j] + rg * hnj).tanh();
                a[j] = rg;
                a[h + j] = zg;
                a[2 * h + j] = ng;
                let k = r * h + j;
                hn[k] = hnj;
                h_new[k] = (T::ONE - zg) * ng + zg * h_prev[k];
            }
        }
    }

    /// GRU step, backward.
    ///
    /// - `gates` (n, 3H): `[r | z | n]` from [`gru_forward`]; `hn` (n, H); `h_prev` (n, H).
    /// - `dh` (n, H): in: the gradient with respect to `h_new`; out: its direct part
    ///   `dh * z` of the gradient with respect to `h_prev` (the caller adds
    ///   `[dgi_r | dgi_z | dhn] W_hh`).
    /// - `dgi` (n, 3H): out, the gradient with respect to `x W_ihᵀ + b_ih`.
    /// - `dhn` (n, H): out, the gradient with respect to `W_hn h_prev + b_hn` (the n block of
    ///   the hidden side; its r and z blocks equal `dgi`'s).
    #[allow(clippy::too_many_arguments)]
    pub fn gru_backward<T: Real>(
        n: usize,
        h: usize,
        gates: &[T],
        hn: &[T],
        h_prev: &[T],
        dh: &mut [T],
        dgi: &mut [T],
        dhn: &mut [T],
    ) {
        for r in 0..n {
            let g = &gates[r * 3 * h..(r + 1) * 3 * h];
            let di = &mut dgi[r * 3 * h..(r + 1) * 3 * h];
            for j in 0..h {
                let (rg, zg, ng) = (g[j], g[h + j], g[2 * h + j]);
                let k = r * h + j;
                let d = dh[k];
                let dan = d * (T::ONE - zg) * (T::ONE - ng * ng);
                let daz = d * (h_prev[k] - ng) * zg * (T::ONE - zg);
                let dar = dan * hn[k] * rg * (T::ONE - rg);
                di[j] = dar;
                di[h + j] = daz;
                di[2 * h + j] = dan;
                dhn[k] = dan * rg;
                dh[k] = d * zg;
            }
        }
    }

    /// Elman RNN step, forward: `h_new = act(a)` with act = tanh or relu; `a` and `h_new` hold
    /// `len` elements.
    pub fn rnn_forward<T: Real>(a: &[T], h_new: &mut [T], relu: bool) {
        if relu {
            for (y, &x) in h_new.iter_mut().zip(a) {
                *y = x.relu();
            }
        } else {
            for (y, &x) in h_new.iter_mut().zip(a) {
                *y = x.tanh();
            }
        }
    }

    /// Elman RNN step, backward: `da = dh * act'(a)`, computed from the output `h_new`
    /// (tanh: `1 - h²`; relu: `1[h > 0]`, as PyTorch's threshold backward).
    pub fn rnn_backward<T: Real>(h_new: &[T], dh: &[T], da: &mut [T], relu: bool) {
        for ((d, &y), &g) in da.iter_mut().zip(h_new).zip(dh) {
            *d = if relu {
                if y > T::ZERO {
                    g
                } else {
                    T::ZERO
                }
            } else {
                g * (T::ONE - y * y)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(n: usize, seed: u64, scale: f64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
            })
            .collect()
    }
    fn f32s(v: &[f64]) -> Vec<f32> {
        v.iter().map(|&x| x as f32).collect()
    }
    fn f64s(v: &[f32]) -> Vec<f64> {
        v.iter().map(|&x| x as f64).collect()
    }
    /// Fast f32 result against the naive kernel run in f64 on the same (f32) inputs.
    fn close(what: &str, fast: &[f32], exact: &[f64]) {
        assert_eq!(fast.len(), exact.len());
        for (k, (&a, &e)) in fast.iter().zip(exact).enumerate() {
            assert!(
                (a as f64 - e).abs() <= 2e-6 + 2e-6 * e.abs(),
                "{what}[{k}]: {a} vs {e}"
            );
        }
    }

    const SIZES: [(usize, usize); 9] = [
        (0, 3),
        (1, 1),
        (1, 7),
        (2, 8),
        (3, 9),
        (1, 16),
        (2, 17),
        (5, 33),
        (4, 64),
    ];

    #[test]
    fn activations_are_accurate() {
        let xs: Vec<f32> = (-600_000..=600_000)
            .map(|i| i as f32 * 5e-5)
            .chain([-1e30, -100.0, 1e-30, 0.0, 100.0, 1e30])
            .collect();
        let mut s = xs.clone();
        sigmoid_inplace(&mut s);
        let mut t = xs.clone();
        tanh_inplace(&mut t);
        let (mut es, mut et) = (0f64, 0f64);
        for ((&x, &a), &b) in xs.iter().zip(&s).zip(&t) {
            let x = x as f64;
            es = es.max((a as f64 - 1.0 / (1.0 + (-x).exp())).abs());
            et = et.max((b as f64 - x.tanh()).abs());
        }
        assert!(es < 2.5e-7, "sigmoid max abs error {es:e}");
        assert!(et < 3.5e-7, "tanh max abs error {et:e}");
        // Near 0, tanh keeps its relative accuracy.
        let mut small = vec![1e-3f32, -3e-4, 1e-6, 5e-2];
        let orig = small.clone();
        tanh_inplace(&mut small);
        for (a, x) in small.iter().zip(orig) {
            let e = (x as f64).tanh();
            assert!(
                ((*a as f64) - e).abs() <= 1e-6 * e.abs(),
                "tanh({x}) = {a}, want {e}"
            );
        }
    }

    #[test]
    fn lstm_fast_matches_naive() {
        for (n, h) in SIZES {
            let g = vals(n * 4 * h, 1, 6.0);
            let cp = vals(n * h, 2, 3.0);
            let (mut g32, mut cn32, mut m32) = (f32s(&g), vec![0f32; n * h], vec![0f32; n * h]);
            lstm_forward(n, h, &mut g32, &f32s(&cp), &mut cn32, &mut m32);
            let (mut g64, mut cn64, mut m64) =
                (f64s(&f32s(&g)), vec![0f64; n * h], vec![0f64; n * h]);
            naive::lstm_forward(n, h, &mut g64, &f64s(&f32s(&cp)), &mut cn64, &mut m64);
            close("gates", &g32, &g64);
            close("c", &cn32, &cn64);
            close("m", &m32, &m64);
            // Backward from the saved activations.
            let dm = vals(n * h, 3, 1.0);
            let dc = vals(n * h, 4, 1.0);
            let (mut dc32, mut dg32) = (f32s(&dc), vec![0f32; n * 4 * h]);
            lstm_backward(
                n,
                h,
                &g32,
                &f32s(&cp),
                &cn32,
                &f32s(&dm),
                &mut dc32,
                &mut dg32,
            );
            let (mut dc64, mut dg64) = (f64s(&f32s(&dc)), vec![0f64; n * 4 * h]);
            naive::lstm_backward(
                n,
                h,
                &f64s(&g32),
                &f64s(&f32s(&cp)),
                &f64s(&cn32),
                &f64s(&f32s(&dm)),
                &mut dc64,
                &mut dg64,
            );
            close("dgates", &dg32, &dg64);
            close("dc", &dc32, &dc64);
        }
    }

    #[test]
    fn gru_and_rnn_fast_match_naive() {
        for (n, h) in SIZES {
            for bias in [false, true] {
                let gi = vals(n * 3 * h, 5, 4.0);
                let gh = vals(n * 3 * h, 6, 4.0);
                let b = vals(3 * h, 7, 1.0);
                let hp = vals(n * h, 8, 1.0);
                let (mut gi32, mut hn32, mut hw32) =
                    (f32s(&gi), vec![0f32; n * h], vec![0f32; n * h]);
                let b32 = f32s(&b);
                gru_forward(
                    n,
                    h,
                    &mut gi32,
                    &f32s(&gh),
                    bias.then_some(&b32[..]),
                    &f32s(&hp),
                    &mut hn32,
                    &mut hw32,
                );
                let (mut gi64, mut hn64, mut hw64) =
                    (f64s(&f32s(&gi)), vec![0f64; n * h], vec![0f64; n * h]);
                let b64 = f64s(&b32);
                naive::gru_forward(
                    n,
                    h,
                    &mut gi64,
                    &f64s(&f32s(&gh)),
                    bias.then_some(&b64[..]),
                    &f64s(&f32s(&hp)),
                    &mut hn64,
                    &mut hw64,
                );
                close("gru gates", &gi32, &gi64);
                close("gru hn", &hn32, &hn64);
                close("gru h", &hw32, &hw64);
            }
            let a = vals(n * h, 9, 5.0);
            for relu in [false, true] {
                let mut y32 = vec![0f32; n * h];
                rnn_forward(&f32s(&a), &mut y32, relu);
                let mut y64 = vec![0f64; n * h];
                naive::rnn_forward(&f64s(&f32s(&a)), &mut y64, relu);
                close("rnn", &y32, &y64);
            }
        }
    }
}
