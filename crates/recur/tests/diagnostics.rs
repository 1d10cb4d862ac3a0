//! Gradient-flow diagnostics checked against independent references, in f64:
//!
//! - d loss / d h_t recorded by `Rnn::backward_with` against central finite differences of the
//!   plain reference (`reference::forward_perturbed` adds ±FD_STEP to one element of h_t
//!   between steps), for every cell, stacked, bidirectional, projected and variable-length
//!   batches; and against the closed form (W_hhᵀ)^(T-1-t) w of a ReLU RNN in its linear regime;
//! - the step Jacobian's J v, Jᵀ u and spectral norm against a finite-difference Jacobian of the
//!   reference cells (`reference::rnn_cell`, `lstm_cell`, `gru_cell`) and its SVD;
//! - singular values against matrices built with known singular values.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recur::analysis::diagnostics::{
    recurrent_spectra, singular_values, spectral_norm, step_jacobian_norms, HiddenGrads,
    StepJacobian,
};
use recur::core::reference::{self, CellParams, Perturb};
use recur::core::tolerance::{F64_VS_TORCH, FD_STEP, FINITE_DIFF};
use recur::{Dropout, Mode, Rnn, RnnConfig, State, Tensor};

fn uniform(rng: &mut ChaCha8Rng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|_| rng.gen_range(lo..hi)).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// One case of the finite-difference check of d loss / d h_t.
struct Case {
    cfg: RnnConfig,
    t: usize,
    lengths: Vec<usize>,
}

/// L = Σ output·gy + Σ h_n·gh (+ Σ c_n·gc) with random gy, gh, gc; the recorded dL/dh_t of
/// every (layer, direction, sequence, step, unit) against the central difference of the
/// reference's L when that element of h_t is moved by ±FD_STEP.
fn check_hidden_grads(case: &Case, seed: u64) {
    let cfg = &case.cfg;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let model: Rnn<f64> = Rnn::new(cfg.clone(), seed).unwrap();
    let (t, b) = (case.t, case.lengths.len());
    let (nl, nd, h, hout, i) = (
        cfg.num_layers,
        cfg.num_directions(),
        cfg.hidden_size,
        cfg.h_out(),
        cfg.input_size,
    );
    let lstm = cfg.mode == Mode::Lstm;
    // Time-major input for the reference; the engine gets it in its own layout.
    let x = uniform(&mut rng, t * b * i, -1.0, 1.0);
    let h0 = uniform(&mut rng, nl * nd * b * hout, -1.0, 1.0);
    let c0 = if lstm {
        uniform(&mut rng, nl * nd * b * h, -1.0, 1.0)
    } else {
        vec![]
    };
    let width = nd * hout;
    let gy = uniform(&mut rng, t * b * width, -1.0, 1.0);
    let gh = uniform(&mut rng, nl * nd * b * hout, -1.0, 1.0);
    let gc = if lstm {
        uniform(&mut rng, nl * nd * b * h, -1.0, 1.0)
    } else {
        vec![]
    };
    let loss = |r: &reference::RefOutput| dot(&r.output, &gy) + dot(&r.h_n, &gh) + dot(&r.c_n, &gc);
    // (T, B, ·) → (B, T, ·)
    let to_bf = |v: &[f64], n: usize| -> Vec<f64> {
        let mut out = vec![0.0; v.len()];
        for ti in 0..t {
            for s in 0..b {
                out[(s * t + ti) * n..][..n].copy_from_slice(&v[(ti * b + s) * n..][..n]);
            }
        }
        out
    };
    let (xs, gys) = if cfg.batch_first {
        (
            Tensor::new(&[b, t, i], to_bf(&x, i)).unwrap(),
            Tensor::new(&[b, t, width], to_bf(&gy, width)).unwrap(),
        )
    } else {
        (
            Tensor::new(&[t, b, i], x.clone()).unwrap(),
            Tensor::new(&[t, b, width], gy.clone()).unwrap(),
        )
    };
    let st = State {
        h: Tensor::new(&[nl * nd, b, hout], h0.clone()).unwrap(),
        c: lstm.then(|| Tensor::new(&[nl * nd, b, h], c0.clone()).unwrap()),
    };
    let (_, tape) = model
        .forward_train(&xs, Some(&st), Some(&case.lengths), Dropout::Off)
        .unwrap();
    let ghn = Tensor::new(&[nl * nd, b, hout], gh.clone()).unwrap();
    let gcn = lstm.then(|| Tensor::new(&[nl * nd, b, h], gc.clone()).unwrap());
    let mut grads = model.zeros_like_params();
    let mut rec = HiddenGrads::new();
    let with = model
        .backward_with(
            &tape,
            Some(&gys),
            Some(&ghn),
            gcn.as_ref(),
            &mut grads,
            &mut rec,
        )
        .unwrap();
    // Recording changes nothing else.
    let mut grads_plain = model.zeros_like_params();
    let plain = model
        .backward(
            &tape,
            Some(&gys),
            Some(&ghn),
            gcn.as_ref(),
            &mut grads_plain,
        )
        .unwrap();
    assert_eq!(grads, grads_plain);
    assert_eq!(with, plain);
    assert_eq!(
        (
            rec.num_layers(),
            rec.num_directions(),
            rec.seq_len(),
            rec.batch_size(),
            rec.hidden_size()
        ),
        (nl, nd, t, b, hout)
    );
    assert_eq!(rec.lengths(), &case.lengths[..]);

    let name = format!(
        "{:?} L{nl} D{nd} P{} batch_first {} lengths {:?}",
        cfg.mode, cfg.proj_size, cfg.batch_first, case.lengths
    );
    let mut checked = 0;
    for l in 0..nl {
        for d in 0..nd {
            let got = rec.get(l, d);
            for ti in 0..t {
                for s in 0..b {
                    for u in 0..hout {
                        let at = |eps: f64| {
                            let p = Perturb {
                                layer: l,
                                direction: d,
                                seq: s,
                                time: ti,
                                unit: u,
                                eps,
                            };
                            loss(&reference::forward_perturbed(
                                &model,
                                &x,
                                t,
                                b,
                                &h0,
                                &c0,
                                &case.lengths,
                                &[],
                                Some(p),
                            ))
                        };
                        let fd = (at(FD_STEP) - at(-FD_STEP)) / (2.0 * FD_STEP);
                        let g = got[(ti * b + s) * hout + u];
                        if ti >= case.lengths[s] {
                            assert_eq!(g, 0.0, "{name}: padding (l{l} d{d} t{ti} b{s})");
                        }
                        assert!(
                            FINITE_DIFF.ok(g, fd),
                            "{name}: dL/dh l{l} d{d} t{ti} b{s} unit {u}: {g} vs finite difference {fd}"
                        );
                        checked += 1;
                    }
                }
            }
            // norms() is the batch norm of the same numbers.
            let norms = rec.norms(l, d);
            let seq = rec.seq_norms(l, d);
            for ti in 0..t {
                let row = &got[ti * b * hout..(ti + 1) * b * hout];
                assert!((norms[ti] - dot(row, row).sqrt()).abs() <= 1e-12 * (1.0 + norms[ti]));
                let total: f64 = (0..b).map(|s| seq[ti * b + s].powi(2)).sum();
                assert!((total.sqrt() - norms[ti]).abs() <= 1e-12 * (1.0 + norms[ti]));
            }
        }
    }
    assert_eq!(checked, nl * nd * t * b * hout);
}

