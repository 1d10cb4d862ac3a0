//! A small generated English-like text for the command-line tests (no third-party text).

/// A text from a tiny grammar, "<subject> <verb> <object>." with words drawn by a small
/// deterministic generator.
pub fn grammar_text(n: usize, seed: u64) -> String {
    let subjects = ["the cat", "a dog", "my friend", "she"];
    let verbs = ["sees", "likes", "eats", "finds"];
    let objects = ["fish", "the ball", "bread", "a tree"];
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 33) as usize % 4
    };
    let mut out = String::new();
    for k in 0..n {
        out += subjects[next()];
        out.push(' ');
        out += verbs[next()];
        out.push(' ');
        out += objects[next()];
        out.push_str(if k % 5 == 4 { ".\n" } else { ". " });
    }
    out
}
