//! AVX2 + FMA versions of the gate kernels (f32), 8 lanes at a time, with masked loads and
//! stores for the tail so that every element goes through the same arithmetic.
//!
//! Activations:
//! - `exp`: Cephes-style range reduction `x = n ln2 + r` and a degree-6 polynomial, input
//!   clamped to [-87.3, 88]; sigmoid is `1 / (1 + exp(-x))`.
//! - `tanh`: the odd/even rational approximation (degree 13 / 6) used by Eigen, input clamped to
//!   ±7.9053, and `tanh(x) = x` below 4e-4.
//!
//! Measured maximum errors against f64 over [-30, 30] (test `activations_are_accurate`):
//! sigmoid within 2.5e-7 and tanh within 3.5e-7 absolute (measured 3.05e-7, a few f32 ulps near
//! ±1, from the clamp at ±7.9), far inside the f32 tolerances of the parity tests.
//!
//! Every function here requires AVX2 and FMA; callers go through [`crate::cells`], which checks
//! the CPU once ([`crate::cpu`]) before choosing them.

// The polynomial coefficients are written as published (their f32 rounding is what is used).
#![allow(clippy::excessive_precision)]

use std::arch::x86_64::*;

/// # Safety
/// The CPU has AVX (every caller is an `avx2,fma` function).
#[inline(always)]
unsafe fn splat(x: f32) -> __m256 {
    _mm256_set1_ps(x)
}

/// e^x for 8 lanes.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[inline(always)]
unsafe fn exp8(x: __m256) -> __m256 {
    let x = _mm256_min_ps(_mm256_max_ps(x, splat(-87.33)), splat(88.0));
    let fx = _mm256_round_ps(
        _mm256_mul_ps(x, splat(std::f32::consts::LOG2_E)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
    );
    let r = _mm256_fnmadd_ps(fx, splat(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(fx, splat(-2.121_944_4e-4), r);
    let mut y = splat(1.987_569_1e-4);
    y = _mm256_fmadd_ps(y, r, splat(1.398_199_9e-3));
    y = _mm256_fmadd_ps(y, r, splat(8.333_452e-3));
    y = _mm256_fmadd_ps(y, r, splat(4.166_579_6e-2));
    y = _mm256_fmadd_ps(y, r, splat(0.166_666_65));
    y = _mm256_fmadd_ps(y, r, splat(0.5));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), r);
    y = _mm256_add_ps(y, splat(1.0));
    let n = _mm256_cvtps_epi32(fx);
    let pow2 = _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_add_epi32(n, _mm256_set1_epi32(127)),
        23,
    ));
    _mm256_mul_ps(y, pow2)
}

/// 1 / (1 + e^-x) for 8 lanes.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[inline(always)]
pub(crate) unsafe fn sigmoid8(x: __m256) -> __m256 {
    let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
    _mm256_div_ps(splat(1.0), _mm256_add_ps(splat(1.0), e))
}

/// tanh(x) for 8 lanes.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[inline(always)]
pub(crate) unsafe fn tanh8(a: __m256) -> __m256 {
    let x = _mm256_min_ps(_mm256_max_ps(a, splat(-7.905_311)), splat(7.905_311));
    let abs = _mm256_andnot_ps(splat(-0.0), a);
    let tiny = _mm256_cmp_ps(abs, splat(0.0004), _CMP_LT_OQ);
    let x2 = _mm256_mul_ps(x, x);
    let mut p = _mm256_fmadd_ps(x2, splat(-2.760_768_5e-16), splat(2.000_187_9e-13));
    p = _mm256_fmadd_ps(x2, p, splat(-8.604_671_5e-11));
    p = _mm256_fmadd_ps(x2, p, splat(5.122_297e-8));
    p = _mm256_fmadd_ps(x2, p, splat(1.485_722_4e-5));
    p = _mm256_fmadd_ps(x2, p, splat(6.372_619_3e-4));
    p = _mm256_fmadd_ps(x2, p, splat(4.893_524_6e-3));
    p = _mm256_mul_ps(x, p);
    let mut q = _mm256_fmadd_ps(x2, splat(1.198_258_4e-6), splat(1.185_347_1e-4));
    q = _mm256_fmadd_ps(x2, q, splat(2.268_434_6e-3));
    q = _mm256_fmadd_ps(x2, q, splat(4.893_525e-3));
    _mm256_blendv_ps(_mm256_div_ps(p, q), a, tiny)
}

