//! The long-range benchmarks: seeded, deterministic generators for the tasks that show what a
//! recurrent cell can remember, and a small training loop to run them.
//!
//! - [`adding_batch`]: the adding problem (Hochreiter & Schmidhuber 1997) in the form of Le,
//!   Jaitly & Hinton (2015): T steps of two channels, a value from U(0, 1) and a marker that is
//!   1 at exactly two steps, one in each half; the target is the sum of the two marked values.
//!   Always answering 1 has MSE Var(a + b) = 2/12 = 1/6 ([`ADDING_BASELINE_MSE`]).
//! - [`copy_batch`]: the copy-memory task (Arjovsky, Shah & Bengio 2016): 10 symbols from 8
//!   categories, T blanks, a delimiter, and the 10 symbols must be output after it. Blanks
//!   everywhere then uniform guesses has cross-entropy 10·ln 8 / (T + 20) ([`copy_baseline`]).
//! - [`Digits`]: 8×8 digit images (a CSV of 64 pixel values and a label per line, optionally
//!   gzip-compressed) read one row or one pixel per step, a small stand-in for sequential MNIST.
//!
//! [`Task`] wraps them behind one interface and [`train`] trains a one-layer model on one of
//! them: one-hot or real-valued input → [`Rnn`] → [`Linear`] head (on the last hidden state, or
//! at every step for the copy task), evaluation on a fixed held-out set, and optionally a record
//! of ‖dL/dh_t‖ and the gradient norm along training. The steps are the library's training loop
//! ([`crate::train::run`]; the optimizer, clipping, the non-finite policy, the early stop once
//! solved, metrics.json and the best model are its): a run is a [`crate::train::Task`] whose
//! fused layer and head are f32 parts and whose expRNN parameters are f64 parts
//! ([`crate::train::Part64`]).

use crate::analysis::diagnostics::HiddenGrads;
use crate::core::config::{Mode, RnnConfig};
use crate::core::init;
use crate::core::layout::ParamKind;
use crate::core::rnn::{Dropout, Output, Rnn, State};
use crate::core::tensor::Tensor;
use crate::error::{Error, Result};
use crate::io::state_dict::{state_dict, write_atomic, write_tensors, OutTensor};
use crate::models::exprnn::{Activation, ExpInit, ExpRnn};
use crate::nn::{softmax_cross_entropy, Linear, OptimizerConfig};
use crate::train::checkpoint::{rng_from_state, rng_state, Checkpoint, CheckpointWriter};
use crate::train::{
    Hooks, Metrics, NonFinite, Part, Part64, Shard, StepStats, Task as TrainTask,
    TrainConfig as LoopConfig, TrainError,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

/// The generator every task draws from: ChaCha8, seeded.
pub type TaskRng = ChaCha8Rng;

/// A generator seeded with `seed`.
pub fn task_rng(seed: u64) -> TaskRng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// MSE of always answering 1 on the adding problem: Var(a + b) for a, b ~ U(0, 1).
pub const ADDING_BASELINE_MSE: f64 = 1.0 / 6.0;

/// A batch of a task: the input and what the model must produce.
#[derive(Clone, Debug)]
pub struct Batch {
    /// (T, B, input_size), time-major.
    pub x: Tensor<f32>,
    /// The targets.
    pub target: Target,
}

/// What a batch asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// (B): one real number per sequence, from the last hidden state (MSE).
    Regression(Vec<f32>),
    /// (B): one class per sequence, from the last hidden state (cross-entropy).
    Class(Vec<i64>),
    /// (T·B), time-major: one class per step (cross-entropy over every step).
    PerStep(Vec<i64>),
}

/// The adding problem: `x` (T, B, 2) with channel 0 the values from U(0, 1) and channel 1 the
/// markers (1 at one step drawn from the first half, 0..T/2, and one from the second half,
/// T/2..T); the target is the sum of the two marked values. `len` ≥ 2.
pub fn adding_batch(len: usize, batch: usize, rng: &mut TaskRng) -> Batch {
    assert!(len >= 2, "adding_batch: the length must be at least 2");
    let mut x = vec![0.0f32; len * batch * 2];
    let mut y = Vec::with_capacity(batch);
    let half = len / 2;
    for b in 0..batch {
        for t in 0..len {
            x[(t * batch + b) * 2] = rng.gen::<f32>();
        }
        let first = rng.gen_range(0..half);
        let second = rng.gen_range(half..len);
        x[(first * batch + b) * 2 + 1] = 1.0;
        x[(second * batch + b) * 2 + 1] = 1.0;
        y.push(x[(first * batch + b) * 2] + x[(second * batch + b) * 2]);
    }
    Batch {
        x: Tensor::new(&[len, batch, 2], x).expect("adding shape"),
        target: Target::Regression(y),
    }
}

/// Symbols the copy task asks to remember.
pub const COPY_SYMBOLS: usize = 10;
/// Categories of those symbols (ids 1..=8).
pub const COPY_CATEGORIES: usize = 8;
/// Input alphabet of the copy task: 0 blank, 1..=8 the categories, 9 the delimiter.
pub const COPY_VOCAB: usize = COPY_CATEGORIES + 2;
/// Output classes of the copy task: 0 blank, 1..=8 the categories.
pub const COPY_CLASSES: usize = COPY_CATEGORIES + 1;

/// Cross-entropy of the copy task's baseline (blank until the delimiter, then a uniform guess
/// over the 8 categories for each of the 10 symbols), per step: 10·ln 8 / (T + 20).
pub fn copy_baseline(delay: usize) -> f64 {
    COPY_SYMBOLS as f64 * (COPY_CATEGORIES as f64).ln() / (delay + 2 * COPY_SYMBOLS) as f64
}

/// The copy-memory task with `delay` = T ≥ 1 (Arjovsky et al. 2016): sequences of T + 20 steps,
/// one-hot over [`COPY_VOCAB`]. Input: 10 symbols from 1..=8, T - 1 blanks, the delimiter (9),
/// 10 blanks. Target at every step: blank (0) for the first T + 10 steps, then the 10 symbols.
pub fn copy_batch(delay: usize, batch: usize, rng: &mut TaskRng) -> Batch {
    assert!(delay >= 1, "copy_batch: the delay must be at least 1");
    let n = COPY_SYMBOLS;
    let len = delay + 2 * n;
    let mut x = vec![0.0f32; len * batch * COPY_VOCAB];
    let mut y = vec![0i64; len * batch];
    for b in 0..batch {
        let mut tokens = vec![0usize; len];
        for (k, tok) in tokens.iter_mut().take(n).enumerate() {
            *tok = rng.gen_range(1..=COPY_CATEGORIES);
            y[(delay + n + k) * batch + b] = *tok as i64;
        }
        tokens[n + delay - 1] = COPY_VOCAB - 1;
        for (t, &tok) in tokens.iter().enumerate() {
            x[(t * batch + b) * COPY_VOCAB + tok] = 1.0;
        }
    }
    Batch {
        x: Tensor::new(&[len, batch, COPY_VOCAB], x).expect("copy shape"),
        target: Target::PerStep(y),
    }
}

