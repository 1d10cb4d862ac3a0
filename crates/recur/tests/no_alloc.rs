//! Nothing is allocated inside the time loop: a counting allocator shows that the number of
//! allocations of a forward or backward pass does not grow with the sequence length (T = 10 vs
//! T = 100), and that a streaming step allocates nothing at all.

use recur::{Dropout, Mode, Rnn, RnnConfig, Stream, Tensor};
use recur_kernels::alloc::{thread_allocations, Tracking};

#[global_allocator]
static A: Tracking = Tracking;

fn count<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let before = thread_allocations();
    let r = f();
    (thread_allocations() - before, r)
}

const MODES: [Mode; 4] = [Mode::RnnTanh, Mode::RnnRelu, Mode::Lstm, Mode::Gru];

#[test]
fn allocations_do_not_grow_with_sequence_length() {
    recur::set_num_threads(1);
    for mode in MODES {
        let cfg = RnnConfig::new(mode, 8, 16)
            .num_layers(2)
            .bidirectional(true)
            .proj_size(if mode == Mode::Lstm { 5 } else { 0 });
        let rnn: Rnn<f32> = Rnn::new(cfg, 0).unwrap();
        let mut counts = Vec::new();
        for t in [10usize, 100] {
            let b = 3;
            let x = Tensor::new(&[t, b, 8], vec![0.1; t * b * 8]).unwrap();
            let lengths = [t, t - 3, 2];
            // Warm up (the GEMM library sets up its thread-local workspace on first use).
            let (o, tape) = rnn
                .forward_train(&x, None, Some(&lengths), Dropout::Off)
                .unwrap();
            let g = Tensor::new(o.output.shape(), vec![1.0; o.output.data().len()]).unwrap();
            let mut grads = rnn.zeros_like_params();
            rnn.backward(&tape, Some(&g), None, None, &mut grads)
                .unwrap();
            drop(rnn.forward(&x, None, Some(&lengths)).unwrap());
            // Give the warm-up's buffers back to the reuse pool before counting.
            drop((o, tape));

            let (nf, (o, tape)) = count(|| {
                rnn.forward_train(&x, None, Some(&lengths), Dropout::Off)
                    .unwrap()
            });
            let (nb, _) = count(|| {
                rnn.backward(&tape, Some(&g), None, None, &mut grads)
                    .unwrap()
            });
            let (ni, _) = count(|| rnn.forward(&x, None, Some(&lengths)).unwrap());
            drop(o);
            counts.push((nf, nb, ni));
        }
        // One allocation per step would add at least 90; buffers come from a reuse pool, whose
        // state may shift a few allocations either way.
        let (a, b) = (counts[0], counts[1]);
        assert!(
            b.0 <= a.0 + 5 && b.1 <= a.1 + 5 && b.2 <= a.2 + 5,
            "{mode}: allocations (forward_train, backward, forward) at T=10 {a:?} vs T=100 {b:?}"
        );
    }
}

#[test]
fn streaming_steps_allocate_nothing() {
    recur::set_num_threads(1);
    for mode in MODES {
        let cfg = RnnConfig::new(mode, 8, 16)
            .num_layers(2)
            .proj_size(if mode == Mode::Lstm { 5 } else { 0 });
        let rnn: Rnn<f32> = Rnn::new(cfg, 0).unwrap();
        let mut s = Stream::new(&rnn, 2).unwrap();
        let x = [0.25f32; 16];
        s.step(&x).unwrap();
        let (n, _) = count(|| {
            for _ in 0..100 {
                s.step(&x).unwrap();
            }
        });
        assert_eq!(n, 0, "{mode}: {n} allocations in 100 streaming steps");
    }
}
