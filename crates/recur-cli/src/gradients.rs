//! `recur gradients`: vanishing and exploding gradients made visible.
//!
//! ```text
//! recur gradients [--task adding|copy] [--length 200] [--cells rnn_tanh,irnn,lstm,gru]
//!     [--steps 300] [--record-every 10] [--hidden-size 64] [--out DIR] [--explode=false]
//! recur gradients --model DIR --text FILE [--length 200]
//! ```
//!
//! For every cell: a model trained on the task (`recur::models::synthetic`) with ‖dL/dh_t‖ recorded on
//! a fixed batch every `--record-every` steps (the total derivative at every step t, so it shows
//! at which distance from the loss the signal dies), the singular values of the recurrent
//! matrices and the norm of the step Jacobian d state_t / d state_{t-1} along a sequence, at
//! initialization and after training. Then the exploding-gradient demonstration: a ReLU RNN
//! whose recurrent matrix is `--explode-scale` × I (spectral radius above 1) trained with SGD,
//! clipping off and on.
//!
//! With `--model`, the same measurements on a character language model saved by `recur train
//! lm`, for L = the cross-entropy of the last character of `--length`-character windows of
//! `--text`.
//!
//! `DIR` gets `gradients.json` and the plots `heatmap`, `hidden_grads`, `jacobian` and
//! `explode` (`.svg` and `.png`).

use clap::{Args as ClapArgs, ValueEnum};
use recur::analysis::diagnostics::{
    recurrent_spectra, step_jacobian_norms, GradStats, GradStatsConfig, HiddenGrads, JacobianTrace,
};
use recur::models::synthetic::{
    self, task_rng, CellKind, GateBias, HiddenGradRecord, Model, RunResult, Task, TrainConfig,
    SOLVE_FRACTION,
};
use recur::nn::softmax_cross_entropy;
use recur::nn::{AdamConfig, OptimizerConfig, SgdConfig};
use recur::{Dropout, Rnn, Tensor};
use recur_plot::{Chart, Figure, HeatMap, LineChart, Series};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The generated task to train on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// The adding problem: the loss sees only the last step.
    Adding,
    /// The copy-memory task: a loss at every step.
    Copy,
}

