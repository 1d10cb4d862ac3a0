//! `recur demo`: learn to tell balanced bracket strings from near misses.
//!
//! The data is generated here: strings over `()[]` of even length. Half are balanced; the
//! other half are balanced strings with one small corruption (a bracket of the wrong type, one
//! bracket turned around, or two brackets swapped), so the classes have the same lengths and
//! nearly the same symbol counts, and telling them apart takes a stack: a recurrent state.
//!
//! The model is one-hot → `Rnn` (LSTM by default) over variable-length batches (PackedSequence
//! semantics: `h_n` is taken at each string's own last symbol) → `Linear` → 2 classes, trained
//! with softmax cross-entropy through `recur::train::run` (Adam with a cosine decay,
//! gradient-norm clipping, the model of the best epoch on validation kept).

use clap::Args as ClapArgs;
use rand::seq::SliceRandom;
use rand::Rng;
use recur::nn::{softmax, softmax_cross_entropy, AdamConfig, Linear, OptimizerConfig};
use recur::train::checkpoint::{Checkpoint, CheckpointWriter};
use recur::train::{Hooks, Metrics, Part, Point, StepStats, Task, TrainConfig, TrainError};
use recur::{Dropout, Mode, Rnn, RnnConfig, Tensor};
use std::cell::RefCell;
use std::path::Path;
use std::time::Instant;

/// Options of `recur demo`.
#[derive(ClapArgs)]
pub struct Args {
    /// Recurrent cell: lstm, gru, rnn_tanh or rnn_relu.
    #[arg(long, default_value = "lstm")]
    cell: String,
    /// Hidden size of the recurrent layer.
    #[arg(long, default_value_t = 64)]
    hidden_size: usize,
    /// Passes over the training set.
    #[arg(long, default_value_t = 16)]
    epochs: usize,
    /// Strings per mini-batch.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    /// Seed of the data, the initialization and the batch order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of training strings (validation gets a tenth as many, test a fifth).
    #[arg(long, default_value_t = 10000)]
    train_size: usize,
    /// Longest string length (even, at least 2): lengths are drawn from 2, 4, ..., max-len.
    #[arg(long, default_value_t = 24)]
    max_len: usize,
    /// Where to write the plots (training curves, accuracy by length) and the model's
    /// weights.
    #[arg(long, value_name = "DIR", default_value = "recur-demo")]
    out: std::path::PathBuf,
}

/// The demo's generator (data, batch order): `rand`'s standard generator, seeded.
type DemoRng = rand::rngs::StdRng;

/// A generator seeded with `seed`.
fn demo_rng(seed: u64) -> DemoRng {
    use rand::SeedableRng;
    DemoRng::seed_from_u64(seed)
}

/// Symbols: 0 `(`, 1 `)`, 2 `[`, 3 `]`. Opening brackets are even, `t ^ 1` turns a bracket
/// around and `t ^ 2` changes its type.
const SYMBOLS: [char; 4] = ['(', ')', '[', ']'];
const VOCAB: usize = SYMBOLS.len();
const CLASSES: usize = 2;
const GRAD_CLIP: f64 = 1.0;
const EVAL_BATCH: usize = 256;
/// The extra test set holds strings up to this much longer than the longest training string.
const LONGER: usize = 16;
/// The learning rate decays along a cosine from `--lr` to `--lr` / LR_FLOOR.
const LR_FLOOR: f64 = 20.0;

/// How a string was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Balanced,
    /// One bracket changed type: `(` ↔ `[`, `)` ↔ `]`.
    Mismatch,
    /// One bracket turned around: `(` ↔ `)`.
    Flip,
    /// Two different brackets swapped (the symbol counts are unchanged).
    Swap,
}

const KINDS: [Kind; 4] = [Kind::Balanced, Kind::Mismatch, Kind::Flip, Kind::Swap];

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Balanced => "balanced",
            Kind::Mismatch => "one bracket of the wrong type",
            Kind::Flip => "one bracket turned around",
            Kind::Swap => "two brackets swapped",
        }
    }
}

