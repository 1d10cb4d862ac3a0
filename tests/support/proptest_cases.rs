//! The proptest configuration of the property tests: a small default number of cases (the
//! files run in seconds in CI), `PROPTEST_CASES=N` for long runs (docs/fuzzing.md).

use proptest::prelude::ProptestConfig;

/// `default_cases` cases, or `PROPTEST_CASES` when set; no failure files are written.
pub fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}