/// The lane mask for `rem` (< 8) valid lanes.
///
/// # Safety
/// The CPU has AVX2.
#[inline(always)]
unsafe fn tail_mask(rem: usize) -> __m256i {
    let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(rem as i32), idx)
}

/// Loads 8 lanes, or the first `rem` of them (the others 0) when `rem < 8`.
///
/// # Safety
/// The CPU has AVX2; `p` points at `min(rem, 8)` readable f32.
#[inline(always)]
unsafe fn load(p: *const f32, rem: usize) -> __m256 {
    if rem >= 8 {
        _mm256_loadu_ps(p)
    } else {
        _mm256_maskload_ps(p, tail_mask(rem))
    }
}

/// Stores 8 lanes, or only the first `rem` when `rem < 8`.
///
/// # Safety
/// The CPU has AVX2; `p` points at `min(rem, 8)` writable f32.
#[inline(always)]
unsafe fn store(p: *mut f32, v: __m256, rem: usize) {
    if rem >= 8 {
        _mm256_storeu_ps(p, v)
    } else {
        _mm256_maskstore_ps(p, tail_mask(rem), v)
    }
}

/// Runs `body` for j = 0, 8, 16, ... < h with `rem = h - j` lanes left (a macro, not a
/// closure, so the body is compiled with the enclosing function's target features).
macro_rules! lanes {
    ($h:expr, |$j:ident, $rem:ident| $body:block) => {{
        let h_ = $h;
        let mut $j = 0;
        while $j < h_ {
            let $rem = h_ - $j;
            $body
            $j += 8;
        }
    }};
}

/// The sum of `x` with four independent 8-lane accumulators: reads at the load units' rate.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn sum(x: &[f32]) -> f32 {
    let p = x.as_ptr();
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= x.len() {
        for (u, a) in acc.iter_mut().enumerate() {
            *a = _mm256_add_ps(*a, _mm256_loadu_ps(p.add(i + 8 * u)));
        }
        i += 32;
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), v);
    lanes.iter().sum::<f32>() + x[i..].iter().sum::<f32>()
}

/// `sigmoid` in place.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn sigmoid_inplace(x: &mut [f32]) {
    let p = x.as_mut_ptr();
    lanes!(x.len(), |j, rem| {
        store(p.add(j), sigmoid8(load(p.add(j), rem)), rem);
    });
}

/// `tanh` in place.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn tanh_inplace(x: &mut [f32]) {
    let p = x.as_mut_ptr();
    lanes!(x.len(), |j, rem| {
        store(p.add(j), tanh8(load(p.add(j), rem)), rem);
    });
}

/// `out = tanh(a)`; `out.len() == a.len()`.
///
/// # Safety
/// The CPU has AVX2 and FMA; `out.len() == a.len()`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn tanh_to(a: &[f32], out: &mut [f32]) {
    debug_assert_eq!(a.len(), out.len());
    let (pa, po) = (a.as_ptr(), out.as_mut_ptr());
    lanes!(a.len(), |j, rem| {
        store(po.add(j), tanh8(load(pa.add(j), rem)), rem);
    });
}

/// [`crate::cells::lstm_forward`]; the caller has checked every slice length.
///
/// # Safety
/// The CPU has AVX2 and FMA; every slice holds the n rows the kernel touches (checked by
/// [`crate::cells::lstm_forward`]).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn lstm_forward(
    n: usize,
    h: usize,
    gates: &mut [f32],
    c_prev: &[f32],
    c_new: &mut [f32],
    m: &mut [f32],
) {
    lstm_forward_units(
        n,
        h,
        0,
        h,
        gates.as_mut_ptr(),
        c_prev.as_ptr(),
        c_new.as_mut_ptr(),
        m.as_mut_ptr(),
    )
}

