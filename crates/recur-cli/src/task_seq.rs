//! What `recur train classify`, `recur train tag` and `recur train forecast` share: examples
//! (token ids or numeric features, with classes, tags or values to predict), the runner task
//! that trains a [`SeqModel`] on them in shuffled minibatches, held-out splits, and the
//! dispatch of `recur eval` / `recur predict` for sequence models.

use crate::model_opts::ModelOpts;
use crate::run::{embed_rnn_head, fmt_metrics, Metrics, Part, StepStats, Task};
use recur::models::lm::RngCore;
use recur::models::rows::RowMasks;
use recur::models::seqmodel::{load_dir, save_dir, SeqBatch, SeqModel, SeqModelGrads, Targets};
use recur::train::checkpoint::{
    rng_from_state, rng_state, seeded, Checkpoint, CheckpointWriter, TrainRng,
};
use recur::Mode;
use std::path::Path;

/// The label file of a model directory (classifiers and taggers).
pub const LABELS_FILE: &str = "labels.json";
/// The vocabulary file of a model directory (token inputs).
pub const VOCAB_FILE: &str = "vocab.json";

/// The inputs of a set of examples.
pub enum Inputs {
    /// Token ids per example. `alt`, if not empty, gives per token the id it may be replaced
    /// by in training (with the task's replacement probability), or `NO_ALT`.
    Tokens {
        ids: Vec<Vec<usize>>,
        alt: Vec<Vec<usize>>,
    },
    /// (T, F) values per example, row-major.
    Features {
        values: Vec<Vec<f32>>,
        num_features: usize,
    },
}

/// No replacement for this token (see [`Inputs::Tokens`]).
pub const NO_ALT: usize = usize::MAX;

/// What a set of examples should predict.
pub enum Outputs {
    /// One class per example.
    Classes(Vec<usize>),
    /// One class per token of every example.
    Tags(Vec<Vec<usize>>),
    /// `horizon` values per example.
    Values(Vec<Vec<f32>>),
}

/// Examples: inputs and what to predict, index for index.
pub struct Examples {
    pub inputs: Inputs,
    pub outputs: Outputs,
    /// Per token of every example, whether the training data never had it (tagging: the
    /// unknown-word accuracy); empty when not measured.
    pub unknown: Vec<Vec<bool>>,
}

impl Examples {
    /// The number of examples.
    pub fn len(&self) -> usize {
        match &self.inputs {
            Inputs::Tokens { ids, .. } => ids.len(),
            Inputs::Features { values, .. } => values.len(),
        }
    }

    /// The batch of examples `idx`; in training, tokens with a replacement are replaced with
    /// probability `p` drawn from `rng`.
    ///
    /// `replace`: (probability, key, first row): the tokens of row `s` of `idx` are replaced
    /// with the draws of generator `first + s` of the key ([`RowMasks::rng`]), so that a
    /// share of a batch replaces the tokens the whole batch does.
    pub fn batch(
        &self,
        idx: &[usize],
        replace: Option<(f64, u64, usize)>,
    ) -> recur::Result<(SeqBatch<f32>, Targets<f32>)> {
        let batch = match &self.inputs {
            Inputs::Tokens { ids, alt } => {
                let mut seqs: Vec<Vec<usize>> = idx.iter().map(|&i| ids[i].clone()).collect();
                if let Some((p, key, first)) = replace {
                    if p > 0.0 && !alt.is_empty() {
                        let rows = RowMasks::new(key, p);
                        for (row, (s, &i)) in seqs.iter_mut().zip(idx).enumerate() {
                            let rng = &mut rows.rng(first + row);
                            for (t, &a) in s.iter_mut().zip(&alt[i]) {
                                if a != NO_ALT && uniform(rng) < p {
                                    *t = a;
                                }
                            }
                        }
                    }
                }
                SeqBatch::from_tokens(&seqs)?
            }
            Inputs::Features {
                values,
                num_features,
            } => {
                let seqs: Vec<&[f32]> = idx.iter().map(|&i| &values[i][..]).collect();
                SeqBatch::from_features(&seqs, *num_features)?
            }
        };
        let targets = match &self.outputs {
            Outputs::Classes(c) => Targets::Classes(idx.iter().map(|&i| c[i]).collect()),
            Outputs::Tags(t) => {
                let seqs: Vec<&[usize]> = idx.iter().map(|&i| &t[i][..]).collect();
                Targets::step_classes(&seqs, batch.steps())
            }
            Outputs::Values(v) => Targets::Values(idx.iter().flat_map(|&i| v[i].clone()).collect()),
        };
        Ok((batch, targets))
    }
}

