//! The regularized layers (layer norm, variational dropout, zoneout, weight drop, locked
//! dropout) against the plain step-by-step reference (`reference::regular_forward`) and their
//! BPTT against its finite differences, in f64 with fixed masks, for every cell kind; evaluation
//! mode is the expectation; masks are reproducible from the generator.
#![allow(clippy::needless_range_loop)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recur::core::reference;
use recur::core::regular::Masks;
use recur::core::tolerance::{F32_FORWARD, F64_VS_TORCH, FD_STEP, FINITE_DIFF};
use recur::{Dropout, Mode, Rnn, RnnConfig, State, Stream, Tensor};

fn randn(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

/// Every option alone and all at once, for `mode`.
fn option_sets(mode: Mode) -> Vec<(&'static str, RnnConfig)> {
    let base = RnnConfig::new(mode, 3, 4).num_layers(2);
    let mut v = vec![
        ("layer_norm", base.clone().layer_norm(true)),
        (
            "layer_norm no bias",
            base.clone().layer_norm(true).bias(false),
        ),
        ("input_dropout", base.clone().input_dropout(0.3)),
        ("recurrent_dropout", base.clone().recurrent_dropout(0.4)),
        ("zoneout", base.clone().zoneout(0.3)),
        ("weight_drop", base.clone().weight_drop(0.5)),
        (
            "locked_dropout",
            base.clone().dropout(0.4).locked_dropout(true),
        ),
        (
            "all",
            base.clone()
                .layer_norm(true)
                .input_dropout(0.2)
                .recurrent_dropout(0.3)
                .zoneout(0.25)
                .weight_drop(0.3)
                .dropout(0.3)
                .locked_dropout(true),
        ),
        (
            "all, dropout per step",
            base.layer_norm(true)
                .input_dropout(0.2)
                .recurrent_dropout(0.3)
                .zoneout(0.25)
                .weight_drop(0.3)
                .dropout(0.3),
        ),
    ];
    if mode == Mode::Lstm {
        let mut c = RnnConfig::lstm(3, 4).num_layers(2);
        c.regular.zoneout_c = 0.4;
        v.push(("zoneout on c only", c));
    }
    v
}

const MODES: [Mode; 4] = [Mode::Lstm, Mode::Gru, Mode::RnnTanh, Mode::RnnRelu];

/// A model of `cfg` with every parameter random (layer-norm gains and biases included).
fn random_model(cfg: &RnnConfig, rng: &mut ChaCha8Rng) -> Rnn<f64> {
    let n = Rnn::<f64>::new(cfg.clone(), 0).unwrap().params().len();
    Rnn::from_params(cfg.clone(), randn(rng, n)).unwrap()
}

fn loss(r: &reference::RefOutput, gy: &[f64], gh: &[f64], gc: &[f64]) -> f64 {
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    dot(&r.output, gy) + dot(&r.h_n, gh) + dot(&r.c_n, gc)
}

fn check(name: &str, cfg: &RnnConfig, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let model = random_model(cfg, &mut rng);
    let (t, b, h, nl, i) = (5, 3, cfg.hidden_size, cfg.num_layers, cfg.input_size);
    let lstm = cfg.mode == Mode::Lstm;
    let lengths = vec![5, 3, 4];
    let mut x = randn(&mut rng, t * b * i);
    for s in 0..b {
        for ti in lengths[s]..t {
            for v in &mut x[(ti * b + s) * i..][..i] {
                *v = 1e3;
            }
        }
    }
    let h0 = randn(&mut rng, nl * b * h);
    let c0 = if lstm {
        randn(&mut rng, nl * b * h)
    } else {
        vec![]
    };
    let gy = randn(&mut rng, t * b * h);
    let gh = randn(&mut rng, nl * b * h);
    let gc = if lstm {
        randn(&mut rng, nl * b * h)
    } else {
        vec![]
    };
    let masks: Masks<f64> = Masks::sample(cfg, t, b, &mut rng);
    let xt = Tensor::new(&[t, b, i], x.clone()).unwrap();
    let st = State {
        h: Tensor::new(&[nl, b, h], h0.clone()).unwrap(),
        c: lstm.then(|| Tensor::new(&[nl, b, h], c0.clone()).unwrap()),
    };
    let (out, tape) = model
        .forward_train_masked(&xt, Some(&st), Some(&lengths), &masks)
        .unwrap();
    let name = format!("{:?} {name}", cfg.mode);
    let r = reference::regular_forward(&model, &x, t, b, &h0, &c0, &lengths, &masks);
    let empty: Vec<f64> = vec![];
    for (what, got, want) in [
        ("output", out.output.data(), &r.output),
        ("h_n", out.h_n.data(), &r.h_n),
        (
            "c_n",
            out.c_n.as_ref().map_or(&empty[..], |c| c.data()),
            &r.c_n,
        ),
    ] {
        assert_eq!(got.len(), want.len(), "{name}: {what} size");
        for (a, e) in got.iter().zip(want.iter()) {
            assert!(
                F64_VS_TORCH.ok(*a, *e),
                "{name}: {what} {a} vs reference {e}"
            );
        }
    }
    let mut grads = model.zeros_like_params();
    let g = model
        .backward(
            &tape,
            Some(&Tensor::new(&[t, b, h], gy.clone()).unwrap()),
            Some(&Tensor::new(&[nl, b, h], gh.clone()).unwrap()),
            lstm.then(|| Tensor::new(&[nl, b, h], gc.clone()).unwrap())
                .as_ref(),
            &mut grads,
        )
        .unwrap();
    let f = |m: &Rnn<f64>, x: &[f64], h0: &[f64], c0: &[f64]| {
        loss(
            &reference::regular_forward(m, x, t, b, h0, c0, &lengths, &masks),
            &gy,
            &gh,
            &gc,
        )
    };
    let cmp = |what: String, analytic: f64, numeric: f64| {
        assert!(
            FINITE_DIFF.ok(analytic, numeric),
            "{name}: d loss / d {what}: backward {analytic:e}, finite differences {numeric:e}"
        );
    };
    for e in model.layout().entries() {
        for k in e.range() {
            let mut p = model.params().to_vec();
            p[k] += FD_STEP;
            let up = Rnn::from_params(cfg.clone(), p.clone()).unwrap();
            p[k] -= 2.0 * FD_STEP;
            let down = Rnn::from_params(cfg.clone(), p).unwrap();
            let num = (f(&up, &x, &h0, &c0) - f(&down, &x, &h0, &c0)) / (2.0 * FD_STEP);
            cmp(format!("{}[{}]", e.name, k - e.offset), grads[k], num);
        }
    }
    for s in 0..b {
        for ti in 0..lengths[s] {
            for j in 0..i {
                let k = (ti * b + s) * i + j;
                let mut xp = x.clone();
                xp[k] += FD_STEP;
                let mut xm = x.clone();
                xm[k] -= FD_STEP;
                let num = (f(&model, &xp, &h0, &c0) - f(&model, &xm, &h0, &c0)) / (2.0 * FD_STEP);
                cmp(format!("input[{k}]"), g.input.data()[k], num);
            }
        }
    }
    for k in 0..h0.len() {
        let (mut hp, mut hm) = (h0.clone(), h0.clone());
        hp[k] += FD_STEP;
        hm[k] -= FD_STEP;
        let num = (f(&model, &x, &hp, &c0) - f(&model, &x, &hm, &c0)) / (2.0 * FD_STEP);
        cmp(format!("h0[{k}]"), g.h0.data()[k], num);
    }
    for k in 0..c0.len() {
        let (mut cp, mut cm) = (c0.clone(), c0.clone());
        cp[k] += FD_STEP;
        cm[k] -= FD_STEP;
        let num = (f(&model, &x, &h0, &cp) - f(&model, &x, &h0, &cm)) / (2.0 * FD_STEP);
        cmp(format!("c0[{k}]"), g.c0.as_ref().unwrap().data()[k], num);
    }
}

#[test]
fn forward_matches_reference_and_backward_matches_finite_differences() {
    for (k, mode) in MODES.into_iter().enumerate() {
        for (j, (name, cfg)) in option_sets(mode).into_iter().enumerate() {
            check(name, &cfg, 100 * k as u64 + j as u64);
        }
    }
}

#[test]
fn evaluation_is_the_expectation() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for mode in MODES {
        let (t, b) = (6, 2);
        // Dropout of every kind vanishes in evaluation: the same parameters without it give the
        // same output, through PyTorch's fused path.
        let drop = RnnConfig::new(mode, 3, 5)
            .num_layers(2)
            .input_dropout(0.3)
            .recurrent_dropout(0.3)
            .weight_drop(0.5)
            .dropout(0.5)
            .locked_dropout(true);
        let m = random_model(&drop, &mut rng);
        let plain = Rnn::from_params(
            RnnConfig::new(mode, 3, 5).num_layers(2),
            m.params().to_vec(),
        )
        .unwrap();
        let x = Tensor::new(&[t, b, 3], randn(&mut rng, t * b * 3)).unwrap();
        let (a, e) = (
            m.forward(&x, None, None).unwrap(),
            plain.forward(&x, None, None).unwrap(),
        );
        for (u, v) in a.output.data().iter().zip(e.output.data()) {
            assert!(F64_VS_TORCH.ok(*u, *v), "{mode}: {u} vs {v}");
        }
        // A training pass with Dropout::Off is evaluation mode too.
        let (tr, _) = m.forward_train(&x, None, None, Dropout::Off).unwrap();
        assert_eq!(tr.output, a.output);
        // Zoneout: h = p h_{t-1} + (1 - p) h' in evaluation, and layer norm as in training.
        let z = RnnConfig::new(mode, 3, 5)
            .num_layers(2)
            .zoneout(0.3)
            .layer_norm(true);
        let m = random_model(&z, &mut rng);
        let got = m.forward(&x, None, None).unwrap();
        let want = reference::regular_forward(
            &m,
            x.data(),
            t,
            b,
            &[],
            &[],
            &[t, t],
            &Masks::eval(&z, t, b),
        );
        for (u, v) in got.output.data().iter().zip(&want.output) {
            assert!(F64_VS_TORCH.ok(*u, *v), "{mode} zoneout: {u} vs {v}");
        }
        // The expectation differs from a pass with zoneout switched off.
        let mut off = z.clone();
        off.regular.zoneout_h = 0.0;
        off.regular.zoneout_c = 0.0;
        let no_zone = Rnn::from_params(off, m.params().to_vec()).unwrap();
        assert_ne!(no_zone.forward(&x, None, None).unwrap().output, got.output);
    }
}