#[test]
fn hidden_grads_match_finite_differences() {
    let cases = [
        Case {
            cfg: RnnConfig::rnn(3, 4),
            t: 5,
            lengths: vec![5, 3, 4],
        },
        Case {
            cfg: RnnConfig::new(Mode::RnnRelu, 3, 4).num_layers(2),
            t: 4,
            lengths: vec![4, 4],
        },
        Case {
            cfg: RnnConfig::lstm(3, 4).num_layers(2).bidirectional(true),
            t: 4,
            lengths: vec![2, 4, 3],
        },
        Case {
            cfg: RnnConfig::lstm(2, 5).proj_size(3).batch_first(true),
            t: 5,
            lengths: vec![3, 5],
        },
        Case {
            cfg: RnnConfig::gru(3, 4)
                .num_layers(2)
                .bidirectional(true)
                .batch_first(true),
            t: 4,
            lengths: vec![4, 1, 3],
        },
    ];
    for (k, c) in cases.iter().enumerate() {
        check_hidden_grads(c, 100 + k as u64);
    }
}

/// A ReLU RNN with positive weights, biases and inputs never leaves its linear regime, so for
/// L = w·h_{T-1}, dL/dh_t = (W_hhᵀ)^(T-1-t) w exactly: the gradient is multiplied by the same
/// matrix at every step back in time.
#[test]
fn relu_rnn_in_its_linear_regime_follows_powers_of_w_hh() {
    let (i, h, t, b) = (3, 6, 30, 2);
    let cfg = RnnConfig::new(Mode::RnnRelu, i, h);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut model: Rnn<f64> = Rnn::new(cfg, 0).unwrap();
    for v in model.params_mut() {
        *v = rng.gen_range(0.0..0.3);
    }
    let w_hh = model.param("weight_hh_l0").unwrap().to_vec();
    let x = Tensor::new(&[t, b, i], uniform(&mut rng, t * b * i, 0.0, 1.0)).unwrap();
    let (out, tape) = model.forward_train(&x, None, None, Dropout::Off).unwrap();
    assert!(
        out.output.data().iter().all(|&v| v > 0.0),
        "left the linear regime"
    );
    let w = uniform(&mut rng, b * h, -1.0, 1.0); // (1, B, H)
    let gh = Tensor::new(&[1, b, h], w.clone()).unwrap();
    let mut grads = model.zeros_like_params();
    let mut rec = HiddenGrads::new();
    model
        .backward_with(&tape, None, Some(&gh), None, &mut grads, &mut rec)
        .unwrap();
    let got = rec.get(0, 0);
    for s in 0..b {
        // v = (W_hhᵀ)^k w for k = 0, 1, ...: step t = T-1-k.
        let mut v = w[s * h..(s + 1) * h].to_vec();
        for k in 0..t {
            let ti = t - 1 - k;
            let g = &got[(ti * b + s) * h..][..h];
            let scale = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            for (a, e) in g.iter().zip(&v) {
                assert!(
                    (a - e).abs() <= 1e-12 * scale,
                    "seq {s} t {ti}: {a} vs (W_hh^T)^{k} w = {e}"
                );
            }
            let mut next = vec![0.0; h];
            for (r, &vr) in v.iter().enumerate() {
                for (c, n) in next.iter_mut().enumerate() {
                    *n += w_hh[r * h + c] * vr;
                }
            }
            v = next;
        }
    }
    // So the per-step norms shrink like the powers of the spectral radius of W_hh: the ratio
    // of successive norms far from the end tends to it (positive matrix: Perron root).
    let norms = rec.norms(0, 0);
    let rho = {
        // The Perron root of a positive matrix by plain power iteration on W_hhᵀ.
        let mut v = vec![1.0; h];
        let mut lambda = 0.0;
        for _ in 0..500 {
            let mut next = vec![0.0; h];
            for (r, &vr) in v.iter().enumerate() {
                for (c, n) in next.iter_mut().enumerate() {
                    *n += w_hh[r * h + c] * vr;
                }
            }
            lambda = dot(&next, &next).sqrt() / dot(&v, &v).sqrt();
            v = next;
        }
        lambda
    };
    let ratio = norms[0] / norms[1];
    assert!(
        (ratio - rho).abs() < 1e-6 * rho,
        "norm ratio {ratio} vs spectral radius {rho}"
    );
}

