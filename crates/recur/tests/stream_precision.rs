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
