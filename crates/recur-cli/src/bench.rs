//! `recur bench`: times recur on the benchmark grid of `bench/grid.json` (compiled in), and
//! prints median/min milliseconds, GFLOP/s and peak memory per row, as a table or JSON lines.
//! `scripts/bench_torch.py` runs PyTorch on the same grid and prints the ratios.

use clap::Args as ClapArgs;
use recur::{Dropout, Mode, Precision, Rnn, RnnConfig, Stream, Tensor};
use recur_kernels::alloc;
use serde::{Deserialize, Serialize};
use std::time::Instant;

const GRID: &str = include_str!("../../../bench/grid.json");

/// Options of `recur bench`.
#[derive(ClapArgs)]
pub struct Args {
    /// Only rows whose `name/cell/mode` contains this text (e.g. `large`, `lstm/train`).
    #[arg(long)]
    pub filter: Option<String>,
    /// Only the row `name/cell/mode` exactly (e.g. `large/lstm/train`).
    #[arg(long)]
    pub row: Option<String>,
    /// Threads for the matrix multiplies (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Untimed repetitions before timing.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed repetitions (at least).
    #[arg(long, default_value_t = 20)]
    pub reps: usize,
    /// Keep repeating until this many seconds were timed.
    #[arg(long, default_value_t = 1.0)]
    pub min_time: f64,
    /// Print one JSON object per row instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Deserialize, Clone)]
struct Grid {
    rows: Vec<Row>,
}

/// One benchmark configuration (the fields of `bench/grid.json`).
#[derive(Deserialize, Serialize, Clone)]
pub struct Row {
    name: String,
    cell: String,
    mode: String,
    batch: usize,
    seq: usize,
    input: usize,
    hidden: usize,
    layers: usize,
    bidirectional: bool,
    #[serde(default)]
    streaming: bool,
    /// Ragged batch: the sequences have the lengths of [`ragged_lengths`] (PackedSequence
    /// semantics), not all `seq` steps.
    #[serde(default)]
    ragged: bool,
    /// Streaming rows: the weights' storage (`f32`, `f16`, `bf16`; see recur::Precision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    precision: Option<String>,
}

/// The lengths of a ragged row, as `bench/grid.json` defines them (and scripts/bench_torch.py
/// computes them): spread evenly over [seq/5, seq] in a fixed shuffled order,
/// `len[b] = lo + ((13·b) mod B)·(seq − lo) / (B − 1)` with `lo = seq / 5` (integer division;
/// one sequence has the full length).
pub fn ragged_lengths(batch: usize, seq: usize) -> Vec<usize> {
    let lo = seq / 5;
    (0..batch)
        .map(|b| {
            if batch == 1 {
                seq
            } else {
                lo + (13 * b % batch) * (seq - lo) / (batch - 1)
            }
        })
        .collect()
}

impl Row {
    /// The (batch, time) positions that run: batch·seq, or the sum of the ragged lengths.
    fn steps(&self) -> usize {
        if self.ragged {
            ragged_lengths(self.batch, self.seq).iter().sum()
        } else {
            self.batch * self.seq
        }
    }
}

#[derive(Serialize)]
struct Record {
    lib: &'static str,
    #[serde(flatten)]
    row: Row,
    threads: usize,
    reps: usize,
    median_ms: f64,
    min_ms: f64,
    gflop: f64,
    gflops_median: f64,
    gflops_best: f64,
    /// Peak bytes allocated during the timed iterations, above what was allocated before them.
    peak_mb: f64,
    /// Growth of the process's resident-set high-water mark (VmHWM) from before the first
    /// iteration to the end: measured the same way for PyTorch by scripts/bench_torch.py.
    rss_delta_mb: f64,
}

/// 2·M·N·K per matrix product, gate arithmetic not counted; train = 3 × forward (the FLOP
/// model of the PyTorch baseline script). A ragged row counts only the steps that run.
fn forward_flops(r: &Row, mode: Mode) -> f64 {
    let g = mode.gates() as f64;
    let d = if r.bidirectional { 2.0 } else { 1.0 };
    let mut total = 0.0;
    for l in 0..r.layers {
        let f = if l == 0 {
            r.input as f64
        } else {
            r.hidden as f64 * d
        };
        total += d * 2.0 * r.steps() as f64 * g * r.hidden as f64 * (f + r.hidden as f64);
    }
    total
}

/// The resident-set high-water mark of this process, in MB (0 where /proc is not available).
fn vm_hwm_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn time_it(a: &Args, mut f: impl FnMut()) -> (Vec<f64>, f64, f64) {
    let hwm0 = vm_hwm_mb();
    // Peak memory counts everything this row allocates from here on, the scratch buffers that
    // the reuse pool keeps between calls included (and none that an earlier row left there).
    <f32 as recur_kernels::Real>::pool().clear();
    alloc::reset_peak();
    let base = alloc::current_bytes();
    for _ in 0..a.warmup {
        f();
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < a.reps || start.elapsed().as_secs_f64() < a.min_time {
        let t0 = Instant::now();
        f();
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let peak = (alloc::peak_bytes().saturating_sub(base)) as f64 / 1e6;
    (times, peak, vm_hwm_mb() - hwm0)
}

fn run_row(a: &Args, r: &Row) -> Result<Record, String> {
    let mode: Mode = r.cell.parse().map_err(|e: recur::Error| e.to_string())?;
    let cfg = RnnConfig::new(mode, r.input, r.hidden)
        .num_layers(r.layers)
        .bidirectional(r.bidirectional)
        .batch_first(true);
    let mut rnn: Rnn<f32> = Rnn::new(cfg, 0).map_err(|e| e.to_string())?;
    let x: Vec<f32> = (0..r.batch * r.seq * r.input)
        .map(|i| ((i as f32) * 0.618).sin())
        .collect();
    let lengths = r.ragged.then(|| ragged_lengths(r.batch, r.seq));
    let lengths = lengths.as_deref();
    if r.precision.is_some() && !r.streaming {
        if r.mode != "infer" {
            return Err(format!(
                "bench/grid.json: row {}/{}/{}: \"precision\" is for inference rows",
                r.name, r.cell, r.mode
            ));
        }
        // Whole-sequence inference with compact weights (Rnn::set_precision).
        let p: Precision = r
            .precision
            .as_deref()
            .unwrap_or("f32")
            .parse()
            .map_err(|e: recur::Error| e.to_string())?;
        rnn.set_precision(p).map_err(|e| e.to_string())?;
    }
    if r.ragged && (r.streaming || r.batch < 2 || r.seq < 5) {
        return Err(format!(
            "bench/grid.json: ragged row {}/{}/{} needs batch >= 2, seq >= 5 and no streaming",
            r.name, r.cell, r.mode
        ));
    }
    let (times, peak, rss) = if r.streaming {
        let precision: Precision = r
            .precision
            .as_deref()
            .unwrap_or("f32")
            .parse()
            .map_err(|e: recur::Error| e.to_string())?;
        let mut s = Stream::with_precision(&rnn, r.batch, precision).map_err(|e| e.to_string())?;
        let xs = &x[..r.batch * r.input];
        time_it(a, || {
            s.step(xs).expect("step");
        })
    } else {
        let xt = Tensor::new(&[r.batch, r.seq, r.input], x).map_err(|e| e.to_string())?;
        match r.mode.as_str() {
            "infer" => time_it(a, || {
                rnn.forward(&xt, None, lengths).expect("forward");
            }),
            "train" => {
                let mut grads = rnn.zeros_like_params();
                let d = if r.bidirectional { 2 } else { 1 };
                // d loss / d output: ones at the positions that run, zeros in the padding
                // (pad_packed_sequence's padding is a constant on the PyTorch side).
                let width = d * r.hidden;
                let mut gy = vec![1.0f32; r.batch * r.seq * width];
                if let Some(lens) = lengths {
                    for (b, &len) in lens.iter().enumerate() {
                        gy[(b * r.seq + len) * width..(b + 1) * r.seq * width].fill(0.0);
                    }
                }
                let gy = Tensor::new(&[r.batch, r.seq, width], gy).unwrap();
                let gh = Tensor::new(
                    &[r.layers * d, r.batch, r.hidden],
                    vec![1.0f32; r.layers * d * r.batch * r.hidden],
                )
                .unwrap();
                time_it(a, || {
                    grads.fill(0.0);
                    let (_, tape) = rnn
                        .forward_train(&xt, None, lengths, Dropout::Off)
                        .expect("forward");
                    // The input does not require a gradient (as on the PyTorch side).
                    rnn.backward_params(&tape, Some(&gy), Some(&gh), None, &mut grads)
                        .expect("backward");
                })
            }
            m => {
                return Err(format!(
                    "bench/grid.json: unknown mode '{m}' (infer or train)"
                ))
            }
        }
    };
    let mut sorted = times.clone();
    sorted.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let median = sorted[sorted.len() / 2];
    let min = sorted[0];
    let flops = forward_flops(r, mode) * if r.mode == "train" { 3.0 } else { 1.0 };
    Ok(Record {
        lib: "recur",
        row: r.clone(),
        threads: recur::num_threads(),
        reps: times.len(),
        median_ms: median,
        min_ms: min,
        gflop: flops / 1e9,
        gflops_median: flops / (median * 1e-3) / 1e9,
        gflops_best: flops / (min * 1e-3) / 1e9,
        peak_mb: peak,
        rss_delta_mb: rss,
    })
}

pub fn run(a: Args) -> Result<(), String> {
    let grid: Grid = serde_json::from_str(GRID).map_err(|e| format!("bench/grid.json: {e}"))?;
    recur::set_num_threads(a.threads);
    let rows: Vec<&Row> = grid
        .rows
        .iter()
        .filter(|r| {
            let id = format!("{}/{}/{}", r.name, r.cell, r.mode);
            a.filter.as_ref().is_none_or(|f| id.contains(f.as_str()))
                && a.row.as_ref().is_none_or(|x| *x == id)
        })
        .collect();
    if rows.is_empty() {
        return Err(format!(
            "no benchmark row matches '{}'",
            a.filter.as_deref().unwrap_or("")
        ));
    }
    if !a.json {
        println!(
            "{:<16} {:<9} {:<6} {:>3} {:>10} {:>10} {:>9} {:>9} {:>9}",
            "row", "cell", "mode", "thr", "median ms", "min ms", "GFLOP", "GFLOP/s", "peak MB"
        );
    }
    for r in rows {
        let rec = run_row(&a, r)?;
        if a.json {
            println!("{}", serde_json::to_string(&rec).unwrap());
        } else {
            println!(
                "{:<16} {:<9} {:<6} {:>3} {:>10.3} {:>10.3} {:>9.4} {:>9.1} {:>9.1}",
                r.name,
                r.cell,
                r.mode,
                rec.threads,
                rec.median_ms,
                rec.min_ms,
                rec.gflop,
                rec.gflops_median,
                rec.peak_mb
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ragged_lengths_spread_over_a_fifth_to_the_full_length() {
        for (batch, seq) in [(32, 60), (64, 100), (32, 80), (2, 5), (7, 11)] {
            let lens = ragged_lengths(batch, seq);
            assert_eq!(lens.len(), batch);
            assert_eq!(
                *lens.iter().max().unwrap(),
                seq,
                "one sequence runs to the end"
            );
            assert_eq!(*lens.iter().min().unwrap(), seq / 5);
            // 13 is coprime with every batch above, so b -> 13·b mod B is a permutation and
            // the sorted lengths are the even spread itself.
            let mut sorted = lens.clone();
            sorted.sort_unstable();
            let lo = seq / 5;
            let spread: Vec<usize> = (0..batch)
                .map(|k| lo + k * (seq - lo) / (batch - 1))
                .collect();
            assert_eq!(sorted, spread);
        }
    }

    #[test]
    fn every_grid_row_parses_and_ragged_rows_count_fewer_steps() {
        let grid: Grid = serde_json::from_str(GRID).unwrap();
        let ragged: Vec<&Row> = grid.rows.iter().filter(|r| r.ragged).collect();
        assert_eq!(ragged.len(), 6);
        for r in ragged {
            assert!(r.steps() < r.batch * r.seq);
            assert!(r.steps() > r.batch * r.seq / 2);
        }
    }
}
