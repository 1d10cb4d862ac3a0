//! Whole-sequence inference with compact weights (`Rnn::set_precision`):
//!
//! - f16 / bf16: against an f64 run of the same model on the rounded weights (the only
//!   approximation), tight, and a nonzero distance to the unrounded model;
//! - int8: the whole-sequence pass (batched input projection) gives the bits of an int8
//!   stream stepped over the same sequence (the stream is checked against a plain
//!   implementation of the scheme in `stream_precision.rs`); a ragged batch gives every row
//!   the bits of that sequence run alone (activations are quantized per row); the reverse
//!   direction gives the bits of a unidirectional model on the reversed sequence;
//! - the errors: training a compact model, another compact precision.

use recur::{Dropout, Mode, Precision, Rnn, RnnConfig, State, Stream, Tensor};

fn seq(t: usize, b: usize, i: usize, seed: usize) -> Tensor<f32> {
    Tensor::new(
        &[t, b, i],
        (0..t * b * i)
            .map(|k| ((k * 31 + seed * 17) as f32 * 0.37).sin())
            .collect(),
    )
    .unwrap()
}

fn max_gap(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn configs() -> Vec<(&'static str, RnnConfig)> {
    vec![
        ("lstm", RnnConfig::lstm(5, 12).num_layers(2)),
        (
            "lstm-proj",
            RnnConfig::lstm(5, 12).proj_size(7).num_layers(2),
        ),
        ("gru", RnnConfig::gru(5, 12).num_layers(2)),
        ("gru-nobias", RnnConfig::gru(9, 17).bias(false)),
        ("rnn_tanh", RnnConfig::rnn(5, 12)),
        ("rnn_relu", RnnConfig::new(Mode::RnnRelu, 5, 12)),
        ("bilstm", RnnConfig::lstm(5, 12).bidirectional(true)),
        (
            "bigru-2",
            RnnConfig::gru(6, 10).bidirectional(true).num_layers(2),
        ),
        // Large enough for the products to split across threads.
        ("lstm-300", RnnConfig::lstm(64, 300)),
    ]
}

#[test]
fn half_forward_matches_f64_on_the_rounded_weights() {
    for (name, cfg) in configs() {
        for p in [Precision::F16, Precision::Bf16] {
            let full: Rnn<f32> = Rnn::new(cfg.clone(), 3).unwrap();
            let mut m = full.clone();
            m.set_precision(p).unwrap();
            assert_eq!(m.precision(), p);
            let x = seq(7, 3, cfg.input_size, 1);
            let got = m.forward(&x, None, None).unwrap();
            let r64: Rnn<f64> = m.cast();
            let x64 = Tensor::new(x.shape(), x.data().iter().map(|&v| v as f64).collect()).unwrap();
            let want = r64.forward(&x64, None, None).unwrap();
            let want: Vec<f32> = want.output.data().iter().map(|&v| v as f32).collect();
            let gap = max_gap(got.output.data(), &want);
            assert!(
                gap < 2e-5,
                "{name} {p}: {gap} from f64 on the rounded weights"
            );
            let off = max_gap(
                got.output.data(),
                full.forward(&x, None, None).unwrap().output.data(),
            );
            let bound = if p == Precision::F16 { 5e-3 } else { 5e-2 };
            assert!(
                off > 0.0 && off < bound,
                "{name} {p}: {off} from the f32 model"
            );
        }
    }
}

#[test]
fn int8_forward_gives_the_bits_of_an_int8_stream() {
    for (name, cfg) in configs() {
        if cfg.bidirectional {
            continue;
        }
        for threads in [1, 2] {
            recur::set_num_threads(threads);
            let mut m: Rnn<f32> = Rnn::new(cfg.clone(), 5).unwrap();
            m.set_precision(Precision::Int8).unwrap();
            let (t, b) = (9, 3);
            let x = seq(t, b, cfg.input_size, 2);
            let h0 = Tensor::new(
                &m.state_shape(Some(b), false),
                seq(1, 1, m.state_shape(Some(b), false).iter().product(), 9).into_data(),
            )
            .unwrap();
            let state = State {
                h: h0,
                c: (cfg.mode == Mode::Lstm).then(|| {
                    let s = m.state_shape(Some(b), true);
                    Tensor::new(&s, seq(1, 1, s.iter().product(), 4).into_data()).unwrap()
                }),
            };
            let got = m.forward(&x, Some(&state), None).unwrap();
            let mut s = Stream::new(&m, b).unwrap();
            assert_eq!(s.precision(), Precision::Int8);
            s.set_state(&state).unwrap();
            let w = cfg.h_out();
            let i = cfg.input_size;
            for ti in 0..t {
                let h = s.step(&x.data()[ti * b * i..(ti + 1) * b * i]).unwrap();
                assert_eq!(
                    h,
                    &got.output.data()[ti * b * w..(ti + 1) * b * w],
                    "{name} threads {threads} step {ti}"
                );
            }
            assert_eq!(s.state().h, got.h_n, "{name}: h_n");
            assert_eq!(s.state().c, got.c_n, "{name}: c_n");
            // And close to the f32 model.
            let full: Rnn<f32> = Rnn::new(cfg.clone(), 5).unwrap();
            let f = full.forward(&x, Some(&state), None).unwrap();
            let gap = max_gap(f.output.data(), got.output.data());
            assert!(gap > 0.0 && gap < 0.1, "{name}: int8 {gap} from f32");
        }
    }
    recur::set_num_threads(1);
}

#[test]
fn int8_ragged_rows_are_the_sequences_run_alone() {
    for (name, cfg) in configs() {
        for batch_first in [false, true] {
            let mut m: Rnn<f32> = Rnn::new(cfg.clone().batch_first(batch_first), 7).unwrap();
            m.set_precision(Precision::Int8).unwrap();
            let (t, b, i) = (8, 4, cfg.input_size);
            let lens = [5, 8, 1, 3];
            let x = seq(t, b, i, 3); // time-major values
            let at = |ti: usize, bi: usize| &x.data()[(ti * b + bi) * i..][..i];
            let mut user = Vec::new();
            if batch_first {
                for bi in 0..b {
                    for ti in 0..t {
                        user.extend_from_slice(at(ti, bi));
                    }
                }
            } else {
                user = x.data().to_vec();
            }
            let shape = if batch_first { [b, t, i] } else { [t, b, i] };
            let got = m
                .forward(&Tensor::new(&shape, user).unwrap(), None, Some(&lens))
                .unwrap();
            let w = cfg.num_directions() * cfg.h_out();
            let ld = cfg.num_layers * cfg.num_directions();
            for (bi, &len) in lens.iter().enumerate() {
                let one: Vec<f32> = (0..len).flat_map(|ti| at(ti, bi).to_vec()).collect();
                let one = Tensor::new(&[len, i], one).unwrap(); // unbatched
                let alone = m.forward(&one, None, None).unwrap();
                for ti in 0..t {
                    let idx = if batch_first {
                        bi * t + ti
                    } else {
                        ti * b + bi
                    };
                    let row = &got.output.data()[idx * w..(idx + 1) * w];
                    if ti < len {
                        assert_eq!(
                            row,
                            &alone.output.data()[ti * w..(ti + 1) * w],
                            "{name} bf {batch_first} row {bi} t {ti}"
                        );
                    } else {
                        assert!(row.iter().all(|&v| v == 0.0), "{name}: padding not zero");
                    }
                }
                let hw = cfg.h_out();
                for k in 0..ld {
                    assert_eq!(
                        &got.h_n.data()[(k * b + bi) * hw..][..hw],
                        &alone.h_n.data()[k * hw..(k + 1) * hw],
                        "{name} h_n {k} row {bi}"
                    );
                }
            }
        }
    }
}

#[test]
fn int8_reverse_direction_is_the_forward_one_on_the_reversed_sequence() {
    let cfg = RnnConfig::lstm(5, 12).bidirectional(true);
    let mut bi: Rnn<f32> = Rnn::new(cfg, 11).unwrap();
    bi.set_precision(Precision::Int8).unwrap();
    // The reverse weights as a unidirectional model (the rounding is idempotent).
    let mut uni: Rnn<f32> = Rnn::new(RnnConfig::lstm(5, 12), 0).unwrap();
    for name in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] {
        let src = bi.param(&format!("{name}_l0_reverse")).unwrap().to_vec();
        let e = uni.layout().get(&format!("{name}_l0")).unwrap().range();
        uni.params_mut()[e].copy_from_slice(&src);
    }
    uni.set_precision(Precision::Int8).unwrap();
    let (t, b) = (6, 2);
    let x = seq(t, b, 5, 5);
    let mut rev = Vec::new();
    for ti in (0..t).rev() {
        rev.extend_from_slice(&x.data()[ti * b * 5..(ti + 1) * b * 5]);
    }
    let o = bi.forward(&x, None, None).unwrap();
    let r = uni
        .forward(&Tensor::new(&[t, b, 5], rev).unwrap(), None, None)
        .unwrap();
    for ti in 0..t {
        for bb in 0..b {
            let got = &o.output.data()[(ti * b + bb) * 24 + 12..][..12];
            let want = &r.output.data()[((t - 1 - ti) * b + bb) * 12..][..12];
            assert_eq!(got, want, "t {ti} b {bb}");
        }
    }
}