/// [`crate::cells::lstm_backward`]; the caller has checked every slice length.
///
/// # Safety
/// The CPU has AVX2 and FMA; every slice holds the n rows the kernel touches (checked by
/// [`crate::cells::lstm_backward`]).
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn lstm_backward(
    n: usize,
    h: usize,
    gates: &[f32],
    c_prev: &[f32],
    c_new: &[f32],
    dm: &[f32],
    dc: &mut [f32],
    dgates: &mut [f32],
) {
    let one = splat(1.0);
    for r in 0..n {
        let g = gates.as_ptr().add(r * 4 * h);
        let dg = dgates.as_mut_ptr().add(r * 4 * h);
        let (cp, cn, dmp, dcp) = (
            c_prev.as_ptr().add(r * h),
            c_new.as_ptr().add(r * h),
            dm.as_ptr().add(r * h),
            dc.as_mut_ptr().add(r * h),
        );
        lanes!(h, |j, rem| {
            let i = load(g.add(j), rem);
            let f = load(g.add(h + j), rem);
            let gg = load(g.add(2 * h + j), rem);
            let o = load(g.add(3 * h + j), rem);
            let tc = tanh8(load(cn.add(j), rem));
            let dmv = load(dmp.add(j), rem);
            // dct = dc + dm * o * (1 - tc²)
            let dct = _mm256_fmadd_ps(
                _mm256_mul_ps(dmv, o),
                _mm256_fnmadd_ps(tc, tc, one),
                load(dcp.add(j), rem),
            );
            let di = _mm256_mul_ps(
                _mm256_mul_ps(dct, gg),
                _mm256_mul_ps(i, _mm256_sub_ps(one, i)),
            );
            let df = _mm256_mul_ps(
                _mm256_mul_ps(dct, load(cp.add(j), rem)),
                _mm256_mul_ps(f, _mm256_sub_ps(one, f)),
            );
            let dgg = _mm256_mul_ps(_mm256_mul_ps(dct, i), _mm256_fnmadd_ps(gg, gg, one));
            let dob = _mm256_mul_ps(
                _mm256_mul_ps(dmv, tc),
                _mm256_mul_ps(o, _mm256_sub_ps(one, o)),
            );
            store(dg.add(j), di, rem);
            store(dg.add(h + j), df, rem);
            store(dg.add(2 * h + j), dgg, rem);
            store(dg.add(3 * h + j), dob, rem);
            store(dcp.add(j), _mm256_mul_ps(dct, f), rem);
        });
    }
}

/// [`crate::cells::gru_forward`]; the caller has checked every slice length.
///
/// # Safety
/// The CPU has AVX2 and FMA; every slice holds the n rows the kernel touches (checked by
/// [`crate::cells::gru_forward`]).
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn gru_forward(
    n: usize,
    h: usize,
    gi: &mut [f32],
    gh: &[f32],
    b_hh: Option<&[f32]>,
    h_prev: &[f32],
    hn: &mut [f32],
    h_new: &mut [f32],
) {
    gru_forward_units(
        n,
        h,
        0,
        h,
        gi.as_mut_ptr(),
        gh.as_ptr(),
        b_hh.map_or(std::ptr::null(), |b| b.as_ptr()),
        h_prev.as_ptr(),
        hn.as_mut_ptr(),
        h_new.as_mut_ptr(),
    )
}

