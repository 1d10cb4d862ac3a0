//! Small helpers that several task files use. Like `opts`, it imports no other file of the
//! command line, so that no task file needs to import a sibling.

/// A 64-bit FNV-1a hash of the text: the checkpoint's record of which data it was trained on.
pub fn fingerprint(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in text.as_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// -log softmax(row)[k], in f64.
pub fn neg_log_softmax(row: &[f32], k: usize) -> f64 {
    let m = row.iter().fold(f64::NEG_INFINITY, |a, &x| a.max(x as f64));
    let sum: f64 = row.iter().map(|&x| (x as f64 - m).exp()).sum();
    sum.ln() - (row[k] as f64 - m)
}
