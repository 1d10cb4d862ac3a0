//! Streams with f16 / bf16 weights against an independent reference: an f64 stream over the
//! same model with its weights rounded to the 16-bit format (the only approximation the
//! reduced-precision path makes), and the bound of that rounding against the f32 model.

use recur::{Mode, Precision, Rnn, RnnConfig, Stream};
use recur_kernels::half::HalfKind;

fn configs() -> Vec<(&'static str, RnnConfig)> {
    vec![
        ("lstm", RnnConfig::lstm(5, 12).num_layers(2)),
        (
            "lstm-proj",
            RnnConfig::lstm(5, 12).proj_size(7).num_layers(2),
        ),
        ("gru", RnnConfig::gru(5, 12).num_layers(2)),
        ("gru-nobias", RnnConfig::gru(9, 17).bias(false)),
        ("rnn_tanh", RnnConfig::rnn(5, 12).num_layers(2)),
        ("rnn_relu", RnnConfig::new(Mode::RnnRelu, 5, 12)),
        // Large enough for the step to be split across threads (hidden units per thread,
        // with a tail that is not a multiple of 8).
        // (batch 3: 3·4·300·364 MACs per step for the LSTM, over the 2^20 threshold).
        ("lstm-300", RnnConfig::lstm(64, 300)),
        ("gru-340", RnnConfig::gru(64, 340).num_layers(2)),
        ("rnn_relu-1000", RnnConfig::new(Mode::RnnRelu, 64, 1000)),
    ]
}

fn inputs(steps: usize, batch: usize, input: usize) -> Vec<Vec<f32>> {
    (0..steps)
        .map(|t| {
            (0..batch * input)
                .map(|i| ((t * 31 + i * 7) as f32 * 0.37).sin())
                .collect()
        })
        .collect()
}

#[test]
fn half_streams_match_f64_on_rounded_weights() {
    for threads in [1, 2] {
        recur::set_num_threads(threads);
        check_against_f64();
    }
}

fn check_against_f64() {
    for (name, cfg) in configs() {
        let model: Rnn<f32> = Rnn::new(cfg.clone(), 3).unwrap();
        for (precision, kind) in [
            (Precision::F16, HalfKind::F16),
            (Precision::Bf16, HalfKind::Bf16),
        ] {
            // The reference: the same weights rounded to the 16-bit format, computed in f64.
            let rounded: Vec<f64> = model
                .params()
                .iter()
                .map(|&w| kind.decode(kind.encode(w)) as f64)
                .collect();
            // Biases are kept in f32 by the half path: put them back unrounded.
            let mut rounded = rounded;
            for e in model.layout().entries() {
                if e.name.starts_with("bias") {
                    for (r, &w) in rounded[e.range()]
                        .iter_mut()
                        .zip(&model.params()[e.range()])
                    {
                        *r = w as f64;
                    }
                }
            }
            let reference = Rnn::<f64>::from_params(cfg.clone(), rounded).unwrap();
            let batch = 3;
            let mut half = Stream::with_precision(&model, batch, precision).unwrap();
            assert_eq!(half.precision(), precision);
            let mut exact = Stream::new(&reference, batch).unwrap();
            let mut full = Stream::new(&model, batch).unwrap();
            let (mut worst_ref, mut worst_full) = (0.0f64, 0.0f64);
            for x in inputs(20, batch, cfg.input_size) {
                let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                let a = half.step(&x).unwrap().to_vec();
                let b = exact.step(&x64).unwrap().to_vec();
                let c = full.step(&x).unwrap().to_vec();
                for ((&a, &b), &c) in a.iter().zip(&b).zip(&c) {
                    worst_ref = worst_ref.max((a as f64 - b).abs());
                    worst_full = worst_full.max((a - c).abs() as f64);
                }
            }
            // f32 arithmetic on the same rounded weights.
            assert!(
                worst_ref < 2e-5,
                "{name} {precision}: {worst_ref} from the f64 reference"
            );
            // The rounding itself: visible, and within what the format's precision allows.
            let bound = if precision == Precision::F16 {
                5e-3
            } else {
                5e-2
            };
            assert!(
                worst_full > 0.0 && worst_full < bound,
                "{name} {precision}: {worst_full} from f32 weights"
            );
            // States (h and c) agree with the reference too.
            let (s, r) = (half.state(), exact.state());
            for (&a, &b) in s.h.data().iter().zip(r.h.data()) {
                assert!((a as f64 - b).abs() < 2e-5);
            }
            if let (Some(sc), Some(rc)) = (&s.c, &r.c) {
                for (&a, &b) in sc.data().iter().zip(rc.data()) {
                    assert!((a as f64 - b).abs() < 2e-5);
                }
            }
        }
    }
}

