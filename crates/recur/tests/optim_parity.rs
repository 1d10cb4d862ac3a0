//! Parity of `recur::nn` with PyTorch: every fixture in `tests/fixtures/nn/` (written by
//! `scripts/gen_nn_fixtures.py`; each file's metadata holds the PyTorch code that made its
//! numbers, in float64 from float32-representable inputs).
//!
//! - optimizers (`optim_<case>.safetensors`): the configuration is parsed from the fixture's
//!   spec string with `OptimizerConfig::parse`, run for 6 steps over two parameter tensors
//!   (two parts) with the given gradients and per-step learning rates; parameters after every
//!   step and the final state buffers are compared, in f64 to 1e-12 and in f32 to
//!   `tolerance::F32_FORWARD`;
//! - schedules (`schedules.safetensors`): `Schedule::parse` of the spec against
//!   `get_last_lr()` after every `scheduler.step()`, to 1e-12 relative;
//! - losses (`losses.safetensors`) and clipping (`clip.safetensors`).
//!
//! Also here: resuming an optimizer from its exported state is bit-exact.

use recur::core::tolerance::{Tol, F32_FORWARD};
use recur::io::state_dict::TensorFile;
use recur::nn::{
    clip_grad_norm, clip_grad_value, l1_loss, mse_loss, Optimizer, OptimizerConfig, OptimizerState,
    Reduction, Schedule,
};
use recur::Real;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;

/// f64 against PyTorch in f64.
const F64_TIGHT: Tol = Tol {
    abs: 1e-12,
    rel: 1e-12,
};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/nn")
}

fn read(name: &str) -> TensorFile {
    TensorFile::read(dir().join(name))
        .unwrap_or_else(|e| panic!("{e} (run scripts/gen_nn_fixtures.py)"))
}

fn meta<'a>(f: &'a TensorFile, key: &str) -> &'a str {
    f.metadata()
        .get(key)
        .unwrap_or_else(|| panic!("{}: no metadata '{key}'", f.source()))
}

fn f64s(f: &TensorFile, name: &str) -> Vec<f64> {
    f.float::<f64>(name).unwrap().into_data()
}

/// Compares `got` with `want` under `tol`; returns the largest absolute difference.
fn check<T: Real>(got: &[T], want: &[f64], tol: Tol, what: &str) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let mut worst = 0.0f64;
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = g.to_f64();
        assert!(tol.ok(g, w), "{what}[{k}]: got {g:e}, PyTorch {w:e}");
        worst = worst.max((g - w).abs());
    }
    worst
}

fn optim_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("tests/fixtures/nn exists (run scripts/gen_nn_fixtures.py)")
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("optim_") && n.ends_with(".safetensors")
        })
        .collect();
    files.sort();
    files
}

/// One fixture's optimizer run in `T`; returns the largest differences of parameters and
/// state.
fn run_optim<T: Real>(f: &TensorFile, case: &str, tol: Tol) -> (f64, f64) {
    let spec = meta(f, "optimizer");
    let config = OptimizerConfig::parse(spec).unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_eq!(config.torch_name(), meta(f, "torch_class"), "{case}");
    let sizes: Vec<usize> = meta(f, "parts")
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let steps: usize = meta(f, "steps").parse().unwrap();
    let to_t = |v: Vec<f64>| -> Vec<T> { v.into_iter().map(T::from_f64).collect() };
    let mut params = to_t(f64s(f, "params0"));
    let n = params.len();
    assert_eq!(sizes.iter().sum::<usize>(), n, "{case}: parts");
    let grads = to_t(f64s(f, "grads"));
    let lrs = f64s(f, "lrs");
    let want = f64s(f, "expected.params");
    let mut opt: Optimizer<T> = Optimizer::new(n, config).unwrap();
    let mut worst_p = 0.0f64;
    for t in 0..steps {
        opt.set_lr(lrs[t]);
        assert_eq!(opt.lr(), lrs[t]);
        let g = &grads[t * n..(t + 1) * n];
        let (p0, p1) = params.split_at_mut(sizes[0]);
        let (g0, g1) = g.split_at(sizes[0]);
        opt.step_parts(&mut [(p0, g0), (p1, g1)]);
        let w = check(
            &params,
            &want[t * n..(t + 1) * n],
            tol,
            &format!("{case} {} params after step {}", T::DTYPE, t + 1),
        );
        worst_p = worst_p.max(w);
    }
    assert_eq!(opt.steps(), steps as u64);
    let state = opt.state();
    let mut names: Vec<&str> = state.buffers.iter().map(|(k, _)| k.as_str()).collect();
    let mut torch_names: Vec<&str> = meta(f, "state")
        .split(',')
        .filter(|s| !s.is_empty())
        .collect();
    names.sort();
    torch_names.sort();
    assert_eq!(names, torch_names, "{case}: state buffers");
    let mut worst_s = 0.0f64;
    for (name, values) in &state.buffers {
        let w = check(
            values,
            &f64s(f, &format!("expected.{name}")),
            tol,
            &format!("{case} {} state {name}", T::DTYPE),
        );
        worst_s = worst_s.max(w);
    }
    (worst_p, worst_s)
}