/// A number in [0, 1) from `rng`.
fn uniform(rng: &mut TrainRng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A permutation of `0..n` (Fisher–Yates) drawn from a generator seeded with `seed`.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = seeded(seed);
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

/// Where each of `n` examples goes when `valid` and `test` fractions are held out: a
/// deterministic, evenly spread choice (the fractional parts of k·φ, φ the golden ratio), the
/// same whatever the seed. Returns the indices of (train, valid, test), each in file order.
pub fn split(n: usize, valid: f64, test: f64) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let phi = 0.618_033_988_749_894_9_f64;
    let (mut tr, mut va, mut te) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..n {
        let u = ((k as f64 + 1.0) * phi).fract();
        if u < test {
            te.push(k);
        } else if u < test + valid {
            va.push(k);
        } else {
            tr.push(k);
        }
    }
    (tr, va, te)
}

/// Checks a held-out fraction given on the command line.
pub fn check_fraction(flag: &str, f: f64) -> Result<(), String> {
    if !(0.0..0.9).contains(&f) {
        return Err(format!("{flag} must be in [0, 0.9), got {f}"));
    }
    Ok(())
}

/// Checks the model options ([`crate::limits::check_model`]) and the task's own sizes;
/// the cell.
pub fn check_model_opts(m: &ModelOpts, sizes: &[(&str, usize)]) -> Result<Mode, String> {
    crate::limits::check_model(m, sizes)?;
    Ok(m.mode())
}

/// An error if the model of `config` has more parameters than the command line allows
/// ([`crate::limits::MAX_PARAMS`]); called before the data is read with the smallest
/// vocabulary and label set, and again before the model is made.
pub fn check_size(config: &recur::models::seqmodel::SeqModelConfig) -> Result<(), String> {
    use recur::models::seqmodel::InputKind;
    let (rows, embed, input) = match config.input {
        InputKind::Tokens {
            vocab_size,
            embed_size,
        } => (vocab_size, embed_size, 0),
        InputKind::Features { num_features } => (0, 0, num_features),
    };
    let dirs = if config.bidirectional { 2 } else { 1 };
    let n = crate::limits::block_params(
        config.mode,
        rows,
        embed,
        input,
        config.hidden_size,
        config.num_layers,
        dirs,
        config.output_size,
    );
    let sizes = if embed > 0 {
        format!(
            "vocabulary {rows}, --embed-size {embed}, --hidden-size {}, --num-layers {}",
            config.hidden_size, config.num_layers
        )
    } else {
        format!(
            "--hidden-size {}, --num-layers {}",
            config.hidden_size, config.num_layers
        )
    };
    crate::limits::check_params(n, &sizes)
}

/// A column given on the command line: a 0-based index if it is a number, else a name.
pub fn column(s: &str) -> recur::data::Column {
    match s.parse::<usize>() {
        Ok(i) => recur::data::Column::Index(i),
        Err(_) => recur::data::Column::Name(s.to_string()),
    }
}

/// What differs between classification, tagging and forecasting.
pub trait Kind {
    /// `classify`, `tag` or `forecast`.
    fn name(&self) -> &'static str;
    /// The unit of the loss's count: `seq`, `token`, `value`.
    fn unit(&self) -> &'static str;
    /// What the training loss is, for the axis of the plots.
    fn loss_label(&self) -> &'static str {
        "cross-entropy (nats)"
    }
    /// Whether the first metric is better larger.
    fn higher_is_better(&self) -> bool;
    /// Metrics of `model` on `data`, named with `prefix` (the first picks the best model), and
    /// a text report (confusion matrix, per-class scores, baselines) for the log.
    fn metrics(
        &self,
        model: &SeqModel<f32>,
        data: &Examples,
        batch_size: usize,
        prefix: &str,
    ) -> recur::Result<(Metrics, String)>;
    /// [`Kind::metrics`] plus details for the final report (metrics.json): per-class scores.
    fn final_metrics(
        &self,
        model: &SeqModel<f32>,
        data: &Examples,
        batch_size: usize,
        prefix: &str,
    ) -> recur::Result<(Metrics, String)> {
        self.metrics(model, data, batch_size, prefix)
    }
    /// The `"task"` object of config.json: everything `recur eval` / `recur predict` need to
    /// read data the way training did.
    fn task_json(&self) -> serde_json::Value;
    /// Writes the vocabulary and label files into `dir`.
    fn save_files(&self, dir: &Path) -> recur::Result<()>;
}

