//! Measures recur's f32 GEMM throughput on shapes that matter for RNNs and on a large square
//! product (the machine's practical peak):
//!
//!     cargo run --release -p recur-kernels --example gemm_peak [threads]

use recur_kernels::gemm::{matmul, MatMut, MatRef, Par};
use std::time::Instant;

fn bench(m: usize, n: usize, k: usize, bt: bool, par: Par) -> f64 {
    let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0.0f32; m * n];
    let bv = if bt {
        MatRef::new(&b, n, k).t()
    } else {
        MatRef::new(&b, k, n)
    };
    let run =
        |c: &mut Vec<f32>| matmul(MatMut::new(c, m, n), MatRef::new(&a, m, k), bv, false, par);
    run(&mut c);
    let mut best = f64::MAX;
    let start = Instant::now();
    let mut reps = 0;
    while reps < 5 || start.elapsed().as_secs_f64() < 1.0 {
        let t = Instant::now();
        run(&mut c);
        best = best.min(t.elapsed().as_secs_f64());
        reps += 1;
    }
    2.0 * (m * n * k) as f64 / best / 1e9
}

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    recur_kernels::set_num_threads(threads);
    println!("threads: {}", recur_kernels::num_threads());
    for (m, n, k, bt, par, what) in [
        (
            2048,
            2048,
            2048,
            false,
            Par::Threads,
            "square 2048, threads",
        ),
        (2048, 2048, 2048, false, Par::Seq, "square 2048, 1 thread"),
        (
            64,
            2048,
            512,
            true,
            Par::Seq,
            "step: h(64x512) W_hh^T (512x2048), 1 thread",
        ),
        (
            64,
            2048,
            512,
            true,
            Par::Threads,
            "step: h(64x512) W_hh^T, threads",
        ),
        (
            64,
            512,
            128,
            true,
            Par::Seq,
            "small step: h(64x128) W_hh^T (128x512), 1 thread",
        ),
        (
            6400,
            2048,
            512,
            true,
            Par::Threads,
            "input projection 6400x512 W_ih^T, threads",
        ),
    ] {
        println!("{what:<50} {:>7.1} GFLOP/s", bench(m, n, k, bt, par));
    }
    for (m, n, k) in [
        (64, 2048, 512),
        (64, 512, 128),
        (32, 2048, 512),
        (1, 1024, 256),
    ] {
        println!(
            "packed {m}x{k} * {k}x{n} (threads as set)            {:>7.1} GFLOP/s",
            bench_packed(m, n, k)
        );
    }
    for (m, n, k) in [(6400, 2048, 512), (64, 2048, 512)] {
        println!(
            "packed {m}x{k} * {k}x{n} (threads as set)          {:>7.1} GFLOP/s",
            bench_packed(m, n, k)
        );
    }
    for (m, n, k) in [(3200, 2048, 512), (3200, 512, 100)] {
        println!(
            "2 groups of {m}x{k} * {k}x{n} (input projection)     {:>7.1} GFLOP/s",
            bench_groups(m, n, k)
        );
    }
    for (m, n, k) in [(16, 2048, 512), (32, 2048, 512), (32, 512, 128)] {
        println!(
            "2 groups of {m}x{k} * {k}x{n}, one per thread          {:>7.1} GFLOP/s",
            bench_groups(m, n, k)
        );
    }
}

/// The packed recurrent product (weights packed once, reused every call).
fn bench_packed(m: usize, n: usize, k: usize) -> f64 {
    use recur_kernels::packed::PackedB;
    let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let w: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0.0f32; m * n];
    let mut pb = PackedB::new();
    pb.pack(MatRef::new(&w, n, k).t());
    pb.matmul(m, &a, k, &mut c, n, false);
    let mut best = f64::MAX;
    let start = Instant::now();
    let mut reps = 0;
    while reps < 5 || start.elapsed().as_secs_f64() < 1.0 {
        let t = Instant::now();
        pb.matmul(m, &a, k, &mut c, n, false);
        best = best.min(t.elapsed().as_secs_f64());
        reps += 1;
    }
    2.0 * (m * n * k) as f64 / best / 1e9
}

/// Two independent packed products at once, one per thread (the engine's row groups).
fn bench_groups(m: usize, n: usize, k: usize) -> f64 {
    use recur_kernels::packed::PackedB;
    let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let w: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let (mut c1, mut c2) = (vec![0.0f32; m * n], vec![0.0f32; m * n]);
    let mut pb = PackedB::new();
    pb.pack(MatRef::new(&w, n, k).t());
    let mut best = f64::MAX;
    let start = Instant::now();
    let mut reps = 0;
    while reps < 5 || start.elapsed().as_secs_f64() < 1.0 {
        let t = Instant::now();
        rayon::join(
            || pb.matmul_with(m, &a, k, &mut c1, n, false, false),
            || pb.matmul_with(m, &a, k, &mut c2, n, false, false),
        );
        best = best.min(t.elapsed().as_secs_f64());
        reps += 1;
    }
    2.0 * 2.0 * (m * n * k) as f64 / best / 1e9
}
