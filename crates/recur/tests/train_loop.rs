//! The training loop of `recur::train`: data-parallel ranks reach the weights of one process
//! with the whole batch, a run stopped and resumed is bit-exact, hooks see what happens, and
//! the errors are typed.

use recur::nn::{softmax_cross_entropy, Linear, OptimizerConfig, SgdConfig};
use recur::train::checkpoint::{rng_from_state, rng_state, seeded, Checkpoint, CheckpointWriter};
use recur::train::{
    run, run_on, Communicator, Evaluation, Hooks, Metrics, NonFinite, Part, Shard, StepStats, Task,
    TrainConfig, TrainError,
};
use recur::Error;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, Mutex};

#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;

const IN: usize = 3;
const CLASSES: usize = 4;
/// Rows per global batch: odd, so that two ranks get 4 and 3.
const BATCH: usize = 7;

/// Softmax regression, `Linear(3, 4)` + cross-entropy, on rows drawn from a generator: every
/// step draws a global batch of [`BATCH`] rows (the same on every rank) and computes the mean
/// loss and gradient of its shard's rows.
struct Softmax {
    fc: Linear<f32>,
    grads: Vec<f32>,
    rng: recur::train::checkpoint::TrainRng,
    /// A step whose loss is NaN (for the non-finite policy).
    poison: Option<u64>,
    steps: u64,
    discarded: u64,
}

impl Softmax {
    fn new() -> Softmax {
        let fc = Linear::new(IN, CLASSES, true, 7);
        Softmax {
            grads: fc.zeros_like_params(),
            fc,
            rng: seeded(11),
            poison: None,
            steps: 0,
            discarded: 0,
        }
    }

    /// A batch of rows whose class is the index of the largest of the first three inputs
    /// plus one when the sum is positive (a pattern a linear model half learns).
    fn batch(&mut self) -> (Vec<f32>, Vec<i64>) {
        use rand::Rng;
        let mut x = Vec::with_capacity(BATCH * IN);
        let mut y = Vec::with_capacity(BATCH);
        for _ in 0..BATCH {
            let row: Vec<f32> = (0..IN).map(|_| self.rng.gen_range(-1.0..1.0)).collect();
            let arg = (0..IN).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            let sum: f32 = row.iter().sum();
            y.push(((arg + usize::from(sum > 0.0)) % CLASSES) as i64);
            x.extend(row);
        }
        (x, y)
    }
}

impl Task for Softmax {
    fn name(&self) -> &'static str {
        "softmax"
    }
    fn unit(&self) -> &'static str {
        "row"
    }
    fn steps_per_epoch(&self) -> u64 {
        5
    }
    fn higher_is_better(&self) -> bool {
        false
    }
    fn config_json(&self) -> serde_json::Value {
        serde_json::json!({"in": IN, "classes": CLASSES})
    }
    fn train_batch(&mut self, shard: Shard) -> recur::Result<StepStats> {
        let (x, y) = self.batch();
        self.steps += 1;
        self.grads.iter_mut().for_each(|g| *g = 0.0);
        let rows = shard.range(BATCH);
        let n = rows.len();
        if n == 0 {
            return Ok(StepStats {
                loss: 0.0,
                units: 0,
            });
        }
        let x = &x[rows.start * IN..rows.end * IN];
        let mut logits = vec![0.0f32; n * CLASSES];
        self.fc.forward(x, n, &mut logits);
        let (loss, dlogits) = softmax_cross_entropy(&logits, CLASSES, &y[rows], -100)?;
        self.fc.backward(x, &dlogits, n, &mut self.grads, None);
        let loss = if self.poison == Some(self.steps) {
            f64::NAN
        } else {
            loss as f64
        };
        Ok(StepStats {
            loss,
            units: n as u64,
        })
    }
    fn discard_step(&mut self) {
        self.discarded += 1;
    }
    fn parts(&mut self) -> Vec<Part<'_>> {
        vec![Part {
            name: "fc",
            params: self.fc.params_mut(),
            grads: &mut self.grads,
        }]
    }
    fn evaluate(&mut self) -> recur::Result<Metrics> {
        let w: f64 = self.fc.params().iter().map(|&v| (v as f64).powi(2)).sum();
        Ok(vec![("valid_loss".into(), 1.0 / (1.0 + w))])
    }
    fn save_model(&self, dir: &Path, _training: &serde_json::Value) -> recur::Result<()> {
        let path = dir.join("model.txt");
        std::fs::write(&path, format!("{:?}", self.fc.params()))
            .map_err(|e| Error::file(&path, "cannot write", e))
    }
    fn save_state(&self, w: &mut CheckpointWriter) {
        w.meta_mut()["task"] =
            serde_json::json!({"rng": rng_state(&self.rng), "steps": self.steps});
    }
    fn load_state(&mut self, c: &Checkpoint) -> recur::Result<()> {
        let t = c.field("task")?;
        self.rng = rng_from_state(&t["rng"], "task.rng")?;
        self.steps = t["steps"].as_u64().unwrap_or_default();
        Ok(())
    }
}

