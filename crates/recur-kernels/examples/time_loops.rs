//! The measurements behind "Where the time goes" in docs/benchmarks.md, kernel by kernel, each
//! the best of many repetitions (stable on a shared machine where whole rows are not):
//!
//!     cargo run --release -p recur-kernels --example time_loops
//!
//! 1. read bandwidth of one core over buffers of 128 KiB to 8 MiB (L2, then L3);
//! 2. the packed product against the general GEMM on the shapes of the input projection, the
//!    recurrent step and the input gradient (1 thread);
//! 3. the hand-off between the threads of a team, per step;
//! 4. the time loop of a batch-1, hidden-256 LSTM and GRU (100 steps, as `stream-seq100`) and
//!    a hidden-512 tanh RNN, on 1 and 2 threads;
//! 5. the fused LSTM loop on the row groups of `small` and `large`/`charlm` (1 thread).

use recur_kernels::gemm::{matmul, MatMut, MatRef, Par};
use recur_kernels::lstm::LstmPackedB;
use recur_kernels::packed::PackedB;
use recur_kernels::{gru, rnn};
use std::hint::black_box;
use std::time::Instant;

/// Best time in seconds of `f` over at least `reps` runs and 0.3 s.
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let (start, mut best, mut n) = (Instant::now(), f64::MAX, 0);
    while n < reps || start.elapsed().as_secs_f64() < 0.3 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        n += 1;
    }
    best
}

fn vals(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.01)
        .collect()
}

fn main() {
    recur_kernels::set_num_threads(1);
    println!("read bandwidth, one core (sum of a buffer read again and again)");
    for kib in [128usize, 256, 512, 1024, 2048, 4096, 8192] {
        let x = vals(kib * 256);
        let s = best(20, || {
            black_box(recur_kernels::read_all(black_box(&x)));
        });
        println!("  {kib:5} KiB: {:6.1} GB/s", (kib * 1024) as f64 / s / 1e9);
    }

    println!(
        "products, 1 thread, GFLOP/s: packed kernel | general GEMM (C = A·B, B given as (k, n))"
    );
    for (what, m, k, n) in [
        ("input projection, small", 3200usize, 100usize, 512usize),
        ("input projection, k = 128", 3200, 128, 2048),
        ("input projection, large", 3200, 512, 2048),
        ("recurrent step, large", 64, 512, 2048),
        ("input gradient dx, large", 6400, 2048, 512),
    ] {
        let (a, w) = (vals(m * k), vals(k * n));
        let mut c = vec![0f32; m * n];
        let mut pb = PackedB::new();
        pb.pack(MatRef::new(&w, k, n));
        let packed = best(5, || pb.matmul(m, &a, k, &mut c, n, false));
        let general = best(5, || {
            matmul(
                MatMut::new(&mut c, m, n),
                MatRef::new(&a, m, k),
                MatRef::new(&w, k, n),
                false,
                Par::Seq,
            )
        });
        let gf = 2.0 * (m * n * k) as f64 / 1e9;
        println!(
            "  {what:28} {m}x{k}x{n}: {:5.1} | {:5.1}",
            gf / packed,
            gf / general
        );
    }

    let pool2 = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    // 200 steps of ~1 µs of spinning each, as 1 chunk doing both halves' work vs 2 chunks.
    let spin = |iters: usize| {
        for _ in 0..iters {
            std::hint::spin_loop();
        }
    };
    let alone = best(20, || recur_kernels::team::run(200, 1, &|_, _| spin(400)));
    let pair = pool2.install(|| best(20, || recur_kernels::team::run(200, 2, &|_, _| spin(200))));
    println!(
        "team hand-off: {:.2} µs per step (200 steps: 1 thread {:.0} µs, 2 threads {:.0} µs)",
        (pair - alone / 2.0) / 200.0 * 1e6,
        alone * 1e6,
        pair * 1e6
    );

    println!("time loops, 100 steps, batch 1, ms (1 thread | 2 threads)");
    let (tn, b) = (100usize, 1usize);
    let bs = vec![b; tn];
    let h = 256;
    let mut lstm = LstmPackedB::new();
    lstm.pack(&vals(4 * h * h), h, h);
    let mut gh_t = PackedB::new();
    gh_t.pack(MatRef::new(&vals(3 * h * h), 3 * h, h).t());
    let hr = 512;
    let mut rh_t = PackedB::new();
    rh_t.pack(MatRef::new(&vals(hr * hr), hr, hr).t());
    for (what, run) in [
        (
            "LSTM, hidden 256",
            Box::new(|threads: usize| {
                let (mut g, mut hs, mut cs) = (
                    vals(tn * 4 * h),
                    vec![0f32; (tn + 1) * h],
                    vec![0f32; (tn + 1) * h],
                );
                best(20, || {
                    lstm.sequence(b, &bs, false, &mut g, &mut hs, &mut cs, false, threads)
                })
            }) as Box<dyn Fn(usize) -> f64 + Sync>,
        ),
        (
            "GRU, hidden 256",
            Box::new(|threads: usize| {
                let (mut g, mut hs, mut hn, mut gh) = (
                    vals(tn * 3 * h),
                    vec![0f32; (tn + 1) * h],
                    vec![0f32; tn * h],
                    vec![0f32; 3 * h],
                );
                best(20, || {
                    gru::sequence(
                        &gh_t, None, b, &bs, false, &mut g, &mut hs, &mut hn, &mut gh, threads,
                    )
                })
            }),
        ),
        (
            "tanh RNN, hidden 512",
            Box::new(|threads: usize| {
                let (mut g, mut hs) = (vals(tn * hr), vec![0f32; (tn + 1) * hr]);
                best(20, || {
                    rnn::sequence(&rh_t, false, b, &bs, false, &mut g, &mut hs, threads)
                })
            }),
        ),
    ] {
        let one = run(1);
        let two = pool2.install(|| run(2));
        println!("  {what:22} {:6.3} | {:6.3}", one * 1e3, two * 1e3);
    }

    println!("fused LSTM loop, 50 steps, 1 thread, gates read from memory (inference)");
    for (b, h) in [(64usize, 128usize), (32, 128), (32, 512), (16, 512)] {
        let tn = 50;
        let mut pb = LstmPackedB::new();
        pb.pack(&vals(4 * h * h), h, h);
        let bs = vec![b; tn];
        let (mut g, mut hs, mut cs) = (
            vals(tn * b * 4 * h),
            vec![0f32; (tn + 1) * b * h],
            vec![0f32; (tn + 1) * b * h],
        );
        let s = best(5, || {
            pb.sequence(b, &bs, false, &mut g, &mut hs, &mut cs, false, 1)
        });
        let gf = 2.0 * (tn * b * 4 * h * h) as f64 / 1e9;
        println!(
            "  rows {b:2}, hidden {h:3}: {:6.1} µs per step, {:5.1} GFLOP/s",
            s / tn as f64 * 1e6,
            gf / s
        );
    }
}