/// 8×8 grey-level digit images with labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Digits {
    /// (N, 64): pixel values in 0..=16, row-major 8×8.
    pub pixels: Vec<u8>,
    /// (N): the digit, 0..=9.
    pub labels: Vec<u8>,
}

/// How an image becomes a sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigitsView {
    /// 8 steps of 8 features: one image row per step.
    Rows,
    /// 64 steps of 1 feature: one pixel per step, row by row.
    Pixels,
}

impl DigitsView {
    /// (steps, features per step)
    pub fn shape(self) -> (usize, usize) {
        match self {
            DigitsView::Rows => (8, 8),
            DigitsView::Pixels => (64, 1),
        }
    }
}

impl Digits {
    /// Parses the CSV text: one image per line, 64 integers in 0..=16 then the label in 0..=9,
    /// comma-separated, no header. `source` names the file in errors.
    pub fn parse(text: &str, source: &str) -> Result<Digits> {
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for (k, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() != 65 {
                return Err(Error::Input(format!(
                    "{source} line {}: expected 65 comma-separated values (64 pixels and the \
                     label), got {}",
                    k + 1,
                    fields.len()
                )));
            }
            for (j, f) in fields.iter().enumerate() {
                let (max, what) = if j < 64 {
                    (16, "a pixel")
                } else {
                    (9, "the label")
                };
                let v: u8 = f
                    .trim()
                    .parse()
                    .ok()
                    .filter(|&v: &u8| v <= max)
                    .ok_or_else(|| {
                        Error::Input(format!(
                            "{source} line {} field {}: expected {what}, an integer in 0..={max}, \
                             got '{}'",
                            k + 1,
                            j + 1,
                            f.trim()
                        ))
                    })?;
                if j < 64 {
                    pixels.push(v);
                } else {
                    labels.push(v);
                }
            }
        }
        if labels.is_empty() {
            return Err(Error::Input(format!("{source}: no images")));
        }
        Ok(Digits { pixels, labels })
    }

    /// Reads a digits CSV, gzip-compressed if the name ends in `.gz`.
    pub fn load(path: impl AsRef<Path>) -> Result<Digits> {
        let path = path.as_ref();
        let src = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| Error::file(path, "cannot read", e))?;
        let text = if path.extension().is_some_and(|e| e == "gz") {
            let mut s = String::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut s)
                .map_err(|e| Error::file(path, "not a gzip-compressed text file", e))?;
            s
        } else {
            String::from_utf8(bytes)
                .map_err(|e| Error::Io(format!("{src}: not UTF-8 text: {e}")))?
        };
        Digits::parse(&text, &src)
    }

    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Images `idx` as a batch: x (steps, B, features) with pixels scaled to 0..=1, and the
    /// labels as classes.
    pub fn batch(&self, idx: &[usize], view: DigitsView) -> Batch {
        let (steps, feat) = view.shape();
        let b = idx.len();
        let mut x = vec![0.0f32; steps * b * feat];
        for (s, &i) in idx.iter().enumerate() {
            let img = &self.pixels[i * 64..(i + 1) * 64];
            for t in 0..steps {
                for f in 0..feat {
                    x[(t * b + s) * feat + f] = img[t * feat + f] as f32 / 16.0;
                }
            }
        }
        Batch {
            x: Tensor::new(&[steps, b, feat], x).expect("digits shape"),
            target: Target::Class(idx.iter().map(|&i| self.labels[i] as i64).collect()),
        }
    }

    /// A seeded split into (train, test) index lists, `test_fraction` of the images in test.
    pub fn split(&self, test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        let mut rng = task_rng(seed);
        for i in (1..idx.len()).rev() {
            idx.swap(i, rng.gen_range(0..=i));
        }
        let n_test = ((self.len() as f64 * test_fraction).round() as usize).min(self.len());
        let test = idx.split_off(self.len() - n_test);
        (idx, test)
    }
}

/// A task to train on.
#[derive(Clone, Debug)]
pub enum Task {
    /// The adding problem over `len` steps.
    Adding {
        /// T
        len: usize,
    },
    /// The copy task with `delay` blanks (sequences of delay + 20 steps).
    Copy {
        /// T
        delay: usize,
    },
    /// Digit images as sequences.
    Digits {
        /// All images.
        data: Digits,
        /// Rows or pixels.
        view: DigitsView,
        /// Training images.
        train: Vec<usize>,
        /// Held-out images.
        test: Vec<usize>,
    },
}

/// What a trivial predictor achieves on a task, to compare against.
#[derive(Clone, Debug, PartialEq)]
pub struct Baseline {
    /// Its loss (MSE or cross-entropy per target).
    pub loss: f64,
    /// Its accuracy, for classification tasks.
    pub accuracy: Option<f64>,
    /// What it is.
    pub what: String,
}