/// F(state) of one cell from the reference implementation.
fn reference_step(rnn: &Rnn<f64>, layer: usize, dir: usize, x: &[f64], state: &[f64]) -> Vec<f64> {
    let c = rnn.config();
    let lay = rnn.layout().dir(layer, dir);
    let pr = rnn.params();
    let p = CellParams {
        w_ih: &pr[lay.w_ih.clone()],
        w_hh: &pr[lay.w_hh.clone()],
        b_ih: lay.b_ih.clone().map(|r| &pr[r]),
        b_hh: lay.b_hh.clone().map(|r| &pr[r]),
        w_hr: lay.w_hr.clone().map(|r| &pr[r]),
    };
    let hout = c.h_out();
    match c.mode {
        Mode::RnnTanh | Mode::RnnRelu => reference::rnn_cell(&p, x, state, c.mode == Mode::RnnRelu),
        Mode::Gru => reference::gru_cell(&p, x, state),
        Mode::Lstm => {
            let (h, cc) = reference::lstm_cell(&p, x, &state[..hout], &state[hout..]);
            [h, cc].concat()
        }
    }
}

#[test]
fn step_jacobian_matches_finite_differences() {
    let configs = [
        RnnConfig::rnn(3, 5),
        RnnConfig::new(Mode::RnnRelu, 3, 5),
        RnnConfig::lstm(3, 4),
        RnnConfig::lstm(3, 5).proj_size(3),
        RnnConfig::gru(3, 5),
        // layer 1, reverse direction: input size 2·H_out
        RnnConfig::gru(3, 4).num_layers(2).bidirectional(true),
        RnnConfig::lstm(3, 4).num_layers(2).bidirectional(true),
    ];
    for (k, cfg) in configs.iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(k as u64);
        let rnn: Rnn<f64> = Rnn::new(cfg.clone(), 10 + k as u64).unwrap();
        let (layer, dir) = (cfg.num_layers - 1, cfg.num_directions() - 1);
        let lstm = cfg.mode == Mode::Lstm;
        let x = uniform(&mut rng, cfg.layer_input_size(layer), -1.5, 1.5);
        let hp = uniform(&mut rng, cfg.h_out(), -0.9, 0.9);
        let cp = if lstm {
            uniform(&mut rng, cfg.hidden_size, -1.5, 1.5)
        } else {
            vec![]
        };
        let j = StepJacobian::new(&rnn, layer, dir, &x, &hp, &cp).unwrap();
        let state = [hp.clone(), cp.clone()].concat();
        let n = state.len();
        assert_eq!(j.state_size(), n);
        // The point itself: the new state equals the reference cell's.
        let f0 = reference_step(&rnn, layer, dir, &x, &state);
        let new = [j.h_new().to_vec(), j.c_new().to_vec()].concat();
        for (a, e) in new.iter().zip(&f0) {
            assert!(F64_VS_TORCH.ok(*a, *e), "{cfg:?}: new state {a} vs {e}");
        }
        // Finite-difference Jacobian, (n, n) row-major: column c = dF/dstate[c].
        let mut jfd = vec![0.0; n * n];
        for c in 0..n {
            let mut sp = state.clone();
            sp[c] += FD_STEP;
            let fp = reference_step(&rnn, layer, dir, &x, &sp);
            sp[c] -= 2.0 * FD_STEP;
            let fm = reference_step(&rnn, layer, dir, &x, &sp);
            for r in 0..n {
                jfd[r * n + c] = (fp[r] - fm[r]) / (2.0 * FD_STEP);
            }
        }
        for c in 0..n {
            let mut e = vec![0.0; n];
            e[c] = 1.0;
            let col = j.jvp(&e);
            let row = j.vjp(&e);
            for r in 0..n {
                assert!(
                    FINITE_DIFF.ok(col[r], jfd[r * n + c]),
                    "{cfg:?}: J[{r},{c}] by jvp {} vs finite difference {}",
                    col[r],
                    jfd[r * n + c]
                );
                assert!(
                    FINITE_DIFF.ok(row[r], jfd[c * n + r]),
                    "{cfg:?}: J[{c},{r}] by vjp {} vs finite difference {}",
                    row[r],
                    jfd[c * n + r]
                );
            }
        }
        // Spectral norms against the SVD of the finite-difference Jacobian.
        let sigma = singular_values(&jfd, n, n)[0];
        let got = j.spectral_norm(2000, 1e-14);
        assert!(
            (got - sigma).abs() <= 1e-6 * sigma,
            "{cfg:?}: ||J|| {got} vs {sigma}"
        );
        let hout = cfg.h_out();
        let block: Vec<f64> = (0..hout)
            .flat_map(|r| jfd[r * n..r * n + hout].to_vec())
            .collect();
        let sigma_hh = singular_values(&block, hout, hout)[0];
        let got_hh = j.hh_spectral_norm(2000, 1e-14);
        assert!(
            (got_hh - sigma_hh).abs() <= 1e-6 * sigma_hh,
            "{cfg:?}: ||dh/dh|| {got_hh} vs {sigma_hh}"
        );
    }
}

#[test]
fn jacobian_trace_follows_the_forward_pass() {
    for cfg in [
        RnnConfig::lstm(2, 4).num_layers(2).bidirectional(true),
        RnnConfig::gru(2, 3),
        RnnConfig::rnn(2, 3),
    ] {
        let rnn: Rnn<f64> = Rnn::new(cfg.clone(), 3).unwrap();
        let len = 6;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let x = uniform(&mut rng, len * 2, -1.0, 1.0);
        let traces = step_jacobian_norms(&rnn, &x, len, 200).unwrap();
        assert_eq!(traces.len(), cfg.num_layers * cfg.num_directions());
        let out = rnn
            .forward(&Tensor::new(&[len, 2], x.clone()).unwrap(), None, None)
            .unwrap();
        let (nd, hout) = (cfg.num_directions(), cfg.h_out());
        for tr in traces.iter().filter(|tr| tr.layer == cfg.num_layers - 1) {
            for t in 0..len {
                for u in 0..hout {
                    let a = tr.h[t * hout + u];
                    let e = out.output.data()[t * nd * hout + tr.direction * hout + u];
                    assert!(F64_VS_TORCH.ok(a, e), "{cfg:?}: h {a} vs forward {e}");
                }
            }
        }
        for tr in &traces {
            assert!(tr.state.iter().all(|&v| v.is_finite() && v > 0.0));
            if cfg.mode != Mode::Lstm {
                assert_eq!(tr.state, tr.hh);
            }
        }
    }
    let rnn: Rnn<f64> = Rnn::new(RnnConfig::rnn(2, 3), 0).unwrap();
    let e = step_jacobian_norms(&rnn, &[0.0; 5], 3, 10).unwrap_err();
    assert!(e.to_string().contains("(3, 2)"), "{e}");
}