#[derive(Clone, Debug)]
struct Sample {
    /// (len): symbols 0..4
    tokens: Vec<u8>,
    kind: Kind,
}

impl Sample {
    /// 1 = balanced, 0 = not.
    fn label(&self) -> usize {
        usize::from(self.kind == Kind::Balanced)
    }
    fn text(&self) -> String {
        self.tokens.iter().map(|&t| SYMBOLS[t as usize]).collect()
    }
}

fn is_balanced(tokens: &[u8]) -> bool {
    let mut stack = Vec::with_capacity(tokens.len());
    for &t in tokens {
        if t % 2 == 0 {
            stack.push(t);
        } else if stack.pop() != Some(t - 1) {
            return false;
        }
    }
    stack.is_empty()
}

/// A random balanced string of even length `len`: open while the string can still be closed
/// in time, with probability 1/2, each bracket of a random type.
fn balanced(rng: &mut DemoRng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut stack: Vec<u8> = Vec::with_capacity(len);
    for pos in 0..len {
        let remaining = len - pos;
        let open = stack.is_empty() || (stack.len() < remaining && rng.gen_bool(0.5));
        if open {
            let t = 2 * rng.gen_range(0..2u8);
            stack.push(t);
            out.push(t);
        } else {
            out.push(stack.pop().expect("an open bracket") + 1);
        }
    }
    out
}

/// One string of even length in `min_len..=max_len`: balanced with probability 1/2, else a
/// corrupted balanced string.
fn sample(rng: &mut DemoRng, min_len: usize, max_len: usize) -> Sample {
    let len = min_len + 2 * rng.gen_range(0..=(max_len - min_len) / 2);
    let mut tokens = balanced(rng, len);
    if rng.gen_bool(0.5) {
        return Sample {
            tokens,
            kind: Kind::Balanced,
        };
    }
    let kind = [Kind::Mismatch, Kind::Flip, Kind::Swap][rng.gen_range(0..3)];
    let original = tokens.clone();
    loop {
        tokens.copy_from_slice(&original);
        match kind {
            Kind::Mismatch => tokens[rng.gen_range(0..len)] ^= 2,
            Kind::Flip => tokens[rng.gen_range(0..len)] ^= 1,
            _ => {
                let (i, j) = (rng.gen_range(0..len), rng.gen_range(0..len));
                tokens.swap(i, j);
            }
        }
        if !is_balanced(&tokens) {
            return Sample { tokens, kind };
        }
    }
}

/// The classifier: one-hot symbols → recurrent layer → h_n → Linear → 2 logits.
struct Model {
    rnn: Rnn<f32>,
    head: Linear<f32>,
}

/// Per-batch buffers of the forward pass.
struct Batch {
    /// (B, T, VOCAB): one-hot symbols, zero past each string's end (batch_first)
    x: Tensor<f32>,
    /// (B)
    lengths: Vec<usize>,
    /// (B)
    targets: Vec<i64>,
}

fn make_batch(samples: &[&Sample]) -> Batch {
    let b = samples.len();
    let t = samples.iter().map(|s| s.tokens.len()).max().unwrap_or(1);
    let mut x = vec![0.0f32; b * t * VOCAB];
    for (i, s) in samples.iter().enumerate() {
        for (j, &tok) in s.tokens.iter().enumerate() {
            x[(i * t + j) * VOCAB + tok as usize] = 1.0;
        }
    }
    Batch {
        x: Tensor::new(&[b, t, VOCAB], x).expect("batch shape"),
        lengths: samples.iter().map(|s| s.tokens.len()).collect(),
        targets: samples.iter().map(|s| s.label() as i64).collect(),
    }
}

