//! One image across cores: the caller supplies the workers ([`Executor`]: std threads, a
//! thread pool, an RTOS's tasks, secondary cores on bare metal) and the runtime cuts every
//! operator into tasks.
//!
//! Determinism: a partition depends only on the operator's shape, never on the number of
//! workers, and every task computes its outputs with the same code whatever worker runs it;
//! reductions across tasks (GRN's per-channel sums of squares) are kept as one partial sum per
//! pixel task, added in task order afterwards. So logits and every observer tap are
//! bit-identical for any worker count and any order in which the executor runs the tasks. With
//! one worker an operator's tasks are one call over the whole range (the same bits: every item
//! is computed by the same code whatever range a call covers); with several, the pointwise
//! GEMMs of stages with few pixels are also cut by output columns (`for_each_panel`: the
//! same bits, each output channel being computed on its own).
//!
//! This module holds the `unsafe` the composition needs: handing each task its own disjoint
//! part of an output buffer (and each worker its own scratch) through the executor's shared
//! closure, and `SpinPool`'s hand-off of that closure to its helper threads (feature std).

use crate::ops::RowsMut;
use core::ops::Range;

/// Runs independent tasks on the caller's workers.
///
/// # Safety
/// The runtime hands tasks disjoint mutable memory and workers their own scratch on the
/// strength of this contract; an implementation must, for each call of [`Executor::run`]:
/// - call `f(task, worker)` exactly once for every `task` in `0..tasks`, and never for another;
/// - pass `worker < self.workers()`, and never run two calls with the same `worker` at once;
/// - return only after every call has returned (a panicking task may abort or propagate).
///
/// With `workers()` = 1 the runtime never calls [`Executor::run`]: it runs each operator as one
/// call on the calling thread (the same bits as any split).
pub unsafe trait Executor: Sync {
    /// Number of workers (≥ 1): worker indices are `0..workers()`.
    fn workers(&self) -> usize;
    /// Calls `f(task, worker)` for every task in `0..tasks` (see the trait's contract).
    fn run(&self, tasks: usize, f: &(dyn Fn(usize, usize) + Sync));
}

/// The calling thread, tasks in order: today's single-core path.
#[derive(Clone, Copy, Debug, Default)]
pub struct Serial;

// SAFETY: every task once, in order, on worker 0, before returning.
unsafe impl Executor for Serial {
    fn workers(&self) -> usize {
        1
    }
    fn run(&self, tasks: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        for t in 0..tasks {
            f(t, 0);
        }
    }
}

/// A persistent [rayon](https://docs.rs/rayon) pool as the executor (feature `rayon`): its
/// threads park between runs, nothing is spawned per image, and the calling thread waits while
/// the pool's threads run the tasks.
#[cfg(feature = "rayon")]
pub struct RayonExecutor {
    pool: rayon::ThreadPool,
}

#[cfg(feature = "rayon")]
impl RayonExecutor {
    /// A pool of `threads` threads (≥ 1; 0 asks rayon for one per core).
    pub fn new(threads: usize) -> Result<Self, rayon::ThreadPoolBuildError> {
        Ok(RayonExecutor {
            pool: rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()?,
        })
    }

    /// Runs `f` on one of the pool's threads. Calling [`crate::Model::run_parallel`] inside it
    /// makes that thread one of the workers of every operator, instead of a caller that hands
    /// each operator to the pool and sleeps until it is done (a wake-up per operator, ~50 per
    /// Atto image).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }
}

// SAFETY: `for_each` over `0..tasks` calls each index once and returns when all are done;
// `current_thread_index` is the pool thread's own index (< `current_num_threads`); a pool thread
// runs one task at a time, since tasks never call into rayon (no nested stealing inside one).
#[cfg(feature = "rayon")]
unsafe impl Executor for RayonExecutor {
    fn workers(&self) -> usize {
        self.pool.current_num_threads()
    }
    fn run(&self, tasks: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        use rayon::prelude::*;
        self.pool.install(|| {
            (0..tasks).into_par_iter().for_each(|t| {
                let w = rayon::current_thread_index().expect("inside the pool");
                f(t, w)
            })
        })
    }
}

