//! A time loop shared by several threads, step by step.
//!
//! A recurrent step cannot start before the previous one has finished, so splitting one step
//! across threads needs a hand-off at every step. Calling `rayon::join` per step pays a wake-up
//! of the other thread each time (tens of microseconds when it sleeps), more than a whole step
//! of a small model. [`run`] instead keeps its threads for the whole loop: chunk `c` of every
//! step belongs to thread `c` (so each thread keeps reading the same part of the weights, which
//! stays in its core's caches), and the threads wait for each other by spinning on per-chunk
//! step counters.
//!
//! Robust to absent helpers: the calling thread owns chunk 0 and runs every chunk whose thread
//! has not arrived yet (busy elsewhere, or not woken up yet) itself, so the loop never waits for
//! a thread that has not started, and with one thread it is a plain loop. A helper that arrives
//! late takes its chunk over from the next unclaimed step.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Multiply-adds per step from which the time loops of [`crate::lstm`], [`crate::gru`] and
/// [`crate::rnn`] split their steps between threads (a hand-off costs well under a
/// microsecond; a step this size takes a few).
pub const MIN_WORK: usize = 1 << 17;

/// How many chunks a time loop uses: `threads`, at most `parts`, when a step does at least
/// [`MIN_WORK`] multiply-adds; otherwise 1.
pub fn chunks(work: usize, threads: usize, parts: usize) -> usize {
    if work >= MIN_WORK {
        threads.clamp(1, parts.max(1))
    } else {
        1
    }
}

/// Step number `kk` of a recurrent loop over T+1 state slots, rows sorted by decreasing
/// length: the time t, the rows n that run at t, and the slot read and the slot written.
/// Forward: slot 0 holds the initial state and time t writes slot t+1; reverse: slot T holds
/// it and time t writes slot t.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    pub t: usize,
    pub n: usize,
    pub prev: usize,
    pub new: usize,
}

impl Step {
    pub fn of(kk: usize, batch_sizes: &[usize], reverse: bool) -> Step {
        let tn = batch_sizes.len();
        let t = if reverse { tn - 1 - kk } else { kk };
        let (prev, new) = if reverse { (t + 1, t) } else { (t, t + 1) };
        Step {
            t,
            n: batch_sizes[t],
            prev,
            new,
        }
    }
}

/// [`run`] over the steps of a recurrent loop (see [`Step`]), in time order or reversed.
pub fn run_steps(
    batch_sizes: &[usize],
    reverse: bool,
    chunks: usize,
    f: &(dyn Fn(Step, usize) + Sync),
) {
    run(batch_sizes.len(), chunks, &|kk, c| {
        f(Step::of(kk, batch_sizes, reverse), c)
    });
}

/// The rows that do not run at step `s` keep their state: copies rows `s.n..` (of `width`
/// values, `slot` values per slot) of slot `s.prev` of `buf` to slot `s.new`.
///
/// Safety: `buf` holds both slots; nothing else touches those rows meanwhile.
pub(crate) unsafe fn carry<T: Copy>(buf: *mut T, slot: usize, width: usize, s: Step) {
    let from = s.n * width;
    std::ptr::copy_nonoverlapping(
        buf.add(s.prev * slot + from),
        buf.add(s.new * slot + from),
        slot - from,
    );
}

/// One chunk's counters, on a cache line of its own (the threads spin on them).
#[repr(align(128))]
#[derive(Default)]
struct Slot {
    /// The next step of this chunk that nobody has claimed yet.
    next: AtomicUsize,
    /// How many steps of this chunk are finished (all steps below it).
    done: AtomicUsize,
    /// Whether the chunk's own thread has arrived (from then on only it runs the chunk).
    arrived: AtomicBool,
}

struct Shared {
    slots: Vec<Slot>,
    /// Set when a thread panics inside `f`: the others stop waiting and leave.
    poisoned: AtomicBool,
}

impl Shared {
    /// Waits until every chunk has finished `steps` steps; false if a thread panicked.
    fn wait_all(&self, steps: usize) -> bool {
        for s in &self.slots {
            let mut spins = 0u32;
            while s.done.load(Ordering::Acquire) < steps {
                if self.poisoned.load(Ordering::Relaxed) {
                    return false;
                }
                spins += 1;
                if spins < 4096 {
                    std::hint::spin_loop();
                } else {
                    // The thread we wait for may not have a core (the machine is shared).
                    std::thread::yield_now();
                }
            }
        }
        true
    }

