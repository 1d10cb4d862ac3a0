//! Gradients checked against finite differences, in f64, on the plain reference
//! implementation (`recur::core::reference`): the loss is
//! `L = Σ output·gy + Σ h_n·gh (+ Σ c_n·gc)` with random gy, gh, gc; every parameter, input
//! element and initial-state element is perturbed by ±FD_STEP and the central difference of
//! the reference's loss is compared with what `Rnn::backward` returns.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recur::core::reference;
use recur::core::tolerance::{F64_VS_TORCH, FD_STEP, FINITE_DIFF};
use recur::{Dropout, Mode, Rnn, RnnConfig, State, Tensor};

fn randn(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

struct Case {
    cfg: RnnConfig,
    t: usize,
    b: usize,
    lengths: Vec<usize>,
    dropout: bool,
}

fn loss(r: &reference::RefOutput, gy: &[f64], gh: &[f64], gc: &[f64]) -> f64 {
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    dot(&r.output, gy) + dot(&r.h_n, gh) + dot(&r.c_n, gc)
}

fn check(case: &Case, seed: u64) {
    let cfg = &case.cfg;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let model: Rnn<f64> = Rnn::new(cfg.clone(), seed).unwrap();
    let (t, b) = (case.t, case.b);
    let (nl, nd, h, hout) = (
        cfg.num_layers,
        cfg.num_directions(),
        cfg.hidden_size,
        cfg.h_out(),
    );
    let lstm = cfg.mode == Mode::Lstm;
    let mut x = randn(&mut rng, t * b * cfg.input_size);
    // Padded positions: their values must not matter, so make them large.
    for s in 0..b {
        for ti in case.lengths[s]..t {
            for v in &mut x[(ti * b + s) * cfg.input_size..][..cfg.input_size] {
                *v = 1e3;
            }
        }
    }
    let mut h0 = randn(&mut rng, nl * nd * b * hout);
    let mut c0 = if lstm {
        randn(&mut rng, nl * nd * b * h)
    } else {
        vec![]
    };
    let width = nd * hout;
    let gy = randn(&mut rng, t * b * width);
    let gh = randn(&mut rng, nl * nd * b * hout);
    let gc = if lstm {
        randn(&mut rng, nl * nd * b * h)
    } else {
        vec![]
    };
    let masks: Vec<Vec<f64>> = if case.dropout {
        (0..nl - 1)
            .map(|_| {
                (0..t * b * width)
                    .map(|_| if rng.gen_bool(0.7) { 1.0 / 0.7 } else { 0.0 })
                    .collect()
            })
            .collect()
    } else {
        vec![]
    };
    let name = format!(
        "{:?} L{} D{} P{} lengths {:?} dropout {}",
        cfg.mode, nl, nd, cfg.proj_size, case.lengths, case.dropout
    );

    // Engine, forward and backward.
    let xt = Tensor::new(&[t, b, cfg.input_size], x.clone()).unwrap();
    let st = State {
        h: Tensor::new(&[nl * nd, b, hout], h0.clone()).unwrap(),
        c: lstm.then(|| Tensor::new(&[nl * nd, b, h], c0.clone()).unwrap()),
    };
    let mask_t: Vec<Tensor<f64>> = masks
        .iter()
        .map(|m| Tensor::new(&[t, b, width], m.clone()).unwrap())
        .collect();
    let drop = if case.dropout {
        Dropout::Masks(&mask_t)
    } else {
        Dropout::Off
    };
    let (out, tape) = model
        .forward_train(&xt, Some(&st), Some(&case.lengths), drop)
        .unwrap();

    // The engine's forward equals the plain reference.
    let r = reference::forward(&model, &x, t, b, &h0, &c0, &case.lengths, &masks);
    for (what, got, want) in [
        ("output", out.output.data(), &r.output),
        ("h_n", out.h_n.data(), &r.h_n),
    ] {
        for (a, e) in got.iter().zip(want.iter()) {
            assert!(
                F64_VS_TORCH.ok(*a, *e),
                "{name}: {what} {a} vs reference {e}"
            );
        }
    }
    if lstm {
        for (a, e) in out.c_n.as_ref().unwrap().data().iter().zip(&r.c_n) {
            assert!(F64_VS_TORCH.ok(*a, *e), "{name}: c_n {a} vs reference {e}");
        }
    }

    let mut grads = model.zeros_like_params();
    let g = model
        .backward(
            &tape,
            Some(&Tensor::new(&[t, b, width], gy.clone()).unwrap()),
            Some(&Tensor::new(&[nl * nd, b, hout], gh.clone()).unwrap()),
            lstm.then(|| Tensor::new(&[nl * nd, b, h], gc.clone()).unwrap())
                .as_ref(),
            &mut grads,
        )
        .unwrap();

    let mut checked = 0;
    let mut cmp = |what: String, analytic: f64, numeric: f64| {
        assert!(
            FINITE_DIFF.ok(analytic, numeric),
            "{name}: d loss / d {what}: backward {analytic:e}, finite differences {numeric:e}"
        );
        checked += 1;
    };
    // Parameters.
    for e in model.layout().entries() {
        for k in e.range() {
            let mut p = model.params().to_vec();
            p[k] += FD_STEP;
            let up = Rnn::from_params(cfg.clone(), p.clone()).unwrap();
            p[k] -= 2.0 * FD_STEP;
            let dn = Rnn::from_params(cfg.clone(), p).unwrap();
            let lu = loss(
                &reference::forward(&up, &x, t, b, &h0, &c0, &case.lengths, &masks),
                &gy,
                &gh,
                &gc,
            );
            let ld = loss(
                &reference::forward(&dn, &x, t, b, &h0, &c0, &case.lengths, &masks),
                &gy,
                &gh,
                &gc,
            );
            cmp(
                format!("{}[{}]", e.name, k - e.offset),
                grads[k],
                (lu - ld) / (2.0 * FD_STEP),
            );
        }
    }
    // Inputs and initial states.
    let fd = |v: &mut Vec<f64>, k: usize, f: &dyn Fn(&[f64]) -> f64| {
        let keep = v[k];
        v[k] = keep + FD_STEP;
        let lu = f(v);
        v[k] = keep - FD_STEP;
        let ld = f(v);
        v[k] = keep;
        (lu - ld) / (2.0 * FD_STEP)
    };
    for k in 0..x.len() {
        let (h0c, c0c) = (h0.clone(), c0.clone());
        let num = fd(&mut x, k, &|xv| {
            loss(
                &reference::forward(&model, xv, t, b, &h0c, &c0c, &case.lengths, &masks),
                &gy,
                &gh,
                &gc,
            )
        });
        cmp(format!("input[{k}]"), g.input.data()[k], num);
    }
    for k in 0..h0.len() {
        let (xc, c0c) = (x.clone(), c0.clone());
        let num = fd(&mut h0, k, &|hv| {
            loss(
                &reference::forward(&model, &xc, t, b, hv, &c0c, &case.lengths, &masks),
                &gy,
                &gh,
                &gc,
            )
        });
        cmp(format!("h0[{k}]"), g.h0.data()[k], num);
    }
    for k in 0..c0.len() {
        let (xc, h0c) = (x.clone(), h0.clone());
        let num = fd(&mut c0, k, &|cv| {
            loss(
                &reference::forward(&model, &xc, t, b, &h0c, cv, &case.lengths, &masks),
                &gy,
                &gh,
                &gc,
            )
        });
        cmp(format!("c0[{k}]"), g.c0.as_ref().unwrap().data()[k], num);
    }
    assert!(checked > 20, "{name}: only {checked} derivatives checked");
}

fn cases(mode: Mode) -> Vec<Case> {
    let base = RnnConfig::new(mode, 3, 4);
    let mut v = vec![
        Case {
            cfg: base.clone(),
            t: 5,
            b: 2,
            lengths: vec![5, 5],
            dropout: false,
        },
        Case {
            cfg: base.clone().bias(false),
            t: 1,
            b: 1,
            lengths: vec![1],
            dropout: false,
        },
        Case {
            cfg: base.clone().num_layers(2).bidirectional(true),
            t: 5,
            b: 3,
            lengths: vec![2, 5, 3],
            dropout: false,
        },
        Case {
            cfg: base.clone().num_layers(3).bidirectional(true),
            t: 4,
            b: 3,
            lengths: vec![4, 1, 3],
            dropout: true,
        },
    ];
    if mode == Mode::Lstm {
        v.push(Case {
            cfg: base.clone().proj_size(2).num_layers(2).bidirectional(true),
            t: 4,
            b: 3,
            lengths: vec![3, 4, 2],
            dropout: true,
        });
        v.push(Case {
            cfg: base.proj_size(1),
            t: 3,
            b: 2,
            lengths: vec![3, 3],
            dropout: false,
        });
    }
    v
}

#[test]
fn rnn_tanh_gradients_match_finite_differences() {
    for (i, c) in cases(Mode::RnnTanh).iter().enumerate() {
        check(c, 10 + i as u64);
    }
}

#[test]
fn rnn_relu_gradients_match_finite_differences() {
    for (i, c) in cases(Mode::RnnRelu).iter().enumerate() {
        check(c, 20 + i as u64);
    }
}

#[test]
fn lstm_gradients_match_finite_differences() {
    for (i, c) in cases(Mode::Lstm).iter().enumerate() {
        check(c, 30 + i as u64);
    }
}

#[test]
fn gru_gradients_match_finite_differences() {
    for (i, c) in cases(Mode::Gru).iter().enumerate() {
        check(c, 40 + i as u64);
    }
}
