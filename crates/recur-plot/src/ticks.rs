//! Axis ranges, tick positions and tick labels.
//!
//! Linear axes use "nice" steps of 1, 2 or 5 times a power of ten; log10 axes put labelled
//! ticks on decades (every 1, 2, 5, 10, ... decades when there are many) with unlabelled
//! minor ticks at 2..9 times each decade, and fall back to 1-2-5 or 1..9 labels when the data
//! spans less than a decade or two. Labels use the typographic minus sign (U+2212).

/// One labelled tick.
#[derive(Clone, Debug, PartialEq)]
pub struct Tick {
    /// Position in data units.
    pub value: f64,
    /// Text drawn next to the tick.
    pub label: String,
}

/// The drawn interval of one axis and its ticks.
#[derive(Clone, Debug, PartialEq)]
pub struct AxisTicks {
    /// Data value at the start of the axis (left or bottom), always `< hi`.
    pub lo: f64,
    /// Data value at the end of the axis (right or top).
    pub hi: f64,
    /// Labelled ticks, strictly increasing, all inside `[lo, hi]`.
    pub major: Vec<Tick>,
    /// Unlabelled minor ticks (log axes), strictly increasing, inside `[lo, hi]`.
    pub minor: Vec<f64>,
    /// Whether positions are mapped through log10.
    pub log: bool,
}

