//! Secondary cores as an `edge::Executor`: started with PSCI `CPU_ON`, each takes tasks from one
//! shared counter.
//!
//! Protocol (one job at a time): the primary core publishes the job (the task closure and the
//! task count), resets the counters and bumps `GENERATION` with release ordering, then sends an
//! event (`sev`); every core, the primary included, claims tasks with `NEXT.fetch_add(1)` until
//! they run out; a secondary then counts itself in `FINISHED`, and the primary returns once every
//! started secondary has, so no core can still be reading the job when the next one is published.
//! Worker index = core index, so two tasks never share a worker's scratch at once.
//!
//! Runs with the MMU off, as the rest of this example: QEMU's TCG performs the exclusive
//! loads/stores behind the atomics on any memory; real hardware needs the MMU and caches on
//! (Normal, Inner Shareable memory) for exclusives to work between cores.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Cores tried at start-up (QEMU virt numbers up to 8 CPUs per cluster, MPIDR.Aff0 = index).
pub const MAX_CORES: usize = 8;
/// Stack per secondary core; link.x reserves `MAX_CORES - 1` of them below `__secondary_stacks_top`.
const SECONDARY_STACK: usize = 0x8_0000;

/// PSCI 0.2 `CPU_ON`, SMC64/HVC64 function ID.
const PSCI_CPU_ON: u64 = 0xC400_0003;

core::arch::global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _secondary_start
// PSCI enters here with the MMU off and x0 = the context id we passed: the core index.
_secondary_start:
    mov     x1, #(3 << 20)      // CPACR_EL1.FPEN: no trap on FP/SIMD
    msr     cpacr_el1, x1
    isb
    ldr     x1, =__secondary_stacks_top
    sub     x2, x0, #1
    mov     x3, #{stack}
    msub    x1, x2, x3, x1      // top − (index − 1) · stack
    mov     sp, x1
    bl      secondary_main
1:  b       1b
"#,
    stack = const SECONDARY_STACK,
);

extern "C" {
    fn _secondary_start();
}

/// The published job: the closure (its lifetime erased; valid until `run` returns) and the
/// number of tasks.
struct Job(UnsafeCell<(Option<*const (dyn Fn(usize, usize) + Sync)>, usize)>);
// SAFETY: written only by the primary while no secondary reads it (between `FINISHED` reaching
// the started count and the next `GENERATION` bump); read by secondaries after an acquire load of
// `GENERATION` that follows the write.
unsafe impl Sync for Job {}

static JOB: Job = Job(UnsafeCell::new((None, 0)));
static GENERATION: AtomicUsize = AtomicUsize::new(0);
static NEXT: AtomicUsize = AtomicUsize::new(0);
static FINISHED: AtomicUsize = AtomicUsize::new(0);

/// The started cores (the calling one included) as workers.
pub struct Cores {
    workers: usize,
}

impl Cores {
    /// Starts cores 1, 2, … with PSCI `CPU_ON` (HVC: QEMU virt's conduit when no EL2/EL3
    /// firmware is loaded) until one fails (`-smp N` has only N) or `MAX_CORES` are on.
    /// Call once, from core 0.
    pub fn start() -> Cores {
        let mut workers = 1;
        while workers < MAX_CORES {
            let ret: i64;
            // SAFETY: a PSCI call; on success the core starts at `_secondary_start` with its own
            // stack and never returns into this code.
            unsafe {
                core::arch::asm!(
                    "hvc #0",
                    inout("x0") PSCI_CPU_ON => ret,
                    in("x1") workers as u64,
                    in("x2") _secondary_start as *const () as usize as u64,
                    in("x3") workers as u64,
                    options(nostack)
                )
            };
            if ret != 0 {
                break;
            }
            workers += 1;
        }
        Cores { workers }
    }
}

fn take_tasks(f: &(dyn Fn(usize, usize) + Sync), tasks: usize, worker: usize) {
    loop {
        let t = NEXT.fetch_add(1, Ordering::Relaxed);
        if t >= tasks {
            break;
        }
        f(t, worker);
    }
}

// SAFETY: `NEXT.fetch_add` hands each task index in `0..tasks` to exactly one core; worker index =
// core index (< `workers`, one task at a time per core); `run` returns only after the primary ran
// out of tasks and every started secondary reported `FINISHED` for this job, i.e. after every
// task returned.
unsafe impl edge::Executor for Cores {
    fn workers(&self) -> usize {
        self.workers
    }

    fn run(&self, tasks: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        if self.workers == 1 {
            return (0..tasks).for_each(|t| f(t, 0));
        }
        // SAFETY: only the lifetime is erased; the pointer is dropped from use before `run`
        // returns (see `Job`).
        let erased: *const (dyn Fn(usize, usize) + Sync) = unsafe { core::mem::transmute(f) };
        // SAFETY: no secondary reads `JOB` now (the previous job's `FINISHED` wait is over).
        unsafe { *JOB.0.get() = (Some(erased), tasks) };
        NEXT.store(0, Ordering::Relaxed);
        FINISHED.store(0, Ordering::Relaxed);
        GENERATION.fetch_add(1, Ordering::Release);
        // SAFETY: `sev` wakes cores waiting in `wfe`; no memory effects.
        unsafe { core::arch::asm!("sev", options(nomem, nostack)) };
        take_tasks(f, tasks, 0);
        while FINISHED.load(Ordering::Acquire) < self.workers - 1 {
            core::hint::spin_loop();
        }
    }
}

/// A secondary core's loop: wait for a new job, take its tasks, report, forever.
#[no_mangle]
extern "C" fn secondary_main(core: usize) -> ! {
    let mut seen = 0;
    loop {
        let g = GENERATION.load(Ordering::Acquire);
        if g == seen {
            // SAFETY: `wfe` waits for an event (the primary's `sev`); no memory effects.
            unsafe { core::arch::asm!("wfe", options(nomem, nostack)) };
            continue;
        }
        seen = g;
        // SAFETY: published before the `GENERATION` bump we acquired; stable until we report.
        let (f, tasks) = unsafe { *JOB.0.get() };
        if let Some(f) = f {
            // SAFETY: the primary keeps the closure alive until every secondary has reported.
            take_tasks(unsafe { &*f }, tasks, core);
        }
        FINISHED.fetch_add(1, Ordering::Release);
    }
}