impl Model {
    /// The last layer's final hidden state, (B, H): h_n is (L·D, B, H) with D = 1.
    fn summary(&self, h_n: &Tensor<f32>) -> Vec<f32> {
        let b = h_n.shape()[1];
        let h = h_n.shape()[2];
        let last = h_n.shape()[0] - 1;
        h_n.data()[last * b * h..].to_vec()
    }

    /// P(balanced) for every string.
    fn predict(&self, samples: &[Sample]) -> Result<Vec<f32>, String> {
        let mut out = Vec::with_capacity(samples.len());
        for chunk in samples.chunks(EVAL_BATCH) {
            let refs: Vec<&Sample> = chunk.iter().collect();
            let batch = make_batch(&refs);
            let o = self
                .rnn
                .forward(&batch.x, None, Some(&batch.lengths))
                .map_err(|e| e.to_string())?;
            let hn = self.summary(&o.h_n); // (B, H)
            let mut logits = vec![0.0f32; chunk.len() * CLASSES]; // (B, 2)
            self.head.forward(&hn, chunk.len(), &mut logits);
            let p = softmax(&logits, CLASSES);
            out.extend(p.chunks_exact(CLASSES).map(|r| r[1]));
        }
        Ok(out)
    }

    /// The mean loss of `samples` and its gradients (into `g_rnn` and `g_head`, zeroed
    /// first); returns (mean loss, correct predictions).
    fn loss_and_grad(
        &mut self,
        samples: &[&Sample],
        g_rnn: &mut [f32],
        g_head: &mut [f32],
    ) -> recur::Result<(f32, usize)> {
        let b = samples.len();
        let batch = make_batch(samples);
        let (o, tape) =
            self.rnn
                .forward_train(&batch.x, None, Some(&batch.lengths), Dropout::Off)?;
        let hn = self.summary(&o.h_n); // (B, H)
        let mut logits = vec![0.0f32; b * CLASSES]; // (B, 2)
        self.head.forward(&hn, b, &mut logits);
        let (loss, dlogits) = softmax_cross_entropy(&logits, CLASSES, &batch.targets, -100)?;
        let correct = logits
            .chunks_exact(CLASSES)
            .zip(&batch.targets)
            .filter(|(r, &t)| usize::from(r[1] > r[0]) == t as usize)
            .count();

        g_rnn.fill(0.0);
        g_head.fill(0.0);
        let mut dhn = vec![0.0f32; hn.len()]; // (B, H)
        self.head.backward(&hn, &dlogits, b, g_head, Some(&mut dhn));
        let dhn = Tensor::new(o.h_n.shape(), dhn)?; // (1, B, H)
        self.rnn.backward(&tape, None, Some(&dhn), None, g_rnn)?;
        Ok((loss, correct))
    }
}

fn accuracy(samples: &[Sample], p: &[f32]) -> f64 {
    let ok = samples
        .iter()
        .zip(p)
        .filter(|(s, &p)| usize::from(p > 0.5) == s.label())
        .count();
    ok as f64 / samples.len().max(1) as f64
}

fn pct(x: f64) -> String {
    format!("{:5.1}%", 100.0 * x)
}

fn check(a: &Args) -> Result<Mode, String> {
    let mode: Mode = a.cell.parse().map_err(|e: recur::Error| e.to_string())?;
    if a.hidden_size == 0 {
        return Err("--hidden-size must be at least 1".into());
    }
    if a.epochs == 0 {
        return Err("--epochs must be at least 1".into());
    }
    if a.batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    if !(a.lr.is_finite() && a.lr > 0.0) {
        return Err(format!("--lr must be a positive number, got {}", a.lr));
    }
    if a.train_size < 10 {
        return Err(format!(
            "--train-size must be at least 10, got {}",
            a.train_size
        ));
    }
    if a.max_len < 2 || a.max_len % 2 == 1 {
        return Err(format!(
            "--max-len must be even and at least 2, got {}",
            a.max_len
        ));
    }
    Ok(mode)
}

