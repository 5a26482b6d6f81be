//! One image across cores: the caller supplies the workers ([`Executor`]: std threads, a
//! thread pool, an RTOS's tasks, secondary cores on bare metal) and the runtime cuts every
//! operator into tasks.
//!
//! Determinism: a partition depends only on the operator's shape, never on the number of
//! workers, and every task computes its outputs with the same code whatever worker runs it;
//! reductions across tasks (GRN's per-channel sums of squares) are cut by channel, each channel
//! summed over pixels in order by one task. So logits and every observer tap are bit-identical
//! for any worker count and any order in which the executor runs the tasks.
//!
//! This module holds the one `unsafe` the composition needs: handing each task its own disjoint
//! part of an output buffer (and each worker its own scratch) through the executor's shared
//! closure.

use core::ops::Range;

/// Runs independent tasks on the caller's workers.
///
/// # Safety
/// The runtime hands tasks disjoint mutable memory and workers their own scratch on the
/// strength of this contract; an implementation must, for each call of [`Executor::run`]:
/// - call `f(task, worker)` exactly once for every `task` in `0..tasks`, and never for another;
/// - pass `worker < self.workers()`, and never run two calls with the same `worker` at once;
/// - return only after every call has returned (a panicking task may abort or propagate).
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
    /// each operator to the pool and sleeps until it is done (a wake-up per operator, ~70 per
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

/// Runs one task per part of `split`: `f(task, items, part of a, part of b, worker scratch,
/// worker)`, where item `i` owns `a[i·a_stride..][..a_stride]` and `b[i·b_stride..]
/// [..b_stride]`, and worker `w` owns `scratch[w·per_worker..][..per_worker]`. Pass empty
/// buffers and stride 0 for what a task does not write.
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
    let tasks = split.tasks();
    assert!(split.n * a_stride <= a.len() && split.n * b_stride <= b.len());
    assert!(exec.workers() * per_worker <= scratch.len());
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
    exec.run(tasks, &|t, w| {
        assert!(t < tasks && w < workers, "executor broke its contract");
        let r = split.range(t);
        // SAFETY: the executor runs each task once (its contract), and the tasks' item ranges
        // are disjoint, so their parts of `a` and `b` are; a worker runs one task at a time,
        // so its scratch is not shared. `a`, `b`, `scratch` stay borrowed until `run` returns
        // after every task.
        let (ra, rb, rs) = unsafe {
            (
                pa.part(&r, a_stride),
                pb.part(&r, b_stride),
                ps.part(&(w..w + 1), per_worker),
            )
        };
        f(t, r, ra, rb, rs, w)
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

    #[test]
    fn parts_are_the_items_and_scratch_is_per_worker() {
        let mut a = vec![0u32; 30];
        let mut b = vec![0u8; 10];
        let mut scratch = vec![0u16; 3 * 2];
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
    }
}