impl Task {
    /// The task's name: `adding`, `copy` or `digits`.
    pub fn name(&self) -> &'static str {
        match self {
            Task::Adding { .. } => "adding",
            Task::Copy { .. } => "copy",
            Task::Digits { .. } => "digits",
        }
    }
    /// Features per step.
    pub fn input_size(&self) -> usize {
        match self {
            Task::Adding { .. } => 2,
            Task::Copy { .. } => COPY_VOCAB,
            Task::Digits { view, .. } => view.shape().1,
        }
    }
    /// Outputs of the head: 1 (regression) or the number of classes.
    pub fn output_size(&self) -> usize {
        match self {
            Task::Adding { .. } => 1,
            Task::Copy { .. } => COPY_CLASSES,
            Task::Digits { .. } => 10,
        }
    }
    /// Steps per sequence.
    pub fn seq_len(&self) -> usize {
        match self {
            Task::Adding { len } => *len,
            Task::Copy { delay } => delay + 2 * COPY_SYMBOLS,
            Task::Digits { view, .. } => view.shape().0,
        }
    }
    /// A training batch of `batch` sequences.
    pub fn train_batch(&self, batch: usize, rng: &mut TaskRng) -> Batch {
        match self {
            Task::Adding { len } => adding_batch(*len, batch, rng),
            Task::Copy { delay } => copy_batch(*delay, batch, rng),
            Task::Digits {
                data, view, train, ..
            } => {
                let idx: Vec<usize> = (0..batch)
                    .map(|_| train[rng.gen_range(0..train.len())])
                    .collect();
                data.batch(&idx, *view)
            }
        }
    }
    /// The held-out evaluation set: `n` generated sequences from a generator seeded with
    /// `seed` (adding, copy) or the test images (digits), in batches of at most `batch`.
    pub fn eval_set(&self, n: usize, batch: usize, seed: u64) -> Vec<Batch> {
        let batch = batch.max(1);
        match self {
            Task::Digits {
                data, view, test, ..
            } => test.chunks(batch).map(|c| data.batch(c, *view)).collect(),
            _ => {
                let mut rng = task_rng(seed);
                (0..n.div_ceil(batch))
                    .map(|k| self.train_batch(batch.min(n - k * batch), &mut rng))
                    .collect()
            }
        }
    }
    /// The trivial predictor: answering 1 (adding), blanks then uniform guesses (copy), the
    /// class frequencies of the training images (digits, measured on the test images).
    pub fn baseline(&self) -> Baseline {
        match self {
            Task::Adding { .. } => Baseline {
                loss: ADDING_BASELINE_MSE,
                accuracy: None,
                what: "always 1: MSE 1/6".into(),
            },
            Task::Copy { delay } => Baseline {
                loss: copy_baseline(*delay),
                accuracy: Some(1.0 / COPY_CATEGORIES as f64),
                what: format!(
                    "blanks, then uniform guesses: CE 10 ln 8 / (T+20) = {:.4}",
                    copy_baseline(*delay)
                ),
            },
            Task::Digits {
                data, train, test, ..
            } => {
                let mut freq = [0usize; 10];
                for &i in train {
                    freq[data.labels[i] as usize] += 1;
                }
                let p = |c: usize| (freq[c] as f64 + 1.0) / (train.len() as f64 + 10.0);
                let loss = test
                    .iter()
                    .map(|&i| -p(data.labels[i] as usize).ln())
                    .sum::<f64>()
                    / test.len().max(1) as f64;
                let major = (0..10).max_by_key(|&c| freq[c]).unwrap_or(0);
                let acc = test
                    .iter()
                    .filter(|&&i| data.labels[i] as usize == major)
                    .count() as f64
                    / test.len().max(1) as f64;
                Baseline {
                    loss,
                    accuracy: Some(acc),
                    what: "training-set class frequencies".into(),
                }
            }
        }
    }
}

/// The recurrent cell and initialization of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CellKind {
    /// `nn.RNN` (tanh), PyTorch's default initialization.
    RnnTanh,
    /// `nn.RNN(nonlinearity='relu')`, PyTorch's default initialization.
    RnnRelu,
    /// ReLU RNN with the identity recurrent matrix and zero biases ([`init::irnn`]).
    Irnn,
    /// `nn.LSTM` with the forget-gate bias set to 1 ([`init::forget_gate_bias`]).
    Lstm,
    /// `nn.GRU`, PyTorch's default initialization.
    Gru,
    /// [`ExpRnn`]: W = expm(A) orthogonal, modrelu, A from Henaff's initialization.
    ExpRnn,
}

impl CellKind {
    /// Every kind.
    pub const ALL: [CellKind; 6] = [
        CellKind::RnnTanh,
        CellKind::RnnRelu,
        CellKind::Irnn,
        CellKind::Lstm,
        CellKind::Gru,
        CellKind::ExpRnn,
    ];
    /// The name on the command line: `rnn_tanh`, `rnn_relu`, `irnn`, `lstm`, `gru`, `exprnn`.
    pub fn name(self) -> &'static str {
        match self {
            CellKind::RnnTanh => "rnn_tanh",
            CellKind::RnnRelu => "rnn_relu",
            CellKind::Irnn => "irnn",
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
            CellKind::ExpRnn => "exprnn",
        }
    }
    /// The fused layer's mode (None for [`CellKind::ExpRnn`], which is its own layer).
    pub fn mode(self) -> Option<Mode> {
        match self {
            CellKind::RnnTanh => Some(Mode::RnnTanh),
            CellKind::RnnRelu | CellKind::Irnn => Some(Mode::RnnRelu),
            CellKind::Lstm => Some(Mode::Lstm),
            CellKind::Gru => Some(Mode::Gru),
            CellKind::ExpRnn => None,
        }
    }
    /// A new one-layer fused model of this kind, initialized as described on each variant
    /// (with `orthogonal`, the recurrent gate blocks of every kind but IRNN are orthogonal
    /// instead); the LSTM's forget-gate bias is 1. An error for [`CellKind::ExpRnn`].
    pub fn build(
        self,
        input_size: usize,
        hidden_size: usize,
        orthogonal: bool,
        seed: u64,
    ) -> Result<Rnn<f32>> {
        self.build_with(
            input_size,
            hidden_size,
            orthogonal,
            GateBias::Forget(1.0),
            seed,
        )
    }

    /// [`CellKind::build`] with the LSTM's gate biases as `bias` says.
    pub fn build_with(
        self,
        input_size: usize,
        hidden_size: usize,
        orthogonal: bool,
        bias: GateBias,
        seed: u64,
    ) -> Result<Rnn<f32>> {
        let mode = self
            .mode()
            .ok_or_else(|| Error::Config(format!("{self} is not a fused recurrent layer")))?;
        let mut rnn = Rnn::new(RnnConfig::new(mode, input_size, hidden_size), seed)?;
        if orthogonal && self != CellKind::Irnn {
            init::orthogonal_recurrent(&mut rnn, 1.0, seed.wrapping_add(7))?;
        }
        match self {
            CellKind::Irnn => init::irnn(&mut rnn, 1.0)?,
            CellKind::Lstm => bias.apply(&mut rnn, seed.wrapping_add(11))?,
            _ => {}
        }
        Ok(rnn)
    }
}

/// How an LSTM's gate biases start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GateBias {
    /// The forget gate's bias (`bias_ih`) is this value, its `bias_hh` 0 (Gers et al. 2000;
    /// Jozefowicz et al. 2015 recommend 1). The other gates keep PyTorch's default.
    Forget(f64),
    /// Chrono initialization (Tallec & Ollivier 2018) for dependencies up to `max_len` steps:
    /// forget bias b_f = ln u with u ~ U(1, max_len − 1) per unit, input bias b_i = −b_f
    /// (`bias_ih`; the `bias_hh` of both gates 0). The cell state then forgets over a range of
    /// time scales up to `max_len` steps from the start.
    Chrono(usize),
}

impl GateBias {
    /// Applies it to a one-layer LSTM.
    pub fn apply(self, rnn: &mut Rnn<f32>, seed: u64) -> Result<()> {
        match self {
            GateBias::Forget(v) => init::forget_gate_bias(rnn, v),
            GateBias::Chrono(max_len) => {
                init::forget_gate_bias(rnn, 0.0)?;
                let h = rnn.config().hidden_size;
                let hi = (max_len.max(3) - 1) as f64;
                let mut rng = task_rng(seed);
                let bf: Vec<f32> = (0..h).map(|_| rng.gen_range(1.0..hi).ln() as f32).collect();
                let entries = rnn.layout().entries().to_vec();
                let p = rnn.params_mut();
                for e in entries {
                    let r = &mut p[e.range()];
                    match e.kind {
                        ParamKind::BiasIh => {
                            for j in 0..h {
                                r[j] = -bf[j];
                                r[h + j] = bf[j];
                            }
                        }
                        ParamKind::BiasHh => r[..2 * h].fill(0.0),
                        _ => {}
                    }
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for CellKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CellKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<CellKind> {
        let k = s.trim().to_ascii_lowercase().replace('-', "_");
        CellKind::ALL
            .into_iter()
            .find(|c| c.name() == k)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown cell '{s}': expected one of rnn_tanh, rnn_relu, irnn, lstm, gru"
                ))
            })
    }
}