#[test]
fn every_optimizer_matches_pytorch() {
    let files = optim_files();
    assert!(
        files.len() >= 14,
        "found {} optimizer fixtures",
        files.len()
    );
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    println!("\n| case | f64 max abs diff params | f64 state | f32 params | f32 state |");
    println!("|---|---|---|---|---|");
    for p in &files {
        let f = TensorFile::read(p).unwrap();
        let case = p.file_stem().unwrap().to_string_lossy().to_string();
        *kinds
            .entry(meta(&f, "torch_class").to_string())
            .or_default() += 1;
        let (p64, s64) = run_optim::<f64>(&f, &case, F64_TIGHT);
        let (p32, s32) = run_optim::<f32>(&f, &case, F32_FORWARD);
        println!("| {case} | {p64:.1e} | {s64:.1e} | {p32:.1e} | {s32:.1e} |");
    }
    let kinds: Vec<&str> = kinds.keys().map(|k| k.as_str()).collect();
    assert_eq!(kinds, ["Adagrad", "Adam", "AdamW", "RMSprop", "SGD"]);
}

/// Every configuration of the fixtures: 10 steps in one go, against 5 steps, the state
/// exported (and saved to a file and read back), imported into a fresh optimizer, 5 more
/// steps: the parameters and the state are bit-identical.
fn resume_case<T: Real>(spec: &str, tmp: &tmpdir::TmpDir) {
    let n = 17;
    let split = 12;
    let config = OptimizerConfig::parse(spec).unwrap();
    let mut rng = 0x2545f4914f6cdd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        T::from_f64((rng >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
    };
    let p0: Vec<T> = (0..n).map(|_| next()).collect();
    let grads: Vec<Vec<T>> = (0..10).map(|_| (0..n).map(|_| next()).collect()).collect();
    let lrs: Vec<f64> = (0..10)
        .map(|t| config.lr() * (1.0 + 0.1 * t as f64))
        .collect();
    let step = |opt: &mut Optimizer<T>, p: &mut Vec<T>, t: usize| {
        opt.set_lr(lrs[t]);
        let (a, b) = p.split_at_mut(split);
        let (ga, gb) = grads[t].split_at(split);
        opt.step_parts(&mut [(a, ga), (b, gb)]);
    };

    let mut straight: Optimizer<T> = Optimizer::new(n, config.clone()).unwrap();
    let mut p_straight = p0.clone();
    for t in 0..10 {
        step(&mut straight, &mut p_straight, t);
    }

    let mut first: Optimizer<T> = Optimizer::new(n, config.clone()).unwrap();
    let mut p = p0.clone();
    for t in 0..5 {
        step(&mut first, &mut p, t);
    }
    let exported = first.state();
    assert_eq!(exported.steps, 5);
    drop(first);
    let path = tmp.path(&format!("{}-{}.safetensors", config.name(), T::DTYPE));
    exported.save(&path).unwrap();
    let loaded = OptimizerState::<T>::load(&path).unwrap();
    assert_eq!(loaded, exported, "{spec}: state through a file");
    let mut resumed: Optimizer<T> = Optimizer::new(n, config).unwrap();
    resumed.load_state(&loaded).unwrap();
    assert_eq!(resumed.steps(), 5);
    for t in 5..10 {
        step(&mut resumed, &mut p, t);
    }
    let bits = |v: &[T]| v.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&p), bits(&p_straight), "{spec} {}: params", T::DTYPE);
    assert_eq!(
        resumed.state(),
        straight.state(),
        "{spec} {}: state",
        T::DTYPE
    );
    // The resumed run really moved: the state is not the one loaded.
    assert_ne!(resumed.state(), loaded);
}