/// A persistent pool of std threads that wait for each operator by spinning (feature `std`):
/// the calling thread is worker 0 and `threads − 1` helpers are workers `1..threads`. A call
/// publishes its job by bumping an epoch counter; each worker then takes the tasks of its own
/// contiguous share (worker w of W: tasks `w·T/W..(w+1)·T/W`, so consecutive operators over the
/// same rows find them in the core's cache that wrote them), then helps with the others' shares
/// from their counters, and the caller returns once every helper has checked out. A helper
/// spins (`spin_loop`) for [`SpinPool::SPIN`] after its last task before it parks, so the ~50
/// operator calls of an image reach running threads: a wake-up from a park costs tens of
/// microseconds, and rayon's pool pays one per operator once its threads have gone to
/// sleep (see docs/peers.md). Nothing is allocated per call; one call at a time (a second
/// caller waits for the first; a task must not call `run` on its own pool).
#[cfg(feature = "std")]
pub struct SpinPool {
    shared: std::sync::Arc<PoolShared>,
    helpers: std::vec::Vec<std::thread::JoinHandle<()>>,
    /// One call at a time: worker indices belong to one call.
    call: std::sync::Mutex<()>,
}

/// The job a call publishes: its closure with the borrow's lifetime erased, and its task count.
#[cfg(feature = "std")]
type Job = (*const (dyn Fn(usize, usize) + Sync + 'static), usize);

#[cfg(feature = "std")]
struct PoolShared {
    /// Bumped by each call (and by `drop`); a helper runs the job of every epoch it sees.
    epoch: core::sync::atomic::AtomicU64,
    /// Written by the caller only while every helper has checked out of the previous call
    /// (`pending` = 0), read by helpers only after they saw the epoch that published it.
    job: core::cell::UnsafeCell<Job>,
    /// Per worker, the next task of its share to hand out (an offset into the share).
    next: std::vec::Vec<ShareCounter>,
    /// Helpers that have not yet checked out of the current call.
    pending: core::sync::atomic::AtomicUsize,
    /// Helper w parked (set by the helper, cleared by whoever unparks it).
    sleeping: std::vec::Vec<core::sync::atomic::AtomicBool>,
    /// A task panicked during the current call.
    panicked: core::sync::atomic::AtomicBool,
    stop: core::sync::atomic::AtomicBool,
}

/// A worker's share counter, alone on its cache lines (the workers bump each other's only
/// once their own share is done).
#[cfg(feature = "std")]
#[repr(align(128))]
struct ShareCounter(core::sync::atomic::AtomicUsize);

/// Runs tasks of a call with `tasks` tasks on worker `w` of `workers`: its own share first, in
/// order, then what is left of the others' (w+1, w+2, … mod workers). Each task index is
/// claimed once: task t belongs to one share, whose counter hands out each offset once.
#[cfg(feature = "std")]
fn run_shares(s: &PoolShared, tasks: usize, workers: usize, w: usize, f: &dyn Fn(usize, usize)) {
    use core::sync::atomic::Ordering::Relaxed;
    for i in 0..workers {
        let v = (w + i) % workers;
        let (lo, hi) = (v * tasks / workers, (v + 1) * tasks / workers);
        loop {
            let t = lo + s.next[v].0.fetch_add(1, Relaxed);
            if t >= hi {
                break;
            }
            f(t, w);
        }
    }
}

// SAFETY: `job` is accessed only under the protocol documented on it; everything else is atomic.
#[cfg(feature = "std")]
unsafe impl Sync for PoolShared {}
// SAFETY: as above (the raw pointer is only dereferenced under that protocol).
#[cfg(feature = "std")]
unsafe impl Send for PoolShared {}

#[cfg(feature = "std")]
impl SpinPool {
    /// How long a helper keeps spinning for the next call before it parks.
    pub const SPIN: std::time::Duration = std::time::Duration::from_micros(200);

    /// A pool of `threads` workers: the caller and `threads − 1` spawned helpers (0 means one
    /// per core the OS gives this process).
    pub fn new(threads: usize) -> std::io::Result<Self> {
        use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            t => t,
        };
        let noop: &'static (dyn Fn(usize, usize) + Sync) = &|_, _| {};
        let shared = std::sync::Arc::new(PoolShared {
            epoch: AtomicU64::new(0),
            job: core::cell::UnsafeCell::new((noop as *const _, 0)),
            next: (0..threads)
                .map(|_| ShareCounter(AtomicUsize::new(0)))
                .collect(),
            pending: AtomicUsize::new(0),
            sleeping: (0..threads).map(|_| AtomicBool::new(false)).collect(),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let mut helpers = std::vec::Vec::with_capacity(threads - 1);
        for w in 1..threads {
            let s = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(std::format!("edge-worker-{w}"))
                .spawn(move || helper(&s, w));
            match spawned {
                Ok(h) => helpers.push(h),
                Err(e) => {
                    // Stop the helpers already started (they see `stop` at the next epoch).
                    drop(SpinPool {
                        shared,
                        helpers,
                        call: std::sync::Mutex::new(()),
                    });
                    return Err(e);
                }
            }
        }
        Ok(SpinPool {
            shared,
            helpers,
            call: std::sync::Mutex::new(()),
        })
    }

    /// Publishes a new epoch and unparks the helpers that sleep.
    fn publish(&self) {
        use core::sync::atomic::Ordering::SeqCst;
        self.shared.epoch.fetch_add(1, SeqCst);
        for (i, h) in self.helpers.iter().enumerate() {
            if self.shared.sleeping[i + 1].swap(false, SeqCst) {
                h.thread().unpark();
            }
        }
    }
}

/// A helper's life: wait for an epoch, run tasks of its job, check out; until `stop`.
#[cfg(feature = "std")]
fn helper(s: &PoolShared, w: usize) {
    use core::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
    let mut seen = 0u64;
    loop {
        // Wait for the next epoch: spin, then park.
        let start = std::time::Instant::now();
        let mut spins = 0u32;
        let epoch = loop {
            let e = s.epoch.load(Acquire);
            if e != seen {
                break e;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(256) || start.elapsed() < SpinPool::SPIN {
                core::hint::spin_loop();
                continue;
            }
            s.sleeping[w].store(true, SeqCst);
            if s.epoch.load(SeqCst) == seen {
                std::thread::park();
            }
            s.sleeping[w].store(false, SeqCst);
        };
        seen = epoch;
        if s.stop.load(Acquire) {
            return;
        }
        // SAFETY: the epoch was published (Acquire above) after the job was written, and the
        // caller writes the next job only after this helper checks out below.
        let (f, tasks) = unsafe { *s.job.get() };
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // SAFETY: the caller's closure lives until every helper has checked out.
            let f = unsafe { &*f };
            run_shares(s, tasks, s.next.len(), w, f)
        }));
        if ran.is_err() {
            s.panicked.store(true, Relaxed);
        }
        s.pending.fetch_sub(1, Release);
    }
}

#[cfg(feature = "std")]
impl Drop for SpinPool {
    fn drop(&mut self) {
        self.shared
            .stop
            .store(true, core::sync::atomic::Ordering::Release);
        self.publish();
        for h in self.helpers.drain(..) {
            let _ = h.join();
        }
    }
}

// SAFETY: every task index in 0..tasks is handed out once by its share's counter in `next`
// (see `run_shares`; to the caller, worker 0, or a helper, worker w ≥ 1, each running one task
// at a time); calls are serialized by `call`;
// `run` returns only after its own tasks and every helper's check-out, so after every task.
#[cfg(feature = "std")]
unsafe impl Executor for SpinPool {
    fn workers(&self) -> usize {
        self.helpers.len() + 1
    }
    fn run(&self, tasks: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        use core::sync::atomic::Ordering::{Acquire, Relaxed};
        let _one_call = self.call.lock().unwrap_or_else(|p| p.into_inner());
        let s = &self.shared;
        if self.helpers.is_empty() || tasks <= 1 {
            for t in 0..tasks {
                f(t, 0);
            }
            return;
        }
        // SAFETY: lifetime erasure only: helpers call `f` before checking out, and this call
        // does not return before they all have.
        let f_static: &'static (dyn Fn(usize, usize) + Sync) = unsafe { core::mem::transmute(f) };
        // SAFETY: every helper has checked out of the previous call (`pending` = 0, awaited
        // below), so none reads `job` until the epoch published next.
        unsafe { *s.job.get() = (f_static as *const _, tasks) };
        for c in &s.next {
            c.0.store(0, Relaxed);
        }
        s.pending.store(self.helpers.len(), Relaxed);
        s.panicked.store(false, Relaxed);
        self.publish();
        let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_shares(s, tasks, s.next.len(), 0, f)
        }));
        // Spin, then yield: with more workers than cores a helper may need this core.
        let mut spins = 0u32;
        while s.pending.load(Acquire) != 0 {
            spins = spins.saturating_add(1);
            if spins < 1 << 12 {
                core::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
        assert!(
            !s.panicked.load(Relaxed),
            "a task panicked on a SpinPool helper"
        );
    }
}

