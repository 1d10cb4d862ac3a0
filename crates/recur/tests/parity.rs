//! Parity with PyTorch: every fixture in `tests/fixtures/parity/` (written by
//! `scripts/gen_fixtures.py`; each file's `snippet` metadata holds the PyTorch code that made
//! it) is run through recur in f64 and in f32. Outputs, final states and every gradient are
//! compared with PyTorch's float64 results, within the tolerances of `recur::core::tolerance`.
//!
//! `cargo test --release -p recur --test parity -- --nocapture` prints the error table.

use recur::core::tolerance::{Tol, F32_FORWARD, F32_GRAD, F64_VS_TORCH};
use recur::io::state_dict::{load_cell, load_rnn, LoadOptions, TensorFile};
use recur::{Dropout, Real, State, Tensor};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity")
}

/// Largest errors seen for one (mode, precision, quantity).
#[derive(Default, Clone, Copy)]
struct Stat {
    max_abs: f64,
    max_rel: f64,
    n: usize,
}

struct Checker {
    stats: BTreeMap<(String, &'static str, &'static str), Stat>,
    failures: Vec<String>,
}

impl Checker {
    #[allow(clippy::too_many_arguments)]
    fn check<T: Real>(
        &mut self,
        case: &str,
        mode: &str,
        what: &str,
        kind: &'static str,
        tol: Tol,
        got: &Tensor<T>,
        want: &Tensor<f64>,
    ) {
        let prec = if T::DTYPE == "F32" { "f32" } else { "f64" };
        if got.shape() != want.shape() {
            self.failures.push(format!(
                "{case} [{prec}] {what}: shape {:?} vs {:?}",
                got.shape(),
                want.shape()
            ));
            return;
        }
        let st = self
            .stats
            .entry((mode.to_string(), prec, kind))
            .or_default();
        let mut worst: Option<(usize, f64, f64)> = None;
        for (i, (&a, &r)) in got.data().iter().zip(want.data()).enumerate() {
            let a = a.to_f64();
            let e = (a - r).abs();
            st.max_abs = st.max_abs.max(e);
            if r.abs() > 1e-4 {
                st.max_rel = st.max_rel.max(e / r.abs());
            }
            st.n += 1;
            if !tol.ok(a, r) && worst.is_none() {
                worst = Some((i, a, r));
            }
        }
        if let Some((i, a, r)) = worst {
            self.failures.push(format!(
                "{case} [{prec}] {what}[{i}]: got {a:e}, PyTorch {r:e}"
            ));
        }
    }
}

fn meta<'a>(f: &'a TensorFile, k: &str) -> &'a str {
    f.metadata()
        .get(k)
        .map(|s| s.as_str())
        .unwrap_or_else(|| panic!("{}: no metadata {k}", f.source()))
}

fn flag(f: &TensorFile, k: &str) -> bool {
    meta(f, k) == "true"
}

fn run_case<T: Real>(f: &TensorFile, case: &str, ck: &mut Checker) {
    let mode = meta(f, "mode").to_string();
    let is_rnn = mode.starts_with("rnn");
    let opts = LoadOptions {
        prefix: Some("params".into()),
        relu: is_rnn.then(|| mode == "rnn_relu"),
        batch_first: flag(f, "batch_first"),
    };
    let (tf, tg) = if T::DTYPE == "F32" {
        (F32_FORWARD, F32_GRAD)
    } else {
        (F64_VS_TORCH, F64_VS_TORCH)
    };
    let x = f.float::<T>("input").unwrap();
    let exp = |n: &str| f.float::<f64>(&format!("expected.{n}")).unwrap();
    let opt = |n: &str| f.contains(n).then(|| f.float::<T>(n).unwrap());
    if meta(f, "module") == "cell" {
        let cell = load_cell::<T>(f, &opts).unwrap_or_else(|e| panic!("{case}: {e}"));
        let ((h, c), tape) = cell
            .forward_train(&x, opt("h0").as_ref(), opt("c0").as_ref())
            .unwrap();
        ck.check(case, &mode, "h'", "state", tf, &h, &exp("h_n"));
        if let Some(c) = &c {
            ck.check(case, &mode, "c'", "state", tf, c, &exp("c_n"));
        }
        let mut grads = cell.zeros_like_params();
        let g = cell
            .backward(
                &tape,
                opt("grad_h_n").as_ref(),
                opt("grad_c_n").as_ref(),
                &mut grads,
            )
            .unwrap();
        ck.check(
            case,
            &mode,
            "grad.input",
            "grad",
            tg,
            &g.input,
            &exp("grad.input"),
        );
        ck.check(case, &mode, "grad.h0", "grad", tg, &g.h, &exp("grad.h0"));
        if let Some(gc) = &g.c {
            ck.check(case, &mode, "grad.c0", "grad", tg, gc, &exp("grad.c0"));
        }
        for e in cell.layout().entries() {
            let got = Tensor::new(&e.shape, grads[e.range()].to_vec()).unwrap();
            ck.check(
                case,
                &mode,
                &format!("grad.{}", e.name),
                "grad",
                tg,
                &got,
                &exp(&format!("grad.{}", e.name)),
            );
        }
        return;
    }
    let rnn = load_rnn::<T>(f, &opts).unwrap_or_else(|e| panic!("{case}: {e}"));
    // The configuration inferred from the names and shapes must be the one PyTorch built.
    let c = rnn.config();
    let num = |k: &str| meta(f, k).parse::<usize>().unwrap();
    assert_eq!(
        (
            c.mode.name(),
            c.input_size,
            c.hidden_size,
            c.num_layers,
            c.proj_size,
            c.bias,
            c.bidirectional
        ),
        (
            mode.as_str(),
            num("input_size"),
            num("hidden_size"),
            num("num_layers"),
            num("proj_size"),
            flag(f, "bias"),
            flag(f, "bidirectional")
        ),
        "{case}: inferred configuration"
    );
    let state = opt("h0").map(|h| State { h, c: opt("c0") });
    let lengths = f.contains("lengths").then(|| f.lengths("lengths").unwrap());
    let masks: Vec<Tensor<T>> = (0..c.num_layers - 1)
        .filter_map(|k| opt(&format!("dropout_mask.l{k}")))
        .collect();
    let dropout = if masks.is_empty() {
        Dropout::Off
    } else {
        Dropout::Masks(&masks)
    };
    let (out, tape) = rnn
        .forward_train(&x, state.as_ref(), lengths.as_deref(), dropout)
        .unwrap();
    ck.check(
        case,
        &mode,
        "output",
        "output",
        tf,
        &out.output,
        &exp("output"),
    );
    ck.check(case, &mode, "h_n", "state", tf, &out.h_n, &exp("h_n"));
    if let Some(cn) = &out.c_n {
        ck.check(case, &mode, "c_n", "state", tf, cn, &exp("c_n"));
    }
    if masks.is_empty() {
        // Evaluation mode gives the same numbers as the training pass without dropout.
        let ev = rnn.forward(&x, state.as_ref(), lengths.as_deref()).unwrap();
        assert_eq!(ev, out, "{case}: forward vs forward_train");
    }
    let mut grads = rnn.zeros_like_params();
    let g = rnn
        .backward(
            &tape,
            opt("grad_output").as_ref(),
            opt("grad_h_n").as_ref(),
            opt("grad_c_n").as_ref(),
            &mut grads,
        )
        .unwrap();
    ck.check(
        case,
        &mode,
        "grad.input",
        "grad",
        tg,
        &g.input,
        &exp("grad.input"),
    );
    ck.check(case, &mode, "grad.h0", "grad", tg, &g.h0, &exp("grad.h0"));
    if let Some(gc) = &g.c0 {
        ck.check(case, &mode, "grad.c0", "grad", tg, gc, &exp("grad.c0"));
    }
    for e in rnn.layout().entries() {
        let got = Tensor::new(&e.shape, grads[e.range()].to_vec()).unwrap();
        ck.check(
            case,
            &mode,
            &format!("grad.{}", e.name),
            "grad",
            tg,
            &got,
            &exp(&format!("grad.{}", e.name)),
        );
    }
}