/// Options of `recur gradients`.
#[derive(ClapArgs)]
pub struct Args {
    /// The task the models are trained on.
    #[arg(long, value_enum, default_value = "adding")]
    task: Which,
    /// Sequence length T (copy: the delay).
    #[arg(long, default_value_t = 200)]
    length: usize,
    /// Cells, comma-separated: rnn_tanh, rnn_relu, irnn, lstm, gru.
    #[arg(
        long,
        alias = "cell",
        value_delimiter = ',',
        default_value = "rnn_tanh,irnn,lstm,gru"
    )]
    cells: Vec<String>,
    /// Hidden units.
    #[arg(long, default_value_t = 64)]
    hidden_size: usize,
    /// Training steps of each model.
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Record ‖dL/dh_t‖ every N training steps.
    #[arg(long, default_value_t = 10, value_name = "N")]
    record_every: usize,
    /// Sequences per batch.
    #[arg(long, default_value_t = 50)]
    batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Clip the global gradient norm to this value (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    /// Seed of the initialization and the data.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run the exploding-gradient demonstration (`--explode=false` skips it).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    explode: bool,
    /// Exploding demonstration: the recurrent matrix starts as this times the identity (above
    /// 1: spectral radius above 1).
    #[arg(long, default_value_t = 1.0)]
    explode_scale: f64,
    /// Exploding demonstration: the SGD learning rate.
    #[arg(long, default_value_t = 3e-4)]
    explode_lr: f64,
    /// Exploding demonstration: the clipping threshold of the clipped run.
    #[arg(long, default_value_t = 1.0)]
    explode_clip: f64,
    /// Measure a character language model saved by `recur train lm` instead (needs --text).
    #[arg(long, value_name = "DIR", requires = "text")]
    model: Option<PathBuf>,
    /// With --model: the text whose windows of --length characters are measured.
    #[arg(long, value_name = "FILE")]
    text: Option<PathBuf>,
    /// Where to write gradients.json and the plots [default: gradients].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Distances from the loss at which the ratio ‖dL/dh_{T-1-k}‖ / ‖dL/dh_{T-1}‖ is printed.
fn distances(t: usize) -> Vec<usize> {
    [0, 10, 25, 50, 100, 200, 500, 1000]
        .into_iter()
        .filter(|&k| k < t)
        .chain(std::iter::once(t - 1))
        .fold(Vec::new(), |mut v, k| {
            if !v.contains(&k) {
                v.push(k);
            }
            v
        })
}

/// ‖dL/dh_{T-1-k}‖ / ‖dL/dh_{T-1}‖ for every k, from per-step norms.
fn ratios(norms: &[f64]) -> Vec<f64> {
    let last = *norms.last().unwrap_or(&0.0);
    norms.iter().rev().map(|&n| n / last).collect()
}

/// The first distance at which the ratio falls under 1e-3, if any.
fn dies_at(norms: &[f64]) -> Option<usize> {
    ratios(norms).iter().position(|&r| r < 1e-3)
}

fn fmt_ratio(r: f64) -> String {
    if r == 0.0 {
        "0".into()
    } else {
        format!("{r:.1e}")
    }
}

/// Geometric mean of positive values (the typical per-step gain).
fn geo_mean(v: &[f64]) -> f64 {
    let logs: Vec<f64> = v.iter().filter(|&&x| x > 0.0).map(|x| x.ln()).collect();
    if logs.is_empty() {
        0.0
    } else {
        (logs.iter().sum::<f64>() / logs.len() as f64).exp()
    }
}

/// One cell's training run and its measurements before and after.
struct CellRun {
    cell: CellKind,
    result: RunResult,
    init: Snapshot,
    after: Snapshot,
}

/// What is measured on one model at one moment.
struct Snapshot {
    /// Per layer (and direction): ‖dL/dh_t‖ at every step.
    norms: Vec<Vec<f64>>,
    /// Per layer: the step Jacobian norms along the first sequence.
    jacobians: Vec<JacobianTrace>,
    spectra: Value,
    /// (param, gate, largest) for printing.
    largest: Vec<(String, Option<&'static str>, f64)>,
}

fn snapshot(rnn: &Rnn<f32>, first_seq: &[f32], norms: Vec<Vec<f64>>) -> Result<Snapshot, String> {
    let r64 = rnn.cast::<f64>();
    let len = first_seq.len() / rnn.config().input_size;
    let x: Vec<f64> = first_seq.iter().map(|&v| v as f64).collect();
    let jacobians = step_jacobian_norms(&r64, &x, len, 100).map_err(|e| e.to_string())?;
    let spectra = recurrent_spectra(rnn, true);
    let largest = spectra
        .iter()
        .map(|s| (s.param.clone(), s.gate, s.largest))
        .collect();
    let spectra = spectra
        .iter()
        .map(|s| {
            json!({"param": s.param, "gate": s.gate, "shape": [s.shape.0, s.shape.1],
                   "largest": s.largest, "singular_values": s.singular_values})
        })
        .collect();
    Ok(Snapshot {
        norms,
        jacobians,
        spectra,
        largest,
    })
}

/// The first sequence of a (T, B, I) batch, (T, I).
fn first_sequence(x: &Tensor<f32>) -> Vec<f32> {
    let (t, b, i) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    (0..t)
        .flat_map(|ti| x.data()[(ti * b) * i..(ti * b + 1) * i].to_vec())
        .collect()
}

fn print_snapshot(label: &str, s: &Snapshot) {
    for (k, norms) in s.norms.iter().enumerate() {
        let r = ratios(norms);
        let ks = distances(norms.len());
        let cells: Vec<String> = ks.iter().map(|&k| fmt_ratio(r[k])).collect();
        println!(
            "  {label:<6} layer {k}: ‖dL/dh_T-1-k‖ / ‖dL/dh_T-1‖ at k = {:?}: {}   (under 1e-3 from k = {})",
            ks,
            cells.join("  "),
            dies_at(norms).map_or("never".to_string(), |d| d.to_string())
        );
    }
    let sv: Vec<String> = s
        .largest
        .iter()
        .map(|(p, g, v)| match g {
            Some(g) => format!("{p}[{g}] {v:.3}"),
            None => format!("{p} {v:.3}"),
        })
        .collect();
    println!("  {label:<6} largest singular values: {}", sv.join(", "));
    for tr in &s.jacobians {
        let mean = tr.state.iter().sum::<f64>() / tr.state.len() as f64;
        let max = tr.state.iter().cloned().fold(0.0, f64::max);
        println!(
            "  {label:<6} layer {} step Jacobian ‖d state_t/d state_t-1‖: geometric mean {:.3}, \
             mean {:.3}, max {:.3}{}",
            tr.layer,
            geo_mean(&tr.state),
            mean,
            max,
            if tr.state != tr.hh {
                format!(
                    "; h→h block (c held fixed): geometric mean {:.3}",
                    geo_mean(&tr.hh)
                )
            } else {
                String::new()
            }
        );
    }
}

fn snapshot_json(s: &Snapshot) -> Value {
    json!({
        "hidden_grad_norms": s.norms,
        "step_jacobian": s.jacobians.iter().map(|t| json!({
            "layer": t.layer, "direction": t.direction, "state": t.state, "hh": t.hh
        })).collect::<Vec<_>>(),
        "spectra": s.spectra,
    })
}

pub fn run(a: Args) -> Result<(), String> {
    if a.length < 2 {
        return Err(format!("--length must be at least 2, got {}", a.length));
    }
    for (name, v) in [
        ("--hidden-size", a.hidden_size),
        ("--steps", a.steps),
        ("--record-every", a.record_every),
        ("--batch-size", a.batch_size),
    ] {
        if v == 0 {
            return Err(format!("{name} must be at least 1"));
        }
    }
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if !(positive(a.lr) && positive(a.explode_lr)) {
        return Err("--lr and --explode-lr must be positive numbers".into());
    }
    if !(a.clip.is_finite() && a.clip >= 0.0 && positive(a.explode_clip)) {
        return Err("--clip must be >= 0 and --explode-clip > 0".into());
    }
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("gradients"));
    std::fs::create_dir_all(&out)
        .map_err(|e| format!("--out {}: cannot create the directory: {e}", out.display()))?;
    if let Some(dir) = &a.model {
        return run_model(&a, dir, &out);
    }
    let cells: Vec<CellKind> = a
        .cells
        .iter()
        .map(|c| c.parse().map_err(|e: recur::Error| format!("--cells: {e}")))
        .collect::<Result<_, _>>()?;
    if cells.contains(&CellKind::ExpRnn) {
        return Err(
            "--cells: recur gradients follows the fused layers' Jacobians; exprnn is not one \
             (recur experiment plots its ||dL/dh_t||)"
                .into(),
        );
    }
    if cells.is_empty() {
        return Err("--cells: give at least one cell".into());
    }
    let task = match a.task {
        Which::Adding => Task::Adding { len: a.length },
        Which::Copy => Task::Copy { delay: a.length },
    };
    let t = task.seq_len();
    let cfg = TrainConfig {
        hidden_size: a.hidden_size,
        batch_size: a.batch_size,
        steps: a.steps,
        optimizer: OptimizerConfig::Adam(AdamConfig::default().lr(a.lr)),
        clip: (a.clip > 0.0).then_some(a.clip),
        eval_every: a.steps,
        eval_size: 500,
        orthogonal: false,
        lstm_bias: GateBias::Forget(1.0),
        solve_fraction: SOLVE_FRACTION,
        stop_when_solved: false,
        record_every: Some(a.record_every),
        seed: a.seed,
        out: out.join("runs"),
    };
    println!(
        "gradients on the {} task, T = {t}: hidden size {}, {} steps of Adam(lr={}), batches of \
         {}, clip {}, ‖dL/dh_t‖ on a fixed batch every {} steps, seed {}",
        task.name(),
        a.hidden_size,
        a.steps,
        a.lr,
        a.batch_size,
        a.clip,
        a.record_every,
        a.seed
    );
    // The fixed batch the Jacobians are followed on (the first sequence of a fresh batch).
    let probe = task.train_batch(1, &mut task_rng(a.seed ^ 0x1ac0));
    let first = first_sequence(&probe.x);
    let mut runs: Vec<CellRun> = Vec::new();
    for &cell in &cells {
        let mut model = Model::new(&task, cell, a.hidden_size, false, a.seed)
            .map_err(|e| format!("{cell}: {e}"))?;
        let result = synthetic::train_model(&task, &mut model, cell, &cfg, &mut |_| {})
            .map_err(|e| format!("{cell}: {e}"))?;
        let init_model =
            Model::new(&task, cell, a.hidden_size, false, a.seed).map_err(|e| e.to_string())?;
        let records = &result.hidden_grads;
        let at_init = snapshot(
            init_model.rnn.fused().expect("a fused layer"),
            &first,
            vec![records.first().map(|r| r.norms.clone()).unwrap_or_default()],
        )?;
        // ‖dL/dh_t‖ after training, on the same fixed batch the records use.
        let mut rec = HiddenGrads::new();
        let mut g = model.zeros_like_grads();
        let fixed = task.train_batch(a.batch_size, &mut task_rng(a.seed ^ 0x960b));
        model
            .loss_and_grad(&fixed, &mut g, Some(&mut rec))
            .map_err(|e| e.to_string())?;
        let trained = snapshot(
            model.rnn.fused().expect("a fused layer"),
            &first,
            vec![rec.norms(0, 0)],
        )?;
        let last = result.last().expect("evaluated");
        println!(
            "{cell}: after {} steps evaluation loss {:.4} ({:.3} of the baseline){}",
            a.steps,
            last.loss,
            last.loss / task.baseline().loss,
            result
                .diverged_at
                .map(|s| format!(", diverged at step {s}"))
                .unwrap_or_default()
        );
        print_snapshot("init", &at_init);
        print_snapshot("after", &trained);
        runs.push(CellRun {
            cell,
            result,
            init: at_init,
            after: trained,
        });
    }
    let explode = if a.explode {
        Some(explode(&a, &task, &out)?)
    } else {
        None
    };
    plot(&out, &task, &runs, explode.as_ref(), &a)?;
    let doc = json!({
        "task": task.name(),
        "length": t,
        "settings": {
            "hidden_size": a.hidden_size, "steps": a.steps, "lr": a.lr, "batch_size": a.batch_size,
            "clip": a.clip, "record_every": a.record_every, "seed": a.seed
        },
        "cells": runs.iter().map(|c| json!({
            "cell": c.cell.name(),
            "final_loss": c.result.last().map(|p| p.loss),
            "baseline_loss": task.baseline().loss,
            "records": c.result.hidden_grads.iter().map(|h| json!({"step": h.step, "norms": h.norms})).collect::<Vec<_>>(),
            "init": snapshot_json(&c.init),
            "after": snapshot_json(&c.after),
        })).collect::<Vec<_>>(),
        "explode": explode.as_ref().map(|e| json!({
            "scale": a.explode_scale, "lr": a.explode_lr, "clip": a.explode_clip,
            "runs": e.iter().map(|(name, r)| json!({
                "name": name, "train_loss": r.train_loss, "grad_norm": r.grad_norm,
                "diverged_at": r.diverged_at, "clipped_steps": r.clipped,
                "final_loss": r.last().map(|p| p.loss),
            })).collect::<Vec<_>>(),
        })),
    });
    write_json(&out, &doc)?;
    println!(
        "wrote {}/gradients.json, heatmap, hidden_grads, jacobian{} (.svg, .png)",
        out.display(),
        if a.explode { ", explode" } else { "" }
    );
    Ok(())
}

fn write_json(out: &Path, doc: &Value) -> Result<(), String> {
    recur::io::state_dict::write_atomic(
        &out.join("gradients.json"),
        (serde_json::to_string_pretty(doc).expect("json") + "\n").as_bytes(),
    )
    .map_err(|e| e.to_string())
}

/// The exploding-gradient demonstration: the same ReLU RNN with W_hh = scale·I trained with
/// SGD, without and with clipping.
fn explode(a: &Args, task: &Task, out_dir: &Path) -> Result<Vec<(String, RunResult)>, String> {
    let mut out = Vec::new();
    println!(
        "exploding gradients: ReLU RNN, W_hh = {} I at the start, zero biases, SGD(lr={}), {} \
         steps on the {} task, T = {}",
        a.explode_scale,
        a.explode_lr,
        a.steps,
        task.name(),
        task.seq_len()
    );
    for clip in [None, Some(a.explode_clip)] {
        let mut model = Model::new(task, CellKind::Irnn, a.hidden_size, false, a.seed)
            .map_err(|e| e.to_string())?;
        let rnn = model.rnn.fused_mut().expect("IRNN is a fused layer");
        recur::core::init::irnn(rnn, a.explode_scale).map_err(|e| e.to_string())?;
        let cfg = TrainConfig {
            hidden_size: a.hidden_size,
            batch_size: a.batch_size,
            steps: a.steps,
            optimizer: OptimizerConfig::Sgd(SgdConfig::default().lr(a.explode_lr)),
            clip,
            eval_every: (a.steps / 10).max(1),
            eval_size: 500,
            orthogonal: false,
            lstm_bias: GateBias::Forget(1.0),
            solve_fraction: SOLVE_FRACTION,
            stop_when_solved: false,
            record_every: None,
            seed: a.seed,
            out: out_dir.join("runs").join(match clip {
                None => "explode-clip-off".to_string(),
                Some(_) => "explode-clip-on".to_string(),
            }),
        };
        let r = synthetic::train_model(task, &mut model, CellKind::RnnRelu, &cfg, &mut |_| {})
            .map_err(|e| e.to_string())?;
        let name = match clip {
            None => "clipping off".to_string(),
            Some(c) => format!("clipping at {c}"),
        };
        let finite: Vec<f64> = r
            .grad_norm
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        let radius = recurrent_spectra(model.rnn.fused().expect("a fused layer"), false)
            .first()
            .map_or(f64::NAN, |s| s.largest);
        println!(
            "  {name:<16} gradient norm: first {:.3e}, max {:.3e}{}; training loss: first {:.3e}, \
             last {:.3e}{}; largest singular value of W_hh at the end {radius:.3}",
            r.grad_norm.first().copied().unwrap_or(f64::NAN),
            finite.iter().cloned().fold(0.0, f64::max),
            if clip.is_some() {
                format!(", clipped at {} of {} steps", r.clipped, r.grad_norm.len())
            } else {
                String::new()
            },
            r.train_loss.first().copied().unwrap_or(f64::NAN),
            r.train_loss.last().copied().unwrap_or(f64::NAN),
            r.diverged_at
                .map(|s| format!(", DIVERGED (non-finite) at step {s}"))
                .unwrap_or_default()
        );
        out.push((name, r));
    }
    Ok(out)
}

/// log10 of positive values; NaN (drawn gray) for zero or non-finite ones.
fn log10(v: f64) -> f64 {
    if v > 0.0 && v.is_finite() {
        v.log10()
    } else {
        f64::NAN
    }
}

fn plot(
    out: &Path,
    task: &Task,
    runs: &[CellRun],
    explode: Option<&Vec<(String, RunResult)>>,
    a: &Args,
) -> Result<(), String> {
    let t = task.seq_len();
    let save = |fig: Figure, stem: &str| {
        fig.save(&out.join(stem))
            .map_err(|e| format!("{}: {e}", out.join(stem).display()))
    };
    let cols = runs.len().clamp(1, 2);
    // Heat maps: x = time step, y = training step, value = log10 ‖dL/dh_t‖.
    let heat: Vec<Chart> = runs
        .iter()
        .map(|c| {
            let recs: &[HiddenGradRecord] = &c.result.hidden_grads;
            let last = recs.last().map_or(1, |h| h.step.max(1));
            Chart::Heat(HeatMap {
                title: c.cell.to_string(),
                x_label: "time step t".into(),
                y_label: "training step".into(),
                value_label: "log10 ||dL/dh_t||".into(),
                rows: recs.len(),
                cols: t,
                values: recs
                    .iter()
                    .flat_map(|h| h.norms.iter().map(|&v| log10(v)))
                    .collect(),
                x_range: (0.0, t as f64),
                y_range: (0.0, last as f64),
            })
        })
        .collect();
    save(
        Figure {
            title: format!(
                "{}, T = {t}: log10 ||dL/dh_t|| on a fixed batch along training",
                task.name()
            ),
            columns: cols,
            charts: heat,
        },
        "heatmap",
    )?;
    let curves = |pick: &dyn Fn(&CellRun) -> &Snapshot, title: &str| {
        Chart::Line(LineChart {
            title: title.into(),
            x_label: "time step t".into(),
            y_label: "||dL/dh_t||".into(),
            log_y: true,
            series: runs
                .iter()
                .map(|r| Series {
                    name: r.cell.to_string(),
                    points: pick(r).norms[0]
                        .iter()
                        .enumerate()
                        .map(|(k, &v)| (k as f64, v))
                        .collect(),
                })
                .collect(),
        })
    };
    save(
        Figure {
            title: format!("{}, T = {t}: ||dL/dh_t|| per step", task.name()),
            columns: 2,
            charts: vec![
                curves(&|r| &r.init, "at initialization"),
                curves(&|r| &r.after, "after training"),
            ],
        },
        "hidden_grads",
    )?;
    let jac = |pick: &dyn Fn(&CellRun) -> &Snapshot, title: &str| {
        Chart::Line(LineChart {
            title: title.into(),
            x_label: "time step t".into(),
            y_label: "||d state_t / d state_t-1||".into(),
            log_y: true,
            series: runs
                .iter()
                .map(|r| Series {
                    name: r.cell.to_string(),
                    points: pick(r).jacobians[0]
                        .state
                        .iter()
                        .enumerate()
                        .map(|(k, &v)| (k as f64, v))
                        .collect(),
                })
                .collect(),
        })
    };
    save(
        Figure {
            title: format!(
                "{}, T = {t}: spectral norm of the step Jacobian along one sequence",
                task.name()
            ),
            columns: 2,
            charts: vec![
                jac(&|r| &r.init, "at initialization"),
                jac(&|r| &r.after, "after training"),
            ],
        },
        "jacobian",
    )?;
    if let Some(ex) = explode {
        let line = |title: &str, y: &str, f: &dyn Fn(&RunResult) -> &Vec<f64>| {
            Chart::Line(LineChart {
                title: title.into(),
                x_label: "training step".into(),
                y_label: y.into(),
                log_y: true,
                series: ex
                    .iter()
                    .map(|(name, r)| Series {
                        name: name.clone(),
                        points: f(r)
                            .iter()
                            .enumerate()
                            .map(|(k, &v)| ((k + 1) as f64, v))
                            .collect(),
                    })
                    .collect(),
            })
        };
        save(
            Figure {
                title: format!(
                    "exploding gradients: ReLU RNN, W_hh = {} I at the start, SGD(lr={})",
                    a.explode_scale, a.explode_lr
                ),
                columns: 2,
                charts: vec![
                    line("training loss", "loss", &|r| &r.train_loss),
                    line("gradient norm (before clipping)", "||g||", &|r| {
                        &r.grad_norm
                    }),
                ],
            },
            "explode",
        )?;
    }
    Ok(())
}

/// `--model DIR --text FILE`: a character LM, L = the cross-entropy of the last character of
/// windows of `--length` characters.
fn run_model(a: &Args, dir: &Path, out: &Path) -> Result<(), String> {
    let text_path = a.text.as_ref().expect("clap requires --text with --model");
    let (lm, vocab) = recur::models::lm::load_dir::<f32>(dir).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(text_path)
        .map_err(|e| format!("--text {}: cannot read: {e}", text_path.display()))?;
    let ids = vocab.encode(&text);
    let t = a.length;
    if ids.len() < t + 1 {
        return Err(format!(
            "--text {}: {} characters, fewer than --length + 1 = {}",
            text_path.display(),
            ids.len(),
            t + 1
        ));
    }
    // B windows spread over the text: input ids[s..s+T], target ids[s+T].
    let b = a.batch_size.min(ids.len() - t);
    let stride = (ids.len() - t) / b;
    let starts: Vec<usize> = (0..b).map(|k| k * stride).collect();
    let mut input = vec![0usize; t * b]; // (T, B) time-major
    for (s, &st) in starts.iter().enumerate() {
        for ti in 0..t {
            input[ti * b + s] = ids[st + ti];
        }
    }
    let targets: Vec<i64> = starts.iter().map(|&st| ids[st + t] as i64).collect();
    let e = lm.config().embed_size;
    let mut x = vec![0.0f32; t * b * e];
    lm.embed()
        .forward(&input, &mut x)
        .map_err(|e| e.to_string())?;
    let x = Tensor::new(&[t, b, e], x).map_err(|e| e.to_string())?;
    let rnn = lm.rnn();
    let (o, tape) = rnn
        .forward_train(&x, None, None, Dropout::Off)
        .map_err(|e| e.to_string())?;
    let h = lm.config().hidden_size;
    let v = lm.config().vocab_size;
    let last = &o.output.data()[(t - 1) * b * h..]; // (B, H)
    let mut logits = vec![0.0f32; b * v];
    lm.head().forward(last, b, &mut logits);
    let (loss, dlogits) =
        softmax_cross_entropy(&logits, v, &targets, -100).map_err(|e| e.to_string())?;
    let mut dlast = vec![0.0f32; b * h];
    let mut hg = lm.head().zeros_like_params();
    lm.head()
        .backward(last, &dlogits, b, &mut hg, Some(&mut dlast));
    let mut dy = vec![0.0f32; t * b * h];
    dy[(t - 1) * b * h..].copy_from_slice(&dlast);
    let dy = Tensor::new(&[t, b, h], dy).map_err(|e| e.to_string())?;
    let mut grads = rnn.zeros_like_params();
    let mut rec = HiddenGrads::new();
    rnn.backward_with(&tape, Some(&dy), None, None, &mut grads, &mut rec)
        .map_err(|e| e.to_string())?;
    let norms: Vec<Vec<f64>> = (0..rec.num_layers())
        .flat_map(|l| (0..rec.num_directions()).map(move |d| (l, d)))
        .map(|(l, d)| rec.norms(l, d))
        .collect();
    let first: Vec<f32> = (0..t)
        .flat_map(|ti| x.data()[(ti * b) * e..(ti * b + 1) * e].to_vec())
        .collect();
    let snap = snapshot(rnn, &first, norms)?;
    println!(
        "{}: {} ({} layers), L = cross-entropy of the character after {b} windows of {t} \
         characters of {} = {:.4}",
        dir.display(),
        recur::io::state_dict::describe(rnn.config()),
        rnn.config().num_layers,
        text_path.display(),
        loss
    );
    print_snapshot("model", &snap);
    let charts: Vec<Chart> = vec![Chart::Line(LineChart {
        title: format!("||dL/dh_t||, L = cross-entropy at step {}", t - 1),
        x_label: "time step t".into(),
        y_label: "||dL/dh_t||".into(),
        log_y: true,
        series: snap
            .norms
            .iter()
            .enumerate()
            .map(|(k, n)| Series {
                name: format!("layer {k}"),
                points: n.iter().enumerate().map(|(i, &v)| (i as f64, v)).collect(),
            })
            .collect(),
    })];
    Figure {
        title: format!("{}: gradient flow", dir.display()),
        columns: 1,
        charts,
    }
    .save(&out.join("hidden_grads"))
    .map_err(|e| format!("{}: {e}", out.join("hidden_grads").display()))?;
    write_json(
        out,
        &json!({"model": dir.display().to_string(), "length": t, "loss": loss as f64,
                "layers": snapshot_json(&snap)}),
    )?;
    println!(
        "wrote {}/gradients.json, hidden_grads (.svg, .png)",
        out.display()
    );
    Ok(())
}

/// `recur train --grad-stats`: the gradient statistics of every training step
/// ([`recur::analysis::diagnostics::GradStats`]), before clipping: one line per step in
/// `grad_stats.csv` (step, global norm, whether clipping fired, the norm of every parameter
/// group), warnings in the log on spikes and non-finite values, and a summary at the end.
pub struct GradStatsLog {
    stats: GradStats,
    max_norm: Option<f64>,
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
}

/// The file `--grad-stats` writes in the model directory.
pub const GRAD_STATS_FILE: &str = "grad_stats.csv";

impl GradStatsLog {
    /// Opens `dir/grad_stats.csv` (appending when resuming a run) for parameter groups
    /// `names`; clipping to `max_norm` (None: off) counts as fired when the global norm is
    /// above it.
    pub fn create(
        dir: &Path,
        names: &[&str],
        max_norm: Option<f64>,
        append: bool,
    ) -> Result<GradStatsLog, String> {
        use std::io::Write;
        let path = dir.join(GRAD_STATS_FILE);
        let exists = path.exists();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&path)
            .map_err(|e| format!("--grad-stats: cannot write {}: {e}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        if !(append && exists) {
            let cols: Vec<String> = names.iter().map(|n| format!("norm_{n}")).collect();
            writeln!(out, "step,global_norm,clipped,{}", cols.join(","))
                .map_err(|e| format!("--grad-stats: {}: {e}", path.display()))?;
        }
        Ok(GradStatsLog {
            stats: GradStats::new(GradStatsConfig::default()),
            max_norm,
            path,
            out,
        })
    }

    /// Measures the gradients of training step `step` (before clipping); returns the warning
    /// lines for the log.
    pub fn observe(
        &mut self,
        step: u64,
        params: &[(String, &[f32])],
    ) -> Result<Vec<String>, String> {
        use std::io::Write;
        let s = self.stats.observe(params, self.max_norm);
        let norms: Vec<String> = s.param_norms.iter().map(|(_, n)| n.to_string()).collect();
        writeln!(
            self.out,
            "{step},{},{},{}",
            s.global_norm,
            u8::from(s.clipped),
            norms.join(",")
        )
        .map_err(|e| format!("--grad-stats: {}: {e}", self.path.display()))?;
        Ok(s.warnings
            .iter()
            .map(|w| format!("step {step}: {w}"))
            .collect())
    }

    /// Flushes the file and returns the summary line.
    pub fn finish(&mut self) -> Result<String, String> {
        use std::io::Write;
        self.out
            .flush()
            .map_err(|e| format!("--grad-stats: {}: {e}", self.path.display()))?;
        let st = &self.stats;
        Ok(format!(
            "gradient statistics ({}): {} steps, clipping fired at {} ({:.1}%), {} spikes over \
             {}x the running median, {} steps with non-finite gradients; median global norm of \
             the last {} steps {}",
            self.path.display(),
            st.steps(),
            st.clipped(),
            100.0 * st.clip_rate(),
            st.spikes(),
            GradStatsConfig::default().spike_factor,
            st.non_finite(),
            GradStatsConfig::default().window,
            st.running_median()
                .map_or("-".to_string(), |m| format!("{m:.4e}"))
        ))
    }
}