/// The recurrent layer of a [`Model`].
#[derive(Clone, Debug)]
// One value per model, so the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Recurrent {
    /// One of the fused layers (tanh or ReLU RNN, LSTM, GRU), in f32.
    Fused(Rnn<f32>),
    /// An [`ExpRnn`] (computed in f64).
    Exp(ExpRnn),
}

impl Recurrent {
    /// The forward pass from `state` (None: zeros); an expRNN takes neither a state nor
    /// lengths.
    pub fn forward(
        &self,
        x: &Tensor<f32>,
        state: Option<&State<f32>>,
        lengths: Option<&[usize]>,
    ) -> Result<Output<f32>> {
        match self {
            Recurrent::Fused(r) => r.forward(x, state, lengths),
            Recurrent::Exp(e) => {
                if state.is_some() || lengths.is_some() {
                    return Err(Error::Input(
                        "expRNN: no initial state or lengths (every sequence starts at zero and \
                         runs to the end)"
                            .into(),
                    ));
                }
                e.forward_train(x).map(|(o, _)| o)
            }
        }
    }
    /// The fused layer, if it is one.
    pub fn fused(&self) -> Option<&Rnn<f32>> {
        match self {
            Recurrent::Fused(r) => Some(r),
            Recurrent::Exp(_) => None,
        }
    }
    /// The fused layer, if it is one, to change.
    pub fn fused_mut(&mut self) -> Option<&mut Rnn<f32>> {
        match self {
            Recurrent::Fused(r) => Some(r),
            Recurrent::Exp(_) => None,
        }
    }
    /// Features per step.
    pub fn input_size(&self) -> usize {
        match self {
            Recurrent::Fused(r) => r.config().input_size,
            Recurrent::Exp(e) => e.input_size(),
        }
    }
}

/// A recurrent layer and a linear head.
#[derive(Clone, Debug)]
pub struct Model {
    /// The recurrent layer (one layer, time-major).
    pub rnn: Recurrent,
    /// The head: hidden → outputs.
    pub head: Linear<f32>,
}

/// What one batch gave.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchResult {
    /// The mean loss over the batch's targets (MSE or cross-entropy).
    pub loss: f64,
    /// Correct predictions (classification; for the copy task only the 10 recalled symbols
    /// count).
    pub correct: usize,
    /// Predictions that count for the accuracy.
    pub counted: usize,
}

/// The gradients of a [`Model`].
#[derive(Clone, Debug)]
pub struct ModelGrads {
    /// The fused recurrent layer's, in its parameter layout (empty for an expRNN).
    pub rnn: Vec<f32>,
    /// The expRNN's, in the layout of [`ExpRnn::params`] (empty for a fused layer).
    pub exp: Vec<f64>,
    /// The head's: weight then bias.
    pub head: Vec<f32>,
}

impl ModelGrads {
    fn fill_zero(&mut self) {
        self.rnn.fill(0.0);
        self.exp.fill(0.0);
        self.head.fill(0.0);
    }
    /// The global L2 norm (squares summed in f64).
    pub fn norm(&self) -> f64 {
        let f = |v: &[f32]| v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>();
        (f(&self.rnn) + f(&self.head) + self.exp.iter().map(|x| x * x).sum::<f64>()).sqrt()
    }
}

/// How a [`Model`] starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelInit {
    /// Orthogonal recurrent blocks instead of PyTorch's default (fused cells but IRNN).
    pub orthogonal: bool,
    /// The LSTM's gate biases.
    pub lstm_bias: GateBias,
}

impl Default for ModelInit {
    /// PyTorch's default initialization, the LSTM's forget-gate bias 1.
    fn default() -> Self {
        ModelInit {
            orthogonal: false,
            lstm_bias: GateBias::Forget(1.0),
        }
    }
}

impl Model {
    /// A model for `task`: the `cell` layer with `hidden_size` units and a head (the LSTM's
    /// forget-gate bias 1).
    pub fn new(
        task: &Task,
        cell: CellKind,
        hidden_size: usize,
        orthogonal: bool,
        seed: u64,
    ) -> Result<Model> {
        let init = ModelInit {
            orthogonal,
            ..ModelInit::default()
        };
        Model::with_init(task, cell, hidden_size, &init, seed)
    }

    /// [`Model::new`] with the initialization `init`.
    pub fn with_init(
        task: &Task,
        cell: CellKind,
        hidden_size: usize,
        init: &ModelInit,
        seed: u64,
    ) -> Result<Model> {
        let rnn = match cell {
            CellKind::ExpRnn => Recurrent::Exp(ExpRnn::new(
                task.input_size(),
                hidden_size,
                Activation::ModRelu,
                ExpInit::Henaff,
                seed,
            )?),
            _ => Recurrent::Fused(cell.build_with(
                task.input_size(),
                hidden_size,
                init.orthogonal,
                init.lstm_bias,
                seed,
            )?),
        };
        Ok(Model {
            rnn,
            head: Linear::new(hidden_size, task.output_size(), true, seed.wrapping_add(1)),
        })
    }

    /// Zeroed gradients.
    pub fn zeros_like_grads(&self) -> ModelGrads {
        let (rnn, exp) = match &self.rnn {
            Recurrent::Fused(r) => (r.zeros_like_params(), Vec::new()),
            Recurrent::Exp(e) => (Vec::new(), e.zeros_like_params()),
        };
        ModelGrads {
            rnn,
            exp,
            head: self.head.zeros_like_params(),
        }
    }