#[test]
fn every_fixture_matches_pytorch() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .expect("tests/fixtures/parity exists (run scripts/gen_fixtures.py)")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 250,
        "expected the full fixture matrix, found {} files",
        files.len()
    );
    let mut ck = Checker {
        stats: BTreeMap::new(),
        failures: Vec::new(),
    };
    let mut per_module: BTreeMap<String, usize> = BTreeMap::new();
    for p in &files {
        let case = p.file_stem().unwrap().to_string_lossy().to_string();
        let f = TensorFile::read(p).unwrap();
        *per_module
            .entry(format!("{} {}", meta(&f, "module"), meta(&f, "mode")))
            .or_default() += 1;
        run_case::<f64>(&f, &case, &mut ck);
        run_case::<f32>(&f, &case, &mut ck);
    }
    println!("\nparity: {} fixtures {:?}", files.len(), per_module);
    println!(
        "| cell | precision | quantity | values | max abs error | max rel error (where abs(ref) > 1e-4) |"
    );
    println!("|---|---|---|---|---|---|");
    for ((mode, prec, kind), s) in &ck.stats {
        println!(
            "| {mode} | {prec} | {kind} | {} | {:.2e} | {:.2e} |",
            s.n, s.max_abs, s.max_rel
        );
    }
    assert!(
        ck.failures.is_empty(),
        "{} mismatches, first ones:\n{}",
        ck.failures.len(),
        ck.failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// State dicts saved by `safetensors.torch.save_file(model.state_dict(), path)` for whole
/// models: the recurrent layer sits under a module prefix next to other layers.
#[test]
fn user_state_dicts_load_with_their_prefix() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/state_dict");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".io.safetensors") {
            continue;
        }
        let io = TensorFile::read(&p).unwrap();
        let weights = TensorFile::read(dir.join(name.replace(".io.", "."))).unwrap();
        let m = io.metadata();
        let relu = match m.get("nonlinearity").map(|s| s.as_str()) {
            Some("relu") => Some(true),
            Some("tanh") => Some(false),
            _ => None,
        };
        let bf = m.get("batch_first").map(|s| s == "true").unwrap_or(false);
        for prefix in [Some(m["prefix"].clone()), None] {
            // With the prefix given, and found from the keys.
            let opts = LoadOptions {
                prefix: prefix.clone(),
                relu,
                batch_first: bf,
            };
            let rnn = load_rnn::<f32>(&weights, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
            let out = rnn
                .forward(&io.float("input").unwrap(), None, None)
                .unwrap();
            let cmp = |got: &Tensor<f32>, k: &str| {
                let want = io.float::<f64>(k).unwrap();
                assert_eq!(got.shape(), want.shape(), "{name} {k}");
                for (a, b) in got.data().iter().zip(want.data()) {
                    assert!(F32_FORWARD.ok(*a as f64, *b), "{name} {k}: {a} vs {b}");
                }
            };
            cmp(&out.output, "expected.output");
            cmp(&out.h_n, "expected.h_n");
            if let Some(c) = &out.c_n {
                cmp(c, "expected.c_n");
            }
        }
        n += 1;
    }
    assert!(n >= 3, "found {n} state-dict fixtures");
}