#[test]
fn f16_refuses_weights_beyond_its_range_and_names_them() {
    let mut model: Rnn<f32> = Rnn::new(RnnConfig::gru(2, 3), 0).unwrap();
    model.params_mut()[0] = 1e5;
    let err = Stream::with_precision(&model, 1, Precision::F16)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("weight_ih") && err.contains("bf16"), "{err}");
    // bf16 has f32's range.
    assert!(Stream::with_precision(&model, 1, Precision::Bf16).is_ok());
}

#[test]
fn precision_parses_and_prints() {
    for p in [Precision::F32, Precision::F16, Precision::Bf16] {
        assert_eq!(p.to_string().parse::<Precision>().unwrap(), p);
    }
    let err = "int4".parse::<Precision>().unwrap_err().to_string();
    assert!(err.contains("f16") && err.contains("int4"), "{err}");
    let model: Rnn<f32> = Rnn::new(RnnConfig::lstm(2, 3), 0).unwrap();
    assert_eq!(Stream::new(&model, 1).unwrap().precision(), Precision::F32);
}

// ---------------------------------------------------------------------------------------------
// int8: each step against a plain f64 implementation of the documented scheme (weights int8
// per row, symmetric; each product's input quantized per row to [0, 127] with a zero point;
// exact integer sums; biases and cells in f64), fed the stream's own state so that both
// quantize the same f32 values.

/// Per row of (rows, cols): the integers and the scale (f32 arithmetic, as documented).
fn quant_weights(w: &[f32], rows: usize, cols: usize) -> (Vec<i64>, Vec<f32>) {
    let mut q = vec![0i64; rows * cols];
    let mut s = vec![1.0f32; rows];
    for j in 0..rows {
        let row = &w[j * cols..(j + 1) * cols];
        let max = row.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        if max > 0.0 {
            s[j] = max / 127.0;
        }
        for k in 0..cols {
            q[j * cols + k] = (row[k] / s[j]).round_ties_even().clamp(-127.0, 127.0) as i64;
        }
    }
    (q, s)
}

/// One input row: integers, scale, zero point.
fn quant_input(x: &[f32]) -> (Vec<i64>, f32, i64) {
    let lo = x.iter().fold(0.0f32, |m, &v| m.min(v));
    let hi = x.iter().fold(0.0f32, |m, &v| m.max(v));
    let s = if hi > lo { (hi - lo) / 127.0 } else { 1.0 };
    let z = (-lo / s).round_ties_even().clamp(0.0, 127.0);
    let q = x
        .iter()
        .map(|&v| ((v / s).round_ties_even() + z).clamp(0.0, 127.0) as i64)
        .collect();
    (q, s, z as i64)
}

/// y (rows) = dequantized (W x) for one input row.
fn qproduct(wq: &(Vec<i64>, Vec<f32>), rows: usize, x: &[f32]) -> Vec<f64> {
    let cols = x.len();
    let (q, s, z) = quant_input(x);
    (0..rows)
        .map(|j| {
            let wr = &wq.0[j * cols..(j + 1) * cols];
            let dot: i64 = wr.iter().zip(&q).map(|(a, b)| a * b).sum();
            let sum: i64 = wr.iter().sum();
            wq.1[j] as f64 * s as f64 * (dot - z * sum) as f64
        })
        .collect()
}

