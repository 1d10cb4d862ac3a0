//! Streaming, truncated BPTT, cells as layers, and PyTorch's default initialization.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recur::core::reference;
use recur::core::tolerance::{F32_STREAM, F64_VS_TORCH, FD_STEP, FINITE_DIFF};
use recur::{Cell, Dropout, Mode, Rnn, RnnConfig, State, Stream, Tensor};

fn rand_vec(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

const MODES: [Mode; 4] = [Mode::RnnTanh, Mode::RnnRelu, Mode::Lstm, Mode::Gru];

/// The step API, fed one input at a time, gives what the sequence API gives for every step
/// and for the final state, for every cell kind, stacked layers and projections.
#[test]
fn stream_matches_sequence_forward() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for mode in MODES {
        for (layers, proj) in [(1, 0), (3, 0), (2, 3)] {
            if proj > 0 && mode != Mode::Lstm {
                continue;
            }
            let cfg = RnnConfig::new(mode, 5, 7)
                .num_layers(layers)
                .proj_size(proj);
            let rnn: Rnn<f32> = Rnn::new(cfg.clone(), 1).unwrap();
            let (t, b) = (9, 3);
            let x = rand_vec(&mut rng, t * b * 5);
            let h0 = Tensor::new(
                &rnn.state_shape(Some(b), false),
                rand_vec(&mut rng, layers * b * cfg.h_out()),
            )
            .unwrap();
            let c0 = (mode == Mode::Lstm).then(|| {
                Tensor::new(
                    &rnn.state_shape(Some(b), true),
                    rand_vec(&mut rng, layers * b * 7),
                )
                .unwrap()
            });
            let state = State { h: h0, c: c0 };
            let full = rnn
                .forward(
                    &Tensor::new(&[t, b, 5], x.clone()).unwrap(),
                    Some(&state),
                    None,
                )
                .unwrap();
            let mut s = Stream::new(&rnn, b).unwrap();
            s.set_state(&state).unwrap();
            let w = cfg.h_out();
            for ti in 0..t {
                let y = s.step(&x[ti * b * 5..(ti + 1) * b * 5]).unwrap().to_vec();
                for (k, (a, e)) in y
                    .iter()
                    .zip(&full.output.data()[ti * b * w..(ti + 1) * b * w])
                    .enumerate()
                {
                    assert!(
                        F32_STREAM.ok(*a as f64, *e as f64),
                        "{mode} L{layers} P{proj} t={ti} [{k}]: stream {a} vs sequence {e}"
                    );
                }
            }
            let st = s.state();
            for (a, e) in st.h.data().iter().zip(full.h_n.data()) {
                assert!(
                    F32_STREAM.ok(*a as f64, *e as f64),
                    "{mode}: h_n {a} vs {e}"
                );
            }
            if let (Some(c), Some(e)) = (&st.c, &full.c_n) {
                for (a, e) in c.data().iter().zip(e.data()) {
                    assert!(
                        F32_STREAM.ok(*a as f64, *e as f64),
                        "{mode}: c_n {a} vs {e}"
                    );
                }
            }
            s.reset();
            assert!(s.state().h.data().iter().all(|&v| v == 0.0));
        }
    }
}

#[test]
fn stream_rejects_what_it_cannot_do() {
    let bi: Rnn<f32> = Rnn::new(RnnConfig::lstm(2, 3).bidirectional(true), 0).unwrap();
    let e = Stream::new(&bi, 1).err().unwrap().to_string();
    assert!(e.contains("bidirectional"), "{e}");
    let gru: Rnn<f32> = Rnn::new(RnnConfig::gru(2, 3), 0).unwrap();
    let mut s = Stream::new(&gru, 2).unwrap();
    let e = s.step(&[0.0; 3]).err().unwrap().to_string();
    assert!(e.contains("expected") && e.contains("got 3"), "{e}");
}

