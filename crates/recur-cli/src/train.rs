//! `recur train lm`: a character-level language model trained on a text file, the way char-rnn
//! does it: the text cut into `--batch-size` streams, read `--seq-len` characters at a time
//! with the state carried from chunk to chunk (truncated BPTT), Adam or SGD, gradient-norm
//! clipping, evaluation on a validation text, and the best model on validation kept.
//!
//! ```text
//! recur train lm --train FILE [--valid FILE] --out DIR [--cell lstm] [--hidden-size 128]
//!     [--num-layers 2] [--embed-size 64] [--dropout 0] [--seq-len 64] [--batch-size 32]
//!     [--lr 2e-3] [--optimizer adam|sgd] [--clip-grad-norm 5] [--steps N | --epochs N]
//!     [--eval-every N] [--seed S]
//! ```
//!
//! `DIR` gets `model.safetensors` (PyTorch names: `embed.weight`, `rnn.weight_ih_l0`, ...,
//! `head.weight`, `head.bias`), `config.json`, `vocab.json` and `metrics.json`.

use clap::{Args as ClapArgs, Subcommand};
use recur::lm::{save_dir, seeded_rng, CharLm, CharLmConfig, Eval, RngCore, SampleOptions};
use recur::nn::{Adam, AdamConfig, Sgd, SgdConfig};
use recur::text::{unigram_bits, Batches, Vocab};
use recur::{Mode, State};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options of `recur train`.
#[derive(ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Train a character-level language model on a text file (char-rnn style: embedding,
    /// recurrent layers, linear head; truncated BPTT over contiguous streams).
    Lm(LmArgs),
}

/// Options of `recur train lm`.
#[derive(ClapArgs)]
pub struct LmArgs {
    /// The training text (UTF-8).
    #[arg(long, value_name = "FILE")]
    train: PathBuf,
    /// The validation text (UTF-8); by default the last 5% of the training text is held out.
    #[arg(long, value_name = "FILE")]
    valid: Option<PathBuf>,
    /// The model directory to write: model.safetensors, config.json, vocab.json, metrics.json.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Recurrent cell: lstm, gru, rnn_tanh or rnn_relu.
    #[arg(long, default_value = "lstm")]
    cell: String,
    /// Hidden size of every recurrent layer.
    #[arg(long, default_value_t = 128)]
    hidden_size: usize,
    /// Recurrent layers.
    #[arg(long, default_value_t = 2)]
    num_layers: usize,
    /// Size of the character embeddings.
    #[arg(long, default_value_t = 64)]
    embed_size: usize,
    /// Dropout probability between recurrent layers and before the head (training only).
    #[arg(long, default_value_t = 0.0)]
    dropout: f64,
    /// Steps of backpropagation through time: characters per stream in a chunk.
    #[arg(long, default_value_t = 64)]
    seq_len: usize,
    /// Streams read in parallel (the text is cut into this many contiguous parts).
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Optimizer: adam or sgd (plain SGD, no momentum).
    #[arg(long, default_value = "adam")]
    optimizer: String,
    /// Clip the global gradient norm to this value (0: no clipping).
    #[arg(long, default_value_t = 5.0)]
    clip_grad_norm: f64,
    /// Training steps (chunks); by default --epochs passes over the training text.
    #[arg(long, conflicts_with = "epochs")]
    steps: Option<usize>,
    /// Passes over the training text (default 10, unless --steps is given).
    #[arg(long)]
    epochs: Option<usize>,
    /// Evaluate on the validation text every N steps, and at the end (default: 10
    /// evaluations per run).
    #[arg(long, value_name = "N")]
    eval_every: Option<usize>,
    /// Seed of the initialization, dropout and the final sample.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    log_every: f64,
    /// Characters of the sample printed at the end (0: none).
    #[arg(long, default_value_t = 200)]
    sample_length: usize,
}

pub fn run(a: Args) -> Result<(), String> {
    match a.what {
        What::Lm(a) => run_lm(a),
    }
}

