//! The progress display's exact output, with a hand-driven clock and an in-memory writer.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use recur_plot::progress::{duration, rate, Clock};
use recur_plot::Progress;

/// A clock the test advances by hand.
#[derive(Clone, Default)]
struct FakeClock(Arc<Mutex<Duration>>);

impl FakeClock {
    fn set_ms(&self, ms: u64) {
        *self.0.lock().unwrap() = Duration::from_millis(ms);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        *self.0.lock().unwrap()
    }
}

/// A writer whose bytes the test can read.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buf {
    fn take(&self) -> String {
        String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
    }
}

fn progress(total: u64, terminal: bool) -> (Progress, Buf, FakeClock) {
    let (buf, clock) = (Buf::default(), FakeClock::default());
    let p = Progress::with_output(
        total,
        "tok",
        Box::new(buf.clone()),
        terminal,
        Box::new(clock.clone()),
    )
    .term_width(100);
    (p, buf, clock)
}

#[test]
fn durations_and_rates_format_compactly() {
    let d = |s: u64| duration(Duration::from_secs(s));
    assert_eq!(d(0), "0s");
    assert_eq!(d(59), "59s");
    assert_eq!(d(60), "1m00s");
    assert_eq!(d(187), "3m07s");
    assert_eq!(d(3599), "59m59s");
    assert_eq!(d(3720), "1h02m");
    assert_eq!(d(86_399), "23h59m");
    assert_eq!(d(2 * 86_400 + 5 * 3600 + 59), "2d05h");
    assert_eq!(duration(Duration::from_millis(1999)), "1s");

    assert_eq!(rate(None), "?");
    assert_eq!(rate(Some(f64::INFINITY)), "?");
    assert_eq!(rate(Some(0.25)), "0.25");
    assert_eq!(rate(Some(0.9975)), "1.0");
    assert_eq!(rate(Some(7.0)), "7.0");
    assert_eq!(rate(Some(45.63)), "45.6");
    assert_eq!(rate(Some(99.96)), "100");
    assert_eq!(rate(Some(123.4)), "123");
    assert_eq!(rate(Some(999.4)), "999");
    assert_eq!(rate(Some(999.6)), "1.0k");
    assert_eq!(rate(Some(3_412.0)), "3.4k");
    assert_eq!(rate(Some(12_345.0)), "12.3k");
    assert_eq!(rate(Some(123_456.0)), "123k");
    assert_eq!(rate(Some(1_234_567.0)), "1.2M");
    assert_eq!(rate(Some(2.5e9)), "2.5G");
}

#[test]
fn log_lines_every_interval_and_at_the_end() {
    let (mut p, buf, clock) = progress(1000, false);
    // 10 steps per second, 3412 tokens per second; losses 2.0, 1.9, ... (window mean of 50).
    for step in 1..=250u64 {
        clock.set_ms(step * 100);
        p.update(step, 2.0 - step as f64 * 0.001, step * 341 + step * 2 / 10);
        if step == 99 {
            assert_eq!(buf.take(), "", "a line before the interval elapsed");
        }
    }
    let out = buf.take();
    let lines: Vec<&str> = out.lines().collect();
    // Lines at 10 s and 20 s only (steps 100 and 200).
    let mean = |last: u64| {
        (last - 49..=last)
            .map(|s| 2.0 - s as f64 * 0.001)
            .sum::<f64>()
            / 50.0
    };
    assert_eq!(
        lines,
        [
            format!("step 100/1000 (10.0%)  10.0 step/s  3.4k tok/s  loss {:.4}  elapsed 10s  ETA 1m30s", mean(100)),
            format!("step 200/1000 (20.0%)  10.0 step/s  3.4k tok/s  loss {:.4}  elapsed 20s  ETA 1m20s", mean(200)),
        ]
    );
    p.println("eval: loss 1.7");
    assert_eq!(buf.take(), "eval: loss 1.7\n");
    clock.set_ms(25_500);
    p.finish();
    assert_eq!(
        buf.take(),
        format!(
            "done 250/1000 (25.0%)  9.8 step/s  3.3k tok/s  loss {:.4}  elapsed 25s\n",
            mean(250)
        )
    );
    p.finish();
    assert_eq!(buf.take(), "", "finish twice");
}