/// [`gru_forward`] for the hidden units u0..u1 of rows 0..n only, through pointers: `gi` and
/// `gh` rows of 3H values, `h_prev`, `hn` and `h_new` rows of H, `b_hh` 3H values or null.
/// The caller has checked that every row is there; only the units' columns are touched.
///
/// # Safety
/// The CPU has AVX2 and FMA; every pointer holds n rows (3H values for `gi`, `gh`, H for the
/// others), `b_hh` 3H values or null; no other thread touches the columns u0..u1 meanwhile.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn gru_forward_units(
    n: usize,
    h: usize,
    u0: usize,
    u1: usize,
    gi: *mut f32,
    gh: *const f32,
    b_hh: *const f32,
    h_prev: *const f32,
    hn: *mut f32,
    h_new: *mut f32,
) {
    let one = splat(1.0);
    for r in 0..n {
        let a = gi.add(r * 3 * h + u0);
        let b = gh.add(r * 3 * h + u0);
        let (hp, hnp, hw) = (
            h_prev.add(r * h + u0),
            hn.add(r * h + u0),
            h_new.add(r * h + u0),
        );
        lanes!(u1 - u0, |j, rem| {
            let (br, bz, bn) = if b_hh.is_null() {
                (
                    _mm256_setzero_ps(),
                    _mm256_setzero_ps(),
                    _mm256_setzero_ps(),
                )
            } else {
                let p = b_hh.add(u0);
                (
                    load(p.add(j), rem),
                    load(p.add(h + j), rem),
                    load(p.add(2 * h + j), rem),
                )
            };
            let rg = sigmoid8(_mm256_add_ps(
                _mm256_add_ps(load(a.add(j), rem), load(b.add(j), rem)),
                br,
            ));
            let zg = sigmoid8(_mm256_add_ps(
                _mm256_add_ps(load(a.add(h + j), rem), load(b.add(h + j), rem)),
                bz,
            ));
            let hnj = _mm256_add_ps(load(b.add(2 * h + j), rem), bn);
            let ng = tanh8(_mm256_fmadd_ps(rg, hnj, load(a.add(2 * h + j), rem)));
            store(a.add(j), rg, rem);
            store(a.add(h + j), zg, rem);
            store(a.add(2 * h + j), ng, rem);
            store(hnp.add(j), hnj, rem);
            // (1 - z) n + z h_prev
            let hv = _mm256_fmadd_ps(
                zg,
                load(hp.add(j), rem),
                _mm256_mul_ps(_mm256_sub_ps(one, zg), ng),
            );
            store(hw.add(j), hv, rem);
        });
    }
}

/// The LSTM cell update for the hidden units u0..u1 of rows 0..n, through pointers: `gates`
/// rows of 4H pre-activations (out: the activations `[i f g o]`), `c_prev` rows of H in,
/// `c_new` rows of H out (`f c_prev + i g`; it may be `c_prev` itself, for an update in
/// place), `m` rows of H out (`o tanh(c_new)`). Only the units' columns are touched.
///
/// # Safety
/// The CPU has AVX2 and FMA; `gates` holds n rows of 4H values, `c_prev`, `c_new` and `m` n
/// rows of H; no other thread touches the columns u0..u1 meanwhile.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn lstm_forward_units(
    n: usize,
    h: usize,
    u0: usize,
    u1: usize,
    gates: *mut f32,
    c_prev: *const f32,
    c_new: *mut f32,
    m: *mut f32,
) {
    for r in 0..n {
        let g = gates.add(r * 4 * h + u0);
        let (cp, cn, mp) = (
            c_prev.add(r * h + u0),
            c_new.add(r * h + u0),
            m.add(r * h + u0),
        );
        lanes!(u1 - u0, |j, rem| {
            let i = sigmoid8(load(g.add(j), rem));
            let f = sigmoid8(load(g.add(h + j), rem));
            let gg = tanh8(load(g.add(2 * h + j), rem));
            let o = sigmoid8(load(g.add(3 * h + j), rem));
            store(g.add(j), i, rem);
            store(g.add(h + j), f, rem);
            store(g.add(2 * h + j), gg, rem);
            store(g.add(3 * h + j), o, rem);
            // c_prev is read before c_new is written, lane for lane: an update in place works.
            let c = _mm256_fmadd_ps(f, load(cp.add(j), rem), _mm256_mul_ps(i, gg));
            store(cn.add(j), c, rem);
            store(mp.add(j), _mm256_mul_ps(o, tanh8(c)), rem);
        });
    }
}

