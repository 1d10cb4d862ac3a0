//! The progress display of a training run, on standard error.
//!
//! On a terminal, a bar at the bottom (the `indicatif` crate), with the log lines above it:
//!
//! ```text
//! [=========>          ]  450/1000  45%  12.5 step/s  3.4k tok/s  loss 1.2345  36s ETA 44s
//! ```
//!
//! Anywhere else (a log file, a pipe) a plain line at most every `log_every` (default 10 s)
//! and one at the end:
//!
//! ```text
//! step 450/1000 (45.0%)  12.5 step/s  3.4k tok/s  loss 1.2345  elapsed 36s  ETA 44s
//! ```
//!
//! Rates are averages since the start of this process's part of the run (the steps of a
//! resumed run before it do not count); the loss is the mean of the last 50 steps.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Steps whose mean loss is shown.
const LOSS_WINDOW: usize = 50;

/// The progress of a run of `total` steps; see the module documentation.
pub struct Progress {
    total: u64,
    unit: String,
    bar: Option<ProgressBar>,
    log_every: Duration,
    start: Instant,
    start_step: u64,
    last_line: Instant,
    step: u64,
    units: u64,
    losses: VecDeque<f64>,
}

impl Progress {
    /// Progress on standard error, as a bar when it is a terminal; `unit` names what the
    /// units of [`Progress::update`] count (e.g. "tok").
    pub fn new(total: u64, unit: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "[{bar:20}] {pos:>4}/{len}  {percent:>3}%  {msg}  {elapsed} ETA {eta}",
                )
                .expect("a valid progress template")
                .progress_chars("=> "),
            );
            bar
        });
        let now = Instant::now();
        Progress {
            total,
            unit: unit.to_string(),
            bar,
            log_every: Duration::from_secs(10),
            start: now,
            start_step: 0,
            last_line: now,
            step: 0,
            units: 0,
            losses: VecDeque::new(),
        }
    }

    /// The interval between lines when not on a terminal.
    pub fn log_every(mut self, every: Duration) -> Progress {
        self.log_every = every;
        self
    }

    /// The step the run starts at (when resuming): rates and the ETA count the steps after it.
    pub fn start_step(mut self, step: u64) -> Progress {
        self.start_step = step;
        self.step = step;
        if let Some(b) = &self.bar {
            b.set_position(step);
            b.reset_eta();
        }
        self
    }

    /// `step` steps are done, the last with loss `loss`, and `units` units since the start.
    pub fn update(&mut self, step: u64, loss: f64, units: u64) {
        self.step = step;
        self.units = units;
        self.losses.push_back(loss);
        if self.losses.len() > LOSS_WINDOW {
            self.losses.pop_front();
        }
        let now = Instant::now();
        match &self.bar {
            Some(b) => {
                b.set_message(self.rates_text(now));
                b.set_position(step);
            }
            None if now.duration_since(self.last_line) >= self.log_every => {
                self.last_line = now;
                eprintln!("{}", self.line(now, false));
            }
            None => {}
        }
    }

    /// Runs `f` (which prints) with the bar cleared, then redraws it.
    pub fn suspend(&self, f: impl FnOnce()) {
        match &self.bar {
            Some(b) => b.suspend(f),
            None => f(),
        }
    }

    /// Shows the final state: the bar left on screen, or the last line.
    pub fn finish(self) {
        match &self.bar {
            Some(b) => {
                b.set_message(self.rates_text(Instant::now()));
                b.finish();
            }
            None => eprintln!("{}", self.line(Instant::now(), true)),
        }
    }

    /// Leaves the bar as it is (a failed run), without a last line.
    pub fn abandon(self) {
        if let Some(b) = &self.bar {
            b.abandon();
        }
    }

    fn loss(&self) -> Option<f64> {
        (!self.losses.is_empty())
            .then(|| self.losses.iter().sum::<f64>() / self.losses.len() as f64)
    }

    /// Steps per second, units per second and the time left, from the averages since the start.
    fn rates(&self, now: Instant) -> (Option<f64>, Option<f64>, Option<Duration>) {
        let secs = now.duration_since(self.start).as_secs_f64();
        let done = self.step.saturating_sub(self.start_step);
        if secs <= 0.0 || done == 0 {
            return (None, None, None);
        }
        let sps = done as f64 / secs;
        let left = self.total.saturating_sub(self.step) as f64 / sps;
        (
            Some(sps),
            Some(self.units as f64 / secs),
            Some(Duration::from_secs_f64(left.min(1e9))),
        )
    }

    fn rates_text(&self, now: Instant) -> String {
        let (sps, ups, _) = self.rates(now);
        let mut s = format!("{} step/s  {} {}/s", rate(sps), rate(ups), self.unit);
        if let Some(l) = self.loss() {
            s.push_str(&format!("  loss {l:.4}"));
        }
        s
    }

    fn line(&self, now: Instant, done: bool) -> String {
        let frac = if self.total == 0 {
            1.0
        } else {
            self.step as f64 / self.total as f64
        };
        let (_, _, eta) = self.rates(now);
        let mut s = format!(
            "{} {}/{} ({:.1}%)  {}  elapsed {}",
            if done { "done" } else { "step" },
            self.step,
            self.total,
            frac * 100.0,
            self.rates_text(now),
            duration(now.duration_since(self.start))
        );
        if !done {
            s.push_str(&format!("  ETA {}", eta.map_or("?".into(), duration)));
        }
        s
    }
}

