//! The regularized and cell-variant layers split a batch of 16 rows or more into row groups,
//! one time loop per thread. Here, in f64 with fixed masks and ragged lengths, batches of 16
//! to 19 rows: the forward pass against the plain step-by-step reference
//! (`reference::regular_forward`, for PyTorch's cells), and the forward and BPTT (weight, input and state
//! gradients) with two threads against the same pass on one thread (one group).
//!
//! The thread count is process-wide, so this file holds one test.
#![allow(clippy::needless_range_loop)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recur::core::reference;
use recur::core::regular::Masks;
use recur::core::tolerance::F64_VS_TORCH;
use recur::{Mode, Rnn, RnnConfig, State, Tensor};

fn randn(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

/// Everything one pass gives: output, h_n, c_n, the parameter gradients, d input, d h0, d c0.
fn pass(
    model: &Rnn<f64>,
    x: &Tensor<f64>,
    st: &State<f64>,
    lengths: &[usize],
    masks: &Masks<f64>,
    gy: &Tensor<f64>,
) -> Vec<Vec<f64>> {
    let (out, tape) = model
        .forward_train_masked(x, Some(st), Some(lengths), masks)
        .unwrap();
    let mut grads = model.zeros_like_params();
    let g = model
        .backward(&tape, Some(gy), None, None, &mut grads)
        .unwrap();
    let mut v = vec![
        out.output.data().to_vec(),
        out.h_n.data().to_vec(),
        out.c_n.map(|c| c.data().to_vec()).unwrap_or_default(),
        grads,
        g.input.data().to_vec(),
        g.h0.data().to_vec(),
    ];
    v.push(g.c0.map(|c| c.data().to_vec()).unwrap_or_default());
    v
}

#[test]
fn row_groups_match_one_group_and_the_reference() {
    let names = ["output", "h_n", "c_n", "grads", "d input", "d h0", "d c0"];
    let all = |c: RnnConfig| {
        c.num_layers(2)
            .layer_norm(true)
            .input_dropout(0.2)
            .recurrent_dropout(0.3)
            .zoneout(0.25)
            .weight_drop(0.3)
            .dropout(0.3)
    };
    let cases: Vec<(RnnConfig, usize)> = vec![
        (all(RnnConfig::lstm(3, 5)), 19),
        (all(RnnConfig::gru(3, 5)), 16),
        (all(RnnConfig::rnn(3, 5)), 17),
        (all(RnnConfig::lstm(3, 5)).locked_dropout(true), 18),
        (
            RnnConfig::gru(3, 5)
                .linear_before_reset(false)
                .clip(Some(0.9)),
            17,
        ),
        (RnnConfig::lstm(3, 5).peepholes(true).clip(Some(0.8)), 16),
        (
            RnnConfig::lstm(3, 5)
                .peepholes(true)
                .bidirectional(true)
                .num_layers(2),
            18,
        ),
        (
            RnnConfig::gru(3, 5)
                .linear_before_reset(false)
                .bidirectional(true),
            16,
        ),
    ];
    for (k, (cfg, b)) in cases.into_iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(40 + k as u64);
        let n = Rnn::<f64>::new(cfg.clone(), 0).unwrap().params().len();
        let model = Rnn::from_params(cfg.clone(), randn(&mut rng, n)).unwrap();
        let (t, i, h) = (6, cfg.input_size, cfg.hidden_size);
        let (nl, nd) = (cfg.num_layers, cfg.num_directions());
        let lstm = cfg.mode == Mode::Lstm;
        let lengths: Vec<usize> = (0..b).map(|_| rng.gen_range(1..=t)).collect();
        let x = randn(&mut rng, t * b * i);
        let h0 = randn(&mut rng, nl * nd * b * h);
        let c0 = if lstm {
            randn(&mut rng, nl * nd * b * h)
        } else {
            vec![]
        };
        let masks: Masks<f64> = Masks::sample(&cfg, t, b, &mut rng);
        let xt = Tensor::new(&[t, b, i], x.clone()).unwrap();
        let st = State {
            h: Tensor::new(&[nl * nd, b, h], h0.clone()).unwrap(),
            c: lstm.then(|| Tensor::new(&[nl * nd, b, h], c0.clone()).unwrap()),
        };
        let gy = Tensor::new(&[t, b, nd * h], randn(&mut rng, t * b * nd * h)).unwrap();
        recur_kernels::set_num_threads(1);
        let one = pass(&model, &xt, &st, &lengths, &masks, &gy);
        recur_kernels::set_num_threads(2);
        let two = pass(&model, &xt, &st, &lengths, &masks, &gy);
        let name = format!("case {k} ({:?}, B {b})", cfg.mode);
        for ((what, a), e) in names.iter().zip(&two).zip(&one) {
            assert_eq!(a.len(), e.len(), "{name}: {what} size");
            for (j, (x, y)) in a.iter().zip(e).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-12 * (1.0 + y.abs()),
                    "{name}: {what}[{j}] with row groups {x} vs one group {y}"
                );
            }
        }
        // The reference has PyTorch's cells only.
        if nd == 1 && cfg.cell.is_default() {
            let r = reference::regular_forward(&model, &x, t, b, &h0, &c0, &lengths, &masks);
            for (what, got, want) in [
                ("output", &two[0], &r.output),
                ("h_n", &two[1], &r.h_n),
                ("c_n", &two[2], &r.c_n),
            ] {
                assert_eq!(got.len(), want.len(), "{name}: {what} size");
                for (a, e) in got.iter().zip(want) {
                    assert!(
                        F64_VS_TORCH.ok(*a, *e),
                        "{name}: {what} {a} vs reference {e}"
                    );
                }
            }
        }
    }
    recur_kernels::set_num_threads(0);
}
