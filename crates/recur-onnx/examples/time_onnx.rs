//! Times `Model::run` in process: `time_onnx MODEL.onnx INPUTS.safetensors THREADS ITERS`
//! prints one JSON line with the median and minimum milliseconds per run (after warm-up runs,
//! which also build the fast layers kept across runs). Used by scripts/bench_onnx.py.

use recur_onnx::io::read_safetensors;
use recur_onnx::Model;
use std::collections::HashMap;
use std::time::Instant;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 5 {
        eprintln!("usage: time_onnx MODEL.onnx INPUTS.safetensors THREADS ITERS");
        std::process::exit(2);
    }
    let model = Model::read(&a[1]).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    });
    let feeds: HashMap<_, _> = read_safetensors(a[2].as_ref())
        .unwrap()
        .into_iter()
        .collect();
    recur::set_num_threads(a[3].parse().unwrap());
    let iters: usize = a[4].parse().unwrap();
    for _ in 0..3 {
        model.run(&feeds, "inputs").unwrap();
    }
    let mut ms = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let out = model.run(&feeds, "inputs").unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(out);
    }
    ms.sort_by(|x, y| x.partial_cmp(y).unwrap());
    println!(
        "{{\"median_ms\": {:.4}, \"min_ms\": {:.4}}}",
        ms[ms.len() / 2],
        ms[0]
    );
}