/// A rate with an SI suffix: "0.25", "45.6", "123", "3.4k", "12.3k", "123k", "1.2M"; "?" when
/// unknown.
pub fn rate(v: Option<f64>) -> String {
    let Some(v) = v.filter(|v| v.is_finite()) else {
        return "?".into();
    };
    let (v, suffix) = if v >= 999.5e6 {
        (v / 1e9, "G")
    } else if v >= 999.5e3 {
        (v / 1e6, "M")
    } else if v >= 999.5 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    if v < 0.995 && suffix.is_empty() {
        format!("{v:.2}")
    } else if v < 99.95 {
        format!("{v:.1}{suffix}")
    } else {
        format!("{v:.0}{suffix}")
    }
}

/// A duration as "42s", "3m07s", "1h02m" or "2d05h" (rounded down to the shown unit).
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_durations_read_well() {
        assert_eq!(rate(None), "?");
        assert_eq!(rate(Some(f64::NAN)), "?");
        assert_eq!(rate(Some(0.25)), "0.25");
        assert_eq!(rate(Some(45.61)), "45.6");
        assert_eq!(rate(Some(123.4)), "123");
        assert_eq!(rate(Some(3_400.0)), "3.4k");
        assert_eq!(rate(Some(123_000.0)), "123k");
        assert_eq!(rate(Some(1.2e6)), "1.2M");
        assert_eq!(duration(Duration::from_secs(42)), "42s");
        assert_eq!(duration(Duration::from_secs(187)), "3m07s");
        assert_eq!(duration(Duration::from_secs(3720)), "1h02m");
        assert_eq!(
            duration(Duration::from_secs(2 * 86_400 + 5 * 3600)),
            "2d05h"
        );
    }

    #[test]
    fn the_plain_line_counts_the_steps_of_this_process() {
        let mut p = Progress::new(1000, "tok").start_step(400);
        p.bar = None;
        p.start -= Duration::from_secs(10);
        p.update(450, 1.0, 5000);
        p.update(450, 2.0, 5000);
        let line = p.line(Instant::now(), false);
        // 50 steps in about 10 s: 5 step/s, 500 tok/s, 550 steps left: about 110 s.
        assert!(
            line.starts_with("step 450/1000 (45.0%)  5.0 step/s  500 tok/s  loss 1.5000"),
            "{line}"
        );
        assert!(
            line.contains("elapsed 10s") && line.contains("ETA 1m"),
            "{line}"
        );
        assert!(p.line(Instant::now(), true).starts_with("done 450/1000"));
    }
}