/// The demo as a task of [`recur::train::run`]: shuffled mini-batches of the training strings,
/// validation accuracy after every epoch (with the epoch's training loss and accuracy).
struct DemoTask {
    model: Model,
    train: Vec<Sample>,
    valid: Vec<Sample>,
    g_rnn: Vec<f32>,
    g_head: Vec<f32>,
    batch_size: usize,
    order: Vec<usize>,
    order_rng: DemoRng,
    /// Batches done.
    cursor: u64,
    /// This epoch's loss sum (weighted by batch size), correct predictions and strings.
    epoch_loss: f64,
    epoch_correct: usize,
    epoch_seen: usize,
    /// The parameters of the model kept on validation (rnn, head).
    kept: RefCell<Option<(Vec<f32>, Vec<f32>)>>,
}

impl Task for DemoTask {
    fn name(&self) -> &'static str {
        "demo"
    }
    fn unit(&self) -> &'static str {
        "str"
    }
    fn steps_per_epoch(&self) -> u64 {
        self.train.len().div_ceil(self.batch_size) as u64
    }
    fn higher_is_better(&self) -> bool {
        true
    }
    fn config_json(&self) -> serde_json::Value {
        serde_json::json!({
            "train": self.train.len(),
            "batch_size": self.batch_size,
            "rnn": recur::io::state_dict::describe(self.model.rnn.config()),
        })
    }
    fn train_batch(&mut self, shard: recur::train::Shard) -> recur::Result<StepStats> {
        shard.require_whole("demo")?;
        let per_epoch = self.steps_per_epoch();
        let k = (self.cursor % per_epoch) as usize;
        if k == 0 {
            self.order.shuffle(&mut self.order_rng);
        }
        let idx =
            &self.order[k * self.batch_size..((k + 1) * self.batch_size).min(self.order.len())];
        let batch: Vec<&Sample> = idx.iter().map(|&i| &self.train[i]).collect();
        let (loss, ok) = self
            .model
            .loss_and_grad(&batch, &mut self.g_rnn, &mut self.g_head)?;
        self.cursor += 1;
        self.epoch_loss += loss as f64 * batch.len() as f64;
        self.epoch_correct += ok;
        self.epoch_seen += batch.len();
        Ok(StepStats {
            loss: loss as f64,
            units: batch.len() as u64,
        })
    }
    fn parts(&mut self) -> Vec<Part<'_>> {
        vec![
            Part {
                name: "rnn",
                params: self.model.rnn.params_mut(),
                grads: &mut self.g_rnn,
            },
            Part {
                name: "head",
                params: self.model.head.params_mut(),
                grads: &mut self.g_head,
            },
        ]
    }
    fn evaluate(&mut self) -> recur::Result<Metrics> {
        let p = self
            .model
            .predict(&self.valid)
            .map_err(recur::Error::Input)?;
        let seen = self.epoch_seen.max(1) as f64;
        let m = vec![
            ("valid_accuracy".to_string(), accuracy(&self.valid, &p)),
            ("train_loss".to_string(), self.epoch_loss / seen),
            (
                "train_accuracy".to_string(),
                self.epoch_correct as f64 / seen,
            ),
        ];
        (self.epoch_loss, self.epoch_correct, self.epoch_seen) = (0.0, 0, 0);
        Ok(m)
    }
    /// Writes the weights with PyTorch's names (`rnn.*`, `head.*`) and keeps a copy for the
    /// report.
    fn save_model(&self, dir: &Path, _training: &serde_json::Value) -> recur::Result<()> {
        let m = &self.model;
        let mut tensors = recur::io::state_dict::state_dict(m.rnn.layout(), m.rnn.params(), "rnn");
        tensors.push((
            "head.weight".into(),
            vec![CLASSES, m.head.in_features()],
            m.head.weight(),
        ));
        tensors.push((
            "head.bias".into(),
            vec![CLASSES],
            m.head.bias().expect("the head has a bias"),
        ));
        recur::io::state_dict::save_named(&tensors, dir.join(WEIGHTS))?;
        *self.kept.borrow_mut() = Some((m.rnn.params().to_vec(), m.head.params().to_vec()));
        Ok(())
    }
    fn save_state(&self, _w: &mut CheckpointWriter) {}
    fn load_state(&mut self, _c: &Checkpoint) -> recur::Result<()> {
        Ok(())
    }
    /// Puts the kept model back, for the report.
    fn finish(&mut self, _dir: &Path, _log: &mut dyn Hooks) -> recur::Result<Metrics> {
        if let Some((rnn, head)) = self.kept.borrow_mut().take() {
            self.model.rnn.params_mut().copy_from_slice(&rnn);
            self.model.head.params_mut().copy_from_slice(&head);
        }
        Ok(Vec::new())
    }
}

