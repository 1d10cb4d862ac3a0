//! With two threads the batch is split into groups of rows whose time loops run in parallel
//! (dealt round-robin after sorting by length). This must not change any number beyond
//! rounding: every output and gradient equals the single-group run, and the plain reference.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recur::core::reference;
use recur::core::tolerance::F64_VS_TORCH;
use recur::{Dropout, Mode, Rnn, RnnConfig, State, Tensor};

fn run(
    rnn: &Rnn<f64>,
    x: &Tensor<f64>,
    st: &State<f64>,
    lengths: &[usize],
    masks: &[Tensor<f64>],
    gy: &Tensor<f64>,
    gh: &Tensor<f64>,
) -> Vec<Vec<f64>> {
    let (out, tape) = rnn
        .forward_train(x, Some(st), Some(lengths), Dropout::Masks(masks))
        .unwrap();
    let mut grads = rnn.zeros_like_params();
    let g = rnn
        .backward(&tape, Some(gy), Some(gh), None, &mut grads)
        .unwrap();
    let mut v = vec![
        out.output.into_data(),
        out.h_n.into_data(),
        g.input.into_data(),
        g.h0.into_data(),
        grads,
    ];
    if let Some(c) = out.c_n {
        v.push(c.into_data());
    }
    if let Some(c) = g.c0 {
        v.push(c.into_data());
    }
    v
}

#[test]
fn row_groups_give_the_same_numbers() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for mode in [Mode::RnnTanh, Mode::RnnRelu, Mode::Lstm, Mode::Gru] {
        let cfg = RnnConfig::new(mode, 5, 6)
            .num_layers(2)
            .bidirectional(true)
            .proj_size(if mode == Mode::Lstm { 4 } else { 0 })
            .batch_first(true);
        let rnn: Rnn<f64> = Rnn::new(cfg.clone(), 3).unwrap();
        let (b, t) = (19, 7);
        let lengths: Vec<usize> = (0..b).map(|_| rng.gen_range(1..=t)).collect();
        let mut r = |n: usize| -> Vec<f64> { (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect() };
        let width = 2 * cfg.h_out();
        let x = Tensor::new(&[b, t, 5], r(b * t * 5)).unwrap();
        let st = State {
            h: Tensor::new(&[4, b, cfg.h_out()], r(4 * b * cfg.h_out())).unwrap(),
            c: (mode == Mode::Lstm).then(|| Tensor::new(&[4, b, 6], r(4 * b * 6)).unwrap()),
        };
        let masks = vec![Tensor::new(
            &[t, b, width],
            r(t * b * width)
                .into_iter()
                .map(|v| if v > -0.4 { 1.0 / 0.7 } else { 0.0 })
                .collect(),
        )
        .unwrap()];
        let gy = Tensor::new(&[b, t, width], r(b * t * width)).unwrap();
        let gh = Tensor::new(&[4, b, cfg.h_out()], r(4 * b * cfg.h_out())).unwrap();

        recur::set_num_threads(1);
        let one = run(&rnn, &x, &st, &lengths, &masks, &gy, &gh);
        // 2 threads: the two directions at once; 4: also two row groups per direction.
        recur::set_num_threads(4);
        let four = run(&rnn, &x, &st, &lengths, &masks, &gy, &gh);
        recur::set_num_threads(2);
        let two = run(&rnn, &x, &st, &lengths, &masks, &gy, &gh);
        for (threads, got) in [(2, &two), (4, &four)] {
            for (k, (a, e)) in got.iter().zip(&one).enumerate() {
                assert_eq!(a.len(), e.len());
                for (u, v) in a.iter().zip(e) {
                    assert!(
                        F64_VS_TORCH.ok(*u, *v),
                        "{mode}: result {k}: {threads} threads {u} vs 1 thread {v}"
                    );
                }
            }
        }
        // And the forward equals the plain reference (time-major).
        let mut xt = vec![0.0; t * b * 5];
        for s in 0..b {
            for ti in 0..t {
                xt[(ti * b + s) * 5..][..5].copy_from_slice(&x.data()[(s * t + ti) * 5..][..5]);
            }
        }
        let mut plain = rnn.clone();
        plain.set_batch_first(false);
        let c0 = st.c.as_ref().map(|c| c.data().to_vec()).unwrap_or_default();
        let m: Vec<Vec<f64>> = masks.iter().map(|m| m.data().to_vec()).collect();
        let rf = reference::forward(&plain, &xt, t, b, st.h.data(), &c0, &lengths, &m);
        for s in 0..b {
            for ti in 0..t {
                for j in 0..width {
                    let (u, v) = (
                        two[0][(s * t + ti) * width + j],
                        rf.output[(ti * b + s) * width + j],
                    );
                    assert!(
                        F64_VS_TORCH.ok(u, v),
                        "{mode}: output vs reference {u} vs {v}"
                    );
                }
            }
        }
        for (u, v) in two[1].iter().zip(&rf.h_n) {
            assert!(
                F64_VS_TORCH.ok(*u, *v),
                "{mode}: h_n vs reference {u} vs {v}"
            );
        }
    }
}

/// `backward_params` skips the first layer's input gradient and nothing else: the parameter
/// gradients equal `backward`'s bit for bit, at 1 and 2 threads.
#[test]
fn backward_params_gives_the_same_parameter_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for mode in [Mode::RnnTanh, Mode::Lstm, Mode::Gru] {
        for bidir in [false, true] {
            let cfg = RnnConfig::new(mode, 5, 6)
                .num_layers(2)
                .bidirectional(bidir);
            let rnn: Rnn<f32> = Rnn::new(cfg.clone(), 4).unwrap();
            let (t, b) = (6, 3);
            let width = cfg.num_directions() * cfg.h_out();
            let mut r =
                |n: usize| -> Vec<f32> { (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect() };
            let x = Tensor::new(&[t, b, 5], r(t * b * 5)).unwrap();
            let gy = Tensor::new(&[t, b, width], r(t * b * width)).unwrap();
            for threads in [1, 2] {
                recur::set_num_threads(threads);
                let (_, tape) = rnn.forward_train(&x, None, None, Dropout::Off).unwrap();
                let mut all = rnn.zeros_like_params();
                let g = rnn
                    .backward(&tape, Some(&gy), None, None, &mut all)
                    .unwrap();
                assert_eq!(g.input.shape(), &[t, b, 5]);
                let mut params_only = rnn.zeros_like_params();
                rnn.backward_params(&tape, Some(&gy), None, None, &mut params_only)
                    .unwrap();
                assert!(
                    all == params_only,
                    "{mode} bidirectional={bidir} threads={threads}"
                );
                assert!(all.iter().any(|&v| v != 0.0));
            }
        }
    }
}
