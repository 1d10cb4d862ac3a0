//! int8 kernels: the AVX2 integer dot product against the plain one (exact, on every length
//! the layout allows), and the quantizers against the rules their docs state.

use recur_kernels::quant::{naive, padded, quantize_rows, Path, QuantMat, QuantRows, BLOCK};

mod support;
use support::values;

#[test]
fn weights_round_to_the_nearest_step_of_their_row() {
    let (rows, cols) = (7, 45);
    let mut w = values(rows * cols, 1);
    w[3 * cols..4 * cols].fill(0.0); // an all-zero row
    let q = QuantMat::from_f32(&w, rows, cols);
    let d = q.dequantized();
    for j in 0..rows {
        let row = &w[j * cols..(j + 1) * cols];
        let max = row.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let step = if max > 0.0 { max / 127.0 } else { 1.0 };
        for k in 0..cols {
            let err = (d[j * cols + k] - row[k]).abs();
            assert!(
                err <= step / 2.0 * 1.0001,
                "row {j} col {k}: {err} > {}",
                step / 2.0
            );
        }
        // The largest magnitude is exact (it is ±127 steps).
        if max > 0.0 {
            let k = row.iter().position(|x| x.abs() == max).unwrap();
            assert!((d[j * cols + k] - row[k]).abs() <= max * 1e-6);
        }
    }
}

#[test]
fn activations_keep_zero_exact_and_stay_within_half_a_step() {
    for (n, cols) in [(1, 1), (3, 31), (2, 32), (2, 77)] {
        let mut x = values(n * cols, 5);
        x[0] = 0.0;
        let ld = padded(cols);
        let (mut q, mut s, mut z) = (vec![0u8; n * ld], vec![0.0; n], vec![0; n]);
        quantize_rows(n, &x, cols, cols, &mut q, &mut s, &mut z);
        for r in 0..n {
            let row = &x[r * cols..(r + 1) * cols];
            let lo = row.iter().fold(0.0f32, |m, &v| m.min(v));
            let hi = row.iter().fold(0.0f32, |m, &v| m.max(v));
            assert!((s[r] - if hi > lo { (hi - lo) / 127.0 } else { 1.0 }).abs() <= 1e-7);
            for k in 0..ld {
                assert!(q[r * ld + k] <= 127);
                if k >= cols {
                    assert_eq!(q[r * ld + k] as i32, z[r], "padding is the zero point");
                    continue;
                }
                let back = s[r] * (q[r * ld + k] as i32 - z[r]) as f32;
                assert!(
                    (back - row[k]).abs() <= s[r] * 0.5001 + 1e-7,
                    "{back} vs {}",
                    row[k]
                );
            }
        }
        assert_eq!(q[0] as i32, z[0], "0 maps to the zero point");
    }
}

#[test]
fn integer_products_are_exact_on_every_width() {
    for cols in [1usize, 5, 31, 32, 33, 63, 64, 65, 200, 256] {
        for rows in [1usize, 3, 8] {
            for n in [1usize, 2] {
                let w = values(rows * cols, cols as u64);
                let x = values(n * cols, 99 + cols as u64);
                let m = QuantMat::from_f32(&w, rows, cols);
                let ld = padded(cols);
                let (mut q, mut s, mut z) = (vec![0u8; n * ld], vec![0.0; n], vec![0; n]);
                quantize_rows(n, &x, cols, cols, &mut q, &mut s, &mut z);
                let xr = QuantRows {
                    q: &q,
                    ld,
                    scale: &s,
                    zero: &z,
                };
                let mut y = vec![0.5f32; n * (rows + 1)];
                m.matvecs(n, &xr, &mut y, rows + 1, true);
                // The formula of the docs, from the dequantized weights' integers.
                let wq = m.dequantized();
                for r in 0..n {
                    for j in 0..rows {
                        let sw = {
                            let row = &w[j * cols..(j + 1) * cols];
                            row.iter().fold(0.0f32, |a, v| a.max(v.abs())) / 127.0
                        };
                        let qw: Vec<i32> = (0..cols)
                            .map(|k| (wq[j * cols + k] / sw).round() as i32)
                            .collect();
                        let dot: i32 = (0..cols).map(|k| qw[k] * q[r * ld + k] as i32).sum();
                        let sum: i32 = qw.iter().sum();
                        let want = 0.5 + sw * s[r] * (dot - z[r] * sum) as f32;
                        assert_eq!(
                            y[r * (rows + 1) + j],
                            want,
                            "cols {cols} rows {rows} r {r} j {j}"
                        );
                    }
                    assert_eq!(y[r * (rows + 1) + rows], 0.5, "past the last row untouched");
                }
            }
        }
    }
}

