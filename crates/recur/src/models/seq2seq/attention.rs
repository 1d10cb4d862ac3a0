//! Luong attention (global, dot or general score, no input feeding) over time-major batches:
//! the forward pass that turns decoder outputs into attentional vectors' inputs `[c_t; h_t]`,
//! and its backward pass.
//!
//! For sequence `b` of a batch, with source length `S_b` and target length `T_b`:
//!
//! ```text
//! score[t, s] = h_t · k_s            k_s = h̄_s (dot) or W_a h̄_s (general), s < S_b
//! a[t, ·]     = softmax(score[t, ·])  over s < S_b only (the padding is masked)
//! c_t         = Σ_s a[t, s] h̄_s
//! ```
//!
//! The caller applies `h̃_t = tanh(W_c [c_t; h_t])` (attn_combine) and the keys' `W_a`.

use recur_kernels::gemm::{matmul, MatMut, MatRef, Par};
use recur_kernels::Real;

/// The sizes of one batch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttnDims {
    /// Source steps S (the longest source).
    pub s: usize,
    /// Target steps T (the longest target).
    pub t: usize,
    /// Sequences B.
    pub b: usize,
    /// Hidden size H.
    pub h: usize,
}

/// Softmax of `row` in place.
fn softmax_in_place<T: Real>(row: &mut [T]) {
    let m = row
        .iter()
        .copied()
        .fold(row[0], |m, v| if v > m { v } else { m });
    let mut sum = T::ZERO;
    for v in row.iter_mut() {
        *v = (*v - m).exp();
        sum += *v;
    }
    for v in row.iter_mut() {
        *v = *v / sum;
    }
}

/// Forward pass over a batch.
///
/// - `dec`: (T, B, H), the decoder's last-layer outputs h_t
/// - `enc`: (S, B, H), the encoder's outputs h̄_s (zero at padding)
/// - `keys`: (S, B, H), k_s (`enc` itself for dot attention)
/// - `src_len`, `tgt_len`: (B)
/// - `probs`: (B, T, S), overwritten: a[t, s], zero outside `t < T_b`, `s < S_b`
/// - `cat`: (T, B, 2H), overwritten: `[c_t; h_t]`, zero outside `t < T_b`
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward<T: Real>(
    d: AttnDims,
    dec: &[T],
    enc: &[T],
    keys: &[T],
    src_len: &[usize],
    tgt_len: &[usize],
    probs: &mut [T],
    cat: &mut [T],
) {
    let AttnDims { s, t, b, h } = d;
    probs.fill(T::ZERO);
    cat.fill(T::ZERO);
    for bi in 0..b {
        let (sb, tb) = (src_len[bi], tgt_len[bi]);
        // score (T_b, S_b) = dec_b (T_b, H) · keys_bᵀ (H, S_b)
        let pb = &mut probs[bi * t * s..(bi + 1) * t * s];
        matmul(
            MatMut::strided(pb, tb, sb, s),
            MatRef::strided(&dec[bi * h..], tb, h, b * h),
            MatRef::strided(&keys[bi * h..], sb, h, b * h).t(),
            false,
            Par::Seq,
        );
        for row in pb.chunks_exact_mut(s).take(tb) {
            softmax_in_place(&mut row[..sb]);
        }
        // c (T_b, H) = a (T_b, S_b) · enc_b (S_b, H), into the first half of cat's rows
        matmul(
            MatMut::strided(&mut cat[bi * 2 * h..], tb, h, b * 2 * h),
            MatRef::strided(pb, tb, sb, s),
            MatRef::strided(&enc[bi * h..], sb, h, b * h),
            false,
            Par::Seq,
        );
        for ti in 0..tb {
            let r = ti * b + bi;
            cat[r * 2 * h + h..(r + 1) * 2 * h].copy_from_slice(&dec[r * h..(r + 1) * h]);
        }
    }
}

