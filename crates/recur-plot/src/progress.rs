//! A progress display for long training runs.
//!
//! On a terminal it keeps one line at the bottom, redrawn at most ten times a second:
//!
//! ```text
//! [=========>          ]  450/1000  45%  12.5 step/s  3.4k tok/s  loss 1.2345  36s ETA 44s
//! ```
//!
//! Anywhere else (a log file, a pipe) it writes a plain line at most every `log_every`
//! (default 10 s) and one at the end:
//!
//! ```text
//! step 450/1000 (45.0%)  12.5 step/s  3.4k tok/s  loss 1.2345  elapsed 36s  ETA 44s
//! ```
//!
//! Rates are averages since the start; the loss is the mean of the most recent updates
//! (`loss_window`, default 50).

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// A source of elapsed time, injectable for tests.
pub trait Clock: Send {
    /// Time since some fixed origin; must not decrease.
    fn now(&self) -> Duration;
}

/// The real clock ([`Instant`] based).
pub struct SystemClock(Instant);

impl SystemClock {
    /// A clock whose origin is now.
    pub fn new() -> SystemClock {
        SystemClock(Instant::now())
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// Minimum time between two redraws of the terminal bar.
const REDRAW: Duration = Duration::from_millis(100);
/// Most characters in the bar between the brackets.
const BAR_W: usize = 20;

/// Progress of a run of `total` steps; see the module documentation for the output.
pub struct Progress {
    total: u64,
    unit: String,
    out: Box<dyn Write + Send>,
    clock: Box<dyn Clock>,
    terminal: bool,
    log_every: Duration,
    start: Duration,
    start_step: u64,
    last_output: Option<Duration>,
    step: u64,
    units: u64,
    losses: VecDeque<f64>,
    loss_sum: f64,
    loss_window: usize,
    /// A bar line is on screen (cursor at its end).
    bar_shown: bool,
    /// Terminal width in columns; the bar line stays shorter.
    term_width: usize,
    finished: bool,
}

impl Progress {
    /// Progress on standard error, with a bar when standard error is a terminal.
    /// `unit` names what `units_done` counts (e.g. "tok").
    pub fn new(total_steps: u64, unit: &str) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let columns = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok());
        Progress::with_output(
            total_steps,
            unit,
            Box::new(std::io::stderr()),
            terminal,
            Box::new(SystemClock::new()),
        )
        .term_width(columns.unwrap_or(80))
    }

    /// Progress written to `out`, as a bar if `terminal`, timed by `clock`.
    pub fn with_output(
        total_steps: u64,
        unit: &str,
        out: Box<dyn Write + Send>,
        terminal: bool,
        clock: Box<dyn Clock>,
    ) -> Progress {
        let start = clock.now();
        Progress {
            total: total_steps,
            unit: unit.to_string(),
            out,
            clock,
            terminal,
            log_every: Duration::from_secs(10),
            start,
            start_step: 0,
            last_output: None,
            step: 0,
            units: 0,
            losses: VecDeque::new(),
            loss_sum: 0.0,
            loss_window: 50,
            bar_shown: false,
            term_width: 80,
            finished: false,
        }
    }

    /// Interval between log lines when not on a terminal (default 10 s).
    pub fn log_every(mut self, every: Duration) -> Progress {
        self.log_every = every;
        self
    }

    /// Terminal width in columns (default 80, or `$COLUMNS` for [`Progress::new`]); the bar
    /// line is kept shorter so it never wraps.
    pub fn term_width(mut self, columns: usize) -> Progress {
        self.term_width = columns;
        self
    }

    /// Number of recent updates whose mean loss is shown (default 50, at least 1).
    pub fn loss_window(mut self, n: usize) -> Progress {
        self.loss_window = n.max(1);
        self
    }

    /// The step count the run starts from (e.g. when resuming), so rates and the ETA count only
    /// the steps done in this run.
    pub fn start_step(mut self, step: u64) -> Progress {
        self.start_step = step;
        self.step = step;
        self
    }

    /// Records that `step` steps (of `total_steps`) are done, `loss` is the latest loss, and
    /// `units_done` units have been processed in this run; redraws if due.
    pub fn update(&mut self, step: u64, loss: f64, units_done: u64) {
        self.step = step;
        self.units = units_done;
        self.losses.push_back(loss);
        self.loss_sum += loss;
        while self.losses.len() > self.loss_window {
            if let Some(old) = self.losses.pop_front() {
                self.loss_sum -= old;
            }
        }
        // Recompute exactly once the window is full of finite values again, so a NaN or
        // rounding error does not stick forever.
        if self.losses.len() == self.loss_window || !self.loss_sum.is_finite() {
            self.loss_sum = self.losses.iter().sum();
        }
        let now = self.clock.now();
        let due = match self.last_output {
            None => {
                now.saturating_sub(self.start)
                    >= if self.terminal {
                        Duration::ZERO
                    } else {
                        self.log_every
                    }
            }
            Some(t) => {
                now.saturating_sub(t)
                    >= if self.terminal {
                        REDRAW
                    } else {
                        self.log_every
                    }
            }
        };
        if due || (self.terminal && step >= self.total) {
            self.draw(now);
        }
    }