/// Truncated BPTT: running a long sequence in chunks, each starting from the previous chunk's
/// final state, gives the same outputs as one pass; and the gradients of a chunk are those of
/// the chunk's loss with its initial state held constant (no gradient crosses the boundary),
/// checked by finite differences on the reference.
#[test]
fn truncated_bptt_carries_state_without_gradient() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for mode in MODES {
        let cfg = RnnConfig::new(mode, 2, 3).num_layers(2);
        let rnn: Rnn<f64> = Rnn::new(cfg.clone(), 5).unwrap();
        let (t, b, chunk) = (12, 2, 4);
        let x: Vec<f64> = (0..t * b * 2).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let full = rnn
            .forward(&Tensor::new(&[t, b, 2], x.clone()).unwrap(), None, None)
            .unwrap();
        let mut state: Option<State<f64>> = None;
        for k in 0..t / chunk {
            let xs = x[k * chunk * b * 2..(k + 1) * chunk * b * 2].to_vec();
            let (out, tape) = rnn
                .forward_train(
                    &Tensor::new(&[chunk, b, 2], xs.clone()).unwrap(),
                    state.as_ref(),
                    None,
                    Dropout::Off,
                )
                .unwrap();
            for (a, e) in out
                .output
                .data()
                .iter()
                .zip(&full.output.data()[k * chunk * b * 3..])
            {
                assert!(
                    F64_VS_TORCH.ok(*a, *e),
                    "{mode}: chunked output {a} vs full {e}"
                );
            }
            // Loss of the chunk: sum of its outputs.
            let ones = Tensor::new(out.output.shape(), vec![1.0; out.output.data().len()]).unwrap();
            let mut grads = rnn.zeros_like_params();
            rnn.backward(&tape, Some(&ones), None, None, &mut grads)
                .unwrap();
            let last_grads = grads;
            let last_h0 = match &state {
                Some(s) => (
                    s.h.data().to_vec(),
                    s.c.as_ref().map(|c| c.data().to_vec()).unwrap_or_default(),
                ),
                None => (vec![], vec![]),
            };
            if k + 1 == t / chunk {
                // Finite differences of the last chunk's loss with its h0 (from the previous
                // chunk) held constant.
                for i in (0..rnn.params().len()).step_by(3) {
                    let mut p = rnn.params().to_vec();
                    p[i] += FD_STEP;
                    let up = Rnn::from_params(cfg.clone(), p.clone()).unwrap();
                    p[i] -= 2.0 * FD_STEP;
                    let dn = Rnn::from_params(cfg.clone(), p).unwrap();
                    let l = |m: &Rnn<f64>| {
                        reference::forward(
                            m,
                            &xs,
                            chunk,
                            b,
                            &last_h0.0,
                            &last_h0.1,
                            &[chunk; 2],
                            &[],
                        )
                        .output
                        .iter()
                        .sum::<f64>()
                    };
                    let num = (l(&up) - l(&dn)) / (2.0 * FD_STEP);
                    assert!(
                        FINITE_DIFF.ok(last_grads[i], num),
                        "{mode}: param {i}: {} vs {num}",
                        last_grads[i]
                    );
                }
            }
            state = Some(out.state());
        }
        let st = state.unwrap();
        for (a, e) in st.h.data().iter().zip(full.h_n.data()) {
            assert!(F64_VS_TORCH.ok(*a, *e), "{mode}: final state {a} vs {e}");
        }
    }
}

/// A cell and the one-layer layer built from its parameters agree, step by step.
#[test]
fn cell_equals_one_step_of_a_layer() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for mode in MODES {
        let cell: Cell<f64> = Cell::new(mode, 4, 5, true, 2).unwrap();
        let layer = cell.to_layer();
        let x = Tensor::new(&[3, 4], (0..12).map(|_| rng.gen_range(-1.0..1.0)).collect()).unwrap();
        let (h, c) = cell.forward(&x, None, None).unwrap();
        let out = layer
            .forward(&x.clone().reshape(&[1, 3, 4]).unwrap(), None, None)
            .unwrap();
        assert_eq!(h.data(), out.h_n.data());
        assert_eq!(c.map(|c| c.into_data()), out.c_n.map(|c| c.into_data()));
        // Unbatched input (input_size,) gives h' of shape (hidden,).
        let (h1, _) = cell
            .forward(
                &Tensor::new(&[4], x.data()[..4].to_vec()).unwrap(),
                None,
                None,
            )
            .unwrap();
        assert_eq!(h1.shape(), &[5]);
        assert_eq!(h1.data(), &h.data()[..5]);
    }
}