/// A random orthogonal (n, n) matrix as a product of Givens rotations.
fn givens_orthogonal(n: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let mut q = vec![0.0; n * n];
    for k in 0..n {
        q[k * n + k] = 1.0;
    }
    for _ in 0..4 * n * n {
        let (p, r) = (rng.gen_range(0..n), rng.gen_range(0..n));
        if p == r {
            continue;
        }
        let a: f64 = rng.gen_range(0.0..std::f64::consts::TAU);
        let (c, s) = (a.cos(), a.sin());
        for col in 0..n {
            let (x, y) = (q[p * n + col], q[r * n + col]);
            q[p * n + col] = c * x - s * y;
            q[r * n + col] = s * x + c * y;
        }
    }
    q
}

/// A = U diag(s) Vᵀ, (rows, cols), with the given singular values (min(rows, cols) of them).
fn with_singular_values(rows: usize, cols: usize, s: &[f64], rng: &mut ChaCha8Rng) -> Vec<f64> {
    let u = givens_orthogonal(rows, rng);
    let v = givens_orthogonal(cols, rng);
    let mut a = vec![0.0; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            a[r * cols + c] = (0..s.len())
                .map(|k| u[r * rows + k] * s[k] * v[c * cols + k])
                .sum();
        }
    }
    a
}

#[test]
fn singular_values_of_matrices_built_from_them() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (rows, cols) in [(6, 6), (9, 4), (4, 9), (1, 5), (30, 30)] {
        let k = rows.min(cols);
        let mut s: Vec<f64> = (0..k).map(|j| 3.0 / (1.0 + j as f64)).collect();
        s[k - 1] = if k > 2 { 0.0 } else { s[k - 1] }; // one exact zero when there is room
        let a = with_singular_values(rows, cols, &s, &mut rng);
        let got = singular_values(&a, rows, cols);
        assert_eq!(got.len(), k);
        for (g, e) in got.iter().zip(&s) {
            assert!(
                (g - e).abs() <= 1e-13 * s[0] * k as f64,
                "{rows}x{cols}: {got:?} vs {s:?}"
            );
        }
        let top = spectral_norm(&a, rows, cols, 5000, 1e-15);
        assert!(
            (top - s[0]).abs() <= 1e-9 * s[0],
            "{rows}x{cols}: {top} vs {}",
            s[0]
        );
    }
    // The 2x2 closed form: [[a, b], [0, d]] has σ1² + σ2² = a² + b² + d² and σ1 σ2 = |a d|.
    let (a, b, d) = (2.0, 1.0, 0.5);
    let sv = singular_values(&[a, b, 0.0, d], 2, 2);
    assert!((sv[0] * sv[0] + sv[1] * sv[1] - (a * a + b * b + d * d)).abs() < 1e-14);
    assert!((sv[0] * sv[1] - a * d).abs() < 1e-14);
}

/// An LSTM whose recurrent gate blocks are 1Q, 2Q, 3Q, 4Q for one orthogonal Q: each block's
/// singular values are all k, and the whole (4H, H) matrix has WᵀW = 30 I, so all of its
/// singular values are √30.
#[test]
fn recurrent_spectra_per_gate_block() {
    let h = 5;
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let q = givens_orthogonal(h, &mut rng);
    let mut rnn: Rnn<f64> = Rnn::new(RnnConfig::lstm(2, h).num_layers(2), 0).unwrap();
    let e = rnn.layout().get("weight_hh_l1").unwrap().clone();
    for k in 0..4 {
        for (j, &v) in q.iter().enumerate() {
            rnn.params_mut()[e.offset + k * h * h + j] = (k + 1) as f64 * v;
        }
    }
    let spectra = recurrent_spectra(&rnn, true);
    // Two parameters, each whole + 4 gates.
    assert_eq!(spectra.len(), 10);
    let l1: Vec<_> = spectra
        .iter()
        .filter(|s| s.param == "weight_hh_l1")
        .collect();
    assert_eq!(l1[0].gate, None);
    assert_eq!(l1[0].shape, (4 * h, h));
    for v in l1[0].singular_values.iter().chain([&l1[0].largest]) {
        assert!((v - 30f64.sqrt()).abs() < 1e-12, "{v}");
    }
    for (k, (s, name)) in l1[1..].iter().zip(["i", "f", "g", "o"]).enumerate() {
        assert_eq!(s.gate, Some(name));
        assert_eq!(s.shape, (h, h));
        for v in s.singular_values.iter().chain([&s.largest]) {
            assert!((v - (k + 1) as f64).abs() < 1e-12, "{name}: {v}");
        }
    }
    // Without `all`, only the largest.
    let quick = recurrent_spectra(&rnn, false);
    assert!(quick.iter().all(|s| s.singular_values.is_empty()));
    // A tanh RNN has one block, the whole matrix.
    let rnn: Rnn<f32> = Rnn::new(RnnConfig::rnn(2, 4), 0).unwrap();
    let s = recurrent_spectra(&rnn, true);
    assert_eq!(s.len(), 1);
    let w: Vec<f64> = rnn
        .param("weight_hh_l0")
        .unwrap()
        .iter()
        .map(|&v| v as f64)
        .collect();
    let want = singular_values(&w, 4, 4);
    assert_eq!(s[0].singular_values, want);
    assert!((s[0].largest - want[0]).abs() < 1e-9 * want[0]);
}