    /// The head's outputs, the loss and its gradient with respect to the head's input.
    /// `feats` (rows, H) are the hidden states the head reads.
    fn head_loss(
        &self,
        feats: &[f32],
        rows: usize,
        target: &Target,
        batch: usize,
    ) -> Result<(BatchResult, Vec<f32>)> {
        let o = self.head.out_features();
        let mut out = vec![0.0f32; rows * o];
        self.head.forward(feats, rows, &mut out);
        match target {
            Target::Regression(y) => {
                let n = y.len() as f64;
                let mut loss = 0.0;
                let mut d = vec![0.0f32; rows];
                for ((dv, &p), &t) in d.iter_mut().zip(&out).zip(y) {
                    let e = p as f64 - t as f64;
                    loss += e * e;
                    *dv = (2.0 * e / n) as f32;
                }
                Ok((
                    BatchResult {
                        loss: loss / n,
                        correct: 0,
                        counted: 0,
                    },
                    d,
                ))
            }
            Target::Class(y) | Target::PerStep(y) => {
                let (loss, d) = softmax_cross_entropy(&out, o, y, -100)?;
                let first = if matches!(target, Target::PerStep(_)) {
                    // Only the recalled symbols (the last 10 steps) count for the accuracy.
                    rows - COPY_SYMBOLS * batch
                } else {
                    0
                };
                let mut correct = 0;
                for r in first..rows {
                    let row = &out[r * o..(r + 1) * o];
                    let arg = (0..o).fold(0, |m, k| if row[k] > row[m] { k } else { m });
                    correct += usize::from(arg as i64 == y[r]);
                }
                Ok((
                    BatchResult {
                        loss: loss as f64,
                        correct,
                        counted: rows - first,
                    },
                    d,
                ))
            }
        }
    }

    /// Forward and backward on one batch: **adds** the gradients into `grads` and, if
    /// `record` is given, records d loss / d h_t at every step.
    pub fn loss_and_grad(
        &self,
        batch: &Batch,
        grads: &mut ModelGrads,
        record: Option<&mut HiddenGrads<f32>>,
    ) -> Result<BatchResult> {
        let (t, b, h) = (
            batch.x.shape()[0],
            batch.x.shape()[1],
            self.head.in_features(),
        );
        enum Tape {
            Fused(crate::core::rnn::Tape<f32>),
            Exp(crate::models::exprnn::ExpTape),
        }
        let (out, tape) = match &self.rnn {
            Recurrent::Fused(r) => {
                let (o, tp) = r.forward_train(&batch.x, None, None, Dropout::Off)?;
                (o, Tape::Fused(tp))
            }
            Recurrent::Exp(e) => {
                let (o, tp) = e.forward_train(&batch.x)?;
                (o, Tape::Exp(tp))
            }
        };
        let per_step = matches!(batch.target, Target::PerStep(_));
        let (res, grad_out, grad_hn) = if per_step {
            let feats = out.output.data();
            let (res, d) = self.head_loss(feats, t * b, &batch.target, b)?;
            let mut dfeat = vec![0.0f32; t * b * h];
            self.head
                .backward(feats, &d, t * b, &mut grads.head, Some(&mut dfeat));
            let g = Tensor::new(&[t, b, h], dfeat)?;
            (res, Some(g), None)
        } else {
            let feats = out.h_n.data(); // (1, B, H)
            let (res, d) = self.head_loss(feats, b, &batch.target, b)?;
            let mut dfeat = vec![0.0f32; b * h];
            self.head
                .backward(feats, &d, b, &mut grads.head, Some(&mut dfeat));
            let g = Tensor::new(&[1, b, h], dfeat)?;
            (res, None, Some(g))
        };
        match (&self.rnn, &tape) {
            (Recurrent::Fused(rnn), Tape::Fused(tape)) => match record {
                Some(r) => rnn
                    .backward_with(
                        tape,
                        grad_out.as_ref(),
                        grad_hn.as_ref(),
                        None,
                        &mut grads.rnn,
                        r,
                    )
                    .map(|_| ())?,
                // The input is data: no gradient needed for it.
                None => rnn.backward_params(
                    tape,
                    grad_out.as_ref(),
                    grad_hn.as_ref(),
                    None,
                    &mut grads.rnn,
                )?,
            },
            (Recurrent::Exp(e), Tape::Exp(tape)) => e.backward(
                tape,
                grad_out.as_ref(),
                grad_hn.as_ref(),
                &mut grads.exp,
                record,
            )?,
            _ => unreachable!("the tape comes from the same layer"),
        };
        Ok(res)
    }

    /// The loss (mean over the targets of all batches) and the accuracy (None for
    /// regression) on `batches`.
    pub fn evaluate(&self, batches: &[Batch]) -> Result<(f64, Option<f64>)> {
        let (mut loss, mut weight, mut correct, mut counted) = (0.0, 0.0, 0usize, 0usize);
        for batch in batches {
            let (t, b) = (batch.x.shape()[0], batch.x.shape()[1]);
            let out = self.rnn.forward(&batch.x, None, None)?;
            let (res, _) = match batch.target {
                Target::PerStep(_) => self.head_loss(out.output.data(), t * b, &batch.target, b)?,
                _ => self.head_loss(out.h_n.data(), b, &batch.target, b)?,
            };
            let n = match &batch.target {
                Target::Regression(y) => y.len(),
                Target::Class(y) | Target::PerStep(y) => y.len(),
            } as f64;
            loss += res.loss * n;
            weight += n;
            correct += res.correct;
            counted += res.counted;
        }
        let acc = (counted > 0).then(|| correct as f64 / counted as f64);
        Ok((loss / weight.max(1.0), acc))
    }
}

/// Settings of [`train`].
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Hidden units.
    pub hidden_size: usize,
    /// Sequences per training batch.
    pub batch_size: usize,
    /// Optimizer steps.
    pub steps: usize,
    /// The optimizer and its learning rate (an expRNN's skew-symmetric parameters learn at
    /// [`ORTHOGONAL_LR_SCALE`] of it).
    pub optimizer: OptimizerConfig,
    /// Clip the global gradient norm to this value (None: no clipping).
    pub clip: Option<f64>,
    /// Evaluate every this many steps (and at the end).
    pub eval_every: usize,
    /// Sequences in the evaluation set (generated tasks; digits use the test images).
    pub eval_size: usize,
    /// Orthogonal recurrent blocks instead of PyTorch's default initialization.
    pub orthogonal: bool,
    /// How the LSTM's gate biases start.
    pub lstm_bias: GateBias,
    /// The run counts as solved at the first evaluation whose loss is under this fraction of
    /// the baseline's (e.g. [`SOLVE_FRACTION`]).
    pub solve_fraction: f64,
    /// Stop at that evaluation instead of running all `steps`.
    pub stop_when_solved: bool,
    /// Record ‖dL/dh_t‖ on a fixed training batch every this many steps (None: never).
    pub record_every: Option<usize>,
    /// Seed of the initialization, the training batches and the evaluation set.
    pub seed: u64,
    /// The directory the library's training loop ([`crate::train::run`]) writes for this
    /// run: the best model on the evaluation set (`model.safetensors`, `config.json`) and
    /// `metrics.json`.
    pub out: PathBuf,
}

/// One evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalPoint {
    /// Optimizer steps done.
    pub step: usize,
    /// Loss on the evaluation set.
    pub loss: f64,
    /// Accuracy on the evaluation set (classification tasks).
    pub accuracy: Option<f64>,
    /// Seconds since the start of the run.
    pub seconds: f64,
}