/// A task partition fixed by the shape: `n` items in tasks of `grain` (the last shorter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Split {
    pub n: usize,
    pub grain: usize,
}

impl Split {
    /// `n` items, tasks of `grain ≥ 1`.
    pub fn new(n: usize, grain: usize) -> Split {
        Split {
            n,
            grain: grain.max(1),
        }
    }

    /// Items split into at most about `max_tasks` tasks, each a multiple of `align` items (so
    /// that kernels keep whole register tiles), at least `align`.
    pub fn aligned(n: usize, max_tasks: usize, align: usize) -> Split {
        let g = n.div_ceil(max_tasks.max(1)).div_ceil(align) * align;
        Split::new(n, g.max(align))
    }

    pub fn tasks(&self) -> usize {
        self.n.div_ceil(self.grain)
    }

    pub fn range(&self, t: usize) -> Range<usize> {
        let s = (t * self.grain).min(self.n);
        s..(s + self.grain).min(self.n)
    }
}

/// A buffer's base pointer, shareable with the tasks (each reconstructs only its own part).
#[derive(Clone, Copy)]
struct Base<T>(*mut T, usize);
// SAFETY: tasks only form disjoint sub-slices (see `for_each_part`); `T: Send` moves them.
unsafe impl<T: Send> Sync for Base<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Base<T> {}