#[test]
fn grad_stats_norms_spikes_non_finite_and_clipping() {
    use recur::analysis::diagnostics::{named_grads, GradStats, GradStatsConfig, GradWarning};
    let rnn: Rnn<f32> = Rnn::new(RnnConfig::gru(2, 3), 0).unwrap();
    let n = rnn.layout().total();
    let mut stats = GradStats::new(GradStatsConfig {
        window: 5,
        spike_factor: 10.0,
        min_history: 3,
    });
    // Steps 1..=4: every gradient element k/100, scaled by the step: global norms grow as
    // s·‖g‖; step 5: 100× the median (a spike); step 6: a NaN in bias_hh_l0.
    let base: Vec<f32> = (0..n).map(|k| (k % 7) as f32 / 100.0).collect();
    let base_norm = base.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
    let mut seen = Vec::new();
    for s in 1..=4 {
        let g: Vec<f32> = base.iter().map(|&v| v * s as f32).collect();
        let step = stats.observe(
            &named_grads(rnn.layout(), &g, "rnn."),
            Some(2.5 * base_norm),
        );
        assert_eq!(step.step, s);
        assert!(step.warnings.is_empty(), "{:?}", step.warnings);
        // Per-parameter norms, named, in layout order; the global norm is their L2 sum.
        let names: Vec<&str> = step.param_norms.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "rnn.weight_ih_l0",
                "rnn.weight_hh_l0",
                "rnn.bias_ih_l0",
                "rnn.bias_hh_l0"
            ]
        );
        for ((_, got), e) in step.param_norms.iter().zip(rnn.layout().entries()) {
            let want = g[e.range()]
                .iter()
                .map(|&v| (v as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!((got - want).abs() < 1e-12 * (1.0 + want));
        }
        assert!((step.global_norm - s as f64 * base_norm).abs() < 1e-5 * base_norm);
        assert_eq!(step.clipped, s >= 3, "step {s}");
        seen.push(step.global_norm);
    }
    // Median of 1, 2, 3, 4 (× base) is 2.5 × base.
    let median = stats.running_median().unwrap();
    assert!((median - 2.5 * base_norm).abs() < 1e-5 * base_norm);
    let g: Vec<f32> = base.iter().map(|&v| v * 250.0).collect();
    let step = stats.observe(&named_grads(rnn.layout(), &g, ""), None);
    assert!(!step.clipped, "no max norm: never clipped");
    match &step.warnings[..] {
        [GradWarning::Spike { norm, median: m }] => {
            assert!((norm / m - 100.0).abs() < 1e-3, "{norm} / {m}");
            assert!(step.warnings[0].to_string().contains("100.0x"));
        }
        w => panic!("expected one spike, got {w:?}"),
    }
    let mut g = base.clone();
    let e = rnn.layout().get("bias_hh_l0").unwrap();
    g[e.offset + 1] = f32::NAN;
    let step = stats.observe(&named_grads(rnn.layout(), &g, ""), Some(1.0));
    assert!(step.global_norm.is_nan());
    assert!(!step.clipped);
    assert_eq!(
        step.warnings,
        [GradWarning::NonFinite {
            params: vec!["bias_hh_l0".to_string()]
        }]
    );
    // The NaN step does not enter the median; the window keeps the last 5 finite norms.
    assert_eq!(
        (
            stats.steps(),
            stats.clipped(),
            stats.spikes(),
            stats.non_finite()
        ),
        (6, 2, 1, 1)
    );
    assert!((stats.clip_rate() - 2.0 / 6.0).abs() < 1e-15);
    let median = stats.running_median().unwrap();
    assert!(
        (median - 3.0 * base_norm).abs() < 1e-5 * base_norm,
        "{median}"
    );
}

/// ‖MᵀM - I‖_max for the (rows, cols) matrix M (columns orthonormal) or ‖MMᵀ - I‖ (rows).
fn orthonormality_error(m: &[f64], rows: usize, cols: usize) -> f64 {
    let mut worst: f64 = 0.0;
    if rows >= cols {
        for a in 0..cols {
            for b in 0..cols {
                let d: f64 = (0..rows).map(|r| m[r * cols + a] * m[r * cols + b]).sum();
                worst = worst.max((d - f64::from(a == b)).abs());
            }
        }
    } else {
        for a in 0..rows {
            for b in 0..rows {
                let d = dot(&m[a * cols..(a + 1) * cols], &m[b * cols..(b + 1) * cols]);
                worst = worst.max((d - f64::from(a == b)).abs());
            }
        }
    }
    worst
}

#[test]
fn qr_q_is_orthonormal_with_a_positive_r_diagonal() {
    use recur::core::init::qr_q;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (m, n) in [(6, 6), (10, 4), (64, 64), (3, 1)] {
        let a = uniform(&mut rng, m * n, -1.0, 1.0);
        let q = qr_q(&a, m, n);
        assert!(orthonormality_error(&q, m, n) < 1e-12, "({m}, {n})");
        // R = Qᵀ A is upper triangular with a positive diagonal, and Q R = A: the QR
        // decomposition with positive R diagonal, which is unique for a full-rank A.
        let mut r = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                r[i * n + j] = (0..m).map(|k| q[k * n + i] * a[k * n + j]).sum();
            }
        }
        for i in 0..n {
            assert!(
                r[i * n + i] > 0.0,
                "({m}, {n}): R[{i},{i}] = {}",
                r[i * n + i]
            );
            for j in 0..i {
                assert!(
                    r[i * n + j].abs() < 1e-12,
                    "({m}, {n}): R[{i},{j}] = {}",
                    r[i * n + j]
                );
            }
        }
        for i in 0..m {
            for j in 0..n {
                let qr: f64 = (0..n).map(|k| q[i * n + k] * r[k * n + j]).sum();
                assert!((qr - a[i * n + j]).abs() < 1e-12);
            }
        }
    }
}