/// A runner task that trains a [`SeqModel`] on [`Examples`] in minibatches, in a new random
/// order every epoch.
pub struct SeqTask {
    pub kind: Box<dyn Kind>,
    pub model: SeqModel<f32>,
    pub grads: SeqModelGrads<f32>,
    pub train: Examples,
    pub valid: Examples,
    /// A test set, evaluated once on the best model at the end: (name for the log, data).
    pub test: Option<(String, Examples)>,
    pub batch_size: usize,
    /// Probability of replacing a training token by its alternative ([`Inputs::Tokens`]).
    pub replace: f64,
    pub seed: u64,
    /// The data and model options a resumed run must share.
    pub config_json: serde_json::Value,
    /// Batches trained so far.
    pub cursor: u64,
    /// Dropout and token replacement.
    pub rng: TrainRng,
    /// The order of the current epoch: (epoch, permutation).
    pub order: Option<(u64, Vec<usize>)>,
}

impl SeqTask {
    /// A task at its first step; the generator of dropout is apart from the initialization's.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: Box<dyn Kind>,
        model: SeqModel<f32>,
        train: Examples,
        valid: Examples,
        test: Option<(String, Examples)>,
        batch_size: usize,
        replace: f64,
        seed: u64,
        config_json: serde_json::Value,
    ) -> SeqTask {
        SeqTask {
            kind,
            grads: model.zeros_like_grads(),
            model,
            train,
            valid,
            test,
            batch_size,
            replace,
            seed,
            config_json,
            cursor: 0,
            rng: seeded(seed ^ 0x5e9_5e9_5e9_5e9),
            order: None,
        }
    }

    fn epoch_order(&mut self, epoch: u64) -> &[usize] {
        if self.order.as_ref().map(|o| o.0) != Some(epoch) {
            let seed = self.seed ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x0bde_0bde;
            self.order = Some((epoch, permutation(self.train.len(), seed)));
        }
        &self.order.as_ref().expect("the order was just made").1
    }

    /// One training step (see [`Task::train_batch`]). With `ready`, the backward pass
    /// announces the parts whose gradients are final as it goes (their all-reduce starts
    /// while it computes the rest).
    fn step(
        &mut self,
        shard: recur::train::Shard,
        mut ready: Option<&mut dyn recur::train::GradReady>,
    ) -> recur::Result<StepStats> {
        let per_epoch = self.steps_per_epoch();
        let (epoch, k) = (self.cursor / per_epoch, (self.cursor % per_epoch) as usize);
        let bs = self.batch_size;
        let idx: Vec<usize> = {
            let order = self.epoch_order(epoch);
            order[k * bs..((k + 1) * bs).min(order.len())].to_vec()
        };
        let (replace_key, dropout_key) = (self.rng.next_u64(), self.rng.next_u64());
        let rows = shard.range(idx.len());
        let r = &self.model.config().regular;
        if (r.ar > 0.0 || r.tar > 0.0) && !shard.is_whole() {
            // Their means are over the rows a rank computes, not over the whole batch.
            return Err(recur::Error::Config(format!(
                "--ar/--tar do not run on several ranks yet (this run has {} ranks): train with them on one process",
                shard.ranks
            )));
        }
        self.grads.zero();
        if rows.is_empty() {
            self.cursor += 1;
            return Ok(StepStats {
                loss: 0.0,
                units: 0,
            });
        }
        let (batch, targets) = self.train.batch(
            &idx[rows.clone()],
            Some((self.replace, replace_key, rows.start)),
        )?;
        // Dropout and the random regularizers, row by row from the step's key.
        let dropout = self.model.config().is_random().then_some(dropout_key);
        let loss = self.model.loss_and_grad_rows_announcing(
            &batch,
            &targets,
            rows.start,
            dropout,
            &mut self.grads,
            &mut |k, count, g| match ready.as_deref_mut() {
                Some(ready) => {
                    let bufs = [&g.embed[..], &g.rnn[..], &g.head[..]];
                    ready.parts_final(k, count as u64, &bufs[k..])
                }
                None => Ok(()),
            },
        )?;
        self.cursor += 1;
        Ok(StepStats {
            loss: loss.loss,
            units: loss.count as u64,
        })
    }
}