impl AxisTicks {
    /// Fraction of the axis length at which `v` lies (0 at `lo`, 1 at `hi`); NaN for values a
    /// log axis cannot show (zero, negative, NaN).
    pub fn fraction(&self, v: f64) -> f64 {
        if self.log {
            if v > 0.0 {
                (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
            } else {
                f64::NAN
            }
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }
}

/// The smallest step of the form {1, 2, 5} x 10^k that is `>= raw` (`raw > 0` and finite;
/// anything else gives 1).
pub fn nice_step(raw: f64) -> f64 {
    if !(raw > 0.0 && raw.is_finite()) {
        return 1.0;
    }
    let mut exp = raw.log10().floor();
    // Guard against log10 rounding (e.g. log10(1000) = 2.9999999999999996).
    if 10f64.powf(exp) > raw {
        exp -= 1.0;
    }
    for _ in 0..3 {
        let base = 10f64.powf(exp);
        for m in [1.0, 2.0, 5.0] {
            let s = m * base;
            if s >= raw * (1.0 - 1e-12) {
                return s;
            }
        }
        exp += 1.0;
    }
    10f64.powf(exp)
}

/// The next larger nice step after `step` (1 -> 2 -> 5 -> 10).
fn next_step(step: f64) -> f64 {
    nice_step(step * 1.000_001)
}

/// Orders a data range and widens a degenerate one. Non-finite input gives (0, 1).
fn sanitize(lo: f64, hi: f64) -> (f64, f64) {
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    // Keep spans representable: an interval wider than f64::MAX cannot be divided into ticks.
    let (lo, hi) = (lo.max(-f64::MAX / 4.0), hi.min(f64::MAX / 4.0));
    let scale = lo.abs().max(hi.abs());
    if hi - lo <= scale * 1e-12 {
        let mid = lo / 2.0 + hi / 2.0;
        if mid == 0.0 {
            return (-1.0, 1.0);
        }
        let d = mid.abs() * 0.1;
        return (mid - d, mid + d);
    }
    (lo, hi)
}

/// Ticks for a linear axis that covers `[lo, hi]` (in either order), widened outwards to the
/// nearest multiples of the step, with at most `max_ticks` (at least 2) labelled ticks. A zero
/// width range is widened by 10% of its value (or to [-1, 1] around zero); a non-finite one
/// becomes [0, 1].
pub fn linear_ticks(lo: f64, hi: f64, max_ticks: usize) -> AxisTicks {
    let (lo, hi) = sanitize(lo, hi);
    let max_ticks = max_ticks.max(2);
    let mut step = nice_step((hi - lo) / (max_ticks - 1) as f64);
    loop {
        let a = (lo / step).floor();
        let b = (hi / step).ceil();
        // A range that straddles zero needs three ticks however large the step; stop growing
        // it once it exceeds the range.
        if b - a < max_ticks as f64 || step >= hi - lo || !next_step(step).is_finite() {
            let values: Vec<f64> = (0..=((b - a) as i64))
                .map(|k| (a + k as f64) * step)
                .collect();
            return finish_linear(values, step);
        }
        step = next_step(step);
    }
}

/// Ticks for a linear axis that spans exactly `[lo, hi]` (in either order): only the nice
/// multiples inside the range are labelled (at least two when possible). Used for heat map
/// extents and color bars, whose ends are fixed by the data.
pub fn linear_ticks_within(lo: f64, hi: f64, max_ticks: usize) -> AxisTicks {
    let (lo, hi) = sanitize(lo, hi);
    let max_ticks = max_ticks.max(2);
    let mut step = nice_step((hi - lo) / (max_ticks - 1) as f64);
    let eps = (hi - lo) * 1e-9;
    // Shrink the step while fewer than two ticks fit, grow it while too many do.
    for _ in 0..8 {
        let a = ((lo - eps) / step).ceil();
        let b = ((hi + eps) / step).floor();
        if b - a >= 1.0 {
            break;
        }
        step = nice_step(step * 0.3);
    }
    loop {
        let a = ((lo - eps) / step).ceil();
        let b = ((hi + eps) / step).floor();
        if b - a < max_ticks as f64 || step >= hi - lo || !next_step(step).is_finite() {
            let n = (b - a).max(-1.0) as i64;
            let values: Vec<f64> = (0..=n).map(|k| (a + k as f64) * step).collect();
            let mut t = finish_linear(values, step);
            t.lo = lo;
            t.hi = hi;
            for m in &mut t.major {
                m.value = m.value.clamp(lo, hi);
            }
            return t;
        }
        step = next_step(step);
    }
}

fn finish_linear(mut values: Vec<f64>, step: f64) -> AxisTicks {
    for v in &mut values {
        if v.abs() < step * 1e-9 {
            *v = 0.0;
        }
    }
    let labels = linear_labels(&values, step);
    let lo = values.first().copied().unwrap_or(0.0);
    let hi = values.last().copied().unwrap_or(1.0);
    AxisTicks {
        lo,
        hi,
        major: values
            .into_iter()
            .zip(labels)
            .map(|(value, label)| Tick { value, label })
            .collect(),
        minor: Vec::new(),
        log: false,
    }
}

/// Labels for equally spaced values `step` apart: fixed decimals for moderate magnitudes,
/// otherwise scientific notation with the fewest mantissa digits that keep every label
/// accurate to a millionth of the step.
fn linear_labels(values: &[f64], step: f64) -> Vec<String> {
    let mag = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if (1e-4..1e6).contains(&mag) && step >= mag * 1e-12 {
        let decimals = (-(step.log10() + 1e-9).floor()).max(0.0) as usize;
        return values
            .iter()
            .map(|&v| minus(&format!("{v:.decimals$}")))
            .collect();
    }
    for p in 0..=16usize {
        let labels: Vec<String> = values.iter().map(|&v| sci(v, p)).collect();
        let ok = values.iter().zip(&labels).all(|(&v, l)| {
            let parsed: f64 = l.replace('\u{2212}', "-").parse().unwrap_or(f64::NAN);
            (parsed - v).abs() <= step * 1e-6
        });
        if ok {
            return labels;
        }
    }
    values.iter().map(|&v| sci(v, 16)).collect()
}

/// `v` in scientific notation with `p` mantissa decimals ("2e8", "1.5e−9"); zero is "0".
fn sci(v: f64, p: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    minus(&format!("{v:.p$e}"))
}

/// Replaces ASCII hyphen-minus with the minus sign U+2212.
fn minus(s: &str) -> String {
    s.replace('-', "\u{2212}")
}

/// Label for `m` x 10^`e` (m in 1..=9) on a log axis: plain decimals for 1e-3..1e4,
/// scientific notation outside ("1e5", "2e−6").
fn log_label(m: u32, e: i32) -> String {
    if (-3..=4).contains(&e) {
        let v = m as f64 * pow10(e);
        let decimals = (-e).max(0) as usize;
        minus(&format!("{v:.decimals$}"))
    } else {
        minus(&format!("{m}e{e}"))
    }
}

/// 10^e, correctly rounded (`powi` can be off by an ulp or more for large |e|).
fn pow10(e: i32) -> f64 {
    format!("1e{e}").parse().unwrap_or(f64::NAN)
}

/// `floor(log10(v))` robust to rounding at exact powers of ten.
fn decade_of(v: f64) -> i32 {
    let mut e = v.log10().floor() as i32;
    if pow10(e) > v {
        e -= 1;
    }
    if pow10(e + 1) <= v {
        e += 1;
    }
    e
}

/// Ticks for a log10 axis covering `[lo, hi]` (in either order; both must be > 0 and finite,
/// otherwise [1, 10] is used). The axis ends are widened to the nearest m x 10^k (m in 1..9).
/// Decade labels when the range spans at least two decades (every 1, 2, 5, ... decades so that
/// at most `max_ticks` are labelled); 1-2-5 or 1..9 labels for narrower ranges; linear nice
/// ticks (still log-mapped) for ranges narrower than a factor of two.
pub fn log_ticks(lo: f64, hi: f64, max_ticks: usize) -> AxisTicks {
    let max_ticks = max_ticks.max(2);
    let (mut lo, mut hi) = if lo > 0.0 && hi > 0.0 && lo.is_finite() && hi.is_finite() {
        (lo.min(hi), lo.max(hi))
    } else {
        (1.0, 10.0)
    };
    if hi / lo < 1.0 + 1e-9 {
        lo /= 1.25;
        hi *= 1.25;
    }
    lo = lo.max(f64::MIN_POSITIVE);
    hi = hi.min(1e307);
    if hi / lo < 2.0 {
        let mut t = linear_ticks(lo, hi, max_ticks);
        if t.lo <= 0.0 {
            t = linear_ticks_within(lo, hi, max_ticks);
        }
        t.log = true;
        return t;
    }
    // Axis ends on multiples m x 10^e.
    let e_lo = decade_of(lo);
    let m_lo = ((lo / pow10(e_lo)) * (1.0 + 1e-12)).floor().clamp(1.0, 9.0);
    let axis_lo = m_lo * pow10(e_lo);
    let e_hi = decade_of(hi);
    let m_hi = ((hi / pow10(e_hi)) * (1.0 - 1e-12)).ceil().clamp(1.0, 10.0);
    let axis_hi = m_hi * pow10(e_hi);
    let inside = |v: f64| v >= axis_lo * (1.0 - 1e-12) && v <= axis_hi * (1.0 + 1e-12);

    let first_dec = if m_lo == 1.0 { e_lo } else { e_lo + 1 };
    let last_dec = if m_hi == 10.0 { e_hi + 1 } else { e_hi };
    let n_dec = last_dec - first_dec + 1;
    let mut major = Vec::new();
    let mut minor = Vec::new();
    if n_dec >= 3 {
        // Decades every `every` decades.
        let count = |every: i32| {
            (first_dec..=last_dec)
                .filter(|e| e.rem_euclid(every) == 0)
                .count()
        };
        let mut every = 1i32;
        while count(every) > max_ticks {
            every = next_step(every as f64).round() as i32;
        }
        // When no spacing gives two aligned decades within the limit, label the end decades.
        let labelled = |e: i32| {
            if count(every) >= 2 {
                e.rem_euclid(every) == 0
            } else {
                e == first_dec || e == last_dec
            }
        };
        for e in first_dec..=last_dec {
            if labelled(e) {
                major.push(Tick {
                    value: pow10(e),
                    label: log_label(1, e),
                });
            } else {
                minor.push(pow10(e));
            }
        }
        if every == 1 && n_dec <= 12 {
            for e in (first_dec - 1)..=last_dec {
                for m in 2..=9 {
                    let v = m as f64 * pow10(e);
                    if inside(v) {
                        minor.push(v);
                    }
                }
            }
        }
        minor.sort_by(f64::total_cmp);
    } else {
        // Few decades: label 1-2-5 multiples, or every multiple if that gives too few.
        let all: Vec<(u32, i32)> = (e_lo..=e_hi + 1)
            .flat_map(|e| (1..=9).map(move |m| (m, e)))
            .filter(|&(m, e)| inside(m as f64 * pow10(e)))
            .collect();
        let one_two_five: Vec<(u32, i32)> = all
            .iter()
            .copied()
            .filter(|&(m, _)| matches!(m, 1 | 2 | 5))
            .collect();
        let decades: Vec<(u32, i32)> = all.iter().copied().filter(|&(m, _)| m == 1).collect();
        let chosen = if all.len() <= max_ticks.min(8) {
            all.clone()
        } else if one_two_five.len() >= 2 && one_two_five.len() <= max_ticks {
            one_two_five
        } else if decades.len() >= 2 && decades.len() <= max_ticks {
            decades
        } else {
            // Too few candidates for the limit: the two ends.
            let ends = [all[0], all[all.len() - 1]];
            ends.to_vec()
        };
        for &(m, e) in &all {
            let v = m as f64 * pow10(e);
            if chosen.contains(&(m, e)) {
                major.push(Tick {
                    value: v,
                    label: log_label(m, e),
                });
            } else {
                minor.push(v);
            }
        }
    }
    AxisTicks {
        lo: axis_lo,
        hi: axis_hi,
        major,
        minor,
        log: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(1.0), 1.0);
        assert_eq!(nice_step(1.01), 2.0);
        assert_eq!(nice_step(7.0), 10.0);
        assert_eq!(nice_step(1000.0), 1000.0);
        assert_eq!(nice_step(0.0), 1.0);
    }

    #[test]
    fn labels_are_plain_or_scientific() {
        let t = linear_ticks(0.0, 1.0, 6);
        let l: Vec<&str> = t.major.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(l, ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        let t = linear_ticks(-2.0, 3.0, 6);
        let l: Vec<&str> = t.major.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(l, ["\u{2212}2", "\u{2212}1", "0", "1", "2", "3"]);
        let t = linear_ticks(0.0, 1e9, 6);
        let l: Vec<&str> = t.major.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(l, ["0", "2e8", "4e8", "6e8", "8e8", "1e9"]);
        let t = log_ticks(1e-4, 1e2, 10);
        let l: Vec<&str> = t.major.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(l, ["1e\u{2212}4", "0.001", "0.01", "0.1", "1", "10", "100"]);
    }
}
