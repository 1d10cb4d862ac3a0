//! The per-step product with packed weights allocates nothing, also when it splits its
//! panels between two threads (rayon::join keeps its jobs on the stack).

use recur_kernels::alloc::{thread_allocations, Tracking};
use recur_kernels::gemm::MatRef;
use recur_kernels::packed::{PackedB, THREADS_MIN};

#[global_allocator]
static A: Tracking = Tracking;

#[test]
fn threaded_packed_products_allocate_nothing() {
    recur_kernels::set_num_threads(2);
    let (m, n, k) = (64, 1024, 256);
    assert!(
        m * n * k >= THREADS_MIN,
        "the product must be large enough to be split"
    );
    let a = vec![0.5f32; m * k];
    let w = vec![0.25f32; n * k];
    let mut c = vec![0f32; m * n];
    let mut pb = PackedB::new();
    pb.pack(MatRef::new(&w, n, k).t());
    pb.matmul(m, &a, k, &mut c, n, false); // warm up the thread pool
    let before = thread_allocations();
    for _ in 0..50 {
        pb.matmul(m, &a, k, &mut c, n, true);
    }
    assert_eq!(thread_allocations() - before, 0);
    assert!(c
        .iter()
        .all(|&v| (v - 51.0 * 0.125 * k as f32).abs() < 1e-2));
}
