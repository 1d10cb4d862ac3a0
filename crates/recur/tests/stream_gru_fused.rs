//! The fused one-row GRU step (batch 1, f32) against the plain step of a batch-2 stream fed the
//! same input in both rows (the packed products and the cell kernel), over several steps.

use recur::{Rnn, RnnConfig, Stream};

fn input(t: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((t * 31 + i * 7) as f32 * 0.37).sin())
        .collect()
}

#[test]
fn fused_gru_step_matches_the_plain_step() {
    for threads in [1, 2] {
        recur::set_num_threads(threads);
        for h in [1, 3, 7, 8, 9, 15, 16, 17, 33, 100] {
            for inp in [1, 4, 13] {
                for bias in [false, true] {
                    for layers in [1, 2] {
                        let cfg = RnnConfig::gru(inp, h).bias(bias).num_layers(layers);
                        let m: Rnn<f32> = Rnn::new(cfg, (h * 7 + inp) as u64).unwrap();
                        let mut one = Stream::new(&m, 1).unwrap();
                        let mut two = Stream::new(&m, 2).unwrap();
                        for t in 0..6 {
                            let x = input(t, inp);
                            let x2: Vec<f32> = x.iter().chain(&x).copied().collect();
                            let a = one.step(&x).unwrap().to_vec();
                            let b = two.step(&x2).unwrap().to_vec();
                            for (u, &v) in a.iter().enumerate() {
                                for w in [b[u], b[h + u]] {
                                    assert!(
                                        (v - w).abs() < 2e-5,
                                        "threads={threads} h={h} in={inp} bias={bias} \
                                         layers={layers} t={t} u={u}: {v} vs {w}"
                                    );
                                }
                            }
                        }
                        let (sa, sb) = (one.state(), two.state());
                        for l in 0..layers {
                            let (ra, rb) = (&sa.h.data()[l * h..], &sb.h.data()[2 * l * h..]);
                            for u in 0..h {
                                assert!((ra[u] - rb[u]).abs() < 2e-5, "state layer {l} unit {u}");
                            }
                        }
                    }
                }
            }
        }
    }
    recur::set_num_threads(1);
}