#[test]
fn dot_products_match_the_plain_loop() {
    for len in [BLOCK, 2 * BLOCK, 3 * BLOCK, 8 * BLOCK, 33 * BLOCK] {
        let x: Vec<u8> = (0..len).map(|k| (k * 37 % 128) as u8).collect();
        let w: Vec<i8> = (0..len)
            .map(|k| ((k * 53 % 255) as i32 - 127) as i8)
            .collect();
        // The extremes too: every pair at 127 · ±127.
        let ones = vec![127u8; len];
        let neg = vec![-127i8; len];
        let m = QuantMat::from_f32(&w.iter().map(|&v| v as f32).collect::<Vec<_>>(), 1, len);
        for (xv, wv) in [(&x, &w), (&ones, &neg)] {
            let wf: Vec<f32> = wv.iter().map(|&v| v as f32).collect();
            let m = if std::ptr::eq(wv, &w) {
                m.clone()
            } else {
                QuantMat::from_f32(&wf, 1, len)
            };
            let (s, z) = ([1.0f32], [0i32]);
            let xr = QuantRows {
                q: xv,
                ld: len,
                scale: &s,
                zero: &z,
            };
            let mut y = [0.0f32];
            m.matvecs(1, &xr, &mut y, 1, false);
            // Weights of magnitude up to 127 keep their integers (scale 1).
            assert_eq!(y[0], naive::dot_u8_i8(xv, wv) as f32, "len {len}");
        }
    }
}

#[test]
fn every_path_matches_the_plain_loop_bit_for_bit() {
    let paths = Path::available_paths();
    assert_eq!(paths[0], Path::Scalar);
    assert!(paths.contains(&Path::detected()));
    let sizes = [0usize, 1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 100];
    for &rows in &sizes {
        for &cols in &sizes {
            for n in 1..=5 {
                let w = values(rows * cols, (rows * 131 + cols) as u64);
                let x = values(n * cols, (n * 7 + cols) as u64 + 1000);
                let m = QuantMat::from_f32(&w, rows, cols);
                let ld = padded(cols);
                let (mut q, mut s, mut z) = (vec![0u8; n * ld], vec![0.0; n], vec![0; n]);
                quantize_rows(n, &x, cols, cols, &mut q, &mut s, &mut z);
                let xr = QuantRows {
                    q: &q,
                    ld,
                    scale: &s,
                    zero: &z,
                };
                let ldy = rows + 2;
                for accumulate in [false, true] {
                    let mut want = vec![0.25f32; n * ldy];
                    naive::matvecs(&m, n, &xr, &mut want, ldy, accumulate);
                    for &path in &paths {
                        let mut y = vec![0.25f32; n * ldy];
                        m.matvecs_on(path, n, &xr, &mut y, ldy, accumulate);
                        let same = y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(
                            same,
                            "{path:?} rows {rows} cols {cols} n {n} acc {accumulate}"
                        );
                    }
                    let mut y = vec![0.25f32; n * ldy];
                    m.gemm(n, &xr, &mut y, ldy, accumulate, 2);
                    assert!(y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
                }
            }
        }
    }
}