/// `out = tanh(a)` for the units u0..u1 of rows 0..n (rows of H values), through pointers.
///
/// # Safety
/// The CPU has AVX2 and FMA; `a` and `out` hold n rows of H values; no other thread touches the
/// columns u0..u1 meanwhile.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn tanh_units(n: usize, h: usize, u0: usize, u1: usize, a: *const f32, out: *mut f32) {
    for r in 0..n {
        let (ap, op) = (a.add(r * h + u0), out.add(r * h + u0));
        lanes!(u1 - u0, |j, rem| {
            store(op.add(j), tanh8(load(ap.add(j), rem)), rem);
        });
    }
}

/// Sums `len` columns of one slice's panels into three accumulators: for column k, the 24
/// values at `w + 24 k` (8 units each of r, z, n) times `v[k]`. Two columns per round, with
/// independent accumulators, so the FMAs do not wait on each other.
///
/// # Safety
/// The CPU has AVX2 and FMA; `w` holds `24 len` f32 and `v` holds `len`.
#[inline(always)]
unsafe fn panel_dot(w: *const f32, v: *const f32, len: usize) -> (__m256, __m256, __m256) {
    let z = _mm256_setzero_ps();
    let (mut r0, mut z0, mut n0, mut r1, mut z1, mut n1) = (z, z, z, z, z, z);
    let mut k = 0;
    while k + 2 <= len {
        let (a, b) = (splat(*v.add(k)), splat(*v.add(k + 1)));
        let p = w.add(24 * k);
        r0 = _mm256_fmadd_ps(_mm256_loadu_ps(p), a, r0);
        z0 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(8)), a, z0);
        n0 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(16)), a, n0);
        r1 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(24)), b, r1);
        z1 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(32)), b, z1);
        n1 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(40)), b, n1);
        k += 2;
    }
    if k < len {
        let a = splat(*v.add(k));
        let p = w.add(24 * k);
        r0 = _mm256_fmadd_ps(_mm256_loadu_ps(p), a, r0);
        z0 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(8)), a, z0);
        n0 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(16)), a, n0);
    }
    (
        _mm256_add_ps(r0, r1),
        _mm256_add_ps(z0, z1),
        _mm256_add_ps(n0, n1),
    )
}

/// One fused GRU step for one row over the unit slices s0..s1 (see
/// [`crate::gru::GruStepPacked`] for the layout): per slice of 8 units, the input and
/// recurrent products of r, z and n in one pass each, then the cell while they are in
/// registers, writing `h_new` for those units.
///
/// # Safety
/// The CPU has AVX2 and FMA; `w` holds the packed slices s0..s1 (`24 (input + h)` f32 each),
/// `bias` `4 hp` f32 (hp = 8 × slices), `x` `input` f32, `h_prev` `h` f32, and `h_new` points
/// at unit `8 s0` of the new state with room for units `8 s0 .. min(8 s1, h)`, not overlapping
/// `h_prev`.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn gru_step_panels(
    w: *const f32,
    bias: *const f32,
    input: usize,
    h: usize,
    s0: usize,
    s1: usize,
    x: *const f32,
    h_prev: *const f32,
    h_new: *mut f32,
) {
    let hp = h.div_ceil(8) * 8;
    let stride = 24 * (input + h);
    let one = splat(1.0);
    for s in s0..s1 {
        let p = w.add(s * stride);
        let (ir, iz, inn) = panel_dot(p, x, input);
        let (hr, hz, hn) = panel_dot(p.add(24 * input), h_prev, h);
        let u = 8 * s;
        let rem = h - u;
        let b = bias.add(u);
        let r = sigmoid8(_mm256_add_ps(_mm256_add_ps(ir, hr), _mm256_loadu_ps(b)));
        let zg = sigmoid8(_mm256_add_ps(
            _mm256_add_ps(iz, hz),
            _mm256_loadu_ps(b.add(hp)),
        ));
        let hn = _mm256_add_ps(hn, _mm256_loadu_ps(b.add(3 * hp)));
        let n = tanh8(_mm256_add_ps(
            _mm256_fmadd_ps(r, hn, inn),
            _mm256_loadu_ps(b.add(2 * hp)),
        ));
        let hv = load(h_prev.add(u), rem);
        // (1 - z) n + z h
        let out = _mm256_fmadd_ps(zg, hv, _mm256_mul_ps(_mm256_sub_ps(one, zg), n));
        store(h_new.add(u - 8 * s0), out, rem);
    }
}

