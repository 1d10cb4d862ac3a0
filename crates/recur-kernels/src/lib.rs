//! Numerical kernels for recur.
//!
//! This is the only crate of the workspace that contains `unsafe` code. It holds:
//! - [`Real`]: the floating-point types recur computes in (`f32` for speed, `f64` for
//!   reference and gradient checks);
//! - [`gemm`](mod@gemm): a bounds-checked, strided matrix-multiply front end over the `gemm`
//!   crate (which detects AVX2/AVX-512 at run time), next to a naive reference;
//! - [`cells`]: the fused element-wise gate arithmetic of the RNN, LSTM and GRU cells, forward
//!   and backward, over flat row-major buffers;
//! - [`packed`]: the product with a right-hand side packed once and reused at every time
//!   step (AVX2+FMA microkernel, optional bias epilogue);
//! - [`lstm`]: the LSTM's recurrent product and cell update as one kernel, and its whole time
//!   loop;
//! - [`gru`], [`rnn`]: the GRU's and the Elman RNN's whole time loops;
//! - [`half`]: weights stored as f16 or bf16 and widened on the fly (reduced-precision
//!   inference); [`quant`]: int8 weights with activations quantized at every step;
//! - [`team`]: a time loop shared by several threads that hand each step over by spinning;
//!   [`duo`]: a helper thread kept awake across calls for the halves of small streaming steps;
//! - [`pool`]: scratch buffers reused across calls; [`alloc`]: an allocator that keeps count.
//!
//! Every buffer is row-major; shapes are given in comments as `(rows, cols)`.

pub mod alloc;
pub mod cells;
pub mod cpu;
pub mod duo;
pub mod gemm;
pub mod gru;
pub mod half;
pub mod lstm;
pub mod packed;
pub mod pool;
pub mod quant;
mod real;
pub mod rnn;
#[cfg(target_arch = "x86_64")]
mod simd;
pub mod team;

pub use real::Real;

use std::any::TypeId;
use std::sync::atomic::{AtomicUsize, Ordering};

static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets how many threads the large matrix multiplies may use (0 = all available cores).
pub fn set_num_threads(n: usize) {
    NUM_THREADS.store(n, Ordering::Relaxed);
}

/// The number of threads the large matrix multiplies use.
pub fn num_threads() -> usize {
    match NUM_THREADS.load(Ordering::Relaxed) {
        0 => available_cores(),
        n => n,
    }
}

/// The cores this process may use, asked once (the query reads cgroup files, far too slow to
/// repeat for every matrix product).
fn available_cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

/// The sum of `x`, read as fast as the CPU loads (AVX2 when present): a probe of the memory
/// bandwidth a kernel that streams `x` can get (see `examples/time_loops.rs`).
pub fn read_all(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if cpu::features().avx2_fma {
        // SAFETY: the CPU has AVX2+FMA; `sum` reads only inside the slice.
        return unsafe { simd::sum(x) };
    }
    x.iter().sum()
}

/// `x` as f32 values when `T` is f32 (the fast kernels are written for f32).
pub fn as_f32<T: 'static>(x: &[T]) -> Option<&[f32]> {
    (TypeId::of::<T>() == TypeId::of::<f32>()).then(|| {
        // SAFETY: T is f32 (same TypeId), so the memory is a valid [f32] of the same length.
        unsafe { std::slice::from_raw_parts(x.as_ptr() as *const f32, x.len()) }
    })
}

/// `x` as mutable f32 values when `T` is f32.
pub fn as_f32_mut<T: 'static>(x: &mut [T]) -> Option<&mut [f32]> {
    (TypeId::of::<T>() == TypeId::of::<f32>()).then(|| {
        // SAFETY: T is f32 (same TypeId), so the memory is a valid [f32] of the same length,
        // and the exclusive borrow moves into the returned slice.
        unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr() as *mut f32, x.len()) }
    })
}