#[test]
fn orthogonal_init_one_block_per_gate() {
    use recur::core::init::{orthogonal, orthogonal_recurrent};
    // Wide and tall matrices: orthonormal rows or columns, scaled by the gain.
    for (rows, cols) in [(5, 8), (8, 5), (7, 7)] {
        let m = orthogonal(rows, cols, 1.0, 11);
        assert!(
            orthonormality_error(&m, rows, cols) < 1e-12,
            "({rows}, {cols})"
        );
        let g = orthogonal(rows, cols, 2.0, 11);
        assert!(g.iter().zip(&m).all(|(a, b)| (a - 2.0 * b).abs() < 1e-15));
    }
    // Different seeds give different matrices.
    assert_ne!(orthogonal(4, 4, 1.0, 0), orthogonal(4, 4, 1.0, 1));
    for cfg in [
        RnnConfig::lstm(3, 6).num_layers(2).bidirectional(true),
        RnnConfig::lstm(3, 6).proj_size(4),
        RnnConfig::gru(3, 5),
        RnnConfig::rnn(3, 5),
    ] {
        let mut rnn: Rnn<f64> = Rnn::new(cfg.clone(), 0).unwrap();
        let before = rnn.params().to_vec();
        orthogonal_recurrent(&mut rnn, 1.0, 42).unwrap();
        let (h, hout, g) = (cfg.hidden_size, cfg.h_out(), cfg.mode.gates());
        let mut blocks = Vec::new();
        for e in rnn.layout().entries() {
            let p = &rnn.params()[e.range()];
            if e.name.starts_with("weight_hh") {
                for k in 0..g {
                    let b = &p[k * h * hout..(k + 1) * h * hout];
                    assert!(
                        orthonormality_error(b, h, hout) < 1e-12,
                        "{cfg:?} {} block {k}",
                        e.name
                    );
                    blocks.push(b.to_vec());
                }
            } else {
                assert_eq!(p, &before[e.range()], "{cfg:?}: {} must not change", e.name);
            }
        }
        // Every block is its own draw.
        for a in 0..blocks.len() {
            for b in a + 1..blocks.len() {
                assert_ne!(blocks[a], blocks[b]);
            }
        }
    }
}

#[test]
fn irnn_and_forget_gate_bias_set_the_right_parameters() {
    use recur::core::init::{forget_gate_bias, irnn};
    let mut rnn: Rnn<f32> = Rnn::new(RnnConfig::new(Mode::RnnRelu, 3, 4).num_layers(2), 0).unwrap();
    let w_ih = rnn.param("weight_ih_l1").unwrap().to_vec();
    irnn(&mut rnn, 1.0).unwrap();
    for l in 0..2 {
        let w = rnn.param(&format!("weight_hh_l{l}")).unwrap();
        for r in 0..4 {
            for c in 0..4 {
                assert_eq!(w[r * 4 + c], if r == c { 1.0 } else { 0.0 });
            }
        }
        for b in ["bias_ih", "bias_hh"] {
            assert!(rnn
                .param(&format!("{b}_l{l}"))
                .unwrap()
                .iter()
                .all(|&v| v == 0.0));
        }
    }
    assert_eq!(rnn.param("weight_ih_l1").unwrap(), &w_ih[..]);
    // With identity recurrence, zero biases and zero input, a one-layer ReLU RNN keeps its
    // (non-negative) state.
    let mut rnn: Rnn<f32> = Rnn::new(RnnConfig::new(Mode::RnnRelu, 3, 4), 0).unwrap();
    irnn(&mut rnn, 1.0).unwrap();
    let h0 = Tensor::new(&[1, 1, 4], vec![0.5, 0.0, 2.0, 1.0]).unwrap();
    let out = rnn
        .forward(
            &Tensor::zeros(&[9, 1, 3]),
            Some(&State {
                h: h0.clone(),
                c: None,
            }),
            None,
        )
        .unwrap();
    assert_eq!(out.h_n, h0);
    let mut lstm: Rnn<f32> = Rnn::new(RnnConfig::lstm(3, 4), 0).unwrap();
    assert!(irnn(&mut lstm, 1.0)
        .unwrap_err()
        .to_string()
        .contains("lstm"));

    // Forget gate: rows H..2H of bias_ih (gate order i, f, g, o) = 1, of bias_hh = 0; nothing else.
    let mut lstm: Rnn<f64> = Rnn::new(RnnConfig::lstm(3, 4).bidirectional(true), 1).unwrap();
    let before = lstm.params().to_vec();
    forget_gate_bias(&mut lstm, 1.0).unwrap();
    for e in lstm.layout().entries() {
        let (old, new) = (&before[e.range()], &lstm.params()[e.range()]);
        for (k, (&o, &n)) in old.iter().zip(new).enumerate() {
            let forget = (4..8).contains(&k);
            let want = match (e.name.starts_with("bias_ih"), e.name.starts_with("bias_hh")) {
                (true, _) if forget => 1.0,
                (_, true) if forget => 0.0,
                _ => o,
            };
            assert_eq!(n, want, "{}[{k}]", e.name);
        }
    }
    let mut gru: Rnn<f64> = Rnn::new(RnnConfig::gru(3, 4), 1).unwrap();
    assert!(forget_gate_bias(&mut gru, 1.0).is_err());
    let mut nobias: Rnn<f64> = Rnn::new(RnnConfig::lstm(3, 4).bias(false), 1).unwrap();
    assert!(forget_gate_bias(&mut nobias, 1.0)
        .unwrap_err()
        .to_string()
        .contains("bias"));
}