/// ‖dL/dh_t‖ at every step t (T) of the fixed probe batch, after `step` optimizer steps.
#[derive(Clone, Debug, PartialEq)]
pub struct HiddenGradRecord {
    /// Optimizer steps done.
    pub step: usize,
    /// (T): the norm over the batch at every time step.
    pub norms: Vec<f64>,
}

/// What [`train`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct RunResult {
    /// The cell.
    pub cell: CellKind,
    /// Every evaluation (the first before training), the last one at the end of training.
    pub evals: Vec<EvalPoint>,
    /// (steps): the training loss of every step (also of a step whose loss was not finite).
    pub train_loss: Vec<f64>,
    /// The global gradient norm of every step with a finite loss, before clipping.
    pub grad_norm: Vec<f64>,
    /// Steps at which clipping scaled the gradients down.
    pub clipped: usize,
    /// ‖dL/dh_t‖ records, if asked for.
    pub hidden_grads: Vec<HiddenGradRecord>,
    /// The first evaluated step whose loss is under `cfg.solve_fraction` × the baseline loss.
    pub steps_to_solve: Option<usize>,
    /// The step at which the training loss or the gradient norm became NaN or infinite, if
    /// it did (the library's loop stops there: [`crate::train::NonFinite::Stop`]).
    pub diverged_at: Option<usize>,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// The fraction of the baseline's loss under which the run counts as solved.
    pub solve_fraction: f64,
    /// The baseline predictor's loss measured on this run's evaluation set (adding: the MSE
    /// of answering 1 on those sequences, which differs from 1/6 by the sampling noise, about
    /// ±0.2/√n; None for the other tasks, whose baseline loss is exact per sequence or taken
    /// on the test images).
    pub eval_baseline: Option<f64>,
}

impl RunResult {
    /// The last evaluation.
    pub fn last(&self) -> Option<&EvalPoint> {
        self.evals.last()
    }
    /// The evaluation with the lowest loss.
    pub fn best(&self) -> Option<&EvalPoint> {
        self.evals.iter().min_by(|a, b| a.loss.total_cmp(&b.loss))
    }
}

/// The MSE of answering 1 on regression batches (None for classification batches).
pub fn adding_constant_mse(batches: &[Batch]) -> Option<f64> {
    let (mut sum, mut n) = (0.0, 0usize);
    for b in batches {
        let Target::Regression(y) = &b.target else {
            return None;
        };
        sum += y.iter().map(|&v| (v as f64 - 1.0).powi(2)).sum::<f64>();
        n += y.len();
    }
    (n > 0).then(|| sum / n as f64)
}

/// A task counts as solved when the evaluation loss is under this fraction of the baseline's
/// (1%: for the adding problem an MSE under 0.0017).
pub const SOLVE_FRACTION: f64 = 0.01;

/// The expRNN's skew-symmetric parameters learn at this fraction of the learning rate (the
/// paper's 1e-4 against 1e-3 for the rest).
pub const ORTHOGONAL_LR_SCALE: f64 = 0.1;

/// Trains a fresh `cell` model on `task` and evaluates it along the way; `on_eval` sees every
/// evaluation as it happens (for progress output).
pub fn train(
    task: &Task,
    cell: CellKind,
    cfg: &TrainConfig,
    on_eval: &mut dyn FnMut(&EvalPoint),
) -> Result<RunResult> {
    if cfg.hidden_size == 0 {
        return Err(Error::Config(
            "training: hidden_size must be at least 1".into(),
        ));
    }
    let init = ModelInit {
        orthogonal: cfg.orthogonal,
        lstm_bias: cfg.lstm_bias,
    };
    let mut model = Model::with_init(task, cell, cfg.hidden_size, &init, cfg.seed)?;
    train_model(task, &mut model, cell, cfg, on_eval)
}

/// One run of a benchmark as a [`crate::train::Task`]: the library's loop owns the steps,
/// the optimizer, clipping, the non-finite policy, evaluation, the best model and
/// metrics.json; this owns the batches, the evaluation set and the records of the run.
///
/// A fused layer's parameters and the head are f32 [`Part`]s (`rnn`, `head`); an expRNN's are
/// f64 [`Part64`]s (`exp_a`, the skew-symmetric parameters at [`ORTHOGONAL_LR_SCALE`] of the
/// learning rate, and `exp_ub`, the input weights and the modReLU biases), since its matrix
/// exponential and recurrence run in f64: rounding them to f32 between steps would be another
/// model, and the global clipping norm takes both kinds together, as one buffer list.
struct BenchRun<'a> {
    task: &'a Task,
    cell: CellKind,
    model: &'a mut Model,
    grads: ModelGrads,
    batch_size: usize,
    rng: TaskRng,
    probe: Batch,
    record_every: Option<usize>,
    record: HiddenGrads<f32>,
    eval: Vec<Batch>,
    baseline: f64,
    solve_fraction: f64,
    stop_when_solved: bool,
    /// Training batches drawn.
    step: usize,
    start: Instant,
    evals: Vec<EvalPoint>,
    train_loss: Vec<f64>,
    hidden_grads: Vec<HiddenGradRecord>,
    steps_to_solve: Option<usize>,
    on_eval: &'a mut dyn FnMut(&EvalPoint),
}