impl<T> Base<T> {
    /// The address `offset` elements past the base (not dereferenced here).
    fn at(&self, offset: usize) -> *mut T {
        self.0.wrapping_add(offset)
    }

    /// The part `r` (item indices scaled by `stride` elements).
    ///
    /// # Safety
    /// No other live reference overlaps `r·stride`, and it lies inside the buffer.
    unsafe fn part<'a>(&self, r: &Range<usize>, stride: usize) -> &'a mut [T] {
        let (s, e) = (r.start * stride, r.end * stride);
        assert!(s <= e && e <= self.1);
        // SAFETY: in bounds (asserted); exclusive by the caller's contract.
        unsafe { core::slice::from_raw_parts_mut(self.0.add(s), e - s) }
    }
}

/// `exec.run` over the tasks of `split`, holding the executor to its contract:
/// `g(task, items, worker)`.
fn run_split<E: Executor + ?Sized>(
    exec: &E,
    split: Split,
    g: impl Fn(usize, Range<usize>, usize) + Sync,
) {
    let (tasks, workers) = (split.tasks(), exec.workers());
    exec.run(tasks, &|t, w| {
        assert!(t < tasks && w < workers, "executor broke its contract");
        g(t, split.range(t), w)
    });
}

/// Elements of `T` from the start of one worker's scratch block of `len` elements to the next
/// one's: `len` for one worker; for several, a cache line (64 bytes) more, so that no two
/// workers' blocks share a line whatever the buffer's alignment (a line two cores write in
/// turn moves between them at every write: the int8 stem's 192-byte gathers and LayerNorm's
/// rows did; int8 2-thread speed-up 1.80–1.81× → 1.81–1.84×, interleaved pairs). `None` on
/// overflow.
pub(crate) const fn worker_stride<T>(len: usize, workers: usize) -> Option<usize> {
    match (workers, len) {
        (1, _) | (_, 0) => Some(len),
        _ => len.checked_add(64usize.div_ceil(core::mem::size_of::<T>())),
    }
}