/// Reads a UTF-8 text file for `flag`; one-line errors for a missing, empty or non-UTF-8 file.
pub(crate) fn read_text(flag: &str, path: &Path) -> Result<String, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("{flag} {}: cannot read: {e}", path.display()))?;
    if bytes.is_empty() {
        return Err(format!("{flag} {}: the file is empty", path.display()));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "{flag} {}: not UTF-8 text (invalid byte at offset {}); give a UTF-8 text file",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

enum Opt {
    Adam(Adam<f32>),
    Sgd(Sgd<f32>),
}

impl Opt {
    fn step(&mut self, model: &mut CharLm<f32>, grads: &recur::lm::CharLmGrads<f32>) {
        let mut parts = model.parts(grads);
        match self {
            Opt::Adam(o) => o.step_parts(&mut parts),
            Opt::Sgd(o) => o.step_parts(&mut parts),
        }
    }
}

fn check(a: &LmArgs) -> Result<Mode, String> {
    let mode: Mode = a
        .cell
        .parse()
        .map_err(|e: recur::Error| format!("--cell: {e}"))?;
    let positive = |name: &str, v: usize| {
        if v == 0 {
            Err(format!("{name} must be at least 1"))
        } else {
            Ok(())
        }
    };
    positive("--hidden-size", a.hidden_size)?;
    positive("--num-layers", a.num_layers)?;
    positive("--embed-size", a.embed_size)?;
    positive("--seq-len", a.seq_len)?;
    positive("--batch-size", a.batch_size)?;
    if let Some(s) = a.steps {
        positive("--steps", s)?;
    }
    if let Some(e) = a.epochs {
        positive("--epochs", e)?;
    }
    if let Some(e) = a.eval_every {
        positive("--eval-every", e)?;
    }
    if !(0.0..1.0).contains(&a.dropout) {
        return Err(format!("--dropout must be in [0, 1), got {}", a.dropout));
    }
    if !(a.lr.is_finite() && a.lr > 0.0) {
        return Err(format!("--lr must be a positive number, got {}", a.lr));
    }
    if !(a.clip_grad_norm.is_finite() && a.clip_grad_norm >= 0.0) {
        return Err(format!(
            "--clip-grad-norm must be a number >= 0 (0: no clipping), got {}",
            a.clip_grad_norm
        ));
    }
    if !(a.log_every.is_finite() && a.log_every > 0.0) {
        return Err(format!(
            "--log-every must be a positive number of seconds, got {}",
            a.log_every
        ));
    }
    match a.optimizer.as_str() {
        "adam" | "sgd" => {}
        other => {
            return Err(format!(
                "--optimizer: expected 'adam' or 'sgd', got '{other}'"
            ))
        }
    }
    Ok(mode)
}

/// `1h02m`, `3m05s`, `42s`
fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// `812`, `25.3k`, `1.20M`
fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// One point of the validation curve.
struct Point {
    step: usize,
    epoch: f64,
    train_loss: f64,
    valid: Eval,
    seconds: f64,
}

impl Point {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "step": self.step,
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "train_bpc": self.train_loss / std::f64::consts::LN_2,
            "valid_loss": self.valid.loss,
            "valid_bpc": self.valid.bpc,
            "seconds": self.seconds,
        })
    }
}

/// The first character to prime the final sample with: a newline if the vocabulary has one.
pub(crate) fn default_prime(vocab: &Vocab) -> String {
    if vocab.contains('\n') {
        "\n".into()
    } else {
        vocab
            .chars()
            .first()
            .map_or_else(String::new, |c| c.to_string())
    }
}