#[test]
fn masks_are_reproducible_from_the_generator() {
    let cfg = RnnConfig::lstm(3, 6)
        .num_layers(2)
        .layer_norm(true)
        .input_dropout(0.2)
        .recurrent_dropout(0.3)
        .zoneout(0.1)
        .weight_drop(0.4)
        .dropout(0.3)
        .locked_dropout(true);
    let m: Rnn<f64> = Rnn::new(cfg.clone(), 3).unwrap();
    let x = Tensor::new(&[7, 4, 3], vec![0.5; 7 * 4 * 3]).unwrap();
    let run = |seed: u64| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        m.forward_train(&x, None, None, Dropout::Sample(&mut rng))
            .unwrap()
            .0
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11), run(12));
    // Sampling through forward_train draws exactly Masks::sample from the same generator.
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let masks = Masks::sample(&cfg, 7, 4, &mut rng);
    let (o, _) = m.forward_train_masked(&x, None, None, &masks).unwrap();
    assert_eq!(o, run(11));
}

#[test]
fn mask_statistics() {
    let cfg = RnnConfig::gru(10, 50)
        .num_layers(2)
        .input_dropout(0.2)
        .recurrent_dropout(0.3)
        .zoneout(0.25)
        .weight_drop(0.4)
        .dropout(0.5)
        .locked_dropout(true);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let m: Masks<f64> = Masks::sample(&cfg, 40, 16, &mut rng);
    let frac =
        |v: &[f64], keep: f64| v.iter().filter(|&&x| x == keep).count() as f64 / v.len() as f64;
    let l0 = &m.layers[0];
    assert!((frac(l0.input.as_ref().unwrap(), 1.0 / 0.8) - 0.8).abs() < 0.05);
    assert!((frac(l0.recurrent.as_ref().unwrap(), 1.0 / 0.7) - 0.7).abs() < 0.05);
    assert!((frac(l0.weight_hh.as_ref().unwrap(), 1.0 / 0.6) - 0.6).abs() < 0.02);
    assert!((frac(l0.zoneout_h.as_ref().unwrap(), 1.0) - 0.25).abs() < 0.02);
    assert_eq!(
        l0.output.as_ref().unwrap().len(),
        16 * 50,
        "one mask per sequence"
    );
    assert!(
        m.layers[1].output.is_none(),
        "no dropout after the last layer"
    );
    assert!(l0.zoneout_c.is_none(), "a GRU has no cell state");
}