/// Elements of `T` a scratch buffer of `workers` blocks of `len` needs ([`worker_stride`]
/// apart). `None` on overflow.
pub(crate) fn worker_scratch_len<T>(len: usize, workers: usize) -> Option<usize> {
    worker_stride::<T>(len, workers)?.checked_mul(workers)
}

/// Worker `w`'s block of `len` elements of `T` in scratch of `workers` blocks, whose
/// [`worker_scratch_len`] the caller checked (so nothing here overflows).
fn worker_block<T>(w: usize, len: usize, workers: usize) -> Range<usize> {
    let start = w * worker_stride::<T>(len, workers).unwrap_or(0);
    start..start + len
}

/// Asserts that `scratch` holds `workers` blocks of `len` ([`worker_scratch_len`]).
fn assert_worker_scratch<T>(scratch: &[T], len: usize, workers: usize) {
    let need = worker_scratch_len::<T>(len, workers);
    assert!(
        need.is_some_and(|n| n <= scratch.len()),
        "worker scratch too short"
    );
}

/// Runs one task per part of `split`: `f(task, items, part of a, part of b, worker scratch,
/// worker)`, where item `i` owns `a[i·a_stride..][..a_stride]` and `b[i·b_stride..]
/// [..b_stride]`, and worker `w` owns `per_worker` elements of `scratch` ([`worker_stride`]
/// apart: `scratch` holds [`worker_scratch_len`]). Pass empty buffers and stride 0 for what a
/// task does not write.
#[allow(clippy::too_many_arguments)]
pub(crate) fn for_each_part<E: Executor + ?Sized, A: Send, B: Send, S: Send>(
    exec: &E,
    split: Split,
    a: &mut [A],
    a_stride: usize,
    b: &mut [B],
    b_stride: usize,
    scratch: &mut [S],
    per_worker: usize,
    f: impl Fn(usize, Range<usize>, &mut [A], &mut [B], &mut [S], usize) + Sync,
) {
    assert!(split.n * a_stride <= a.len() && split.n * b_stride <= b.len());
    assert_worker_scratch(scratch, per_worker, exec.workers());
    if exec.workers() == 1 {
        // One worker: the whole range in one call on this thread, the kernels' own loops
        // instead of one call per task. Every operator computes each item (row, pixel, channel)
        // with the same code whatever range it is called on, so the bits are those of the
        // split run (tests/parallel.rs checks it for every kernel set).
        let n = split.n;
        f(
            0,
            0..n,
            &mut a[..n * a_stride],
            &mut b[..n * b_stride],
            &mut scratch[..per_worker],
            0,
        );
        return;
    }
    let (pa, pb) = (Base(a.as_mut_ptr(), a.len()), Base(b.as_mut_ptr(), b.len()));
    let ps = Base(scratch.as_mut_ptr(), scratch.len());
    let workers = exec.workers();
    run_split(exec, split, |t, r, w| {
        // SAFETY: the executor runs each task once (its contract), and the tasks' item ranges
        // are disjoint, so their parts of `a` and `b` are; a worker runs one task at a time,
        // so its scratch is not shared. `a`, `b`, `scratch` stay borrowed until `run` returns
        // after every task.
        let (ra, rb, rs) = unsafe {
            (
                pa.part(&r, a_stride),
                pb.part(&r, b_stride),
                ps.part(&worker_block::<S>(w, per_worker, workers), 1),
            )
        };
        f(t, r, ra, rb, rs, w)
    });
}

