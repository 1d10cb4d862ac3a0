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
