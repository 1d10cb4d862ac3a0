//! The training loop with parameters kept in f64 ([`recur::train::Part64`]) and a task that
//! ends its run once solved ([`recur::train::Task::solved`]).

use recur::nn::{AdamConfig, OptimizerConfig, SgdConfig};
use recur::train::checkpoint::{Checkpoint, CheckpointWriter};
use recur::train::{run, Hooks, Metrics, Part, Part64, Shard, StepStats, Task, TrainConfig};
use std::path::Path;

#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;

/// loss = mean((w − 3)²) over the f32 part + mean((v + 1)²) over the f64 part; solved when
/// the evaluated loss is under `mark`.
struct Fit {
    w: Vec<f32>,
    gw: Vec<f32>,
    v: Vec<f64>,
    gv: Vec<f64>,
    scale: f64,
    mark: f64,
    last: f64,
}

impl Fit {
    fn new(scale: f64, mark: f64) -> Fit {
        Fit {
            w: vec![0.0, 1.0, 5.0],
            gw: vec![0.0; 3],
            v: vec![2.0, -4.0, 0.5, 1.0],
            gv: vec![0.0; 4],
            scale,
            mark,
            last: f64::INFINITY,
        }
    }
    fn loss(&self) -> f64 {
        let a: f64 = self
            .w
            .iter()
            .map(|&w| ((w - 3.0) as f64).powi(2))
            .sum::<f64>()
            / 3.0;
        let b: f64 = self.v.iter().map(|&v| (v + 1.0).powi(2)).sum::<f64>() / 4.0;
        a + b
    }
}

impl Task for Fit {
    fn name(&self) -> &'static str {
        "fit64"
    }
    fn unit(&self) -> &'static str {
        "value"
    }
    fn steps_per_epoch(&self) -> u64 {
        1
    }
    fn higher_is_better(&self) -> bool {
        false
    }
    fn config_json(&self) -> serde_json::Value {
        serde_json::json!({"scale": self.scale})
    }
    fn train_batch(&mut self, shard: Shard) -> recur::Result<StepStats> {
        shard.require_whole("fit64")?;
        for (g, &w) in self.gw.iter_mut().zip(&self.w) {
            *g = 2.0 * (w - 3.0) / 3.0;
        }
        for (g, &v) in self.gv.iter_mut().zip(&self.v) {
            *g = 2.0 * (v + 1.0) / 4.0;
        }
        Ok(StepStats {
            loss: self.loss(),
            units: 1,
        })
    }
    fn parts(&mut self) -> Vec<Part<'_>> {
        vec![Part {
            name: "w",
            params: &mut self.w,
            grads: &mut self.gw,
        }]
    }
    fn parts_f64(&mut self) -> Vec<Part64<'_>> {
        vec![Part64 {
            name: "v",
            params: &mut self.v,
            grads: &mut self.gv,
            lr_scale: self.scale,
        }]
    }
    fn evaluate(&mut self) -> recur::Result<Metrics> {
        self.last = self.loss();
        Ok(vec![("valid_loss".into(), self.last)])
    }
    fn solved(&self) -> bool {
        self.last < self.mark
    }
    fn save_model(&self, dir: &Path, _training: &serde_json::Value) -> recur::Result<()> {
        std::fs::write(dir.join("v.txt"), format!("{:?}", self.v))
            .map_err(|e| recur::Error::file(dir.join("v.txt"), "cannot write", e))
    }
    fn save_state(&self, _w: &mut CheckpointWriter) {}
    fn load_state(&mut self, _c: &Checkpoint) -> recur::Result<()> {
        Ok(())
    }
}

#[derive(Default)]
struct Norms(Vec<f64>);

impl Hooks for Norms {
    fn grad_norm(&mut self, _step: u64, norm: f64) {
        self.0.push(norm);
    }
}