#[test]
fn streaming_equals_the_whole_sequence() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for mode in MODES {
        let cfg = RnnConfig::new(mode, 3, 5)
            .num_layers(2)
            .layer_norm(true)
            .zoneout(0.2);
        let m = random_model(&cfg, &mut rng);
        let (t, b) = (6, 2);
        let x = randn(&mut rng, t * b * 3);
        let whole = m
            .forward(&Tensor::new(&[t, b, 3], x.clone()).unwrap(), None, None)
            .unwrap();
        let mut s = Stream::new(&m, b).unwrap();
        for ti in 0..t {
            let y = s.step(&x[ti * b * 3..][..b * 3]).unwrap().to_vec();
            for (u, v) in y.iter().zip(&whole.output.data()[ti * b * 5..][..b * 5]) {
                assert!(F64_VS_TORCH.ok(*u, *v), "{mode} step {ti}: {u} vs {v}");
            }
        }
    }
}

#[test]
fn f32_follows_f64_and_batch_first_is_a_layout() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for mode in MODES {
        let cfg = RnnConfig::new(mode, 4, 8)
            .num_layers(2)
            .layer_norm(true)
            .zoneout(0.1);
        let m = random_model(&cfg, &mut rng);
        let (t, b) = (9, 3);
        let x = randn(&mut rng, t * b * 4);
        let o64 = m
            .forward(&Tensor::new(&[t, b, 4], x.clone()).unwrap(), None, None)
            .unwrap();
        let m32: Rnn<f32> = m.cast();
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let o32 = m32
            .forward(&Tensor::new(&[t, b, 4], x32.clone()).unwrap(), None, None)
            .unwrap();
        for (u, v) in o32.output.data().iter().zip(o64.output.data()) {
            assert!(F32_FORWARD.ok(*u as f64, *v), "{mode}: f32 {u} vs f64 {v}");
        }
        let mut mb = m32.clone();
        mb.set_batch_first(true);
        let mut xb = vec![0.0f32; t * b * 4];
        for ti in 0..t {
            for s in 0..b {
                xb[(s * t + ti) * 4..][..4].copy_from_slice(&x32[(ti * b + s) * 4..][..4]);
            }
        }
        let ob = mb
            .forward(&Tensor::new(&[b, t, 4], xb).unwrap(), None, None)
            .unwrap();
        for ti in 0..t {
            for s in 0..b {
                assert_eq!(
                    &ob.output.data()[(s * t + ti) * 8..][..8],
                    &o32.output.data()[(ti * b + s) * 8..][..8]
                );
            }
        }
    }
}

