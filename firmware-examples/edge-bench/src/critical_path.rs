//! `--critical-path N`: one image split as N workers split it, for counting instructions under
//! qemu-user (`benches/qemu/threads.sh`), not for timing.
//!
//! A work-stealing pool's per-thread counts depend on which threads the host happens to run:
//! with more guest threads than host cores, a thread that is scheduled takes the tasks of one
//! that is not. Here every operator call spawns its own N threads, and thread w runs the tasks
//! t ≡ w (mod N), a schedule fixed in advance, and each call joins all of its threads before the
//! next starts. The counting plugin (per_thread=exit) prints a thread's count as it exits, so
//! the counts come in sets of N, one set per call (in exit order within a set), whatever the
//! host does: the critical path is the calling thread's own work plus, for every call, the
//! largest count of its set.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use edge::{Executor, Observer, Op, Tap};

/// N threads spawned per call, task t on thread t mod N; logs the schedule step of each call.
pub struct SpawnPerCall {
    workers: usize,
    /// The step the runtime is in (set by [`StepTracker`]).
    step: AtomicUsize,
    /// Step of every call so far, in order.
    calls: Mutex<Vec<usize>>,
}

impl SpawnPerCall {
    /// `workers ≥ 1` threads per call.
    pub fn new(workers: usize) -> Self {
        SpawnPerCall {
            workers: workers.max(1),
            step: AtomicUsize::new(0),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Spawns two sets of threads that run nothing, one after the other: the per-thread
    /// start-up cost and, between the two sets' exits, the calling thread's cost of starting
    /// and joining one set; `threads.sh` subtracts both (a persistent pool pays neither).
    pub fn calibrate(&self) {
        for _ in 0..2 {
            std::thread::scope(|s| {
                let set: Vec<_> = (0..self.workers).map(|_| s.spawn(|| {})).collect();
                for h in set {
                    let _ = h.join();
                }
            });
        }
    }

    /// Steps of the calls made so far, in call order.
    pub fn calls(&self) -> Vec<usize> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// An observer that tells this executor which step the runtime is in.
    pub fn tracker(&self) -> StepTracker<'_> {
        self.step.store(0, Ordering::Relaxed);
        StepTracker(&self.step)
    }
}

// SAFETY: thread w runs tasks w, w + N, … (each task in 0..tasks exactly once, on one thread);
// worker index w belongs to one thread per call; the scope joins every thread before returning.
unsafe impl Executor for SpawnPerCall {
    fn workers(&self) -> usize {
        self.workers
    }
    fn run(&self, tasks: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        if let Ok(mut c) = self.calls.lock() {
            c.push(self.step.load(Ordering::Relaxed));
        }
        let n = self.workers;
        std::thread::scope(|s| {
            let set: Vec<_> = (0..n)
                .map(|w| {
                    s.spawn(move || {
                        for t in (w..tasks).step_by(n) {
                            f(t, w)
                        }
                    })
                })
                .collect();
            // Joined one by one (pthread_join: until each thread has exited), not only at the
            // scope's end (which may return while a thread is still exiting): the counting
            // plugin then sees every thread of this call exit before the next call's start.
            for h in set {
                if let Err(p) = h.join() {
                    std::panic::resume_unwind(p);
                }
            }
        });
    }
}

/// Records the step in progress: step `i + 1` starts when step `i` (of [`Op::schedule`]) ends.
pub struct StepTracker<'a>(&'a AtomicUsize);

impl Observer for StepTracker<'_> {
    const ENABLED: bool = false;
    const TIMED: bool = true;
    fn observe(&mut self, _: Tap, _: usize, _: usize, _: usize, _: &[f32]) {}
    fn op_done(&mut self, _: Op, index: usize) {
        self.0.store(index + 1, Ordering::Relaxed);
    }
}
