//! The blocked int8 product (the batched input projection of a whole sequence and the
//! recurrent product of a batch) against the plain loops of `quant::naive`, on awkward sizes:
//! empty, single and odd row counts, weight rows that are not a multiple of the 4-row block,
//! columns with a tail in their 32-wide block, 1 and 2 threads. The integer sums are exact,
//! so the results must be the same bits.

use recur_kernels::quant::{naive, padded, quantize_rows, QuantMat, QuantRows};

mod support;
use support::values;

fn quantized(n: usize, cols: usize, seed: u64) -> (Vec<u8>, Vec<f32>, Vec<i32>) {
    let mut x = values(n * cols, seed);
    // A row of one sign and a constant row: zero points at the ends of the range.
    if n > 2 {
        for v in &mut x[cols..2 * cols] {
            *v = v.abs();
        }
        x[2 * cols..3 * cols].fill(-0.25);
    }
    let ld = padded(cols);
    let (mut q, mut s, mut z) = (vec![0u8; n * ld], vec![0.0; n], vec![0; n]);
    quantize_rows(n, &x, cols, cols, &mut q, &mut s, &mut z);
    (q, s, z)
}

#[test]
fn gemm_gives_the_bits_of_the_plain_loops() {
    let mut cases = 0;
    for &(n, rows, cols) in &[
        (0, 8, 16),
        (1, 1, 1),
        (1, 4, 32),
        (2, 5, 33),
        (3, 7, 31),
        (5, 130, 100),
        (67, 13, 64),
        (9, 2048 + 3, 40),
        // Wide enough for several cache blocks of rows and of weight rows.
        (301, 260, 700),
    ] {
        let w = values(rows * cols, 7 + rows as u64);
        let m = QuantMat::from_f32(&w, rows, cols);
        let (q, s, z) = quantized(n, cols, 3 + n as u64);
        let x = QuantRows {
            q: &q,
            ld: padded(cols),
            scale: &s,
            zero: &z,
        };
        for ldy in [rows, rows + 3] {
            for accumulate in [false, true] {
                let start = values(n * ldy, 11);
                let mut want = start.clone();
                naive::matvecs(&m, n, &x, &mut want, ldy, accumulate);
                for threads in [1, 2] {
                    let mut got = start.clone();
                    m.gemm(n, &x, &mut got, ldy, accumulate, threads);
                    assert_eq!(got, want, "gemm n {n} rows {rows} cols {cols} ldy {ldy} acc {accumulate} threads {threads}");
                    cases += 1;
                }
                let mut got = start.clone();
                m.matvecs(n, &x, &mut got, ldy, accumulate);
                assert_eq!(got, want, "matvecs n {n} rows {rows} cols {cols}");
            }
        }
    }
    assert_eq!(cases, 9 * 2 * 2 * 2);
}

#[test]
fn the_plain_loops_compute_the_documented_sum() {
    // y[r, j] = s_w[j] · s_x[r] · Σ_k q[j, k] (q_x[r, k] − z_x[r]), evaluated from the
    // dequantized weights and activations in f64.
    let (n, rows, cols) = (3, 5, 37);
    let w = values(rows * cols, 2);
    let m = QuantMat::from_f32(&w, rows, cols);
    let (q, s, z) = quantized(n, cols, 4);
    let ld = padded(cols);
    let mut y = vec![0.0; n * rows];
    let x = QuantRows {
        q: &q,
        ld,
        scale: &s,
        zero: &z,
    };
    naive::matvecs(&m, n, &x, &mut y, rows, false);
    let wd = m.dequantized();
    for r in 0..n {
        for j in 0..rows {
            let want: f64 = (0..cols)
                .map(|k| {
                    wd[j * cols + k] as f64 * s[r] as f64 * (q[r * ld + k] as i32 - z[r]) as f64
                })
                .sum();
            assert!(
                (y[r * rows + j] as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
                "({r}, {j}): {} vs {want}",
                y[r * rows + j]
            );
        }
    }
}

#[test]
fn dequantized_weights_quantize_back_to_themselves() {
    // What makes an int8 model file exact: loading the dequantized weights and quantizing
    // them again gives the same int8 values and the same scales.
    let (rows, cols) = (4096, 19);
    let mut w = values(rows * cols, 9);
    for (j, v) in w.iter_mut().enumerate() {
        *v *= 1.0 + (j / cols) as f32 * 0.731;
    }
    let m = QuantMat::from_f32(&w, rows, cols);
    let again = QuantMat::from_f32(&m.dequantized(), rows, cols);
    assert_eq!(again.values(), m.values());
    assert_eq!(again.scales(), m.scales());
    // And the scale is max / 127 up to a few ulps.
    for j in 0..rows {
        let max = w[j * cols..(j + 1) * cols]
            .iter()
            .fold(0.0f32, |a, x| a.max(x.abs()));
        let s = m.scales()[j];
        assert!((s - max / 127.0).abs() <= 1e-6 * s, "row {j}");
    }
}