/// PyTorch's `reset_parameters`: every parameter ~ U(-1/√hidden_size, 1/√hidden_size), also
/// `weight_hr` (bound from hidden_size, not proj_size). Checked by the range and the first two
/// moments of each tensor (mean 0, variance k²/3), seeds give reproducible, distinct draws.
#[test]
fn default_init_is_pytorch_uniform() {
    let cfg = RnnConfig::lstm(30, 64)
        .num_layers(2)
        .bidirectional(true)
        .proj_size(16);
    let rnn: Rnn<f32> = Rnn::new(cfg.clone(), 123).unwrap();
    let k = 1.0 / (64f64).sqrt();
    for e in rnn.layout().entries() {
        let v = rnn.param(&e.name).unwrap();
        let n = v.len() as f64;
        assert!(
            v.iter().all(|&x| (x as f64).abs() <= k),
            "{} outside ±{k}",
            e.name
        );
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        // Standard errors: mean k/√(3n), variance about k²·0.3/√n.
        assert!(
            mean.abs() < 5.0 * k / (3.0 * n).sqrt(),
            "{}: mean {mean}",
            e.name
        );
        assert!(
            (var - k * k / 3.0).abs() < 5.0 * k * k * 0.3 / n.sqrt(),
            "{}: var {var}",
            e.name
        );
    }
    let again: Rnn<f32> = Rnn::new(cfg.clone(), 123).unwrap();
    assert_eq!(rnn.params(), again.params());
    let other: Rnn<f32> = Rnn::new(cfg, 124).unwrap();
    assert_ne!(rnn.params(), other.params());
}

/// Configuration errors say what is wrong, as PyTorch's constructor does.
#[test]
fn bad_configurations_are_errors() {
    let bad = [
        (RnnConfig::lstm(3, 0), "hidden_size"),
        (RnnConfig::lstm(3, 4).num_layers(0), "num_layers"),
        (RnnConfig::lstm(3, 4).proj_size(4), "proj_size"),
        (RnnConfig::gru(3, 4).proj_size(2), "only supported by LSTM"),
        (RnnConfig::rnn(3, 4).dropout(1.5), "dropout"),
    ];
    for (cfg, want) in bad {
        let e = Rnn::<f32>::new(cfg, 0).err().unwrap().to_string();
        assert!(e.contains(want), "{e}");
    }
}

/// Bad inputs to a forward pass are errors naming the expected and the actual shapes.
#[test]
fn bad_inputs_are_errors() {
    let rnn: Rnn<f32> = Rnn::new(RnnConfig::lstm(3, 4).num_layers(2), 0).unwrap();
    let x = Tensor::zeros(&[5, 2, 3]);
    let cases: Vec<(Result<recur::Output<f32>, recur::Error>, &str)> = vec![
        (
            rnn.forward(&Tensor::zeros(&[5, 2, 4]), None, None),
            "expected 3, got 4",
        ),
        (
            rnn.forward(&Tensor::zeros(&[5, 2, 3, 1]), None, None),
            "3 dimensions",
        ),
        (
            rnn.forward(&Tensor::zeros(&[0, 2, 3]), None, None),
            "sequence length is 0",
        ),
        (
            rnn.forward(&Tensor::zeros(&[5, 0, 3]), None, None),
            "batch is empty",
        ),
        (rnn.forward(&x, None, Some(&[5, 0])), "lengths[1] is 0"),
        (rnn.forward(&x, None, Some(&[6, 1])), "lengths[0] is 6"),
        (rnn.forward(&x, None, Some(&[5])), "one length per sequence"),
        (
            rnn.forward(
                &x,
                Some(&State {
                    h: Tensor::zeros(&[2, 3, 4]),
                    c: None,
                }),
                None,
            ),
            "h0: expected shape (2, 2, 4), got (2, 3, 4)",
        ),
        (
            rnn.forward(
                &x,
                Some(&State {
                    h: Tensor::zeros(&[2, 2, 4]),
                    c: Some(Tensor::zeros(&[1, 2, 4])),
                }),
                None,
            ),
            "c0: expected shape (2, 2, 4), got (1, 2, 4)",
        ),
    ];
    for (r, want) in cases {
        let e = r.expect_err(want).to_string();
        assert!(e.contains(want), "error '{e}' should contain '{want}'");
    }
}