    /// Claims step `s` of chunk `c` and runs it; false if someone else claimed it first.
    fn try_run(&self, f: &(dyn Fn(usize, usize) + Sync), s: usize, c: usize) -> bool {
        let slot = &self.slots[c];
        if slot
            .next
            .compare_exchange(s, s + 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        let guard = Poison(&self.poisoned);
        f(s, c);
        std::mem::forget(guard);
        slot.done.store(s + 1, Ordering::Release);
        true
    }
}

/// Marks the loop poisoned if `f` unwinds.
struct Poison<'a>(&'a AtomicBool);
impl Drop for Poison<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `f(step, chunk)` for every step in `0..steps` and chunk in `0..chunks`, on up to
/// `chunks` threads (the caller and `chunks - 1` rayon workers). Every call of step `s`
/// starts after every call of step `s - 1` has returned, and its writes are visible to them
/// (acquire/release on the step counters). Calls of the same step run concurrently, so `f`
/// must make the chunks of a step touch disjoint memory.
pub fn run(steps: usize, chunks: usize, f: &(dyn Fn(usize, usize) + Sync)) {
    if steps == 0 || chunks == 0 {
        return;
    }
    if chunks == 1 {
        for s in 0..steps {
            f(s, 0);
        }
        return;
    }
    let sh = Shared {
        slots: (0..chunks).map(|_| Slot::default()).collect(),
        poisoned: AtomicBool::new(false),
    };
    let sh = &sh;
    rayon::in_place_scope(|scope| {
        for c in 1..chunks {
            scope.spawn(move |_| helper(sh, f, steps, c));
        }
        // The caller: chunk 0 at every step, and the chunks whose thread is not there.
        for s in 0..steps {
            if !sh.wait_all(s) {
                return;
            }
            sh.try_run(f, s, 0);
            for c in 1..chunks {
                if !sh.slots[c].arrived.load(Ordering::Acquire) {
                    sh.try_run(f, s, c);
                }
            }
        }
        sh.wait_all(steps);
    });
    assert!(
        !sh.poisoned.load(Ordering::Relaxed),
        "a step of the time loop panicked"
    );
}

/// The thread of chunk `c`: from the first step nobody has claimed, every step of chunk `c`.
fn helper(sh: &Shared, f: &(dyn Fn(usize, usize) + Sync), steps: usize, c: usize) {
    let slot = &sh.slots[c];
    slot.arrived.store(true, Ordering::Release);
    loop {
        let s = slot.next.load(Ordering::Acquire);
        if s >= steps || !sh.wait_all(s) {
            return;
        }
        // Fails only if the caller claimed step s just before it saw us arrive.
        sh.try_run(f, s, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Every (step, chunk) runs once, and a step starts only after the whole previous step.
    fn check(steps: usize, chunks: usize, threads: usize) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let runs = Mutex::new(vec![0usize; steps * chunks]);
        let finished: Vec<AtomicUsize> = (0..steps).map(|_| AtomicUsize::new(0)).collect();
        pool.install(|| {
            run(steps, chunks, &|s, c| {
                if s > 0 {
                    assert_eq!(
                        finished[s - 1].load(Ordering::SeqCst),
                        chunks,
                        "step {s} started before step {} finished",
                        s - 1
                    );
                }
                // Give the other chunks of the step a chance to interleave.
                for _ in 0..(s * 7 + c * 13) % 50 {
                    std::hint::spin_loop();
                }
                runs.lock().unwrap()[s * chunks + c] += 1;
                finished[s].fetch_add(1, Ordering::SeqCst);
            })
        });
        let runs = runs.into_inner().unwrap();
        assert!(
            runs.iter().all(|&r| r == 1),
            "steps {steps}, chunks {chunks}, threads {threads}: {runs:?}"
        );
    }

    #[test]
    fn every_step_runs_once_and_in_order() {
        for (steps, chunks, threads) in [
            (0, 2, 2),
            (1, 1, 1),
            (1, 2, 2),
            (5, 2, 1),
            (300, 2, 2),
            (200, 3, 2),
            (100, 4, 4),
            (50, 2, 3),
        ] {
            check(steps, chunks, threads);
        }
    }

    #[test]
    fn a_panic_in_a_step_reaches_the_caller() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.install(|| {
                run(100, 2, &|s, c| {
                    if s == 40 && c == 1 {
                        panic!("boom");
                    }
                })
            })
        }));
        assert!(r.is_err());
    }
}