/// The demo's terminal: the progress bar and a line per epoch.
struct DemoHooks {
    log: crate::run::Log,
    epochs: usize,
}

impl Hooks for DemoHooks {
    fn start(&mut self, s: &recur::train::Start<'_>) -> recur::Result<()> {
        self.log
            .start_progress(crate::progress::Progress::new(s.total_steps, s.unit));
        Ok(())
    }
    // The loop's own lines (its settings) are left out: the demo describes its run itself.
    fn step(&mut self, step: u64, loss: f64, units: u64) {
        self.log.progress(step, loss, units);
    }
    fn evaluation(&mut self, e: &recur::train::Evaluation<'_>) {
        let m = |k: &str| {
            e.point
                .metrics
                .iter()
                .find(|x| x.0 == k)
                .map_or(f64::NAN, |x| x.1)
        };
        self.log.line(&format!(
            "epoch {:>2}/{}  lr {:.1e}  train loss {:.4}  train acc {}  valid acc {}  {:5.1} s{}",
            e.point.epoch.round(),
            self.epochs,
            e.point.lr,
            m("train_loss"),
            pct(m("train_accuracy")),
            pct(m("valid_accuracy")),
            e.point.seconds,
            if e.improved { "  (kept)" } else { "" }
        ));
    }
    fn finished(&mut self, _f: &recur::train::Finished<'_>) -> recur::Result<()> {
        self.log.end_progress();
        Ok(())
    }
}

/// The file of the kept model's weights in `--out`.
const WEIGHTS: &str = "model.safetensors";