impl Task for SeqTask {
    fn name(&self) -> &'static str {
        self.kind.name()
    }
    fn unit(&self) -> &'static str {
        self.kind.unit()
    }
    fn loss_label(&self) -> &'static str {
        self.kind.loss_label()
    }
    fn steps_per_epoch(&self) -> u64 {
        self.train.len().div_ceil(self.batch_size) as u64
    }
    fn higher_is_better(&self) -> bool {
        self.kind.higher_is_better()
    }
    fn config_json(&self) -> serde_json::Value {
        self.config_json.clone()
    }

    /// Every rank walks the same global batches (the epoch's order follows from the seed)
    /// and computes the rows [`Shard::range`](recur::train::Shard::range) gives it; token
    /// replacement and dropout are drawn row by row from two keys of the step, so that they
    /// do not depend on the number of ranks.
    fn train_batch(&mut self, shard: recur::train::Shard) -> recur::Result<StepStats> {
        self.step(shard, None)
    }

    /// [`Task::train_batch`] whose backward pass announces the head's gradients before the
    /// recurrent stack's backward pass, then the stack's, then the embedding's.
    fn train_batch_announcing(
        &mut self,
        shard: recur::train::Shard,
        ready: &mut dyn recur::train::GradReady,
    ) -> recur::Result<StepStats> {
        self.step(shard, Some(ready))
    }

    fn parts(&mut self) -> Vec<Part<'_>> {
        let g = &mut self.grads;
        embed_rnn_head(
            self.model.params_mut(),
            [&mut g.embed, &mut g.rnn, &mut g.head],
        )
    }

    fn evaluate(&mut self) -> recur::Result<Metrics> {
        let (m, _) = self
            .kind
            .metrics(&self.model, &self.valid, self.batch_size, "valid_")?;
        Ok(m)
    }

    fn save_model(&self, dir: &Path, training: &serde_json::Value) -> recur::Result<()> {
        let extra = serde_json::json!({
            "task": self.kind.task_json(),
            "training": training,
        });
        save_dir(dir, &self.model, Some(&extra))?;
        self.kind.save_files(dir)
    }

    fn save_state(&self, w: &mut CheckpointWriter) {
        w.meta_mut()["task"] = serde_json::json!({
            "cursor": self.cursor,
            "rng": rng_state(&self.rng),
        });
    }

    fn load_state(&mut self, c: &Checkpoint) -> recur::Result<()> {
        let t = c.field("task")?;
        self.cursor = t.get("cursor").and_then(|x| x.as_u64()).ok_or_else(|| {
            recur::Error::Input(format!("{}: task.cursor is missing", c.source()))
        })?;
        self.rng = rng_from_state(&t["rng"], &format!("{}: task.rng", c.source()))?;
        self.order = None;
        Ok(())
    }

    fn finish(&mut self, dir: &Path, log: &mut dyn recur::train::Hooks) -> recur::Result<Metrics> {
        let best = load_dir::<f32>(dir)?;
        let (mut all, report) =
            self.kind
                .final_metrics(&best, &self.valid, self.batch_size, "valid_")?;
        log.line(&format!("best model on the validation data:\n{report}"));
        if let Some((name, test)) = &self.test {
            let (m, report) = self
                .kind
                .final_metrics(&best, test, self.batch_size, "test_")?;
            log.line(&format!("best model on the test data ({name}):\n{report}"));
            let (head, _) = self.kind.metrics(&best, test, self.batch_size, "test_")?;
            log.line(&format!("test: {}", fmt_metrics(&head)));
            all.extend(m);
        }
        Ok(all)
    }
}

/// The `"task"` object of a model directory's config.json.
pub fn task_of(cfg: &recur::models::ModelConfig) -> Result<serde_json::Value, String> {
    cfg.json
        .get("task")
        .filter(|t| t.get("kind").and_then(|k| k.as_str()).is_some())
        .cloned()
        .ok_or_else(|| {
            format!(
                "{}: no \"task\" with a \"kind\": not a model of recur train classify, tag or forecast",
                cfg.source
            )
        })
}

/// A string field of a task object.
pub fn task_str<'a>(task: &'a serde_json::Value, key: &str) -> Result<&'a str, String> {
    task.get(key)
        .and_then(|v| v.as_str())
        .ok_or_else(|| format!("config.json: task.{key} must be a string"))
}

/// Loads the model of a directory for `recur eval` / `recur predict`.
pub fn load_model(dir: &Path, cfg: &recur::models::ModelConfig) -> Result<SeqModel<f32>, String> {
    recur::models::seqmodel::load_from::<f32>(dir, cfg).map_err(|e| e.to_string())
}

/// Batches of `batch_size` consecutive indices `0..n`.
pub fn chunks(n: usize, batch_size: usize) -> impl Iterator<Item = Vec<usize>> {
    let bs = batch_size.max(1);
    (0..n.div_ceil(bs)).map(move |k| (k * bs..((k + 1) * bs).min(n)).collect())
}
