//! The half-precision weight kernels against their naive reference and against f64 products of
//! the same (widened) weights, on awkward sizes: 0, 1, tails of the 8-wide and 4-row blocks.

use recur_kernels::half::{naive, HalfKind, HalfMat};

mod support;
use support::values;

#[test]
fn rounding_is_nearest_within_half_an_ulp() {
    for (kind, ulp) in [
        (HalfKind::F16, 2f32.powi(-10)),
        (HalfKind::Bf16, 2f32.powi(-7)),
    ] {
        for &x in &values(10_000, 1) {
            let y = kind.decode(kind.encode(x));
            // |x - y| <= half an ulp of y's binade (normal numbers; the values are >= 2^-24).
            let binade = 2f32.powi(x.abs().log2().floor() as i32);
            assert!(
                (x - y).abs() <= 0.5 * ulp * binade * 1.000_001,
                "{kind:?} {x} -> {y}"
            );
        }
        assert_eq!(kind.decode(kind.encode(0.0)), 0.0);
        assert_eq!(kind.decode(kind.encode(-1.5)), -1.5);
    }
    assert!(HalfKind::F16
        .decode(HalfKind::F16.encode(1e6))
        .is_infinite());
    assert_eq!(HalfKind::Bf16.decode(HalfKind::Bf16.encode(1e6)), 999_424.0);
}

#[test]
fn fast_path_matches_naive_and_f64_on_awkward_sizes() {
    let mut cases = 0;
    for kind in [HalfKind::F16, HalfKind::Bf16] {
        for &rows in &[0usize, 1, 3, 4, 5, 8, 17, 64] {
            for &cols in &[0usize, 1, 7, 8, 9, 16, 17, 24, 33, 40, 256] {
                for &n in &[0usize, 1, 2, 3] {
                    let (ldx, ldy) = (cols + 3, rows + 2);
                    let w = HalfMat::from_f32(&values(rows * cols, 7), rows, cols, kind);
                    let x = values(n * ldx, 11);
                    let y0 = values(n * ldy, 13);
                    let wf = w.to_f32();
                    for accumulate in [false, true] {
                        let mut fast = y0.clone();
                        w.matvecs(n, &x, ldx, &mut fast, ldy, accumulate);
                        let mut slow = y0.clone();
                        naive::matvecs(&w, n, &x, ldx, &mut slow, ldy, accumulate);
                        for r in 0..n {
                            for j in 0..rows {
                                let mut exact = if accumulate {
                                    y0[r * ldy + j] as f64
                                } else {
                                    0.0
                                };
                                let mut mag = exact.abs();
                                for c in 0..cols {
                                    let p = wf[j * cols + c] as f64 * x[r * ldx + c] as f64;
                                    exact += p;
                                    mag += p.abs();
                                }
                                // f32 accumulation of `cols` products: a few ulps of the sum of
                                // magnitudes.
                                let tol = 1e-6 * (cols as f64 + 2.0) * mag.max(1e-30);
                                for (what, got) in [("fast", &fast), ("naive", &slow)] {
                                    let g = got[r * ldy + j] as f64;
                                    assert!(
                                        (g - exact).abs() <= tol,
                                        "{what} {kind:?} rows {rows} cols {cols} n {n} r {r} j {j}: {g} vs {exact}"
                                    );
                                }
                            }
                            // Padding between rows is left alone.
                            for j in rows..ldy {
                                assert_eq!(fast[r * ldy + j], y0[r * ldy + j]);
                            }
                        }
                        cases += 1;
                    }
                }
            }
        }
    }
    assert_eq!(cases, 2 * 8 * 11 * 4 * 2);
}

#[test]
fn stores_half_the_bytes() {
    let w = HalfMat::from_f32(&values(12, 3), 3, 4, HalfKind::Bf16);
    assert_eq!(w.bits().len(), 12);
    assert_eq!((w.rows(), w.cols(), w.kind()), (3, 4, HalfKind::Bf16));
}
