//! Simulates a short training run with the progress display: a redrawn bar on a terminal, a
//! plain log line every 2 seconds otherwise (try `... 2>log.txt`).
//!
//! ```text
//! cargo run --release -p recur-plot --example progress
//! ```

use std::time::Duration;

use recur_plot::Progress;

fn main() {
    let steps = 120u64;
    let mut p = Progress::new(steps, "tok").log_every(Duration::from_secs(2));
    let mut loss = 4.2;
    for step in 1..=steps {
        std::thread::sleep(Duration::from_millis(40));
        loss = 1.3 + (loss - 1.3) * 0.97;
        p.update(step, loss, step * 64 * 128);
        if step % 40 == 0 {
            p.println(&format!("step {step}: validation loss {:.4}", loss + 0.1));
        }
    }
    p.finish();
}