fn sgd(out: &Path, steps: u64) -> TrainConfig {
    let mut c = TrainConfig::new(out).steps(steps);
    c.optimizer = OptimizerConfig::Sgd(SgdConfig::default().lr(0.3).momentum(0.9));
    c.eval_every = Some(5);
    c.clip_grad_norm = 0.0;
    c
}

/// Ranks that are threads of this process: every collective operation puts each rank's
/// buffer in a slot, waits for all, and combines the slots in rank order.
struct Threads {
    rank: usize,
    size: usize,
    shared: Arc<(Barrier, Mutex<Vec<Vec<u8>>>)>,
}

impl Threads {
    fn group(size: usize) -> Vec<Threads> {
        let shared = Arc::new((Barrier::new(size), Mutex::new(vec![Vec::new(); size])));
        (0..size)
            .map(|rank| Threads {
                rank,
                size,
                shared: shared.clone(),
            })
            .collect()
    }

    fn exchange(&self, mine: Vec<u8>) -> Vec<Vec<u8>> {
        let (barrier, slots) = &*self.shared;
        slots.lock().unwrap()[self.rank] = mine;
        barrier.wait();
        let all = slots.lock().unwrap().clone();
        barrier.wait();
        all
    }
}

impl Communicator for Threads {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> recur::Result<()> {
        let mine = buf.iter().flat_map(|v| v.to_le_bytes()).collect();
        let all = self.exchange(mine);
        for (k, v) in buf.iter_mut().enumerate() {
            *v = all
                .iter()
                .map(|b| f64::from_le_bytes(b[8 * k..8 * k + 8].try_into().unwrap()))
                .sum();
        }
        Ok(())
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> recur::Result<()> {
        let mine = buf.iter().flat_map(|v| v.to_le_bytes()).collect();
        let all = self.exchange(mine);
        for (k, v) in buf.iter_mut().enumerate() {
            *v = all
                .iter()
                .map(|b| f32::from_le_bytes(b[4 * k..4 * k + 4].try_into().unwrap()))
                .sum();
        }
        Ok(())
    }
    fn all_gather(&self, bytes: &[u8]) -> recur::Result<Vec<Vec<u8>>> {
        Ok(self.exchange(bytes.to_vec()))
    }
}

/// Records what the hooks are told.
#[derive(Default)]
struct Record {
    lines: Vec<String>,
    steps: Vec<(u64, f64, u64)>,
    evals: Vec<(u64, bool)>,
    checkpoints: Vec<u64>,
    stop_at: Option<u64>,
    polls: u64,
}

impl Hooks for Record {
    fn line(&mut self, line: &str) {
        self.lines.push(line.to_string());
    }
    fn step(&mut self, step: u64, loss: f64, units: u64) {
        self.steps.push((step, loss, units));
    }
    fn evaluation(&mut self, e: &Evaluation<'_>) {
        self.evals.push((e.point.step, e.improved));
    }
    fn checkpoint(&mut self, step: u64, _path: &Path) {
        self.checkpoints.push(step);
    }
    fn should_stop(&mut self) -> bool {
        self.polls += 1;
        self.stop_at
            .is_some_and(|s| self.steps.last().map(|x| x.0) == Some(s))
    }
}

#[test]
fn two_ranks_take_the_steps_of_one_process_with_the_whole_batch() {
    let dir = TmpDir::new("ranks");
    let steps = 30;
    let mut whole = Softmax::new();
    let mut rec = Record::default();
    let one = run(&mut whole, &sgd(&dir.path("one"), steps), &mut rec).unwrap();

    let out = dir.path("two");
    let quiet = dir.path("two-rank-1");
    let results: Vec<(Vec<f32>, recur::train::Summary, Record)> = std::thread::scope(|s| {
        let handles: Vec<_> = Threads::group(2)
            .into_iter()
            .map(|comm| {
                // Rank 1 is given a directory of its own: it must write nothing there.
                let dir = if comm.rank() == 0 {
                    out.clone()
                } else {
                    quiet.clone()
                };
                let config = sgd(&dir, steps);
                s.spawn(move || {
                    let mut task = Softmax::new();
                    let mut rec = Record::default();
                    let summary = run_on(&mut task, &config, &mut rec, &comm).unwrap();
                    (task.fc.params().to_vec(), summary, rec)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (p0, s0, r0) = &results[0];
    let (p1, _, r1) = &results[1];
    // Both ranks apply the same reduced gradient: the same weights, bit for bit.
    assert_eq!(p0, p1);
    // Against one process: the reduced gradient is Σ_r units_r · mean_r / Σ units, the whole
    // batch's mean summed in another order (4 + 3 rows in f32, combined in f64, instead of 7
    // rows in f32): a relative difference of a few f32 roundings, ~1e-7 of the gradient. SGD
    // with momentum 0.9 and lr 0.3 carries each step's difference into the weights scaled by
    // at most lr / (1 - 0.9) = 3, so after 30 steps of gradients below 1 the weights (of order
    // 1) differ by at most ~30 · 3 · 1e-7 ≈ 1e-5; the run measures 2.4e-7 (two roundings of
    // the last bit), and a wrong weighting (the plain mean of the two ranks' means over 4 and
    // 3 rows) is off by more than 1e-3 in a single step (checked below).
    let p = whole.fc.params();
    let worst = p
        .iter()
        .zip(p0)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("two ranks against one process: largest weight difference {worst:e}");
    assert!(worst < 1e-5, "ranks differ from one process by {worst}");
    // The losses the runs report: each the mean over the whole batch.
    for (a, b) in one.curve.iter().zip(&s0.curve) {
        assert!((a.train_loss - b.train_loss).abs() < 1e-6 * a.train_loss.abs().max(1.0));
    }
    // Rank 0 reports (and counts all the rows), rank 1 is quiet.
    assert_eq!(r0.steps.len(), steps as usize);
    assert_eq!(r0.steps.last().unwrap().2, steps * BATCH as u64);
    assert!(r1.steps.is_empty() && r1.lines.is_empty() && r1.evals.is_empty());
    assert!(out.join("metrics.json").exists() && out.join("checkpoint.safetensors").exists());
    assert!(!quiet.exists(), "rank 1 wrote files");

    // The check that the tolerance can fail: averaging the two ranks' means without their
    // weights gives another gradient, and other weights.
    let mut a = Softmax::new();
    let mut b = Softmax::new();
    let mut plain = Softmax::new();
    let (mut ga, mut gb) = (vec![], vec![]);
    for (task, g, rank) in [(&mut a, &mut ga, 0), (&mut b, &mut gb, 1)] {
        task.train_batch(Shard { rank, ranks: 2 }).unwrap();
        *g = task.grads.clone();
    }
    plain.train_batch(Shard::WHOLE).unwrap();
    let unweighted = ga
        .iter()
        .zip(&gb)
        .zip(&plain.grads)
        .map(|((x, y), z)| ((x + y) / 2.0 - z).abs())
        .fold(0.0f32, f32::max);
    let weighted = ga
        .iter()
        .zip(&gb)
        .zip(&plain.grads)
        .map(|((x, y), z)| ((4.0 * x + 3.0 * y) / 7.0 - z).abs())
        .fold(0.0f32, f32::max);
    assert!(
        weighted < 1e-6 && unweighted > 1e-3,
        "{weighted} {unweighted}"
    );
}

#[test]
fn ranks_with_other_options_are_refused() {
    let dir = TmpDir::new("ranks-differ");
    let out = dir.path("m");
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = Threads::group(2)
            .into_iter()
            .map(|comm| {
                let config = sgd(&out, 10 + comm.rank() as u64);
                s.spawn(move || {
                    let mut task = Softmax::new();
                    run_on(&mut task, &config, &mut (), &comm)
                        .unwrap_err()
                        .to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for e in errors {
        assert!(
            e.contains("rank 1 was started with other data or options than rank 0")
                && e.contains("steps: 10 on rank 0, 11 on rank 1"),
            "{e}"
        );
    }
}

#[test]
fn a_stopped_run_resumes_bit_exactly() {
    let dir = TmpDir::new("resume-lib");
    let (a, b) = (dir.path("a"), dir.path("b"));
    let mut straight = Softmax::new();
    let mut config = sgd(&a, 23);
    config.optimizer = OptimizerConfig::parse("adam:lr=0.05,amsgrad=true").unwrap();
    config.lr_schedule = "cosine".into();
    config.warmup_steps = 4;
    run(&mut straight, &config, &mut ()).unwrap();

    config.out = b.clone();
    let mut first = Softmax::new();
    let mut rec = Record {
        stop_at: Some(9),
        ..Record::default()
    };
    let s = run(&mut first, &config, &mut rec).unwrap();
    assert!(!s.finished && s.steps == 9, "{:?}", (s.finished, s.steps));
    assert_eq!(rec.checkpoints.last(), Some(&9));
    assert_eq!(rec.polls, 9, "should_stop is polled after every step");

    config.resume = true;
    let mut resumed = Softmax::new();
    let mut rec = Record::default();
    let s = run(&mut resumed, &config, &mut rec).unwrap();
    assert!(s.finished && s.start_step == 9 && s.steps == 23);
    assert!(rec.lines[0].starts_with("resuming from"), "{:?}", rec.lines);
    let bits = |t: &Softmax| {
        t.fc.params()
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&straight), bits(&resumed));
    let ck = |d: &PathBuf| Checkpoint::read(&d.join("checkpoint.safetensors")).unwrap();
    for name in [
        "optimizer.exp_avg",
        "optimizer.exp_avg_sq",
        "optimizer.max_exp_avg_sq",
    ] {
        assert_eq!(ck(&a).f32(name, 16).unwrap(), ck(&b).f32(name, 16).unwrap());
    }
    // The evaluations (every 5 steps and at the end) and the kept model.
    assert_eq!(
        rec.evals.iter().map(|e| e.0).collect::<Vec<_>>(),
        [10, 15, 20, 23]
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["finished"], true);
    assert_eq!(m["curve"].as_array().unwrap().len(), 5);
}

#[test]
fn resume_errors_are_typed() {
    let dir = TmpDir::new("resume-errors");
    let out = dir.path("m");
    let mut config = sgd(&out, 5);
    config.resume = true;
    let e = run(&mut Softmax::new(), &config, &mut ()).unwrap_err();
    assert!(
        matches!(e, Error::Train(TrainError::NoCheckpoint { .. })),
        "{e}"
    );
    config.resume = false;
    run(&mut Softmax::new(), &config, &mut ()).unwrap();
    let e = run(&mut Softmax::new(), &config, &mut ()).unwrap_err();
    assert!(
        matches!(e, Error::Train(TrainError::CheckpointExists { .. })),
        "{e}"
    );
    config.resume = true;
    let e = run(&mut Softmax::new(), &config, &mut ()).unwrap_err();
    assert!(
        matches!(e, Error::Train(TrainError::Done { step: 5, total: 5 })),
        "{e}"
    );
    config.optimizer = OptimizerConfig::Sgd(SgdConfig::default().lr(0.1).momentum(0.9));
    config.length = recur::train::Length::Steps(8);
    let e = run(&mut Softmax::new(), &config, &mut ()).unwrap_err();
    let Error::Train(TrainError::OtherRun { differences, .. }) = &e else {
        panic!("{e}")
    };
    assert!(
        differences
            .iter()
            .any(|d| d == "lr: 0.3 in the checkpoint, 0.1 now"),
        "{differences:?}"
    );
    // A bad value is a configuration error before anything is written.
    config.eval_every = Some(0);
    let e = run(&mut Softmax::new(), &config, &mut ()).unwrap_err();
    assert!(
        matches!(e, Error::Config(_)) && e.to_string().contains("eval_every"),
        "{e}"
    );
}

#[test]
fn non_finite_steps_stop_or_are_skipped() {
    let dir = TmpDir::new("nonfinite-lib");
    let mut config = sgd(&dir.path("stop"), 12);
    config.checkpoint_every = Some(2);
    let mut task = Softmax::new();
    task.poison = Some(5);
    let e = run(&mut task, &config, &mut ()).unwrap_err();
    let Error::Train(TrainError::NonFinite {
        step,
        last_checkpoint: Some((4, _)),
        ..
    }) = &e
    else {
        panic!("{e}")
    };
    assert_eq!(*step, 5);
    assert_eq!(task.discarded, 1);

    config.out = dir.path("skip");
    config.non_finite = NonFinite::Skip { max_in_a_row: 3 };
    let mut task = Softmax::new();
    task.poison = Some(5);
    let mut rec = Record::default();
    let s = run(&mut task, &config, &mut rec).unwrap();
    assert_eq!((s.skipped_steps, task.discarded, s.steps), (1, 1, 12));
    assert!(rec
        .lines
        .iter()
        .any(|l| l.starts_with("step 5: non-finite loss NaN: step skipped")));
    // Eleven updates were taken.
    assert_eq!(rec.steps.len(), 11);
}

#[test]
fn a_whole_batch_task_refuses_several_ranks() {
    let e = Shard { rank: 1, ranks: 2 }.require_whole("lm").unwrap_err();
    assert!(
        e.to_string()
            .contains("the lm task computes whole batches only"),
        "{e}"
    );
    for ranks in 1..6 {
        for batch in 0..12 {
            let parts: Vec<_> = (0..ranks)
                .map(|rank| Shard { rank, ranks }.range(batch))
                .collect();
            assert_eq!(parts[0].start, 0);
            assert_eq!(parts[ranks - 1].end, batch);
            for w in parts.windows(2) {
                assert_eq!(w[0].end, w[1].start);
                assert!(w[0].len() == w[1].len() || w[0].len() == w[1].len() + 1);
            }
        }
    }
}

#[test]
fn a_stop_asked_on_any_rank_stops_every_rank_at_the_same_step() {
    let dir = TmpDir::new("ranks-stop");
    let out = dir.path("m");
    let summaries: Vec<recur::train::Summary> = std::thread::scope(|s| {
        let handles: Vec<_> = Threads::group(2)
            .into_iter()
            .map(|comm| {
                let config = sgd(&out, 20);
                s.spawn(move || {
                    let mut task = Softmax::new();
                    // Only rank 1 is asked to stop, after its 4th step (rank 1 sees no steps
                    // through its hooks, so it counts its polls).
                    let mut hooks = StopAfter {
                        polls: 0,
                        at: (comm.rank() == 1).then_some(4),
                    };
                    run_on(&mut task, &config, &mut hooks, &comm).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for s in &summaries {
        assert!(!s.finished && s.steps == 4, "{:?}", (s.finished, s.steps));
    }
    let c = Checkpoint::read(&out.join("checkpoint.safetensors")).unwrap();
    assert_eq!(c.field("run").unwrap()["step"], 4);
}

/// Asks to stop at the `at`-th poll.
struct StopAfter {
    polls: u64,
    at: Option<u64>,
}

impl Hooks for StopAfter {
    fn should_stop(&mut self) -> bool {
        self.polls += 1;
        Some(self.polls) == self.at
    }
}