impl TrainTask for BenchRun<'_> {
    fn name(&self) -> &'static str {
        self.task.name()
    }
    fn unit(&self) -> &'static str {
        "sequence"
    }
    fn loss_label(&self) -> &'static str {
        match self.task {
            Task::Adding { .. } => "MSE",
            _ => "cross-entropy (nats)",
        }
    }
    fn steps_per_epoch(&self) -> u64 {
        1
    }
    fn higher_is_better(&self) -> bool {
        false
    }
    fn config_json(&self) -> serde_json::Value {
        serde_json::json!({
            "task": format!("{:?}", self.task),
            "cell": self.cell.name(),
            "hidden_size": self.model.head.in_features(),
            "batch_size": self.batch_size,
        })
    }
    fn train_batch(&mut self, shard: Shard) -> Result<StepStats> {
        shard.require_whole("synthetic benchmark")?;
        if let Some(every) = self.record_every {
            if every > 0 && self.step.is_multiple_of(every) {
                let mut scratch = self.model.zeros_like_grads();
                self.model
                    .loss_and_grad(&self.probe, &mut scratch, Some(&mut self.record))?;
                self.hidden_grads.push(HiddenGradRecord {
                    step: self.step,
                    norms: self.record.norms(0, 0),
                });
            }
        }
        let batch = self.task.train_batch(self.batch_size, &mut self.rng);
        self.grads.fill_zero();
        let r = self.model.loss_and_grad(&batch, &mut self.grads, None)?;
        self.step += 1;
        self.train_loss.push(r.loss);
        Ok(StepStats {
            loss: r.loss,
            units: batch.x.shape()[1] as u64,
        })
    }
    fn parts(&mut self) -> Vec<Part<'_>> {
        let head = Part {
            name: "head",
            params: self.model.head.params_mut(),
            grads: &mut self.grads.head,
        };
        match &mut self.model.rnn {
            Recurrent::Fused(r) => vec![
                Part {
                    name: "rnn",
                    params: r.params_mut(),
                    grads: &mut self.grads.rnn,
                },
                head,
            ],
            Recurrent::Exp(_) => vec![head],
        }
    }
    fn parts_f64(&mut self) -> Vec<Part64<'_>> {
        let Recurrent::Exp(e) = &mut self.model.rnn else {
            return Vec::new();
        };
        let na = e.num_a();
        let (pa, pu) = e.params_mut().split_at_mut(na);
        let (ga, gu) = self.grads.exp.split_at_mut(na);
        vec![
            Part64 {
                name: "exp_a",
                params: pa,
                grads: ga,
                lr_scale: ORTHOGONAL_LR_SCALE,
            },
            Part64 {
                name: "exp_ub",
                params: pu,
                grads: gu,
                lr_scale: 1.0,
            },
        ]
    }
    fn evaluate(&mut self) -> Result<Metrics> {
        let (loss, accuracy) = self.model.evaluate(&self.eval)?;
        let p = EvalPoint {
            step: self.step,
            loss,
            accuracy,
            seconds: self.start.elapsed().as_secs_f64(),
        };
        if self.steps_to_solve.is_none() && loss < self.solve_fraction * self.baseline {
            self.steps_to_solve = Some(self.step);
        }
        (self.on_eval)(&p);
        self.evals.push(p);
        let mut m = vec![("valid_loss".to_string(), loss)];
        if let Some(a) = accuracy {
            m.push(("valid_accuracy".to_string(), a));
        }
        Ok(m)
    }
    fn solved(&self) -> bool {
        self.stop_when_solved && self.steps_to_solve.is_some()
    }
    fn save_model(&self, dir: &Path, training: &serde_json::Value) -> Result<()> {
        let mut t: Vec<(String, Vec<usize>, OutTensor<'_>)> = Vec::new();
        match &self.model.rnn {
            Recurrent::Fused(r) => {
                for (name, shape, v) in state_dict(r.layout(), r.params(), "rnn.") {
                    t.push((name, shape, OutTensor::F32(v)));
                }
            }
            Recurrent::Exp(e) => {
                let (h, i, na) = (e.hidden_size(), e.input_size(), e.num_a());
                let p = e.params();
                t.push(("rnn.a".into(), vec![na], OutTensor::F64(&p[..na])));
                t.push((
                    "rnn.U".into(),
                    vec![h, i],
                    OutTensor::F64(&p[na..na + h * i]),
                ));
                t.push(("rnn.b".into(), vec![h], OutTensor::F64(&p[na + h * i..])));
            }
        }
        let (o, h) = (
            self.model.head.out_features(),
            self.model.head.in_features(),
        );
        let hp = self.model.head.params();
        t.push((
            "head.weight".into(),
            vec![o, h],
            OutTensor::F32(&hp[..o * h]),
        ));
        t.push(("head.bias".into(), vec![o], OutTensor::F32(&hp[o * h..])));
        write_tensors(dir.join("model.safetensors"), &t, &[])?;
        let config = serde_json::json!({
            "model": self.config_json(),
            "training": training,
        });
        let text = serde_json::to_string_pretty(&config).expect("JSON of the config");
        write_atomic(&dir.join("config.json"), text.as_bytes())
    }
    fn save_state(&self, w: &mut CheckpointWriter) {
        w.meta_mut()["benchmark"] = serde_json::json!({
            "step": self.step,
            "rng": rng_state(&self.rng),
        });
    }
    fn load_state(&mut self, c: &Checkpoint) -> Result<()> {
        let b = c.field("benchmark")?;
        self.step = b["step"]
            .as_u64()
            .ok_or_else(|| Error::Input(format!("{}: benchmark.step is missing", c.source())))?
            as usize;
        self.rng = rng_from_state(&b["rng"], &format!("{}: benchmark.rng", c.source()))?;
        Ok(())
    }
}

/// The hooks of a benchmark run: the gradient norm of every step and the clip count.
struct NormLog {
    clip: f64,
    grad_norm: Vec<f64>,
    clipped: usize,
}

impl Hooks for NormLog {
    fn grad_norm(&mut self, _step: u64, norm: f64) {
        self.grad_norm.push(norm);
        if norm > self.clip {
            self.clipped += 1;
        }
    }
}