    /// Prints `line` above the bar (or as is when not on a terminal), then redraws the bar.
    pub fn println(&mut self, line: &str) {
        if self.terminal && self.bar_shown {
            let _ = write!(self.out, "\r\x1b[2K{line}\n");
            self.bar_shown = false;
            let now = self.clock.now();
            self.draw(now);
        } else {
            let _ = writeln!(self.out, "{line}");
        }
        let _ = self.out.flush();
    }

    /// Draws the final state and ends the line (terminal) or writes the final log line.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let now = self.clock.now();
        if self.terminal {
            self.draw(now);
            let _ = writeln!(self.out);
            self.bar_shown = false;
        } else {
            let line = self.log_line(now, true);
            let _ = writeln!(self.out, "{line}");
        }
        let _ = self.out.flush();
    }

    fn draw(&mut self, now: Duration) {
        self.last_output = Some(now);
        if self.terminal {
            let line = self.bar_line(now);
            let _ = write!(self.out, "\r{line}\x1b[K");
            self.bar_shown = true;
        } else {
            let line = self.log_line(now, false);
            let _ = writeln!(self.out, "{line}");
        }
        let _ = self.out.flush();
    }

    fn loss(&self) -> Option<f64> {
        if self.losses.is_empty() {
            None
        } else {
            Some(self.loss_sum / self.losses.len() as f64)
        }
    }

    /// (steps per second, units per second, ETA) from the averages since the start.
    fn rates(&self, now: Duration) -> (Option<f64>, Option<f64>, Option<Duration>) {
        let secs = (now.saturating_sub(self.start)).as_secs_f64();
        let done = self.step.saturating_sub(self.start_step);
        if secs <= 0.0 || done == 0 {
            return (None, None, None);
        }
        let sps = done as f64 / secs;
        let ups = self.units as f64 / secs;
        let left = self.total.saturating_sub(self.step) as f64 / sps;
        (
            Some(sps),
            Some(ups),
            Some(Duration::from_secs_f64(left.min(1e9))),
        )
    }

    /// The bar line, kept shorter than the terminal width so that `\r` redraws never wrap:
    /// the bar shrinks (to nothing below 5 characters), then the text is cut.
    fn bar_line(&self, now: Duration) -> String {
        let frac = if self.total == 0 {
            1.0
        } else {
            (self.step as f64 / self.total as f64).clamp(0.0, 1.0)
        };
        let width = self.total.to_string().len();
        let (sps, ups, eta) = self.rates(now);
        let mut text = format!(
            "{:>width$}/{}  {:>3.0}%  {} step/s  {} {}/s",
            self.step,
            self.total,
            frac * 100.0,
            rate(sps),
            rate(ups),
            self.unit
        );
        if let Some(l) = self.loss() {
            text.push_str(&format!("  loss {l:.4}"));
        }
        text.push_str(&format!(
            "  {} ETA {}",
            duration(now.saturating_sub(self.start)),
            eta.map_or("?".into(), duration)
        ));
        let room = self.term_width.saturating_sub(1);
        let text_len = text.chars().count();
        // "[" + bar + "] " around the bar.
        let bar_w = room.saturating_sub(text_len + 3).min(BAR_W);
        if bar_w < 5 {
            return text.chars().take(room).collect();
        }
        let filled = (frac * bar_w as f64).floor() as usize;
        let mut bar = "=".repeat(filled);
        if filled < bar_w {
            bar.push('>');
            bar.push_str(&" ".repeat(bar_w - filled - 1));
        }
        format!("[{bar}] {text}")
    }

    fn log_line(&self, now: Duration, done: bool) -> String {
        let frac = if self.total == 0 {
            1.0
        } else {
            self.step as f64 / self.total as f64
        };
        let (sps, ups, eta) = self.rates(now);
        let mut s = format!(
            "{} {}/{} ({:.1}%)  {} step/s  {} {}/s",
            if done { "done" } else { "step" },
            self.step,
            self.total,
            frac * 100.0,
            rate(sps),
            rate(ups),
            self.unit
        );
        if let Some(l) = self.loss() {
            s.push_str(&format!("  loss {l:.4}"));
        }
        s.push_str(&format!(
            "  elapsed {}",
            duration(now.saturating_sub(self.start))
        ));
        if !done {
            s.push_str(&format!("  ETA {}", eta.map_or("?".into(), duration)));
        }
        s
    }
}

impl Drop for Progress {
    /// Ends a bar line left on screen so later output starts on a fresh line.
    fn drop(&mut self) {
        if self.bar_shown {
            let _ = writeln!(self.out);
            let _ = self.out.flush();
        }
    }
}

/// A rate with an SI suffix: "0.25", "45.6", "123", "3.4k", "12.3k", "123k", "1.2M"; "?" when
/// unknown.
pub fn rate(v: Option<f64>) -> String {
    let Some(v) = v else { return "?".into() };
    if !v.is_finite() {
        return "?".into();
    }
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