#[test]
fn compact_models_are_for_inference() {
    let mut m: Rnn<f32> = Rnn::new(RnnConfig::lstm(3, 4), 0).unwrap();
    m.set_precision(Precision::Int8).unwrap();
    let x = seq(2, 1, 3, 0);
    let e = m.forward_train(&x, None, None, Dropout::Off).unwrap_err();
    assert!(e.to_string().contains("inference only"), "{e}");
    let e = m.set_precision(Precision::F16).unwrap_err();
    assert!(e.to_string().contains("already stored as int8"), "{e}");
    let e = Stream::with_precision(&m, 1, Precision::Bf16)
        .err()
        .unwrap();
    assert!(e.to_string().contains("stored as int8"), "{e}");
    // The same precision again changes nothing; the int8 weights are a fixed point.
    let before = m.params().to_vec();
    let mut again = Rnn::from_params(m.config().clone(), before.clone()).unwrap();
    again.set_precision(Precision::Int8).unwrap();
    assert_eq!(again.params(), &before[..]);
    // Changing the parameters makes the model f32 again.
    m.params_mut()[0] += 0.0;
    assert_eq!(m.precision(), Precision::F32);
    assert!(m.forward_train(&x, None, None, Dropout::Off).is_ok());
    // f16 weights beyond the format's range.
    let mut big: Rnn<f32> =
        Rnn::from_params(RnnConfig::rnn(1, 1), vec![1e5, 0.5, 0.0, 0.0]).unwrap();
    let e = big.set_precision(Precision::F16).unwrap_err();
    assert!(e.to_string().contains("beyond the range"), "{e}");
    assert_eq!(big.precision(), Precision::F32);
    // Compact weights are for f32 models.
    let mut wide: Rnn<f64> = Rnn::new(RnnConfig::lstm(3, 4), 0).unwrap();
    let e = wide.set_precision(Precision::Int8).unwrap_err();
    assert!(e.to_string().contains("for f32 models"), "{e}");
}
