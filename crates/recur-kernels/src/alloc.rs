//! A global allocator that keeps score: bytes in use, their peak, and the number of
//! allocations made by the calling thread. Used by `recur bench` (peak memory) and by tests
//! that prove the time loops allocate nothing. Install it with
//! `#[global_allocator] static A: recur_kernels::alloc::Tracking = recur_kernels::alloc::Tracking;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The tracking allocator (forwards to the system allocator).
pub struct Tracking;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNT: Cell<usize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn grew(n: usize) {
    let now = CURRENT.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
    // `try_with`: the thread-locals may already be gone while a thread shuts down.
    let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    let _ = LARGEST.try_with(|c| c.set(c.get().max(n)));
}

// SAFETY: every method forwards to `System` with the same arguments and returns its result
// unchanged; the bookkeeping only touches atomics and a const-initialized thread-local `Cell`
// (which never allocates), so the allocator's contract is the system allocator's.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        grew(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

/// Bytes currently allocated (through [`Tracking`]).
pub fn current_bytes() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// The most bytes allocated at once since the last [`reset_peak`].
pub fn peak_bytes() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Starts a new peak measurement from the current level.
pub fn reset_peak() {
    PEAK.store(CURRENT.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// How many allocations (and reallocations) the calling thread has made.
pub fn thread_allocations() -> usize {
    COUNT.with(|c| c.get())
}

/// Runs `f` and returns its result with the largest single allocation it made on the calling
/// thread (0 if none).
pub fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let saved = LARGEST.with(|c| c.replace(0));
    let r = f();
    let largest = LARGEST.with(|c| c.replace(saved.max(c.get())));
    (r, largest)
}
