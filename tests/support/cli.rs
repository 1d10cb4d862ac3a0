//! Running the `recur` binary from the command-line tests.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::process::{Command, Output};

/// Runs `recur` with `args` and returns what it did.
pub fn recur<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_recur"))
        .args(args)
        .output()
        .expect("run recur")
}

/// The standard output of a run that must have succeeded (fails with both outputs otherwise).
pub fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "status {:?}\nstdout:\n{out}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// A path as a command-line argument.
pub fn s(p: &std::path::Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// Checks a run failed as the command line should: status 2, one line `error: ...` holding
/// `want`, no panic.
pub fn fails_with(o: &Output, want: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(want), "expected {want:?} in: {err}");
}