fn sig(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn int8_steps_follow_the_documented_scheme() {
    for threads in [1, 2] {
        recur::set_num_threads(threads);
        for (name, cfg) in configs() {
            if cfg.proj_size > 0 {
                continue; // m is quantized too; compared against f32 below
            }
            let model: Rnn<f32> = Rnn::new(cfg.clone(), 5).unwrap();
            let batch = 2;
            let mut s = Stream::with_precision(&model, batch, Precision::Int8).unwrap();
            assert_eq!(s.precision(), Precision::Int8);
            let (l, h) = (cfg.num_layers, cfg.hidden_size);
            let g = cfg.mode.gates() * h;
            let p = |n: &str| model.param(n);
            let mut worst = 0.0f64;
            for x in inputs(8, batch, cfg.input_size) {
                let before = s.state();
                s.step(&x).unwrap();
                let after = s.state();
                for layer in 0..l {
                    let inp = cfg.layer_input_size(layer);
                    let wih = quant_weights(p(&format!("weight_ih_l{layer}")).unwrap(), g, inp);
                    let whh = quant_weights(p(&format!("weight_hh_l{layer}")).unwrap(), g, h);
                    let bih = p(&format!("bias_ih_l{layer}"));
                    let bhh = p(&format!("bias_hh_l{layer}"));
                    for r in 0..batch {
                        // The layer's input: x, or the stream's new h of the layer below.
                        let xin: Vec<f32> = if layer == 0 {
                            x[r * inp..(r + 1) * inp].to_vec()
                        } else {
                            after.h.data()[((layer - 1) * batch + r) * h..][..h].to_vec()
                        };
                        let hp = &before.h.data()[(layer * batch + r) * h..][..h];
                        let gi = qproduct(&wih, g, &xin);
                        let gh = qproduct(&whh, g, hp);
                        let b = |v: Option<&[f32]>, j: usize| v.map_or(0.0, |v| v[j] as f64);
                        let got_h = &after.h.data()[(layer * batch + r) * h..][..h];
                        for u in 0..h {
                            let want = match cfg.mode {
                                Mode::Lstm => {
                                    let a = |k: usize| {
                                        gi[k * h + u]
                                            + gh[k * h + u]
                                            + b(bih, k * h + u)
                                            + b(bhh, k * h + u)
                                    };
                                    let (i, f, gg, o) =
                                        (sig(a(0)), sig(a(1)), a(2).tanh(), sig(a(3)));
                                    let cp = before.c.as_ref().unwrap().data()
                                        [(layer * batch + r) * h + u]
                                        as f64;
                                    let c = f * cp + i * gg;
                                    let got_c = after.c.as_ref().unwrap().data()
                                        [(layer * batch + r) * h + u]
                                        as f64;
                                    worst = worst.max((got_c - c).abs());
                                    o * c.tanh()
                                }
                                Mode::Gru => {
                                    let rg = sig(gi[u] + b(bih, u) + gh[u] + b(bhh, u));
                                    let zg =
                                        sig(gi[h + u] + b(bih, h + u) + gh[h + u] + b(bhh, h + u));
                                    let ng = (gi[2 * h + u]
                                        + b(bih, 2 * h + u)
                                        + rg * (gh[2 * h + u] + b(bhh, 2 * h + u)))
                                    .tanh();
                                    (1.0 - zg) * ng + zg * hp[u] as f64
                                }
                                Mode::RnnTanh | Mode::RnnRelu => {
                                    let a = gi[u] + gh[u] + b(bih, u) + b(bhh, u);
                                    if cfg.mode == Mode::RnnRelu {
                                        a.max(0.0)
                                    } else {
                                        a.tanh()
                                    }
                                }
                            };
                            worst = worst.max((got_h[u] as f64 - want).abs());
                        }
                    }
                }
            }
            assert!(
                worst < 2e-5,
                "{name}, {threads} threads: {worst} from the scheme"
            );
        }
    }
}

#[test]
fn int8_streams_stay_close_to_f32() {
    for (name, cfg) in configs() {
        let model: Rnn<f32> = Rnn::new(cfg.clone(), 3).unwrap();
        let mut q = Stream::with_precision(&model, 3, Precision::Int8).unwrap();
        let mut f = Stream::new(&model, 3).unwrap();
        let mut worst = 0.0f32;
        for x in inputs(20, 3, cfg.input_size) {
            let (a, b) = (q.step(&x).unwrap().to_vec(), f.step(&x).unwrap().to_vec());
            for (u, v) in a.iter().zip(&b) {
                worst = worst.max((u - v).abs());
            }
        }
        // 7-bit activations and 8-bit weights: a few percent of the state's range at most.
        assert!(worst > 0.0 && worst < 0.1, "{name}: {worst}");
    }
}