mod synthetic_tasks {
    use recur::models::synthetic::{
        adding_batch, copy_baseline, copy_batch, task_rng, train, CellKind, Digits, DigitsView,
        GateBias, Model, Target, Task, TrainConfig, ADDING_BASELINE_MSE, COPY_CLASSES, COPY_VOCAB,
    };
    use recur::nn::softmax_cross_entropy;
    use std::io::Write;

    #[test]
    fn adding_problem_structure_and_baseline() {
        let (t, b) = (20, 500);
        let batch = adding_batch(t, b, &mut task_rng(1));
        assert_eq!(batch.x.shape(), &[t, b, 2]);
        let x = batch.x.data();
        let Target::Regression(y) = &batch.target else {
            panic!("adding targets are real numbers")
        };
        for s in 0..b {
            let marks: Vec<usize> = (0..t)
                .filter(|&ti| x[(ti * b + s) * 2 + 1] == 1.0)
                .collect();
            assert_eq!(marks.len(), 2, "two markers");
            assert!(
                marks[0] < t / 2 && marks[1] >= t / 2,
                "one in each half: {marks:?}"
            );
            assert!((0..t).all(|ti| {
                let m = x[(ti * b + s) * 2 + 1];
                let v = x[(ti * b + s) * 2];
                (m == 0.0 || m == 1.0) && (0.0..1.0).contains(&v)
            }));
            let sum = x[(marks[0] * b + s) * 2] + x[(marks[1] * b + s) * 2];
            assert_eq!(y[s], sum);
        }
        // Deterministic.
        assert_eq!(adding_batch(t, b, &mut task_rng(1)).x, batch.x);
        assert_ne!(adding_batch(t, b, &mut task_rng(2)).x, batch.x);
        // The MSE of always answering 1, measured: 1/6 (standard error ≈ 0.0004 here).
        let mut rng = task_rng(3);
        let (mut sum, mut n) = (0.0, 0);
        for _ in 0..100 {
            let Target::Regression(y) = adding_batch(10, 2000, &mut rng).target else {
                unreachable!()
            };
            sum += y.iter().map(|&v| (v as f64 - 1.0).powi(2)).sum::<f64>();
            n += y.len();
        }
        let mse = sum / n as f64;
        assert!((mse - ADDING_BASELINE_MSE).abs() < 0.002, "measured {mse}");
    }

    #[test]
    fn copy_task_structure_and_baseline() {
        let (delay, b) = (15, 64);
        let len = delay + 20;
        let batch = copy_batch(delay, b, &mut task_rng(4));
        assert_eq!(batch.x.shape(), &[len, b, COPY_VOCAB]);
        let Target::PerStep(y) = &batch.target else {
            panic!("copy targets are per step")
        };
        assert_eq!(y.len(), len * b);
        let x = batch.x.data();
        let tok = |t: usize, s: usize| {
            let row = &x[(t * b + s) * COPY_VOCAB..][..COPY_VOCAB];
            assert_eq!(row.iter().sum::<f32>(), 1.0, "one-hot");
            row.iter().position(|&v| v == 1.0).unwrap()
        };
        for s in 0..b {
            for t in 0..len {
                let want = if t < 10 {
                    tok(t, s) // a symbol in 1..=8
                } else if t == 10 + delay - 1 {
                    9 // the delimiter
                } else {
                    0
                };
                if t < 10 {
                    assert!((1..=8).contains(&want));
                } else {
                    assert_eq!(tok(t, s), want, "input at t {t}");
                }
                let target = if t >= delay + 10 {
                    tok(t - delay - 10, s) as i64
                } else {
                    0
                };
                assert_eq!(y[t * b + s], target, "target at t {t}");
            }
        }
        // The baseline predictor's cross-entropy over every step: blank with certainty for
        // the first T+10 steps, uniform over the 8 symbols for the last 10.
        let mut logits = vec![0.0f64; len * b * COPY_CLASSES];
        for t in 0..len {
            for s in 0..b {
                let row = &mut logits[(t * b + s) * COPY_CLASSES..][..COPY_CLASSES];
                if t < delay + 10 {
                    row[0] = 1e3;
                } else {
                    row[0] = -1e3;
                }
            }
        }
        let (ce, _) = softmax_cross_entropy(&logits, COPY_CLASSES, y, -100).unwrap();
        assert!(
            (ce - copy_baseline(delay)).abs() < 1e-12,
            "{ce} vs {}",
            copy_baseline(delay)
        );
        assert!((copy_baseline(100) - 10.0 * 8f64.ln() / 120.0).abs() < 1e-15);
    }

    /// A digits CSV made here: image k has pixel j = (j + k) % 17 and label k % 10.
    fn tiny_digits_csv(n: usize) -> String {
        (0..n)
            .map(|k| {
                let mut f: Vec<String> = (0..64).map(|j| ((j + k) % 17).to_string()).collect();
                f.push((k % 10).to_string());
                f.join(",") + "\n"
            })
            .collect()
    }

