//! Metrics as text and JSON.

use super::Metrics;

/// Whether the metric `name` counts things (examples, tokens, parameters): written to JSON as
/// an integer.
fn is_count(name: &str) -> bool {
    const COUNTS: [&str; 10] = [
        "examples",
        "windows",
        "sentences",
        "sources",
        "vocab_size",
        "num_params",
        "valid_targets",
        "chars",
        "words",
        "tokens",
    ];
    COUNTS.contains(&name)
        || ["_chars", "_words", "_tokens"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// A metric's JSON: counts as integers (`"examples": 197`, not `197.0`), other values as
/// [`json_f64`].
pub fn metric_json(name: &str, v: f64) -> serde_json::Value {
    if is_count(name) && v.fract() == 0.0 && (0.0..9.007_199_254_740_992e15).contains(&v) {
        (v as u64).into()
    } else {
        json_f64(v)
    }
}

/// JSON has no NaN: non-finite numbers are written as null.
pub fn json_f64(x: f64) -> serde_json::Value {
    if x.is_finite() {
        x.into()
    } else {
        serde_json::Value::Null
    }
}

/// The metrics as `name value` pairs for a log line.
pub fn fmt_metrics(m: &Metrics) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {}", fmt_value(*v)))
        .collect::<Vec<_>>()
        .join("  ")
}

/// A metric's value for a log line: integers without decimals, very large or small values in
/// scientific notation, others with four decimals.
pub fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_json_integers() {
        assert_eq!(metric_json("examples", 197.0).to_string(), "197");
        assert_eq!(metric_json("valid_chars", 12.0).to_string(), "12");
        assert_eq!(metric_json("accuracy", 1.0).to_string(), "1.0");
        assert_eq!(metric_json("valid_loss", f64::NAN), serde_json::Value::Null);
    }
}