#[test]
fn resume_from_exported_state_is_bit_exact() {
    let tmp = tmpdir::TmpDir::new("optim-resume");
    let mut n = 0;
    for p in optim_files() {
        let f = TensorFile::read(&p).unwrap();
        let spec = meta(&f, "optimizer");
        resume_case::<f64>(spec, &tmp);
        resume_case::<f32>(spec, &tmp);
        n += 1;
    }
    assert!(n >= 14);
}

#[derive(Debug)]
struct SchedCase {
    name: String,
    spec: String,
    base_lr: f64,
    total_steps: u64,
    warmup_steps: u64,
    steps: u64,
}

fn sched_cases(f: &TensorFile) -> Vec<SchedCase> {
    let v: serde_json::Value = serde_json::from_str(meta(f, "cases")).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| SchedCase {
            name: c["name"].as_str().unwrap().into(),
            spec: c["spec"].as_str().unwrap().into(),
            base_lr: c["base_lr"].as_f64().unwrap(),
            total_steps: c["total_steps"].as_u64().unwrap(),
            warmup_steps: c["warmup_steps"].as_u64().unwrap(),
            steps: c["steps"].as_u64().unwrap(),
        })
        .collect()
}

#[test]
fn every_schedule_matches_pytorch() {
    let f = read("schedules.safetensors");
    let cases = sched_cases(&f);
    assert!(cases.len() >= 16, "found {} schedules", cases.len());
    let tol = Tol {
        abs: 0.0,
        rel: 1e-12,
    };
    println!(
        "\n| schedule | spec | warm-up | steps | max rel diff | PyTorch code (recur's Display) |"
    );
    println!("|---|---|---|---|---|---|");
    for c in &cases {
        let s = Schedule::parse(&c.spec, c.base_lr, c.total_steps, c.warmup_steps)
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let want = f64s(&f, &format!("lr.{}", c.name));
        assert_eq!(want.len() as u64, c.steps + 1, "{}", c.name);
        let mut worst = 0.0f64;
        let mut forward = Vec::new();
        for (t, &w) in want.iter().enumerate() {
            let got = s.lr(t as u64);
            assert!(
                tol.ok(got, w),
                "{} lr({t}): got {got:e}, PyTorch {w:e}",
                c.name
            );
            if w != 0.0 {
                worst = worst.max((got - w).abs() / w.abs());
            }
            forward.push(got);
        }
        // A pure function of the step: backwards, and from fresh copies, the same bits.
        for t in (0..want.len()).rev() {
            assert_eq!(s.lr(t as u64).to_bits(), forward[t].to_bits(), "{}", c.name);
        }
        for t in (0..want.len()).step_by(7) {
            let fresh = Schedule::parse(&c.spec, c.base_lr, c.total_steps, c.warmup_steps).unwrap();
            assert_eq!(
                fresh.lr(t as u64).to_bits(),
                forward[t].to_bits(),
                "{}",
                c.name
            );
        }
        println!(
            "| {} | `{}` | {} | {} | {worst:.1e} | `{s}` |",
            c.name, c.spec, c.warmup_steps, c.steps
        );
    }
}

fn masks(f: &TensorFile, name: &str) -> Vec<bool> {
    f.lengths(name)
        .unwrap()
        .into_iter()
        .map(|v| v != 0)
        .collect()
}

