//! Tick generation on awkward ranges: every result must be increasing, cover the data, use
//! 1-2-5 steps (or decades on log axes) and have distinct labels that read back as the tick
//! values.

use recur_plot::ticks::{linear_ticks, linear_ticks_within, log_ticks, nice_step, AxisTicks};

/// Parses a label ("−1.5e−9", "0.001") back to a number.
fn parse(label: &str) -> f64 {
    label
        .replace('\u{2212}', "-")
        .parse()
        .unwrap_or_else(|_| panic!("label {label:?} is not a number"))
}

/// Whether `step` is 1, 2 or 5 times a power of ten (to 1e-6 relative: a step measured as the
/// difference of two large ticks loses digits).
fn is_nice(step: f64) -> bool {
    let e = step.log10().floor();
    let m = step / 10f64.powf(e);
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .any(|n| (m - n).abs() < 1e-6 * n)
}

fn check_common(t: &AxisTicks, lo: f64, hi: f64, max: usize) {
    let (dlo, dhi) = (lo.min(hi), lo.max(hi));
    assert!(t.lo < t.hi, "empty axis {t:?}");
    assert!(
        t.lo <= dlo && t.hi >= dhi,
        "axis [{}, {}] does not cover [{dlo}, {dhi}]",
        t.lo,
        t.hi
    );
    // At most `max`, except that a linear range straddling zero always gets -s, 0, s.
    assert!(
        t.major.len() >= 2 && t.major.len() <= max.max(3),
        "{} ticks for max {max}: {t:?}",
        t.major.len()
    );
    for w in t.major.windows(2) {
        assert!(w[0].value < w[1].value, "ticks not increasing: {t:?}");
        assert_ne!(w[0].label, w[1].label, "duplicate labels: {t:?}");
    }
    for w in t.minor.windows(2) {
        assert!(w[0] < w[1], "minor ticks not increasing: {t:?}");
    }
    for m in &t.major {
        assert!(
            m.value >= t.lo && m.value <= t.hi,
            "tick {} outside the axis",
            m.value
        );
        let back = parse(&m.label);
        let tol = if t.log {
            m.value.abs() * 1e-9
        } else {
            (t.hi - t.lo) * 1e-6
        };
        assert!(
            (back - m.value).abs() <= tol,
            "label {:?} for {}",
            m.label,
            m.value
        );
        assert!(
            !m.label.contains('-'),
            "ASCII hyphen instead of minus sign in {:?}",
            m.label
        );
    }
    for &v in &t.minor {
        assert!(
            v >= t.lo * (1.0 - 1e-12) && v <= t.hi * (1.0 + 1e-12),
            "minor tick {v} outside the axis"
        );
    }
}

fn check_linear(lo: f64, hi: f64, max: usize) -> AxisTicks {
    let t = linear_ticks(lo, hi, max);
    check_common(&t, lo, hi, max);
    assert!(!t.log);
    let step = t.major[1].value - t.major[0].value;
    assert!(is_nice(step), "step {step} is not 1-2-5: {t:?}");
    for w in t.major.windows(2) {
        assert!(
            ((w[1].value - w[0].value) - step).abs() <= step * 1e-6,
            "uneven steps: {t:?}"
        );
    }
    // The axis ends on ticks, and does not overshoot the data by a whole step.
    assert_eq!(t.lo, t.major[0].value);
    assert_eq!(t.hi, t.major[t.major.len() - 1].value);
    if hi > lo {
        assert!(
            t.lo >= lo - step && t.hi <= hi + step,
            "axis overshoots: {t:?}"
        );
    }
    t
}

#[test]
fn linear_ranges() {
    for &(lo, hi) in &[
        (0.0, 1.0),
        (0.0, 2000.0),
        (1.3, 4.2),
        (-3.0, -1.0),
        (-7.5, 12.25),
        (1e-9, 1e9),
        (-1e9, 1e-9),
        (1e-12, 3e-12),
        (123_456.0, 123_457.0),
        (0.999_999, 1.000_001),
        (1.0, 1.0 + 1e-9),
        (-1e300, 1e300),
        (1e-300, 3e-300),
        (3.0, -2.0),
    ] {
        for max in [2, 3, 5, 8, 12] {
            check_linear(lo, hi, max);
        }
    }
}