/// Four gate dot products of one LSTM slice (8 units): `w` holds `len` columns of 32 values
/// (the i, f, g and o rows of the slice's units side by side), `v` the `len` values they
/// multiply. Two columns per iteration into independent accumulators.
///
/// # Safety
/// The CPU has AVX2 and FMA; `w` holds `32 len` f32 and `v` holds `len`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // one index into `acc`, `b` and the column
unsafe fn panel_dot4(w: *const f32, v: *const f32, len: usize, acc: &mut [__m256; 4]) {
    let z = _mm256_setzero_ps();
    let mut b = [z; 4];
    let mut k = 0;
    while k + 2 <= len {
        let (x0, x1) = (splat(*v.add(k)), splat(*v.add(k + 1)));
        let p = w.add(32 * k);
        for g in 0..4 {
            acc[g] = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(8 * g)), x0, acc[g]);
            b[g] = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(32 + 8 * g)), x1, b[g]);
        }
        k += 2;
    }
    if k < len {
        let x0 = splat(*v.add(k));
        let p = w.add(32 * k);
        for g in 0..4 {
            acc[g] = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(8 * g)), x0, acc[g]);
        }
    }
    for g in 0..4 {
        acc[g] = _mm256_add_ps(acc[g], b[g]);
    }
}

/// One fused LSTM step for one row over the unit slices s0..s1 (see
/// [`crate::lstm::LstmStepPacked`] for the layout): per slice of 8 units, the four gate
/// products over x then h, then the cell while they are in registers, writing `h_new` and
/// `c_new` for those units.
///
/// # Safety
/// The CPU has AVX2 and FMA; `w` holds the packed slices s0..s1 (`32 (input + h)` f32 each),
/// `bias` `4 hp` f32 (hp = 8 × slices), `x` `input` f32, `h_prev` and `c_prev` `h` f32; `h_new`
/// and `c_new` point at unit `8 s0` of the new state with room for units
/// `8 s0 .. min(8 s1, h)`, and overlap none of the inputs.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn lstm_step_panels(
    w: *const f32,
    bias: *const f32,
    input: usize,
    h: usize,
    s0: usize,
    s1: usize,
    x: *const f32,
    h_prev: *const f32,
    c_prev: *const f32,
    h_new: *mut f32,
    c_new: *mut f32,
) {
    let hp = h.div_ceil(8) * 8;
    let stride = 32 * (input + h);
    for s in s0..s1 {
        let p = w.add(s * stride);
        let u = 8 * s;
        let rem = h - u;
        let b = bias.add(u);
        let mut acc = [
            _mm256_loadu_ps(b),
            _mm256_loadu_ps(b.add(hp)),
            _mm256_loadu_ps(b.add(2 * hp)),
            _mm256_loadu_ps(b.add(3 * hp)),
        ];
        panel_dot4(p, x, input, &mut acc);
        panel_dot4(p.add(32 * input), h_prev, h, &mut acc);
        let (i, f, g, o) = (
            sigmoid8(acc[0]),
            sigmoid8(acc[1]),
            tanh8(acc[2]),
            sigmoid8(acc[3]),
        );
        let c = _mm256_fmadd_ps(f, load(c_prev.add(u), rem), _mm256_mul_ps(i, g));
        store(c_new.add(u - 8 * s0), c, rem);
        store(h_new.add(u - 8 * s0), _mm256_mul_ps(o, tanh8(c)), rem);
    }
}