#[test]
fn log_interval_is_configurable() {
    let (p, buf, clock) = progress(10, false);
    let mut p = p.log_every(Duration::from_secs(2)).loss_window(1);
    for step in 1..=10u64 {
        clock.set_ms(step * 500);
        p.update(step, step as f64, 0);
    }
    let out = buf.take();
    let steps: Vec<&str> = out
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(steps, ["4/10", "8/10"], "{out}");
    assert!(
        out.contains("loss 4.0000") && out.contains("loss 8.0000"),
        "{out}"
    );
}

#[test]
fn terminal_bar_redraws_at_most_ten_times_a_second() {
    let (mut p, buf, clock) = progress(200, true);
    clock.set_ms(0);
    // 100 updates 10 ms apart: one draw at the first update, then one per 100 ms.
    for step in 1..=100u64 {
        clock.set_ms(step * 10);
        p.update(step, 1.5, step * 100);
    }
    let out = buf.take();
    let draws = out.matches('\r').count();
    assert_eq!(draws, 10, "{out:?}");
    assert!(!out.contains('\n'), "the bar must stay on one line");
    // The last drawn state: step 91 at 910 ms.
    let last = out.rsplit('\r').next().unwrap();
    assert_eq!(last, "[=========>          ]  91/200   46%  100 step/s  10.0k tok/s  loss 1.5000  0s ETA 1s\x1b[K");
}

#[test]
fn terminal_println_goes_above_the_bar_and_finish_ends_the_line() {
    let (mut p, buf, clock) = progress(4, true);
    clock.set_ms(1000);
    p.update(1, 2.0, 10);
    let first = buf.take();
    assert_eq!(
        first,
        "\r[=====>              ] 1/4   25%  1.0 step/s  10.0 tok/s  loss 2.0000  1s ETA 3s\x1b[K"
    );
    p.println("checkpoint saved");
    let out = buf.take();
    // Clear the bar line, print the message on its own line, redraw the bar under it.
    assert_eq!(out, format!("\r\x1b[2Kcheckpoint saved\n{first}"));
    clock.set_ms(4000);
    p.update(3, 1.0, 30);
    clock.set_ms(4010);
    p.update(4, 0.0, 40);
    // The last step is drawn even 10 ms after the previous draw.
    let out = buf.take();
    assert_eq!(out.matches('\r').count(), 2, "{out:?}");
    let last = out.rsplit('\r').next().unwrap();
    assert_eq!(
        last,
        "[====================] 4/4  100%  1.0 step/s  10.0 tok/s  loss 1.0000  4s ETA 0s\x1b[K"
    );
    p.finish();
    assert!(buf.take().ends_with("\x1b[K\n"));
    drop(p);
    assert_eq!(buf.take(), "", "drop after finish writes nothing");
}

#[test]
fn unknown_rates_and_resumed_runs() {
    let (p, buf, clock) = progress(100, true);
    let mut p = p.start_step(50);
    // No time has passed: rates and ETA are unknown.
    p.update(50, f64::NAN, 0);
    assert_eq!(
        buf.take(),
        "\r[==========>         ]  50/100   50%  ? step/s  ? tok/s  loss NaN  0s ETA ?\x1b[K"
    );
    clock.set_ms(10_000);
    p.update(60, 1.0, 600);
    // Only the 10 steps of this run count: 1 step/s, 40 steps left.
    let out = buf.take();
    assert!(
        out.ends_with("60/100   60%  1.0 step/s  60.0 tok/s  loss NaN  10s ETA 40s\x1b[K"),
        "{out:?}"
    );
    drop(p);
    assert_eq!(
        buf.take(),
        "\n",
        "dropping with a bar on screen ends its line"
    );
}

#[test]
fn bar_shrinks_to_fit_narrow_terminals() {
    let line_at = |columns: usize| {
        let (p, buf, clock) = progress(1000, true);
        let mut p = p.term_width(columns);
        clock.set_ms(2000);
        p.update(500, 1.25, 64_000);
        let out = buf.take();
        out.trim_start_matches('\r')
            .trim_end_matches("\x1b[K")
            .to_string()
    };
    let text = " 500/1000   50%  250 step/s  32.0k tok/s  loss 1.2500  2s ETA 2s";
    assert_eq!(line_at(100), format!("[==========>         ] {text}"));
    // 74 columns: 73 characters at most, so the bar keeps 73 - 3 - 64 = 6.
    assert_eq!(text.len(), 64);
    assert_eq!(line_at(74), format!("[===>  ] {text}"));
    // Too narrow for a 5-character bar: just the text, cut to fit.
    assert_eq!(line_at(66), text);
    assert_eq!(line_at(65), text);
    assert_eq!(line_at(40), &text[..39]);
}