#[test]
fn plain_configurations_keep_pytorch_layout_and_bad_options_are_errors() {
    let plain = RnnConfig::lstm(3, 4).num_layers(2);
    let a: Rnn<f32> = Rnn::new(plain.clone(), 1).unwrap();
    let b: Rnn<f32> = Rnn::new(plain.layer_norm(true), 1).unwrap();
    // The PyTorch parameters come first and are drawn the same; gains 1, biases 0.
    assert_eq!(&b.params()[..a.params().len()], a.params());
    assert!(b
        .param("ln_ih_weight_l1")
        .unwrap()
        .iter()
        .all(|&v| v == 1.0));
    assert!(b.param("ln_c_bias_l0").unwrap().iter().all(|&v| v == 0.0));
    for bad in [
        RnnConfig::lstm(3, 4).zoneout(1.0),
        RnnConfig::lstm(3, 4).input_dropout(-0.1),
        RnnConfig::lstm(3, 4).layer_norm(true).bidirectional(true),
        RnnConfig::lstm(3, 4).weight_drop(0.2).proj_size(2),
        {
            let mut c = RnnConfig::gru(3, 4);
            c.regular.zoneout_c = 0.1;
            c
        },
    ] {
        assert!(Rnn::<f32>::new(bad.clone(), 0).is_err(), "{bad:?}");
    }
    let m: Rnn<f64> = Rnn::new(RnnConfig::gru(3, 4).zoneout(0.2), 0).unwrap();
    let x = Tensor::new(&[2, 1, 3], vec![0.0; 6]).unwrap();
    let given = [Tensor::new(&[2, 1, 4], vec![1.0; 8]).unwrap()];
    assert!(m
        .forward_train(&x, None, None, Dropout::Masks(&given))
        .is_err());
    let wrong = Masks::<f64>::sample(
        &RnnConfig::gru(3, 4).zoneout(0.2),
        3,
        1,
        &mut ChaCha8Rng::seed_from_u64(0),
    );
    assert!(m.forward_train_masked(&x, None, None, &wrong).is_err());
}
