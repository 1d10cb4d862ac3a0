//! A second thread kept across calls, for steps too small to wake a thread each time.
//!
//! One streaming step of a mid-sized model takes a few microseconds: waking a sleeping thread
//! for it costs more than the step. [`Duo::run`] instead hands half of a step to one helper
//! thread that stays awake between calls. The helper spins for [`SPIN`] after each job (so a
//! stream stepped in a loop finds it awake) and then sleeps until the next job wakes it.
//! Because the same half always runs on the helper's core, that half of the weights stays in
//! that core's L2 cache, and the calling core keeps the other half in its own.
//!
//! Robust to an absent helper: the caller runs part 0, then claims part 1 itself if the helper
//! has not claimed it yet (asleep, or without a core on a busy machine), so a call never waits
//! for a thread that has not started. Only one caller uses the helper at a time; a second
//! caller (another thread) that finds it busy runs both parts itself.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, TryLockError};
use std::time::{Duration, Instant};

/// How long the helper keeps spinning after a job before it goes to sleep.
pub const SPIN: Duration = Duration::from_micros(200);

/// The job: a borrowed closure whose lifetime is erased while it is posted (see `run`).
type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// The number of the latest job posted (jobs count from 1).
    posted: AtomicU64,
    /// The number of the latest job whose part 1 somebody claimed.
    claimed: AtomicU64,
    /// The number of the latest job whose part 1 has finished.
    done: AtomicU64,
    /// Set if part 1 panicked on the helper.
    panicked: AtomicBool,
    /// Whether the helper is asleep (or about to be) on `wake`.
    sleeping: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
    /// The posted job; written only by the caller holding [`Duo`]'s lock, before `posted`,
    /// while no part 1 of an earlier job is running.
    job: UnsafeCell<Option<Job>>,
}

// SAFETY: `job` is written by one caller at a time (the `callers` mutex) only when no part 1 is
// running or can still be claimed (see `Duo::run`), and read only by the thread that claimed
// part 1 of the current job; every other field is atomic or a lock.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer in `job` is only dereferenced under that protocol.
unsafe impl Send for Shared {}

/// A helper thread that runs part 1 of two-part jobs (see the module documentation).
pub struct Duo {
    shared: Arc<Shared>,
    /// Held by the caller of a job for its duration.
    callers: Mutex<u64>,
}

impl Duo {
    /// Starts the helper thread; `None` if the system refuses a thread.
    fn start() -> Option<Duo> {
        let shared = Arc::new(Shared {
            posted: AtomicU64::new(0),
            claimed: AtomicU64::new(0),
            done: AtomicU64::new(0),
            panicked: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            job: UnsafeCell::new(None),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("recur-duo".into())
            .spawn(move || helper(&s))
            .ok()?;
        Some(Duo {
            shared,
            callers: Mutex::new(0),
        })
    }

    /// The process's helper, started on first use; `None` if it could not be started.
    pub fn get() -> Option<&'static Duo> {
        static DUO: OnceLock<Option<Duo>> = OnceLock::new();
        DUO.get_or_init(Duo::start).as_ref()
    }

    /// Runs `part(0)` on the calling thread and `part(1)` on the helper (or on the calling
    /// thread after part 0, if the helper has not claimed it by then, or if another caller is
    /// using the helper); returns when both have finished.
    ///
    /// # Panics
    /// If `part` panics (on either thread).
    pub fn run(&self, part: &(dyn Fn(usize) + Sync)) {
        let mut n = match self.callers.try_lock() {
            Ok(n) => n,
            Err(TryLockError::WouldBlock) => {
                part(0);
                part(1);
                return;
            }
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
        };
        let s = &*self.shared;
        *n += 1;
        let id = *n;
        // SAFETY: only the caller holding `callers` writes `job`; job id-1 is finished
        // (`done` reached it below before the previous caller returned, or its part 1 was
        // never claimed by the helper), and the helper reads `job` only after claiming the
        // current id, which needs `posted` = id, stored after this write. The lifetime of
        // `part` is erased here and the pointer is used only until `done` reaches id, before
        // this function returns.
        unsafe {
            let job: *const (dyn Fn(usize) + Sync + '_) = part;
            *s.job.get() =
                Some(std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), Job>(job));
        }
        s.posted.store(id, Ordering::SeqCst);
        if s.sleeping.load(Ordering::SeqCst) {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_one();
        }
        // From here the helper may be running `part`: whatever happens (part 0 may panic),
        // this call returns only once part 1 has finished or can no longer start.
        let mut end = End { s, id, mine: false };
        part(0);
        if s.claimed
            .compare_exchange(id - 1, id, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            end.mine = true;
            part(1);
        }
        drop(end);
        if s.panicked.swap(false, Ordering::AcqRel) {
            panic!("Duo::run: part 1 panicked on the helper thread");
        }
    }
}

/// Runs `part(s0, s1)` over the slices `0..slices` of one step: as two halves, the calling
/// thread's and the helper's ([`Duo::run`]), when `threads` ≥ 2, `slices` ≥ 2 and the step does
/// at least [`crate::team::MIN_WORK`] multiply-adds (`work`); otherwise as one part on the
/// calling thread. The same half always goes to the same thread.
pub fn halves(slices: usize, work: usize, threads: usize, part: &(dyn Fn(usize, usize) + Sync)) {
    let duo = (slices >= 2 && work >= crate::team::MIN_WORK && threads >= 2)
        .then(Duo::get)
        .flatten();
    match duo {
        Some(duo) => {
            let mid = slices / 2;
            duo.run(&|p| {
                if p == 0 {
                    part(0, mid)
                } else {
                    part(mid, slices)
                }
            });
        }
        None => part(0, slices),
    }
}

/// Ends a job on the caller's side when dropped: marks part 1 finished if the caller claimed
/// it (or claims it now so the helper cannot start it), else waits for the helper to finish.
struct End<'a> {
    s: &'a Shared,
    id: u64,
    mine: bool,
}