/// Runs one task per part of `split` on the executor (never on the calling thread alone, even
/// with one worker): `f(items, part of a, slot)`, where item `i` owns `a[i·a_stride..]
/// [..a_stride]` and task `t` owns `slots[t·slot_len..][..slot_len]` (per-task results, such as
/// partial sums that the caller then combines in task order), the last task what is left of
/// `slots` if shorter.
pub(crate) fn for_each_task_slot<E: Executor + ?Sized, A: Send, B: Send>(
    exec: &E,
    split: Split,
    a: &mut [A],
    a_stride: usize,
    slots: &mut [B],
    slot_len: usize,
    f: impl Fn(Range<usize>, &mut [A], &mut [B]) + Sync,
) {
    let tasks = split.tasks();
    assert!(split.n * a_stride <= a.len() && tasks.saturating_sub(1) * slot_len <= slots.len());
    let (pa, pb) = (
        Base(a.as_mut_ptr(), a.len()),
        Base(slots.as_mut_ptr(), slots.len()),
    );
    run_split(exec, split, |t, r, _| {
        // SAFETY: the executor runs each task once; the tasks' item ranges are disjoint, and
        // so are their slots (one per task); both buffers stay borrowed until `run` returns.
        let slot = t * slot_len..((t + 1) * slot_len).min(pb.1);
        let (ra, rb) = unsafe { (pa.part(&r, a_stride), pb.part(&slot, 1)) };
        f(r, ra, rb)
    });
}

