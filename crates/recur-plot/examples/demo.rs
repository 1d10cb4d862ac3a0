//! Writes `demo.svg` and `demo.png` (or `<stem>.svg/.png` for a stem given as the first
//! argument): a figure with two line charts (linear and log y) and a heat map.
//!
//! ```text
//! cargo run --release -p recur-plot --example demo -- /tmp/demo
//! ```

use recur_plot::{Chart, Figure, HeatMap, LineChart, Series};

fn main() -> std::io::Result<()> {
    let stem = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "demo".to_string());

    // A noisy, decaying "training loss" with a gap (NaN) and a smoother validation curve.
    let mut state = 12345u64;
    let mut noise = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    };
    let train: Vec<(f64, f64)> = (0..=2000)
        .map(|i| {
            let step = i as f64;
            let y = if (900..920).contains(&i) {
                f64::NAN
            } else {
                1.3 + 2.9 * (-step / 300.0).exp() + 0.15 * noise()
            };
            (step, y)
        })
        .collect();
    let valid: Vec<(f64, f64)> = (0..=20)
        .map(|i| {
            (
                i as f64 * 100.0,
                1.45 + 2.6 * (-(i as f64) * 100.0 / 330.0).exp(),
            )
        })
        .collect();
    let lr: Vec<(f64, f64)> = (0..=2000)
        .map(|i| (i as f64, 3e-3 * 0.5f64.powf(i as f64 / 400.0)))
        .collect();
    let grad: Vec<(f64, f64)> = (0..=2000)
        .step_by(10)
        .map(|i| {
            (
                i as f64,
                20.0 * (-(i as f64) / 250.0).exp() + 0.05 * (1.0 + noise()),
            )
        })
        .collect();

    let loss = LineChart {
        title: "Char-LM loss (LSTM, 2 x 512)".into(),
        x_label: "step".into(),
        y_label: "cross-entropy (nats/char)".into(),
        log_y: false,
        series: vec![
            Series {
                name: "train".into(),
                points: train,
            },
            Series {
                name: "validation".into(),
                points: valid,
            },
            Series {
                name: "best so far".into(),
                points: vec![(1800.0, 1.47)],
            },
        ],
    };
    let scales = LineChart {
        title: "Learning rate & gradient norm".into(),
        x_label: "step".into(),
        y_label: "value (log scale)".into(),
        log_y: true,
        series: vec![
            Series {
                name: "lr".into(),
                points: lr,
            },
            Series {
                name: "||grad|| before clip".into(),
                points: grad,
            },
        ],
    };
    let (rows, cols) = (32, 120);
    let values: Vec<f64> = (0..rows * cols)
        .map(|k| {
            let (r, c) = ((k / cols) as f64, (k % cols) as f64);
            if r == 5.0 && (40.0..50.0).contains(&c) {
                f64::NAN
            } else {
                (c / 9.0 + r / 3.0).sin() * (-r / 20.0).exp() + 0.1 * (c / 30.0)
            }
        })
        .collect();
    let heat = HeatMap {
        title: "LSTM hidden state h_t".into(),
        x_label: "time step t".into(),
        y_label: "unit".into(),
        value_label: "activation".into(),
        rows,
        cols,
        values,
        x_range: (0.0, cols as f64),
        y_range: (0.0, rows as f64),
    };
    let fig = Figure {
        title: "recur: training run overview".into(),
        columns: 2,
        charts: vec![Chart::Line(loss), Chart::Line(scales), Chart::Heat(heat)],
    };
    fig.save(std::path::Path::new(&stem))?;
    let (w, h) = fig.size();
    println!("wrote {stem}.svg and {stem}.png ({w} x {h})");
    Ok(())
}