    #[test]
    fn digits_csv_plain_and_gzip_views_and_errors() {
        let dir = std::env::temp_dir().join(format!("recur-digits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = tiny_digits_csv(30);
        let plain = dir.join("d.csv");
        std::fs::write(&plain, &text).unwrap();
        let gz = dir.join("d.csv.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(text.as_bytes()).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        let a = Digits::load(&plain).unwrap();
        let b = Digits::load(&gz).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 30);
        assert_eq!(a.labels[13], 3);
        assert_eq!(a.pixels[13 * 64 + 5], ((5 + 13) % 17) as u8);
        // Rows: 8 steps of 8 pixels; pixels: 64 steps of 1; scaled to 0..=1.
        let rows = a.batch(&[13, 2], DigitsView::Rows);
        assert_eq!(rows.x.shape(), &[8, 2, 8]);
        // step 3, sequence 0 (image 13), feature 4 = pixel 3·8+4 = 28
        assert_eq!(
            rows.x.data()[(3 * 2) * 8 + 4],
            ((28 + 13) % 17) as f32 / 16.0
        );
        assert_eq!(rows.target, Target::Class(vec![3, 2]));
        let px = a.batch(&[13, 2], DigitsView::Pixels);
        assert_eq!(px.x.shape(), &[64, 2, 1]);
        assert_eq!(px.x.data()[28 * 2 + 1], ((28 + 2) % 17) as f32 / 16.0);
        // A seeded split: disjoint, complete, deterministic.
        let (tr, te) = a.split(0.2, 5);
        assert_eq!((tr.len(), te.len()), (24, 6));
        let mut all: Vec<usize> = tr.iter().chain(&te).copied().collect();
        all.sort();
        assert_eq!(all, (0..30).collect::<Vec<_>>());
        assert_eq!(a.split(0.2, 5), (tr, te));
        // Errors name the file, the line and the field.
        let bad_count = "1,2,3\n";
        let e = Digits::parse(bad_count, "x.csv").unwrap_err().to_string();
        assert!(
            e.contains("x.csv line 1") && e.contains("65") && e.contains("got 3"),
            "{e}"
        );
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines[2] = lines[2].replacen("2,", "17,", 1);
        let e = Digits::parse(&lines.join("\n"), "y.csv")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("y.csv line 3 field 1") && e.contains("'17'"),
            "{e}"
        );
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines[0].push('0'); // label 0 → 00 is fine; make it 10
        lines[0] = lines[0][..lines[0].rfind(',').unwrap()].to_string() + ",10";
        let e = Digits::parse(&lines.join("\n"), "z.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1 field 65") && e.contains("label"), "{e}");
        assert!(Digits::parse("", "e.csv")
            .unwrap_err()
            .to_string()
            .contains("no images"));
        let e = Digits::load(dir.join("missing.csv"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.csv"), "{e}");
        std::fs::write(dir.join("bad.csv.gz"), b"not gzip").unwrap();
        let e = Digits::load(dir.join("bad.csv.gz"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("gzip"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// For the regression head, d MSE / d bias = 2 mean(prediction - target).
    #[test]
    fn regression_head_gradient_closed_form() {
        let task = Task::Adding { len: 6 };
        let model = Model::new(&task, CellKind::Gru, 5, false, 0).unwrap();
        let batch = task.train_batch(7, &mut task_rng(0));
        let mut grads = model.zeros_like_grads();
        let r = model.loss_and_grad(&batch, &mut grads, None).unwrap();
        let out = model.rnn.forward(&batch.x, None, None).unwrap();
        let mut pred = vec![0.0f32; 7];
        model.head.forward(out.h_n.data(), 7, &mut pred);
        let Target::Regression(y) = &batch.target else {
            unreachable!()
        };
        let mse: f64 = pred
            .iter()
            .zip(y)
            .map(|(&p, &t)| ((p - t) as f64).powi(2))
            .sum::<f64>()
            / 7.0;
        let db: f64 = pred
            .iter()
            .zip(y)
            .map(|(&p, &t)| 2.0 * (p - t) as f64)
            .sum::<f64>()
            / 7.0;
        assert!((r.loss - mse).abs() < 1e-6);
        assert!(
            (grads.head[5] as f64 - db).abs() < 1e-6,
            "{} vs {db}",
            grads.head[5]
        );
        let (eval_loss, acc) = model.evaluate(&[batch]).unwrap();
        assert!((eval_loss - mse).abs() < 1e-6);
        assert_eq!(acc, None);
    }

    #[test]
    fn cells_parse_and_build_with_their_initialization() {
        for c in CellKind::ALL {
            assert_eq!(c.name().parse::<CellKind>().unwrap(), c);
        }
        let e = "lstmm".parse::<CellKind>().unwrap_err().to_string();
        assert!(e.contains("lstmm") && e.contains("irnn"), "{e}");
        let irnn = CellKind::Irnn.build(2, 3, true, 0).unwrap();
        assert_eq!(
            irnn.param("weight_hh_l0").unwrap(),
            &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        );
        let lstm = CellKind::Lstm.build(2, 3, false, 0).unwrap();
        assert_eq!(&lstm.param("bias_ih_l0").unwrap()[3..6], &[1.0, 1.0, 1.0]);
    }

    /// A short run learns: an LSTM on the adding problem over 10 steps gets far under the
    /// baseline, and the record of ‖dL/dh_t‖ has one value per step.
    #[test]
    fn training_an_lstm_solves_a_short_adding_problem() {
        let task = Task::Adding { len: 10 };
        let cfg = TrainConfig {
            hidden_size: 16,
            batch_size: 32,
            steps: 600,
            optimizer: recur::nn::OptimizerConfig::Adam(recur::nn::AdamConfig::default().lr(1e-2)),
            clip: Some(1.0),
            eval_every: 100,
            eval_size: 500,
            orthogonal: false,
            lstm_bias: GateBias::Forget(1.0),
            solve_fraction: 0.1,
            stop_when_solved: false,
            record_every: Some(200),
            seed: 0,
            out: std::env::temp_dir().join(format!("recur-diag-train-{}", std::process::id())),
        };
        let mut seen = 0;
        let r = train(&task, CellKind::Lstm, &cfg, &mut |_| seen += 1).unwrap();
        assert_eq!(seen, r.evals.len());
        assert_eq!(r.evals.len(), 7);
        assert_eq!(r.train_loss.len(), 600);
        assert_eq!(r.grad_norm.len(), 600);
        assert_eq!(r.diverged_at, None);
        let last = r.last().unwrap().loss;
        assert!(last < 0.1 * ADDING_BASELINE_MSE, "final MSE {last}");
        assert!(r.steps_to_solve.is_some());
        assert_eq!(r.hidden_grads.len(), 3);
        assert!(r.hidden_grads.iter().all(|h| h.norms.len() == 10));
        assert_eq!(r.clipped, r.grad_norm.iter().filter(|&&g| g > 1.0).count());
    }
}