/// Backward pass of [`forward`] for the same inputs.
///
/// - `dcat`: (T, B, 2H), d loss / d `[c_t; h_t]`
/// - `ddec`: (T, B, H), overwritten with d loss / d h_t
/// - `denc`: (S, B, H), **adds** d loss / d h̄_s through the context vectors
/// - `dkeys`: (S, B, H), overwritten with d loss / d k_s (for dot attention the caller adds
///   it to `denc`; for general attention it goes back through W_a)
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<T: Real>(
    d: AttnDims,
    dec: &[T],
    enc: &[T],
    keys: &[T],
    src_len: &[usize],
    tgt_len: &[usize],
    probs: &[T],
    dcat: &[T],
    ddec: &mut [T],
    denc: &mut [T],
    dkeys: &mut [T],
) {
    let AttnDims { s, t, b, h } = d;
    ddec.fill(T::ZERO);
    dkeys.fill(T::ZERO);
    // (T, S): d loss / d a, then d loss / d score
    let mut ds = vec![T::ZERO; t * s];
    for bi in 0..b {
        let (sb, tb) = (src_len[bi], tgt_len[bi]);
        let pb = &probs[bi * t * s..(bi + 1) * t * s];
        let dctx = MatRef::strided(&dcat[bi * 2 * h..], tb, h, b * 2 * h);
        // da (T_b, S_b) = dc (T_b, H) · enc_bᵀ (H, S_b)
        matmul(
            MatMut::strided(&mut ds, tb, sb, s),
            dctx,
            MatRef::strided(&enc[bi * h..], sb, h, b * h).t(),
            false,
            Par::Seq,
        );
        // denc_b (S_b, H) += aᵀ (S_b, T_b) · dc (T_b, H)
        matmul(
            MatMut::strided(&mut denc[bi * h..], sb, h, b * h),
            MatRef::strided(pb, tb, sb, s).t(),
            dctx,
            true,
            Par::Seq,
        );
        // dscore = a ⊙ (da - Σ_s a da), row by row
        for ti in 0..tb {
            let a = &pb[ti * s..ti * s + sb];
            let g = &mut ds[ti * s..ti * s + sb];
            let mut dot = T::ZERO;
            for (&x, &y) in a.iter().zip(g.iter()) {
                dot += x * y;
            }
            for (gv, &av) in g.iter_mut().zip(a) {
                *gv = av * (*gv - dot);
            }
        }
        let dscore = MatRef::strided(&ds, tb, sb, s);
        // ddec_b (T_b, H) = dscore (T_b, S_b) · keys_b (S_b, H)
        matmul(
            MatMut::strided(&mut ddec[bi * h..], tb, h, b * h),
            dscore,
            MatRef::strided(&keys[bi * h..], sb, h, b * h),
            false,
            Par::Seq,
        );
        // dkeys_b (S_b, H) = dscoreᵀ (S_b, T_b) · dec_b (T_b, H)
        matmul(
            MatMut::strided(&mut dkeys[bi * h..], sb, h, b * h),
            dscore.t(),
            MatRef::strided(&dec[bi * h..], tb, h, b * h),
            false,
            Par::Seq,
        );
        // The direct path: h_t is the second half of [c_t; h_t].
        for ti in 0..tb {
            let r = ti * b + bi;
            for (x, &y) in ddec[r * h..(r + 1) * h]
                .iter_mut()
                .zip(&dcat[r * 2 * h + h..(r + 1) * 2 * h])
            {
                *x += y;
            }
        }
    }
}

/// One decoding step: attention of `rows` decoder states over the sources they belong to.
///
/// - `hs`: (R, H), the decoder's new h for every row
/// - `src_of`: (R), the sequence of the batch each row attends to
/// - `enc`, `keys`: (S, B, H) as in [`forward`]; `src_len`: (B)
/// - `cat`: (R, 2H), overwritten with `[c; h]`
#[allow(clippy::too_many_arguments)]
pub(crate) fn step<T: Real>(
    s: usize,
    b: usize,
    h: usize,
    hs: &[T],
    src_of: &[usize],
    enc: &[T],
    keys: &[T],
    src_len: &[usize],
    cat: &mut [T],
) {
    let mut a = vec![T::ZERO; s];
    for (r, &bi) in src_of.iter().enumerate() {
        let sb = src_len[bi];
        let hr = &hs[r * h..(r + 1) * h];
        for (si, av) in a.iter_mut().enumerate().take(sb) {
            let k = &keys[(si * b + bi) * h..(si * b + bi + 1) * h];
            let mut dot = T::ZERO;
            for (&x, &y) in hr.iter().zip(k) {
                dot += x * y;
            }
            *av = dot;
        }
        softmax_in_place(&mut a[..sb]);
        let (c, hpart) = cat[r * 2 * h..(r + 1) * 2 * h].split_at_mut(h);
        c.fill(T::ZERO);
        for (si, &av) in a.iter().enumerate().take(sb) {
            let e = &enc[(si * b + bi) * h..(si * b + bi + 1) * h];
            for (cv, &ev) in c.iter_mut().zip(e) {
                *cv += av * ev;
            }
        }
        hpart.copy_from_slice(hr);
    }
}