/// [`train`] on a given model (e.g. one with a custom initialization), which is left trained;
/// `cell` only labels the result, and `cfg.hidden_size`, `cfg.orthogonal` and `cfg.lstm_bias`
/// are not used. The steps go through [`crate::train::run`] (one evaluation before the first
/// step is added here): Adam or SGD as `cfg.optimizer` says, `clip_grad_norm`, a run that
/// stops with [`RunResult::diverged_at`] at the first non-finite loss or gradient norm, and
/// one that ends at the first evaluation under the mark when `cfg.stop_when_solved`
/// ([`crate::train::Task::solved`]). No checkpoints are written: a benchmark run is short and
/// reruns from its seed.
pub fn train_model(
    task: &Task,
    model: &mut Model,
    cell: CellKind,
    cfg: &TrainConfig,
    on_eval: &mut dyn FnMut(&EvalPoint),
) -> Result<RunResult> {
    if cfg.batch_size == 0 || cfg.eval_every == 0 {
        return Err(Error::Config(format!(
            "training: batch_size and eval_every must be at least 1, got {}, {}",
            cfg.batch_size, cfg.eval_every
        )));
    }
    if model.rnn.input_size() != task.input_size()
        || model.head.out_features() != task.output_size()
    {
        return Err(Error::Config(format!(
            "training: the {} task needs {} inputs and {} outputs, the model has {} and {}",
            task.name(),
            task.input_size(),
            task.output_size(),
            model.rnn.input_size(),
            model.head.out_features()
        )));
    }
    let eval = task.eval_set(cfg.eval_size, 250, cfg.seed ^ 0x0e7a_15e7);
    let eval_baseline = adding_constant_mse(&eval);
    let grads = model.zeros_like_grads();
    let mut run = BenchRun {
        task,
        cell,
        model,
        grads,
        batch_size: cfg.batch_size,
        rng: task_rng(cfg.seed.wrapping_add(0x7a5c)),
        probe: task.train_batch(cfg.batch_size, &mut task_rng(cfg.seed ^ 0x960b)),
        record_every: cfg.record_every,
        record: HiddenGrads::new(),
        eval,
        baseline: task.baseline().loss,
        solve_fraction: cfg.solve_fraction,
        stop_when_solved: cfg.stop_when_solved,
        step: 0,
        start: Instant::now(),
        evals: Vec::new(),
        train_loss: Vec::with_capacity(cfg.steps),
        hidden_grads: Vec::new(),
        steps_to_solve: None,
        on_eval,
    };
    run.evaluate()?;
    let mut log = NormLog {
        clip: cfg.clip.unwrap_or(f64::INFINITY),
        grad_norm: Vec::with_capacity(cfg.steps),
        clipped: 0,
    };
    let mut diverged_at = None;
    if cfg.steps > 0 && !(cfg.stop_when_solved && run.solved()) {
        let mut tc = LoopConfig::new(&cfg.out).steps(cfg.steps as u64);
        tc.eval_every = Some(cfg.eval_every as u64);
        tc.checkpoints = false;
        tc.seed = cfg.seed;
        tc.optimizer = cfg.optimizer.clone();
        tc.clip_grad_norm = cfg.clip.unwrap_or(0.0);
        tc.non_finite = NonFinite::Stop;
        match crate::train::run(&mut run, &tc, &mut log) {
            Ok(_) => {}
            Err(Error::Train(TrainError::NonFinite { step, .. })) => {
                diverged_at = Some(step as usize)
            }
            Err(e) => return Err(e),
        }
    }
    Ok(RunResult {
        cell,
        seconds: run.start.elapsed().as_secs_f64(),
        evals: run.evals,
        train_loss: run.train_loss,
        grad_norm: log.grad_norm,
        clipped: log.clipped,
        hidden_grads: run.hidden_grads,
        steps_to_solve: run.steps_to_solve,
        diverged_at,
        solve_fraction: cfg.solve_fraction,
        eval_baseline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory for a run's files.
    fn test_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("recur-synthetic-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn chrono_gate_biases_span_the_time_scales() {
        let (h, t) = (40, 200);
        let mut rnn = Rnn::<f32>::new(RnnConfig::new(Mode::Lstm, 3, h), 0).unwrap();
        let before = rnn.param("bias_ih_l0").unwrap().to_vec();
        GateBias::Chrono(t).apply(&mut rnn, 5).unwrap();
        let ih = rnn.param("bias_ih_l0").unwrap();
        let hh = rnn.param("bias_hh_l0").unwrap();
        let top = ((t - 1) as f32).ln();
        for j in 0..h {
            let bf = ih[h + j];
            assert!((0.0..=top).contains(&bf), "forget bias {bf}");
            assert_eq!(ih[j], -bf, "input bias = -forget bias");
            assert_eq!(hh[j], 0.0);
            assert_eq!(hh[h + j], 0.0);
        }
        // The cell and output gates keep PyTorch's initialization.
        assert_eq!(&ih[2 * h..], &before[2 * h..]);
        // The time scales e^b_f ≈ 1 / (1 − σ(b_f)) are uniform over (1, T − 1): some under T/4,
        // some over 3T/4.
        let scales: Vec<f32> = ih[h..2 * h].iter().map(|b| b.exp()).collect();
        let q = t as f32 / 4.0;
        assert!(
            scales.iter().any(|&u| u < q) && scales.iter().any(|&u| u > 3.0 * q),
            "{scales:?}"
        );
        let mut gru = CellKind::Gru.build(2, 3, false, 0).unwrap();
        assert!(GateBias::Chrono(t).apply(&mut gru, 0).is_err());
    }

    #[test]
    fn a_run_stops_at_the_first_evaluation_under_the_mark() {
        let task = Task::Adding { len: 8 };
        let cfg = TrainConfig {
            hidden_size: 16,
            batch_size: 32,
            steps: 2000,
            optimizer: OptimizerConfig::Adam(crate::nn::AdamConfig::default().lr(1e-2)),
            clip: Some(1.0),
            eval_every: 50,
            eval_size: 200,
            orthogonal: false,
            lstm_bias: GateBias::Chrono(8),
            solve_fraction: 0.05,
            stop_when_solved: true,
            record_every: None,
            seed: 1,
            out: test_dir("stops"),
        };
        let r = train(&task, CellKind::Lstm, &cfg, &mut |_| {}).unwrap();
        let s = r.steps_to_solve.expect("solved");
        let last = r.last().unwrap();
        assert_eq!(last.step, s);
        assert!(last.loss < 0.05 * ADDING_BASELINE_MSE);
        assert!(r.evals[..r.evals.len() - 1]
            .iter()
            .all(|p| p.loss >= 0.05 * ADDING_BASELINE_MSE));
        assert_eq!(r.train_loss.len(), s);
        let e = r.eval_baseline.unwrap();
        assert!((e - ADDING_BASELINE_MSE).abs() < 0.05, "{e}");
    }

    #[test]
    fn an_exprnn_model_trains_and_keeps_w_orthogonal() {
        let task = Task::Copy { delay: 3 };
        let cfg = TrainConfig {
            hidden_size: 12,
            batch_size: 16,
            steps: 60,
            optimizer: OptimizerConfig::Adam(crate::nn::AdamConfig::default().lr(1e-2)),
            clip: Some(0.5),
            eval_every: 30,
            eval_size: 64,
            orthogonal: false,
            lstm_bias: GateBias::Forget(1.0),
            solve_fraction: SOLVE_FRACTION,
            stop_when_solved: false,
            record_every: Some(30),
            seed: 2,
            out: test_dir("exprnn"),
        };
        let mut model =
            Model::with_init(&task, CellKind::ExpRnn, 12, &ModelInit::default(), 2).unwrap();
        let Recurrent::Exp(e0) = &model.rnn else {
            panic!("an expRNN")
        };
        let w0 = e0.recurrent_matrix();
        let r = train_model(&task, &mut model, CellKind::ExpRnn, &cfg, &mut |_| {}).unwrap();
        assert!(r.last().unwrap().loss < r.evals[0].loss);
        // Clipping counts over the f64 and the f32 gradients together.
        assert_eq!(r.clipped, r.grad_norm.iter().filter(|&&g| g > 0.5).count());
        assert_eq!(r.hidden_grads.len(), 2);
        assert!(r
            .hidden_grads
            .iter()
            .all(|h| h.norms.len() == task.seq_len()));
        let Recurrent::Exp(e) = &model.rnn else {
            panic!("an expRNN")
        };
        let w = e.recurrent_matrix();
        let n = 12;
        let moved = w
            .iter()
            .zip(&w0)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(moved > 1e-3, "training moved W by {moved}");
        for i in 0..n {
            for j in 0..n {
                let d: f64 = (0..n).map(|k| w[k * n + i] * w[k * n + j]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((d - want).abs() < 1e-12, "WᵀW[{i}][{j}] = {d}");
            }
        }
        // An expRNN takes no initial state.
        let b = task.train_batch(2, &mut task_rng(0));
        let st = State {
            h: Tensor::zeros(&[1, 2, 12]),
            c: None,
        };
        assert!(model.rnn.forward(&b.x, Some(&st), None).is_err());
        assert!(model.rnn.forward(&b.x, None, None).is_ok());
    }
}