fn run_lm(a: LmArgs) -> Result<(), String> {
    let mode = check(&a)?;
    let start = Instant::now();

    // Data.
    let full = read_text("--train", &a.train)?;
    let (train_text, valid_text, held_out) = match &a.valid {
        Some(p) => (full.as_str(), read_text("--valid", p)?, false),
        None => {
            let n = full.chars().count();
            let n_valid = n.div_ceil(20);
            if n < 4 {
                return Err(format!(
                    "--train {}: {n} characters are too few to hold out 5% for validation; give --valid FILE",
                    a.train.display()
                ));
            }
            let n_valid = n_valid.max(2);
            let split = full
                .char_indices()
                .nth(n - n_valid)
                .map(|(i, _)| i)
                .unwrap_or(full.len());
            (&full[..split], full[split..].to_string(), true)
        }
    };
    let vocab = Vocab::from_text(train_text);
    let train_ids = vocab.encode(train_text);
    let valid_ids = vocab.encode(&valid_text);
    if valid_ids.len() < 2 {
        return Err(format!(
            "--valid {}: the validation text needs at least 2 characters",
            a.valid.as_deref().unwrap_or(&a.train).display()
        ));
    }
    let unknown = vocab.count_unknown(&valid_text);
    let batches = Batches::new(&train_ids, a.batch_size, a.seq_len).map_err(|_| {
        format!(
            "the training text ({} characters) is too short for --batch-size {}: it needs at least {}",
            train_ids.len(),
            a.batch_size,
            a.batch_size + 1
        )
    })?;
    let chunks = batches.num_chunks();
    let total = match (a.steps, a.epochs) {
        (Some(s), _) => s,
        (None, e) => e.unwrap_or(10) * chunks,
    };
    let eval_every = a.eval_every.unwrap_or_else(|| total.div_ceil(10).max(1));
    let unigram = unigram_bits(&train_ids, &valid_ids, vocab.len());

    // Model and optimizer.
    let config = CharLmConfig::new(mode, vocab.len())
        .embed_size(a.embed_size)
        .hidden_size(a.hidden_size)
        .num_layers(a.num_layers)
        .dropout(a.dropout);
    let mut model: CharLm<f32> = CharLm::new(config.clone(), a.seed).map_err(|e| e.to_string())?;
    let mut opt = if a.optimizer == "adam" {
        Opt::Adam(Adam::new(
            model.num_params(),
            AdamConfig::default().lr(a.lr),
        ))
    } else {
        Opt::Sgd(Sgd::new(model.num_params(), SgdConfig::default().lr(a.lr)))
    };
    let mut grads = model.zeros_like_grads();
    let mut rng = seeded_rng(a.seed ^ 0xd50b_0d50_b0d5_0b0d);

    println!(
        "data: {} training characters ({}), {} validation characters ({}{}); vocabulary {} (with <unk>)",
        train_ids.len(),
        a.train.display(),
        valid_ids.len(),
        if held_out {
            format!("the last 5% of {}", a.train.display())
        } else {
            a.valid.as_ref().unwrap().display().to_string()
        },
        if unknown > 0 {
            format!(", {unknown} not in the vocabulary")
        } else {
            String::new()
        },
        vocab.len()
    );
    println!(
        "model: Embedding({}, {}) -> {} -> Dropout({}) -> Linear({}, {}); {} parameters",
        vocab.len(),
        a.embed_size,
        recur::state_dict::describe(&config.rnn_config()),
        a.dropout,
        a.hidden_size,
        vocab.len(),
        model.num_params()
    );
    println!(
        "training: {total} steps ({:.2} epochs of {chunks} chunks: {} streams x {} steps), {}(lr={}), clip_grad_norm {}, seed {}; evaluation every {eval_every} steps",
        total as f64 / chunks as f64,
        a.batch_size,
        a.seq_len,
        if a.optimizer == "adam" { "Adam" } else { "SGD" },
        a.lr,
        if a.clip_grad_norm > 0.0 { a.clip_grad_norm.to_string() } else { "off".into() },
        a.seed
    );
    println!("unigram baseline on the validation text: {unigram:.4} bpc");

    let training_json = serde_json::json!({
        "train": a.train.display().to_string(),
        "valid": a.valid.as_ref().map(|p| p.display().to_string()),
        "valid_held_out": held_out,
        "seq_len": a.seq_len,
        "batch_size": a.batch_size,
        "optimizer": a.optimizer,
        "lr": a.lr,
        "clip_grad_norm": a.clip_grad_norm,
        "steps": total,
        "eval_every": eval_every,
        "seed": a.seed,
    });

    let mut curve: Vec<Point> = Vec::new();
    let mut best: Option<(usize, CharLm<f32>)> = None;
    let mut state: Option<State<f32>> = None;
    let (mut log_loss, mut log_n, mut log_step) = (0.0f64, 0usize, 0usize);
    let (mut eval_loss, mut eval_n) = (0.0f64, 0usize);
    let mut last_log = Instant::now();
    let train_start = Instant::now();
    let mut train_secs = 0.0f64; // time in training steps only, for the rates
    let chars_per_step = |k: usize| batches.chunk(k % chunks).steps * a.batch_size;
    for step in 1..=total {
        let k = (step - 1) % chunks;
        if k == 0 {
            state = None; // a new pass over the text starts from zero states
        }
        let t0 = Instant::now();
        let chunk = batches.chunk(k);
        grads.zero();
        let dropout_rng: Option<&mut dyn RngCore> = if a.dropout > 0.0 {
            Some(&mut rng)
        } else {
            None
        };
        let (loss, next) = model
            .loss_and_grad(&chunk, state.as_ref(), dropout_rng, &mut grads)
            .map_err(|e| e.to_string())?;
        if !loss.is_finite() {
            return Err(format!(
                "training diverged at step {step} (loss {loss}); try a smaller --lr"
            ));
        }
        if a.clip_grad_norm > 0.0 {
            grads.clip_norm(a.clip_grad_norm);
        }
        opt.step(&mut model, &grads);
        state = Some(next);
        train_secs += t0.elapsed().as_secs_f64();
        log_loss += loss;
        log_n += 1;
        eval_loss += loss;
        eval_n += 1;

        if last_log.elapsed().as_secs_f64() >= a.log_every || step == total {
            let steps_done = step - log_step;
            let dt = last_log.elapsed().as_secs_f64().max(1e-9);
            let chars: usize = (log_step..step).map(chars_per_step).sum();
            let rate = steps_done as f64 / dt;
            let mean = log_loss / log_n as f64;
            let per_step = train_secs / step as f64;
            println!(
                "step {step:>w$}/{total}  epoch {:5.2}  loss {mean:.4}  bpc {:.4}  {rate:6.2} steps/s  {} chars/s  ETA {}",
                step as f64 / chunks as f64,
                mean / std::f64::consts::LN_2,
                si(chars as f64 / dt),
                duration(per_step * (total - step) as f64),
                w = total.to_string().len()
            );
            log_loss = 0.0;
            log_n = 0;
            log_step = step;
            last_log = Instant::now();
        }

        if step % eval_every == 0 || step == total {
            let valid = model
                .evaluate(&valid_ids, a.batch_size, a.seq_len)
                .map_err(|e| e.to_string())?;
            let improved = curve.iter().all(|p| valid.loss < p.valid.loss);
            curve.push(Point {
                step,
                epoch: step as f64 / chunks as f64,
                train_loss: eval_loss / eval_n.max(1) as f64,
                valid,
                seconds: start.elapsed().as_secs_f64(),
            });
            eval_loss = 0.0;
            eval_n = 0;
            if improved {
                save_dir(&a.out, &model, &vocab, Some(&training_json))
                    .map_err(|e| e.to_string())?;
                best = Some((step, model.clone()));
            }
            println!(
                "eval at step {step}: valid loss {:.4}  bpc {:.4}{}",
                valid.loss,
                valid.bpc,
                if improved {
                    "  (best so far: saved)"
                } else {
                    ""
                }
            );
            // The evaluation's time does not count in the next progress line's rates.
            last_log = Instant::now();
            log_step = step;
            log_loss = 0.0;
            log_n = 0;
        }
    }
    let seconds = train_start.elapsed().as_secs_f64();
    let (best_step, best_model) = best.expect("at least one evaluation");
    let best_point = curve
        .iter()
        .find(|p| p.step == best_step)
        .expect("the best step is on the curve");
    let last = curve.last().expect("at least one evaluation");
    let chars_trained: usize = (0..total).map(chars_per_step).sum();

    let metrics = serde_json::json!({
        "final": last.json(),
        "best": best_point.json(),
        "unigram_bpc": unigram,
        "train_chars": train_ids.len(),
        "valid_chars": valid_ids.len(),
        "valid_targets": last.valid.targets,
        "valid_unknown_chars": unknown,
        "vocab_size": vocab.len(),
        "num_params": model.num_params(),
        "steps": total,
        "epochs": total as f64 / chunks as f64,
        "seconds": seconds,
        "steps_per_second": total as f64 / train_secs.max(1e-9),
        "chars_per_second": chars_trained as f64 / train_secs.max(1e-9),
        "curve": curve.iter().map(Point::json).collect::<Vec<_>>(),
    });
    let metrics_path = a.out.join("metrics.json");
    recur::state_dict::write_atomic(
        &metrics_path,
        serde_json::to_string_pretty(&metrics)
            .expect("JSON of the metrics")
            .as_bytes(),
    )
    .map_err(|e| e.to_string())?;

    println!();
    println!(
        "final validation: loss {:.4}  bpc {:.4} (step {}); best: loss {:.4}  bpc {:.4} (step {best_step}, kept); unigram baseline {unigram:.4} bpc",
        last.valid.loss, last.valid.bpc, last.step, best_point.valid.loss, best_point.valid.bpc
    );
    println!(
        "trained {total} steps in {} ({:.2} steps/s, {} chars/s); model in {}",
        duration(seconds),
        total as f64 / train_secs.max(1e-9),
        si(chars_trained as f64 / train_secs.max(1e-9)),
        a.out.display()
    );
    if a.sample_length > 0 {
        let prime = default_prime(&vocab);
        let opts = SampleOptions {
            temperature: 0.8,
            top_k: None,
            seed: a.seed,
            exclude: vec![Vocab::UNK],
        };
        let ids = best_model
            .sample(&vocab.encode(&prime), a.sample_length, &opts)
            .map_err(|e| e.to_string())?;
        println!(
            "sample (best model, temperature 0.8, seed {}):\n{}{}",
            a.seed,
            prime,
            vocab.decode(&ids)
        );
    }
    Ok(())
}
