//! `edge` allocates nothing while running: a counting global allocator sees zero allocations
//! (and zero reallocations) across `Model::parse` and `Model::run`, and across a run split over
//! a persistent pool of threads (`Model::run_parallel`, f32 and int8).

mod common;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Whether this thread's allocations count: the test's own thread and its pool's threads,
    /// not the test harness's (which runs other tests beside this one).
    static WATCHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// One test at a time: the counters are global.
static SERIAL: Mutex<()> = Mutex::new(());

fn counted() -> bool {
    COUNTING.load(Ordering::SeqCst) && WATCHED.with(|w| w.get())
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if counted() {
            ALLOCS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if counted() {
            ALLOCS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn parse_and_run_allocate_nothing() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    WATCHED.with(|w| w.set(true));
    let file = common::atto();
    let x = common::read_f32("atto/inputs/astronaut.bin");
    let mut arena = vec![0u8; 4 << 20];
    let mut logits = vec![0f32; 1000];
    let before = ALLOCS.load(Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let model = edge::Model::parse(file.as_slice()).unwrap();
    model
        .run(edge::Input::NchwF32(&x), &mut arena, &mut logits)
        .unwrap();
    COUNTING.store(false, Ordering::SeqCst);
    assert_eq!(ALLOCS.load(Ordering::SeqCst) - before, 0);
    // And it computed something real.
    assert!(common::max_abs(&logits, &common::read_f32("atto/logits/astronaut.bin")) <= 1e-4);
}

/// A persistent pool that allocates nothing per run (a mutex, two condition variables and a
/// task counter): worker 0 is the calling thread, workers 1.. are parked threads.
struct Pool {
    shared: Arc<Shared>,
    workers: usize,
    threads: Vec<std::thread::JoinHandle<()>>,
}

struct Shared {
    job: Mutex<Job>,
    start: Condvar,
    done: Condvar,
}

/// The task closure of the current run, lifetime erased: `run` does not return before every
/// helper has finished with it.
#[derive(Clone, Copy)]
struct TaskFn(*const (dyn Fn(usize, usize) + Sync));
// SAFETY: the closure is `Sync`, and it outlives every use (see `Pool::run`).
unsafe impl Send for TaskFn {}

struct Job {
    generation: u64,
    tasks: usize,
    next: usize,
    running: usize,
    f: Option<TaskFn>,
    quit: bool,
}

impl Pool {
    fn new(workers: usize) -> Pool {
        let shared = Arc::new(Shared {
            job: Mutex::new(Job {
                generation: 0,
                tasks: 0,
                next: 0,
                running: 0,
                f: None,
                quit: false,
            }),
            start: Condvar::new(),
            done: Condvar::new(),
        });
        let threads = (1..workers)
            .map(|w| {
                let sh = shared.clone();
                std::thread::spawn(move || {
                    WATCHED.with(|w| w.set(true));
                    let mut seen = 0;
                    let mut job = sh.job.lock().unwrap();
                    loop {
                        while job.generation == seen && !job.quit {
                            job = sh.start.wait(job).unwrap();
                        }
                        if job.quit {
                            return;
                        }
                        seen = job.generation;
                        while job.next < job.tasks {
                            let (t, f) = (job.next, job.f.unwrap());
                            job.next += 1;
                            drop(job);
                            // SAFETY: `run` keeps the closure alive until `running` is 0.
                            unsafe { (*f.0)(t, w) };
                            job = sh.job.lock().unwrap();
                        }
                        job.running -= 1;
                        if job.running == 0 {
                            sh.done.notify_all();
                        }
                    }
                })
            })
            .collect();
        Pool {
            shared,
            workers,
            threads,
        }
    }
}

// SAFETY: tasks are handed out once each from `next` under the lock; helper w runs only as
// worker w and the caller only as worker 0, one task at a time each; `run` returns after every
// helper has decremented `running` (no task is then in flight).
unsafe impl edge::Executor for Pool {
    fn workers(&self) -> usize {
        self.workers
    }
    fn run(&self, tasks: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        let sh = &self.shared;
        let mut job = sh.job.lock().unwrap();
        // SAFETY: only the lifetime is erased; the pointer is not used after this call.
        let erased: TaskFn = TaskFn(unsafe {
            std::mem::transmute::<
                *const (dyn Fn(usize, usize) + Sync + '_),
                *const (dyn Fn(usize, usize) + Sync + 'static),
            >(f)
        });
        job.f = Some(erased);
        job.tasks = tasks;
        job.next = 0;
        job.running = self.workers - 1;
        job.generation += 1;
        sh.start.notify_all();
        while job.next < job.tasks {
            let t = job.next;
            job.next += 1;
            drop(job);
            f(t, 0);
            job = sh.job.lock().unwrap();
        }
        while job.running > 0 {
            job = sh.done.wait(job).unwrap();
        }
        job.f = None;
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.job.lock().unwrap().quit = true;
        self.shared.start.notify_all();
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
    }
}

#[test]
fn parallel_runs_allocate_nothing() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    WATCHED.with(|w| w.set(true));
    let file = common::atto();
    let x = common::read_f32("atto/inputs/astronaut.bin");
    let model = edge::Model::parse(file.as_slice()).unwrap();
    let int8 = edge::builder::AlignedBytes::from_slice(
        &quant::quantize::quantize_with_inputs(
            &model,
            [edge::Input::NchwF32(&x)],
            quant::calib::Method::Mse,
        )
        .unwrap(),
    );
    let model_i8 = edge::Model::parse(int8.as_slice()).unwrap();
    let pool = Pool::new(3);
    // edge's own pool too: the calling thread and two spinning helpers.
    let spin = edge::SpinPool::new(3).unwrap();
    let mut logits = vec![0f32; 1000];
    let mut serial = vec![0f32; 1000];
    let executors: [&dyn edge::Executor; 2] = [&pool, &spin];
    for (m, pool) in [&model, &model_i8]
        .into_iter()
        .flat_map(|m| executors.map(|e| (m, e)))
    {
        let mut arena = vec![0u8; m.arena_len_for(3)];
        m.run(edge::Input::NchwF32(&x), &mut arena, &mut serial)
            .unwrap();
        // Warm the pool's threads (their first lock and wait) before counting.
        m.run_parallel(
            edge::Input::NchwF32(&x),
            &mut arena,
            &mut logits,
            edge::Kernels::Auto,
            pool,
        )
        .unwrap();
        let before = ALLOCS.load(Ordering::SeqCst);
        COUNTING.store(true, Ordering::SeqCst);
        m.run_parallel(
            edge::Input::NchwF32(&x),
            &mut arena,
            &mut logits,
            edge::Kernels::Auto,
            pool,
        )
        .unwrap();
        COUNTING.store(false, Ordering::SeqCst);
        assert_eq!(
            ALLOCS.load(Ordering::SeqCst) - before,
            0,
            "{:?}",
            m.precision()
        );
        assert_eq!(
            logits.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            serial.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}