#[test]
fn losses_match_pytorch() {
    let f = read("losses.safetensors");
    let v: serde_json::Value = serde_json::from_str(meta(&f, "cases")).unwrap();
    let x = f64s(&f, "input");
    let y = f64s(&f, "target");
    let (x32, y32): (Vec<f32>, Vec<f32>) = (
        x.iter().map(|&v| v as f32).collect(),
        y.iter().map(|&v| v as f32).collect(),
    );
    let mut n = 0;
    for c in v.as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let reduction = match c["reduction"].as_str().unwrap() {
            "mean" => Reduction::Mean,
            "sum" => Reduction::Sum,
            r => panic!("{r}"),
        };
        let mask = match c["mask"].as_str().unwrap() {
            "none" => None,
            m => Some(masks(&f, &format!("mask.{m}"))),
        };
        type Loss<T> = fn(&[T], &[T], Option<&[bool]>, Reduction) -> recur::Result<(T, Vec<T>)>;
        let fun: (Loss<f64>, Loss<f32>) = match c["loss"].as_str().unwrap() {
            "mse" => (mse_loss::<f64>, mse_loss::<f32>),
            "l1" => (l1_loss::<f64>, l1_loss::<f32>),
            l => panic!("{l}"),
        };
        let want_loss = f64s(&f, &format!("expected.{name}.loss"));
        let want_grad = f64s(&f, &format!("expected.{name}.grad"));
        let (l, g) = fun.0(&x, &y, mask.as_deref(), reduction).unwrap();
        check(&[l], &want_loss, F64_TIGHT, &format!("{name} loss"));
        check(&g, &want_grad, F64_TIGHT, &format!("{name} grad"));
        let (l, g) = fun.1(&x32, &y32, mask.as_deref(), reduction).unwrap();
        check(&[l], &want_loss, F32_FORWARD, &format!("{name} f32 loss"));
        check(&g, &want_grad, F32_FORWARD, &format!("{name} f32 grad"));
        n += 1;
    }
    assert_eq!(n, 12);
}

#[test]
fn clipping_matches_pytorch() {
    let f = read("clip.safetensors");
    let a = f64s(&f, "grad.a");
    let b = f64s(&f, "grad.b");
    let clip_value: f64 = meta(&f, "clip_value").parse().unwrap();
    let max_norm: f64 = meta(&f, "max_norm").parse().unwrap();

    let (mut ga, mut gb) = (a.clone(), b.clone());
    clip_grad_value(&mut [&mut ga[..], &mut gb[..]], clip_value).unwrap();
    check(
        &ga,
        &f64s(&f, "expected.value.a"),
        F64_TIGHT,
        "clip_grad_value a",
    );
    check(
        &gb,
        &f64s(&f, "expected.value.b"),
        F64_TIGHT,
        "clip_grad_value b",
    );
    assert!(
        ga.iter().chain(&gb).any(|&v| v.abs() == clip_value),
        "something was clipped"
    );

    let (mut ga, mut gb) = (a.clone(), b.clone());
    let total = clip_grad_norm(&mut [&mut ga[..], &mut gb[..]], max_norm);
    check(
        &[total],
        &f64s(&f, "expected.norm.total"),
        F64_TIGHT,
        "total norm",
    );
    assert!(total > max_norm, "the case clips");
    check(
        &ga,
        &f64s(&f, "expected.norm.a"),
        F64_TIGHT,
        "clip_grad_norm a",
    );
    check(
        &gb,
        &f64s(&f, "expected.norm.b"),
        F64_TIGHT,
        "clip_grad_norm b",
    );

    let (mut ga, mut gb): (Vec<f32>, Vec<f32>) = (
        a.iter().map(|&v| v as f32).collect(),
        b.iter().map(|&v| v as f32).collect(),
    );
    let total = clip_grad_norm(&mut [&mut ga[..], &mut gb[..]], max_norm);
    check(
        &[total],
        &f64s(&f, "expected.norm.total"),
        F32_FORWARD,
        "f32 total norm",
    );
    check(
        &ga,
        &f64s(&f, "expected.norm.a"),
        F32_FORWARD,
        "f32 clip_grad_norm a",
    );
    check(
        &gb,
        &f64s(&f, "expected.norm.b"),
        F32_FORWARD,
        "f32 clip_grad_norm b",
    );
}