/// One step of SGD: the f64 part moves at `lr · lr_scale`, and clipping scales both parts by
/// one coefficient from the norm of both together.
#[test]
fn an_f64_part_learns_at_its_scale_and_is_clipped_with_the_f32_parts() {
    let dir = TmpDir::new("train-f64-step");
    let mut task = Fit::new(0.5, 0.0);
    let (w0, v0) = (task.w.clone(), task.v.clone());
    let mut c = TrainConfig::new(&dir.0).steps(1);
    c.optimizer = OptimizerConfig::Sgd(SgdConfig::default().lr(0.1));
    c.clip_grad_norm = 1.0;
    c.checkpoints = false;
    let mut hooks = Norms::default();
    let s = run(&mut task, &c, &mut hooks).unwrap();
    // The f32 part's gradient as the task computes it (in f32), which the norm sums.
    let gw: Vec<f64> = w0.iter().map(|&w| (2.0 * (w - 3.0) / 3.0) as f64).collect();
    let gv: Vec<f64> = v0.iter().map(|&v| 2.0 * (v + 1.0) / 4.0).collect();
    let norm = gw.iter().chain(&gv).map(|g| g * g).sum::<f64>().sqrt();
    assert!(norm > 1.0, "the test needs clipping: norm {norm}");
    assert_eq!(hooks.0.len(), 1);
    assert!((hooks.0[0] - norm).abs() < 1e-6, "{} vs {norm}", hooks.0[0]);
    assert_eq!(s.clipped_steps, 1);
    let coef = 1.0 / (norm + 1e-6);
    for ((&w, &w0), g) in task.w.iter().zip(&w0).zip(&gw) {
        let want = w0 as f64 - 0.1 * coef * g;
        assert!((w as f64 - want).abs() < 1e-6, "w {w} want {want}");
    }
    for ((&v, &v0), g) in task.v.iter().zip(&v0).zip(&gv) {
        let want = v0 - 0.05 * coef * g;
        assert!((v - want).abs() < 1e-14, "v {v} want {want}");
    }
}

/// A task that says it is solved ends the run at that evaluation, as finished.
#[test]
fn a_solved_task_ends_the_run_at_that_evaluation() {
    let dir = TmpDir::new("train-f64-solved");
    let mut c = TrainConfig::new(&dir.0).steps(500);
    c.optimizer = OptimizerConfig::Sgd(SgdConfig::default().lr(0.3));
    c.eval_every = Some(10);
    c.clip_grad_norm = 0.0;
    // The same run without the mark, to find the first evaluation under it.
    let mut free = Fit::new(1.0, f64::NEG_INFINITY);
    let all = run(&mut free, &c, &mut ()).unwrap();
    assert_eq!((all.steps, all.solved_at), (500, None));
    let mark = 1e-3;
    let first = all
        .curve
        .iter()
        .find(|p| p.metrics[0].1 < mark)
        .expect("the loss gets under the mark")
        .step;
    assert!(first < 500);
    let dir2 = TmpDir::new("train-f64-solved2");
    c.out = dir2.0.clone();
    let mut task = Fit::new(1.0, mark);
    let s = run(&mut task, &c, &mut ()).unwrap();
    assert!(s.finished);
    assert_eq!(s.solved_at, Some(first));
    assert_eq!(s.steps, first);
    assert_eq!(s.last.as_ref().unwrap().step, first);
    assert_eq!(s.metrics["solved_at"], first);
    assert_eq!(s.metrics["final"]["step"], first);
    // The weights are those of the free run at that step: the same steps were taken.
    let mut again = Fit::new(1.0, f64::NEG_INFINITY);
    let dir3 = TmpDir::new("train-f64-solved3");
    c.out = dir3.0.clone();
    let mut c3 = c.clone();
    c3.length = recur::train::Length::Steps(first);
    run(&mut again, &c3, &mut ()).unwrap();
    assert_eq!(again.v, task.v);
    assert_eq!(again.w, task.w);
}

/// A run with an f64 part stopped half-way and resumed reaches the same weights, bit for bit,
/// as one that was not stopped (the f64 parameters and their Adam state are in the
/// checkpoint).
#[test]
fn a_run_with_f64_parts_resumes_bit_exactly() {
    let config = |out: &Path, steps: u64| {
        let mut c = TrainConfig::new(out).steps(steps);
        c.optimizer = OptimizerConfig::Adam(AdamConfig::default().lr(0.05));
        c.eval_every = Some(3);
        c.clip_grad_norm = 2.0;
        c
    };
    let a = TmpDir::new("train-f64-straight");
    let mut straight = Fit::new(0.3, f64::NEG_INFINITY);
    run(&mut straight, &config(&a.0, 12), &mut ()).unwrap();
    let b = TmpDir::new("train-f64-resumed");
    let mut first = Fit::new(0.3, f64::NEG_INFINITY);
    run(&mut first, &config(&b.0, 6), &mut ()).unwrap();
    let ck = Checkpoint::read(&b.0.join(recur::train::CHECKPOINT_FILE)).unwrap();
    assert!(ck.contains("param.v") && ck.contains("optimizer.v.exp_avg"));
    // A fresh task: everything comes from the checkpoint.
    let mut resumed = Fit::new(0.3, f64::NEG_INFINITY);
    let mut c = config(&b.0, 12);
    c.resume = true;
    let s = run(&mut resumed, &c, &mut ()).unwrap();
    assert_eq!(s.start_step, 6);
    assert_eq!(resumed.w, straight.w);
    assert_eq!(resumed.v, straight.v);
    assert_ne!(resumed.v, Fit::new(0.3, 0.0).v);
}
