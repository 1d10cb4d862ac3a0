//! Limits: very long sequences train with truncated BPTT in memory that does not grow with
//! the length, and inference over them streams in constant memory; degenerate shapes (a
//! zero-length sequence, lengths longer than the padded input, a hidden size of 0, empty
//! batches) are clear errors, never panics.

use recur::data::text::Batches;
use recur::models::lm::{CharLm, CharLmConfig};
use recur::{Mode, Rnn, RnnConfig, Stream, Tensor};
use recur_kernels::alloc::{current_bytes, peak_bytes, reset_peak, thread_allocations, Tracking};
use std::sync::Mutex;

#[global_allocator]
static A: Tracking = Tracking;

/// The peak is process-wide: tests that measure it take turns.
static SERIAL: Mutex<()> = Mutex::new(());

/// Peak bytes allocated above the level at the start, while `f` runs.
fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = current_bytes();
    reset_peak();
    let r = f();
    (r, peak_bytes().saturating_sub(base))
}

/// A deterministic stream of `n` ids over a vocabulary of 12.
fn ids(n: usize) -> Vec<usize> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 12) as usize
        })
        .collect()
}

/// Trains over `n` steps of one long sequence (batch 1), `seq_len` steps at a time with the
/// state carried: returns the number of chunks.
fn tbptt(model: &CharLm<f32>, batches: &Batches) -> usize {
    let mut grads = model.zeros_like_grads();
    let mut state = None;
    let mut chunks = 0;
    for chunk in batches.iter() {
        grads.zero();
        let (loss, next) = model
            .loss_and_grad(&chunk, state.as_ref(), None, &mut grads)
            .unwrap();
        assert!(loss.is_finite());
        state = Some(next);
        chunks += 1;
    }
    chunks
}

#[test]
fn truncated_bptt_over_100k_steps_uses_the_memory_of_one_chunk() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    recur::set_num_threads(1);
    let cfg = CharLmConfig::new(Mode::Lstm, 12)
        .embed_size(16)
        .hidden_size(64)
        .num_layers(2);
    let model: CharLm<f32> = CharLm::new(cfg, 0).unwrap();
    // The data (8 bytes an id) is allocated before the measurement.
    let long = Batches::new(&ids(100_001), 1, 100).unwrap();
    let short = Batches::new(&ids(2_001), 1, 100).unwrap();
    // Warm the buffer pool, then measure a short and a 50x longer sequence.
    tbptt(&model, &short);
    let (c1, p_short) = peak_during(|| tbptt(&model, &short));
    let (c2, p_long) = peak_during(|| tbptt(&model, &long));
    assert_eq!((c1, c2), (20, 1000));
    println!(
        "peak above baseline: {:.1} KiB for 2,000 steps, {:.1} KiB for 100,000 steps",
        p_short as f64 / 1024.0,
        p_long as f64 / 1024.0
    );
    // Memory does not grow with the length.
    assert!(
        p_long <= p_short + p_short / 10 + 64 * 1024,
        "peak grew from {p_short} to {p_long} bytes"
    );
    recur::release_buffers();
}

#[test]
fn streaming_inference_over_100k_steps_runs_in_constant_memory() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rnn: Rnn<f32> = Rnn::new(RnnConfig::gru(8, 32).num_layers(2), 1).unwrap();
    let mut stream = Stream::new(&rnn, 1).unwrap();
    let x: Vec<f32> = (0..8).map(|k| k as f32 / 8.0 - 0.5).collect();
    stream.step(&x).unwrap();
    // Count this thread's allocations (the process-wide peak also sees the test harness's
    // other threads).
    let before = thread_allocations();
    for _ in 0..100_000 {
        stream.step(&x).unwrap();
    }
    let n = thread_allocations() - before;
    println!("allocations in 100,000 streamed steps: {n}");
    assert_eq!(n, 0, "a streamed step allocated");
    assert!(stream.step(&x).unwrap().iter().all(|v| v.is_finite()));
}

fn err<T>(r: recur::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn degenerate_shapes_are_clear_errors() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rnn: Rnn<f32> = Rnn::new(RnnConfig::lstm(3, 4).batch_first(true), 0).unwrap();
    let x = Tensor::new(&[2, 5, 3], vec![0.1f32; 30]).unwrap();
    let e = err(rnn.forward(&x, None, Some(&[5, 0])));
    assert!(e.contains("lengths[1] is 0"), "{e}");
    let e = err(rnn.forward(&x, None, Some(&[6, 2])));
    assert!(
        e.contains("lengths[0] is 6, longer than the input's 5 steps"),
        "{e}"
    );
    let e = err(rnn.forward(&x, None, Some(&[5])));
    assert!(e.contains("one length per sequence (2), got 1"), "{e}");
    let e = err(Rnn::<f32>::new(RnnConfig::gru(3, 0), 0));
    assert!(e.contains("hidden_size must be greater than zero"), "{e}");
    // Sizes whose parameter count overflows are an error, not an overflow or an abort.
    let e = err(Rnn::<f32>::new(RnnConfig::lstm(3, usize::MAX / 2), 0));
    assert!(e.contains("more parameters than memory can address"), "{e}");
    let e = err(Rnn::<f32>::new(
        RnnConfig::gru(1 << 40, 1 << 30).num_layers(3),
        0,
    ));
    assert!(e.contains("more parameters than memory can address"), "{e}");
    assert_eq!(RnnConfig::lstm(10, 20).checked_num_params(), Some(2560));
    let wrong = Tensor::new(&[2, 5, 4], vec![0.0f32; 40]).unwrap();
    let e = err(rnn.forward(&wrong, None, None));
    assert!(e.contains('3') && e.contains('4'), "{e}");
    // No steps or no sequences.
    for shape in [[2usize, 0, 3], [0, 5, 3]] {
        let empty = Tensor::new(&shape, vec![]).unwrap();
        match rnn.forward(&empty, None, None) {
            Ok(o) => assert_eq!(o.output.data().len(), 0),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    let e = err(Batches::new(&ids(10), 0, 4));
    assert!(e.contains("batch_size must be at least 1"), "{e}");
    let e = err(CharLm::<f32>::new(
        CharLmConfig::new(Mode::Lstm, 12).hidden_size(0),
        0,
    ));
    assert!(e.contains("hidden_size must be at least 1"), "{e}");
}