/// Unbatched input (T, input_size) gives what a batch of one gives, with the batch dimension
/// dropped from the output and the states, as PyTorch does.
#[test]
fn unbatched_input_is_a_batch_of_one() {
    let rnn: Rnn<f64> =
        Rnn::new(RnnConfig::lstm(3, 4).num_layers(2).bidirectional(true), 9).unwrap();
    let data: Vec<f64> = (0..15).map(|i| (i as f64 * 0.37).sin()).collect();
    let one = rnn
        .forward(&Tensor::new(&[5, 1, 3], data.clone()).unwrap(), None, None)
        .unwrap();
    let (un, tape) = rnn
        .forward_train(
            &Tensor::new(&[5, 3], data).unwrap(),
            None,
            None,
            Dropout::Off,
        )
        .unwrap();
    assert_eq!(un.output.shape(), &[5, 8]);
    assert_eq!(un.h_n.shape(), &[4, 4]);
    assert_eq!(un.output.data(), one.output.data());
    assert_eq!(un.h_n.data(), one.h_n.data());
    assert_eq!(
        un.c_n.as_ref().unwrap().data(),
        one.c_n.as_ref().unwrap().data()
    );
    let mut grads = rnn.zeros_like_params();
    let g = rnn
        .backward(
            &tape,
            Some(&Tensor::new(&[5, 8], vec![1.0; 40]).unwrap()),
            None,
            None,
            &mut grads,
        )
        .unwrap();
    assert_eq!(g.input.shape(), &[5, 3]);
    assert_eq!(g.h0.shape(), &[4, 4]);
}

/// Sampled dropout: off for p = 0 and in evaluation mode, reproducible for a seed, and it
/// zeroes about p of the units between layers (and never the last layer's output).
#[test]
fn sampled_dropout_between_layers() {
    let mut rnn: Rnn<f64> = Rnn::new(RnnConfig::gru(4, 32).num_layers(2), 1).unwrap();
    let x = Tensor::new(
        &[6, 5, 4],
        (0..120).map(|i| (i as f64 * 0.11).cos()).collect(),
    )
    .unwrap();
    let eval = rnn.forward(&x, None, None).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (p0, _) = rnn
        .forward_train(&x, None, None, Dropout::Sample(&mut rng))
        .unwrap();
    assert_eq!(p0, eval, "dropout 0 changes nothing");
    rnn.set_dropout(0.5).unwrap();
    assert_eq!(
        rnn.forward(&x, None, None).unwrap(),
        eval,
        "evaluation mode has no dropout"
    );
    let run = |rnn: &Rnn<f64>, seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rnn.forward_train(&x, None, None, Dropout::Sample(&mut rng))
            .unwrap()
            .0
    };
    let (a, b, c) = (run(&rnn, 1), run(&rnn, 1), run(&rnn, 2));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(a, eval);
    // p = 1: the second layer sees only zeros, so its output is that of a zero input.
    rnn.set_dropout(1.0).unwrap();
    let all = run(&rnn, 3);
    let top = Rnn::<f64>::from_params(
        RnnConfig::gru(32, 32),
        rnn.params()[rnn.layout().get("weight_ih_l1").unwrap().offset..].to_vec(),
    )
    .unwrap();
    let zero_in = top
        .forward(&Tensor::zeros(&[6, 5, 32]), None, None)
        .unwrap();
    assert_eq!(all.output.data(), zero_in.output.data());
}