#[test]
fn zero_width_and_non_finite_ranges() {
    let t = check_linear(0.0, 0.0, 6);
    assert!(t.lo < 0.0 && t.hi > 0.0);
    let t = check_linear(5.0, 5.0, 6);
    assert!(t.lo < 5.0 && t.hi > 5.0 && t.hi - t.lo <= 2.0, "{t:?}");
    let t = check_linear(-2e-7, -2e-7, 6);
    assert!(t.lo < -2e-7 && t.hi > -2e-7, "{t:?}");
    let t = linear_ticks(f64::NAN, 1.0, 6);
    assert_eq!((t.lo, t.hi), (0.0, 1.0));
    let t = linear_ticks(0.0, f64::INFINITY, 6);
    assert_eq!((t.lo, t.hi), (0.0, 1.0));
    // Subnormal data: still an increasing, covering axis.
    let t = linear_ticks(5e-324, 1e-323, 6);
    assert!(t.lo <= 5e-324 && t.hi >= 1e-323 && t.major.len() >= 2);
}

#[test]
fn within_ranges_keep_their_ends() {
    for &(lo, hi) in &[
        (0.0, 1.0),
        (0.0, 37.0),
        (-0.73, 0.41),
        (1e-9, 1e9),
        (2.01, 2.02),
        (5.0, 5.0),
        (7.0, 3.0),
    ] {
        let t = linear_ticks_within(lo, hi, 8);
        check_common(&t, lo, hi, 8);
        if lo != hi {
            assert_eq!((t.lo, t.hi), (lo.min(hi), lo.max(hi)));
        }
        let step = t.major[1].value - t.major[0].value;
        assert!(is_nice(step) || t.major.len() == 2, "step {step}: {t:?}");
    }
}

#[test]
fn log_ranges() {
    for &(lo, hi) in &[
        (1e-9, 1e9),
        (1e-300, 1e300),
        (0.001, 1.0),
        (1.0, 1000.0),
        (3.0, 300.0),
        (1.2, 4.3),
        (0.5, 0.7),
        (1.0, 1.0),
        (2.0, 2.0),
        (0.0123, 0.0125),
        (7.0, 11.0),
        (99.0, 101.0),
        (5e-5, 3e-2),
        (1e5, 2e5),
    ] {
        for max in [2, 4, 6, 10] {
            let t = log_ticks(lo, hi, max);
            check_common(&t, lo, hi, max);
            assert!(t.log && t.lo > 0.0);
        }
    }
}

#[test]
fn log_axes_use_decades_when_they_span_several() {
    let t = log_ticks(0.0042, 37.0, 10);
    let values: Vec<f64> = t.major.iter().map(|m| m.value).collect();
    assert_eq!(values, [0.01, 0.1, 1.0, 10.0]);
    assert_eq!((t.lo, t.hi), (0.004, 40.0));
    // Minor ticks at 2..9 x 10^k.
    assert!(t.minor.contains(&0.005) && t.minor.contains(&20.0) && t.minor.contains(&0.09));

    // 18 decades with at most 6 labels: every 5 decades, the others as minor ticks.
    let t = log_ticks(1e-9, 1e9, 6);
    let labels: Vec<&str> = t.major.iter().map(|m| m.label.as_str()).collect();
    assert_eq!(labels, ["1e\u{2212}5", "1", "1e5"]);
    assert!(t.minor.contains(&1e-9) && t.minor.contains(&1e9));

    // Within a decade: 1-2-5 or every multiple.
    let t = log_ticks(1.2, 4.3, 10);
    let values: Vec<f64> = t.major.iter().map(|m| m.value).collect();
    assert_eq!(values, [1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!((t.lo, t.hi), (1.0, 5.0));
}

#[test]
fn nice_step_is_the_smallest_nice_value_above() {
    let mut prev = 0.0;
    for k in -300..300 {
        let raw = 1.37f64 * 10f64.powi(k / 3) * (1 + k.rem_euclid(3)) as f64;
        let s = nice_step(raw);
        assert!(
            s >= raw * (1.0 - 1e-12) && s < raw * 2.5 + 1e-300,
            "nice_step({raw}) = {s}"
        );
        assert!(is_nice(s));
        if raw > prev {
            prev = raw;
        }
    }
}
