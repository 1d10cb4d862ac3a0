//! The fused one-row GRU and LSTM steps (batch 1, f32) against the plain step of a batch-2
//! stream fed the same input in both rows (the packed products and the cell kernel), over
//! several steps, on one thread and split between two (H = 210 with input 13 is large enough
//! to split).

use recur::{Rnn, RnnConfig, Stream};

fn input(t: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((t * 31 + i * 7) as f32 * 0.37).sin())
        .collect()
}

fn check(lstm: bool) {
    for threads in [1, 2] {
        recur::set_num_threads(threads);
        for h in [1, 3, 7, 8, 9, 15, 16, 17, 33, 100, 210] {
            for inp in [1, 4, 13] {
                if h > 100 && inp != 13 {
                    continue;
                }
                for bias in [false, true] {
                    for layers in [1, 2] {
                        let cfg = if lstm {
                            RnnConfig::lstm(inp, h)
                        } else {
                            RnnConfig::gru(inp, h)
                        };
                        let cfg = cfg.bias(bias).num_layers(layers);
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
                            if lstm {
                                let (ca, cb) = (sa.c.as_ref().unwrap(), sb.c.as_ref().unwrap());
                                let (ra, rb) = (&ca.data()[l * h..], &cb.data()[2 * l * h..]);
                                for u in 0..h {
                                    assert!((ra[u] - rb[u]).abs() < 2e-5, "c layer {l} unit {u}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    recur::set_num_threads(1);
}

#[test]
fn fused_gru_and_lstm_steps_match_the_plain_step() {
    // One test: both change the process-wide thread count.
    check(false);
    check(true);
}