pub fn run(a: Args) -> Result<(), String> {
    let mode = check(&a)?;
    let start = Instant::now();

    // Data: one generator for the data, another for the batch order.
    let mut data_rng = demo_rng(a.seed);
    let n_eval = (a.train_size / 10).max(1);
    let gen = |rng: &mut DemoRng, n: usize| -> Vec<Sample> {
        (0..n).map(|_| sample(rng, 2, a.max_len)).collect()
    };
    let train = gen(&mut data_rng, a.train_size);
    let valid = gen(&mut data_rng, n_eval);
    let test = gen(&mut data_rng, 2 * n_eval);
    // Longer than anything in training: does the learned rule extend?
    let longer: Vec<Sample> = (0..n_eval)
        .map(|_| sample(&mut data_rng, a.max_len + 2, a.max_len + LONGER))
        .collect();

    // Model: nn.LSTM(4, H) → h_n → nn.Linear(H, 2).
    let config = RnnConfig::new(mode, VOCAB, a.hidden_size).batch_first(true);
    let rnn = Rnn::<f32>::new(config.clone(), a.seed).map_err(|e| e.to_string())?;
    let head = Linear::<f32>::new(a.hidden_size, CLASSES, true, a.seed.wrapping_add(1));
    let model = Model { rnn, head };
    let n_rnn = model.rnn.params().len();
    let n_head = model.head.num_params();

    println!(
        "task: is a string over ()[] balanced? {} train / {} valid / {} test strings, even \
         lengths 2..={}; half balanced, half near misses (a bracket of the wrong type, one \
         turned around, or two swapped)",
        train.len(),
        valid.len(),
        test.len(),
        a.max_len
    );
    println!(
        "model: one-hot(4) -> {} -> h_n at each string's last symbol -> nn.Linear({}, 2); \
         {} parameters ({} + {})",
        recur::io::state_dict::describe(&config),
        a.hidden_size,
        n_rnn + n_head,
        n_rnn,
        n_head
    );
    println!(
        "training: {} epochs, batches of {}, Adam(lr={}, cosine decay to {:.1e}), \
         clip_grad_norm {}, cross-entropy, seed {}; the model of the epoch with the best \
         validation accuracy is kept",
        a.epochs,
        a.batch_size,
        a.lr,
        a.lr / LR_FLOOR,
        GRAD_CLIP,
        a.seed
    );

    let mut task = DemoTask {
        g_rnn: model.rnn.zeros_like_params(),
        g_head: model.head.zeros_like_params(),
        model,
        order: (0..train.len()).collect(),
        train,
        valid,
        batch_size: a.batch_size,
        order_rng: demo_rng(a.seed ^ 0x5eed_5eed_5eed_5eed),
        cursor: 0,
        epoch_loss: 0.0,
        epoch_correct: 0,
        epoch_seen: 0,
        kept: RefCell::new(None),
    };
    let mut train_config = TrainConfig::new(&a.out).epochs(a.epochs as u64);
    train_config.optimizer = OptimizerConfig::Adam(AdamConfig::default().lr(a.lr));
    train_config.lr_schedule = format!("cosine:eta_min={:?}", a.lr / LR_FLOOR);
    train_config.eval_every = Some(task.steps_per_epoch());
    train_config.clip_grad_norm = GRAD_CLIP;
    train_config.checkpoints = false;
    train_config.seed = a.seed;
    let mut hooks = DemoHooks {
        log: crate::run::Log::new(false),
        epochs: a.epochs,
    };
    let summary = match recur::train::run(&mut task, &train_config, &mut hooks) {
        Ok(s) => s,
        Err(e) => {
            hooks.log.abandon_progress();
            return Err(match e {
                recur::Error::Train(TrainError::NonFinite { what, step, .. }) => format!(
                    "training diverged at step {step} (non-finite {what}); try a smaller --lr"
                ),
                e => e.to_string(),
            });
        }
    };
    let kept = summary.best.as_ref().map_or(0.0, |b| b.epoch.round());
    println!("kept the model of epoch {kept} ({})", summary.reason);

    report(&a, &task.model, &task.train, &test, &longer)?;
    save(&a, &task.model, &summary.curve, &test, &longer)?;
    println!("total time {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

fn report(
    a: &Args,
    model: &Model,
    train: &[Sample],
    test: &[Sample],
    longer: &[Sample],
) -> Result<(), String> {
    let p = model.predict(test)?;
    let acc = accuracy(test, &p);
    // The majority class of the training set, predicted for every test string.
    let balanced_train = train.iter().filter(|s| s.label() == 1).count();
    let majority = usize::from(2 * balanced_train >= train.len());
    let baseline = test.iter().filter(|s| s.label() == majority).count() as f64 / test.len() as f64;
    println!();
    println!(
        "test accuracy {} ({} strings); majority-class baseline (always \"{}\") {}",
        pct(acc).trim(),
        test.len(),
        if majority == 1 {
            "balanced"
        } else {
            "unbalanced"
        },
        pct(baseline).trim()
    );

    let subset_acc = |keep: &dyn Fn(&Sample) -> bool| -> (usize, f64) {
        let (mut n, mut ok) = (0, 0);
        for (s, &q) in test.iter().zip(&p) {
            if keep(s) {
                n += 1;
                ok += usize::from(usize::from(q > 0.5) == s.label());
            }
        }
        (n, ok as f64 / n.max(1) as f64)
    };
    println!("by length:");
    let third = (a.max_len / 2).div_ceil(3) * 2; // bucket width, even
    let mut lo = 2;
    for name in ["short", "medium", "long"] {
        let hi = if name == "long" {
            a.max_len
        } else {
            (lo + third - 2).min(a.max_len)
        };
        if lo > a.max_len {
            break;
        }
        let (n, acc) = subset_acc(&|s: &Sample| (lo..=hi).contains(&s.tokens.len()));
        println!("  {name:<6} {lo:>2}..={hi:<3} {}  ({n} strings)", pct(acc));
        lo = hi + 2;
    }
    println!("by kind:");
    for kind in KINDS {
        let (n, acc) = subset_acc(&|s: &Sample| s.kind == kind);
        println!("  {:<30} {}  ({n} strings)", kind.describe(), pct(acc));
    }
    let seen: std::collections::HashSet<&[u8]> = train.iter().map(|s| &s.tokens[..]).collect();
    let dup = test.iter().filter(|s| seen.contains(&s.tokens[..])).count();
    let dup_max = test
        .iter()
        .filter(|s| seen.contains(&s.tokens[..]))
        .map(|s| s.tokens.len())
        .max()
        .unwrap_or(0);
    let (unseen_n, unseen_acc) = subset_acc(&|s: &Sample| !seen.contains(&s.tokens[..]));
    println!(
        "test strings never seen in training: {} ({unseen_n} strings; the other {dup}, all of \
         length <= {dup_max}, also occur in the training set)",
        pct(unseen_acc).trim()
    );
    let lp = model.predict(longer)?;
    println!(
        "longer than any training string ({}..={}): {} ({} strings)",
        a.max_len + 2,
        a.max_len + LONGER,
        pct(accuracy(longer, &lp)).trim(),
        longer.len()
    );

    // Examples: the longest strings of each kind, up to two mistakes, then medium-length
    // strings of every kind (in the test set's random order) to make 8.
    let mut by_len: Vec<usize> = (0..test.len()).collect();
    by_len.sort_by_key(|&k| (std::cmp::Reverse(test[k].tokens.len()), k));
    let wrong = |k: usize| usize::from(p[k] > 0.5) != test[k].label();
    let mut picks: Vec<usize> = Vec::new();
    for kind in KINDS {
        let want = if kind == Kind::Balanced { 2 } else { 1 };
        picks.extend(by_len.iter().filter(|&&k| test[k].kind == kind).take(want));
    }
    let mistakes: Vec<usize> = by_len
        .iter()
        .copied()
        .filter(|&k| wrong(k) && !picks.contains(&k))
        .take(2)
        .collect();
    picks.extend(mistakes);
    let medium = a.max_len / 3..=2 * a.max_len / 3;
    for kind in KINDS.iter().cycle().take(4 * 8) {
        if picks.len() >= 8 {
            break;
        }
        if let Some(k) = (0..test.len()).find(|&k| {
            test[k].kind == *kind && medium.contains(&test[k].tokens.len()) && !picks.contains(&k)
        }) {
            picks.push(k);
        }
    }
    println!("examples (test set, the longest first):");
    show(&picks, test, &p);
    let mut longest: Vec<usize> = (0..longer.len()).collect();
    longest.sort_by_key(|&k| (std::cmp::Reverse(longer[k].tokens.len()), k));
    let two: Vec<usize> = [true, false]
        .iter()
        .filter_map(|&bal| {
            longest
                .iter()
                .copied()
                .find(|&k| (longer[k].kind == Kind::Balanced) == bal)
        })
        .collect();
    println!("examples longer than any training string:");
    show(&two, longer, &lp);
    Ok(())
}

/// Writes the plots and the weights into `--out`: the training curves, and the accuracy by
/// string length on the test strings and on the longer ones.
fn save(
    a: &Args,
    model: &Model,
    curve: &[Point],
    test: &[Sample],
    longer: &[Sample],
) -> Result<(), String> {
    use recur_plot::{Chart, Figure, LineChart, Series};
    std::fs::create_dir_all(&a.out).map_err(|e| {
        format!(
            "--out {}: cannot create the directory: {e}",
            a.out.display()
        )
    })?;
    let by_length = |samples: &[Sample]| -> Result<Vec<(f64, f64)>, String> {
        let p = model.predict(samples)?;
        let mut acc: std::collections::BTreeMap<usize, (usize, usize)> = Default::default();
        for (s, &q) in samples.iter().zip(&p) {
            let e = acc.entry(s.tokens.len()).or_default();
            e.0 += usize::from(usize::from(q > 0.5) == s.label());
            e.1 += 1;
        }
        Ok(acc
            .into_iter()
            .map(|(len, (ok, n))| (len as f64, 100.0 * ok as f64 / n as f64))
            .collect())
    };
    let line = |title: &str, y: &str, series: Vec<Series>| {
        Chart::Line(LineChart {
            title: title.into(),
            x_label: "epoch".into(),
            y_label: y.into(),
            log_y: false,
            series,
        })
    };
    let pick = |name: &str, scale: f64| -> Vec<(f64, f64)> {
        curve
            .iter()
            .filter_map(|p| {
                let v = p.metrics.iter().find(|m| m.0 == name)?.1;
                Some((p.epoch, scale * v))
            })
            .collect()
    };
    let mut lengths = line(
        "accuracy by string length",
        "accuracy (%)",
        vec![
            Series {
                name: "test".into(),
                points: by_length(test)?,
            },
            Series {
                name: "longer than training".into(),
                points: by_length(longer)?,
            },
        ],
    );
    if let Chart::Line(c) = &mut lengths {
        c.x_label = "string length".into();
    }
    let fig = Figure {
        title: format!(
            "recur demo: is a bracket string balanced? ({})",
            recur::io::state_dict::describe(model.rnn.config())
        ),
        columns: 3,
        charts: vec![
            line(
                "training loss",
                "cross-entropy (nats)",
                vec![Series {
                    name: "train".into(),
                    points: pick("train_loss", 1.0),
                }],
            ),
            line(
                "accuracy",
                "accuracy (%)",
                vec![
                    Series {
                        name: "train".into(),
                        points: pick("train_accuracy", 100.0),
                    },
                    Series {
                        name: "valid".into(),
                        points: pick("valid_accuracy", 100.0),
                    },
                ],
            ),
            lengths,
        ],
    };
    let stem = a.out.join("demo");
    fig.save(&stem)
        .map_err(|e| format!("--out {}: cannot write the plots: {e}", a.out.display()))?;
    let weights = a.out.join(WEIGHTS);
    println!(
        "wrote {}.png and {}.svg (training curves, accuracy by length), {} (the kept model; PyTorch names: rnn.*, head.*) and metrics.json",
        stem.display(),
        stem.display(),
        weights.display()
    );
    Ok(())
}

/// Prints one line per string: the string, its true and predicted labels, the confidence.
fn show(picks: &[usize], samples: &[Sample], p: &[f32]) {
    let width = picks
        .iter()
        .map(|&k| samples[k].tokens.len())
        .max()
        .unwrap_or(0);
    for &k in picks {
        let s = &samples[k];
        let pred = usize::from(p[k] > 0.5);
        let conf = if pred == 1 { p[k] } else { 1.0 - p[k] };
        let name = |c: usize| if c == 1 { "balanced" } else { "unbalanced" };
        println!(
            "  {:<5} {:<width$}  true {:<10}  predicted {:<10} {:5.1}%  ({}, length {})",
            if pred == s.label() { "ok" } else { "WRONG" },
            s.text(),
            name(s.label()),
            name(pred),
            100.0 * conf,
            s.kind.describe(),
            s.tokens.len()
        );
    }
}