impl Drop for End<'_> {
    fn drop(&mut self) {
        let (s, id) = (self.s, self.id);
        if self.mine
            || s.claimed
                .compare_exchange(id - 1, id, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            s.done.store(id, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) < id {
            spins += 1;
            if spins < 1 << 14 {
                std::hint::spin_loop();
            } else {
                // The helper may have lost its core (the machine is shared).
                std::thread::yield_now();
            }
        }
    }
}

/// The helper's loop: waits for a job, claims its part 1, runs it.
fn helper(s: &Shared) {
    let mut seen = 0u64;
    loop {
        // Spin for a new job, then sleep.
        let started = Instant::now();
        let mut spins = 0u32;
        let id = loop {
            let p = s.posted.load(Ordering::Acquire);
            if p > seen {
                break p;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(256) && started.elapsed() > SPIN {
                let mut g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
                s.sleeping.store(true, Ordering::SeqCst);
                while s.posted.load(Ordering::SeqCst) <= seen {
                    g = s.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                s.sleeping.store(false, Ordering::SeqCst);
            } else {
                std::hint::spin_loop();
            }
        };
        seen = id;
        if s.claimed
            .compare_exchange(id - 1, id, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            // SAFETY: this thread claimed part 1 of job `id`, so the caller that posted it
            // waits for `done` = id before returning or posting again: `job` holds that job's
            // closure, alive until then (written before `posted` = id, which the Acquire load
            // above or the claim saw).
            let job = unsafe { (*s.job.get()).expect("a posted job") };
            // SAFETY: as above, the closure outlives this call.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { (*job)(1) }));
            if r.is_err() {
                s.panicked.store(true, Ordering::Release);
            }
            s.done.store(id, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn both_parts_run_once_per_call() {
        let duo = Duo::get().expect("a helper thread");
        let counts = [AtomicUsize::new(0), AtomicUsize::new(0)];
        for i in 0..20_000 {
            duo.run(&|p| {
                counts[p].fetch_add(1, Ordering::Relaxed);
            });
            // A pause now and then lets the helper fall asleep, so waking it is tested too.
            if i % 5000 == 0 {
                std::thread::sleep(SPIN * 3);
            }
        }
        assert_eq!(counts[0].load(Ordering::Relaxed), 20_000);
        assert_eq!(counts[1].load(Ordering::Relaxed), 20_000);
    }

    #[test]
    fn callers_on_several_threads_each_get_both_parts() {
        let duo = Duo::get().expect("a helper thread");
        let total = AtomicUsize::new(0);
        std::thread::scope(|sc| {
            for _ in 0..3 {
                sc.spawn(|| {
                    for _ in 0..2000 {
                        let hits = [AtomicUsize::new(0), AtomicUsize::new(0)];
                        duo.run(&|p| {
                            hits[p].fetch_add(1, Ordering::Relaxed);
                        });
                        assert_eq!(hits[0].load(Ordering::Relaxed), 1);
                        assert_eq!(hits[1].load(Ordering::Relaxed), 1);
                        total.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 6000);
    }
}