/// Runs one task per (part of `split`, column panel): the items (rows) of `split`, each
/// `cols` elements of `a` wide, and the columns cut into `panels` equal panels (`cols` a
/// multiple of `panels`). Task `j·T + t` (`T = split.tasks()`) gets rows `split.range(t)`,
/// columns `j·w..(j+1)·w` (`w = cols / panels`): `f(rows, columns, its block of a, its part of
/// slot t, its worker's scratch)`, where slot `t` is `slots[t·cols..][..cols]` and the
/// part is the block's columns of it (empty if `slots` is), and worker `w` owns `per_worker`
/// elements of `scratch` ([`worker_stride`] apart: `scratch` holds [`worker_scratch_len`]).
/// Panels first, row parts inside: the tasks of a panel are neighbours, so an executor that
/// hands out contiguous shares (as `SpinPool` does) gives each worker whole panels, whose
/// weights it then streams alone. Atto 224's last stage (1.6 MB of f32 weights per fc1 or
/// fc2, read from outside the core's caches) went 1.846 → 1.864× on 2 threads against row parts
/// first (medians of alternate runs, `edge-bench --speedup`, x86-64 AVX-512; docs/peers.md).
#[allow(clippy::too_many_arguments)]
pub(crate) fn for_each_panel<E: Executor + ?Sized, A: Send, B: Send, S: Send>(
    exec: &E,
    split: Split,
    panels: usize,
    a: &mut [A],
    cols: usize,
    slots: &mut [B],
    scratch: &mut [S],
    per_worker: usize,
    f: impl Fn(Range<usize>, Range<usize>, RowsMut<'_, A>, &mut [B], &mut [S]) + Sync,
) {
    assert!(panels >= 1 && cols.is_multiple_of(panels));
    let has_slots = !slots.is_empty();
    assert!(split.n * cols <= a.len() && (!has_slots || split.tasks() * cols <= slots.len()));
    assert_worker_scratch(scratch, per_worker, exec.workers());
    let width = cols / panels;
    let (pa, pb) = (
        Base(a.as_mut_ptr(), a.len()),
        Base(slots.as_mut_ptr(), slots.len()),
    );
    let ps = Base(scratch.as_mut_ptr(), scratch.len());
    let (tasks, workers) = (split.tasks() * panels, exec.workers());
    exec.run(tasks, &|task, w| {
        assert!(task < tasks && w < workers, "executor broke its contract");
        let (t, j) = (task % split.tasks(), task / split.tasks());
        let (r, c) = (split.range(t), j * width..(j + 1) * width);
        // SAFETY (of the view): the block's last element, (r.end − 1)·cols + c.end − 1, is
        // below split.n·cols ≤ a.len() (asserted); the tasks' blocks are disjoint and each task
        // runs once, so this view is the only access to its elements while `run` lasts.
        let block =
            unsafe { RowsMut::from_raw(pa.at(r.start * cols + c.start), r.len(), width, cols) };
        // SAFETY: the executor runs each task once, and a worker one task at a time; the
        // tasks' (rows, columns) blocks are disjoint, and so are their parts of the slots
        // (columns c of slot t, the only part formed); `a`, `slots` and `scratch` stay
        // borrowed until `run` returns.
        let (slot, rs) = unsafe {
            (
                if has_slots {
                    pb.part(&(t * cols + c.start..t * cols + c.end), 1)
                } else {
                    &mut []
                },
                ps.part(&worker_block::<S>(w, per_worker, workers), 1),
            )
        };
        f(r, c, block, slot, rs)
    });
}

/// [`for_each_part`] writing one buffer.
pub(crate) fn for_each_rows<E: Executor + ?Sized, A: Send>(
    exec: &E,
    split: Split,
    a: &mut [A],
    a_stride: usize,
    f: impl Fn(Range<usize>, &mut [A]) + Sync,
) {
    for_each_part::<E, A, u8, u8>(
        exec,
        split,
        a,
        a_stride,
        &mut [],
        0,
        &mut [],
        0,
        |_, r, pa, _, _, _| f(r, pa),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    /// SpinPool hands every task out once, to a worker index below `workers()`, and no worker
    /// runs two tasks at once, for task counts below, at and above the worker count (shares of
    /// unequal and empty sizes), call after call.
    #[cfg(feature = "std")]
    #[test]
    fn spin_pool_runs_every_task_once() {
        use core::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        for workers in [1, 2, 3, 4, 7] {
            let pool = SpinPool::new(workers).unwrap();
            for tasks in [0, 1, 2, 3, 5, 7, 8, 31, 32, 100] {
                for _ in 0..20 {
                    let runs: vec::Vec<AtomicUsize> =
                        (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                    let busy: vec::Vec<AtomicUsize> =
                        (0..workers).map(|_| AtomicUsize::new(0)).collect();
                    pool.run(tasks, &|t, w| {
                        assert!(w < workers);
                        assert_eq!(busy[w].fetch_add(1, SeqCst), 0, "worker {w} twice at once");
                        runs[t].fetch_add(1, SeqCst);
                        std::thread::yield_now();
                        busy[w].fetch_sub(1, SeqCst);
                    });
                    let counts: vec::Vec<usize> = runs.iter().map(|r| r.load(SeqCst)).collect();
                    assert!(
                        counts.iter().all(|&c| c == 1),
                        "{workers} workers, {tasks} tasks: {counts:?}"
                    );
                }
            }
        }
    }

    /// Runs tasks in reverse order on rotating worker indices: the contract, not the order.
    struct Reversed(usize);
    // SAFETY: every task once, sequentially (so no worker index is used twice at once).
    unsafe impl Executor for Reversed {
        fn workers(&self) -> usize {
            self.0
        }
        fn run(&self, tasks: usize, f: &(dyn Fn(usize, usize) + Sync)) {
            for t in (0..tasks).rev() {
                f(t, t % self.0);
            }
        }
    }

    #[test]
    fn split_covers_every_item_once() {
        for (n, max, align) in [
            (3136, 32, 8),
            (49, 32, 8),
            (1, 32, 8),
            (0, 4, 1),
            (57, 7, 1),
        ] {
            let s = Split::aligned(n, max, align);
            let mut seen = vec![0u8; n];
            for t in 0..s.tasks() {
                let r = s.range(t);
                assert!(r.start.is_multiple_of(align));
                for i in r {
                    seen[i] += 1;
                }
            }
            assert!(seen.iter().all(|&v| v == 1), "{n} {max} {align}");
            assert!(s.tasks() <= max.max(1) + 1);
        }
    }

    /// Every element of the matrix and of the slots belongs to exactly one (rows, panel) task,
    /// whose block reads back what was there and is written whole from its staging buffer.
    #[test]
    fn panels_cover_every_element_once() {
        let (rows, cols, panels) = (10, 12, 4);
        let mut a: std::vec::Vec<u32> = (0..(rows * cols) as u32).collect();
        let split = Split::new(rows, 3);
        let mut slots = vec![0u32; split.tasks() * cols];
        let mut scratch = vec![0u32; worker_scratch_len::<u32>(9, 3).unwrap()];
        for_each_panel(
            &Reversed(3),
            split,
            panels,
            &mut a,
            cols,
            &mut slots,
            &mut scratch,
            9,
            |r, c, mut block, slot, stage| {
                assert_eq!((c.len(), slot.len()), (cols / panels, cols / panels));
                let stage = &mut stage[..r.len() * c.len()];
                block.copy_to(stage);
                let want = r
                    .clone()
                    .flat_map(|i| c.clone().map(move |j| (i * cols + j) as u32));
                assert!(stage.iter().copied().eq(want), "block {r:?} {c:?}");
                for v in stage.iter_mut() {
                    *v += 1000;
                }
                block.copy_from(stage);
                for (s, j) in slot.iter_mut().zip(c.clone()) {
                    *s += 1 + j as u32;
                }
            },
        );
        assert!(a.iter().enumerate().all(|(i, &v)| v == i as u32 + 1000));
        assert!(slots
            .chunks(cols)
            .all(|s| s.iter().enumerate().all(|(j, &v)| v == 1 + j as u32)));
    }

    #[test]
    fn parts_are_the_items_and_scratch_is_per_worker() {
        let mut a = vec![0u32; 30];
        let mut b = vec![0u8; 10];
        let mut scratch = vec![9u16; worker_scratch_len::<u16>(2, 3).unwrap()];
        let split = Split::new(10, 3);
        for_each_part(
            &Reversed(3),
            split,
            &mut a,
            3,
            &mut b,
            1,
            &mut scratch,
            2,
            |t, r, pa, pb, s, w| {
                assert_eq!(pa.len(), r.len() * 3);
                assert_eq!(s.len(), 2);
                s[0] = w as u16;
                for (i, v) in r.clone().zip(pb.iter_mut()) {
                    *v = i as u8;
                }
                pa.fill(t as u32 + 1);
            },
        );
        assert_eq!(b, (0..10).collect::<std::vec::Vec<u8>>());
        assert!(a
            .chunks(9)
            .enumerate()
            .all(|(t, c)| c.iter().all(|&v| v == t as u32 + 1)));
        // Each worker wrote the start of its own block, a stride apart.
        let stride = worker_stride::<u16>(2, 3).unwrap();
        assert_eq!(
            [scratch[0], scratch[stride], scratch[2 * stride]],
            [0, 1, 2]
        );
    }

    /// Several workers' scratch blocks are at least a cache line (64 bytes) apart, whatever the
    /// element size; one worker's is just its length; empty blocks take nothing.
    #[test]
    fn worker_blocks_never_share_a_cache_line() {
        fn check<T>(len: usize) {
            let size = core::mem::size_of::<T>();
            assert_eq!(worker_stride::<T>(len, 1), Some(len));
            assert_eq!(worker_scratch_len::<T>(0, 7), Some(0));
            let stride = worker_stride::<T>(len, 4).unwrap();
            assert!((stride - len) * size >= 64, "{size}-byte elements, {len}");
            assert_eq!(worker_scratch_len::<T>(len, 4), Some(4 * stride));
        }
        for len in [1, 5, 16, 192, 2560] {
            check::<i8>(len);
            check::<u16>(len);
            check::<f32>(len);
            check::<f64>(len);
        }
        assert_eq!(worker_scratch_len::<i8>(usize::MAX, 2), None);
    }
}
