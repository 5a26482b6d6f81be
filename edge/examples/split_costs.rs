//! Where one image split across 2 workers loses against 2× (host timing, not a test):
//!
//! - `serial`: the image on one thread (`Serial`);
//! - `split on one thread`: the multi-worker schedule (every task of a 2-worker split) run in
//!   turn on this thread, by an executor that claims 2 workers: what splitting adds in work;
//! - `SpinPool(2)`: the split on both cores, and its speed-up over `serial` and over the split
//!   on one thread (what running in parallel then loses: waits, rows crossing cores);
//! - two independent images, one per core, each on `Serial`: the machine's own 2-core scaling
//!   for this workload (no split, no sharing).
//!
//! With `--profile`, the same per step of the schedule (µs per image; GRN's update is a step
//! of its own when timed, see `edge::profile`).
//!
//! With `--calls`, per executor call of one plain image (median over 100 images): µs of the
//! split on one thread and on `SpinPool(2)`, their ratio, and the gap before each call (the
//! calling thread alone: GRN's statistics, the head's pooling).
//!
//! `cargo run --release -p edge --features std --example split_costs -- MODEL INPUT.bin
//! [--profile | --calls]` (MODEL from `quant convert|calibrate`; INPUT raw f32 NCHW, e.g.
//! tests/fixtures/atto/inputs/astronaut.bin).

use edge::{Executor, Input, Kernels, Model, Op, Profiler, Serial, SpinPool};
use std::time::Instant;

/// 2 workers in name; every task runs in turn on the calling thread (as worker `t·2 / tasks`,
/// the share `SpinPool` would give it first).
struct SplitOnOneThread;
// SAFETY: each task in 0..tasks runs once, one at a time, as a worker below 2.
unsafe impl Executor for SplitOnOneThread {
    fn workers(&self) -> usize {
        2
    }
    fn run(&self, tasks: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        (0..tasks).for_each(|t| f(t, t * 2 / tasks));
    }
}

/// `SplitOnOneThread` that also counts its calls (operators handed to the executor) and tasks.
struct CountingSplit {
    calls: std::sync::atomic::AtomicUsize,
    tasks: std::sync::atomic::AtomicUsize,
}
// SAFETY: as `SplitOnOneThread`.
unsafe impl Executor for CountingSplit {
    fn workers(&self) -> usize {
        2
    }
    fn run(&self, tasks: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        use std::sync::atomic::Ordering::Relaxed;
        self.calls.fetch_add(1, Relaxed);
        self.tasks.fetch_add(tasks, Relaxed);
        SplitOnOneThread.run(tasks, f)
    }
}

/// An executor that times each call of another (wall clock, ns since `origin`): the calls of one
/// image in order, and the gaps between them (the calling thread alone: the runtime's own
/// steps, GRN's statistics, the head).
struct TimedCalls<'e> {
    inner: &'e dyn Executor,
    origin: Instant,
    spans: std::sync::Mutex<Vec<(u64, u64, usize)>>,
}
// SAFETY: forwards every call to `inner`, which keeps the contract.
unsafe impl Executor for TimedCalls<'_> {
    fn workers(&self) -> usize {
        self.inner.workers()
    }
    fn run(&self, tasks: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        let t0 = self.origin.elapsed().as_nanos() as u64;
        self.inner.run(tasks, f);
        let t1 = self.origin.elapsed().as_nanos() as u64;
        self.spans.lock().expect("spans").push((t0, t1, tasks));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: split_costs MODEL INPUT.bin [--profile | --calls]");
        std::process::exit(2);
    }
    let bytes = std::fs::read(&args[1]).expect("model file");
    // Model::parse wants the file 16-byte aligned.
    let mut words = vec![0u128; bytes.len().div_ceil(16)];
    let buf: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
    buf[..bytes.len()].copy_from_slice(&bytes);
    let model = Model::parse(&buf[..bytes.len()]).expect("model");
    let raw = std::fs::read(&args[2]).expect("input");
    let image: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let a = *model.arch();
    assert_eq!(
        image.len(),
        3 * a.input_h * a.input_w,
        "input is not 1×3×H×W f32"
    );
    let x = Input::NchwF32(&image);
    let pool = SpinPool::new(2).expect("2 threads");
    let iters = 200;
    // ms per image over `n` runs on `exec`.
    let time = |exec: &dyn Executor, n: usize| {
        let mut arena = vec![0u8; model.arena_len_for(exec.workers())];
        let mut logits = vec![0f32; a.num_classes];
        let t = Instant::now();
        for _ in 0..n {
            model
                .run_parallel(x, &mut arena, &mut logits, Kernels::Auto, exec)
                .expect("run");
        }
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    };
    if args.iter().any(|a| a == "--profile") {
        // µs per step per image over `n` profiled runs.
        let profile = |exec: &dyn Executor, n: usize| {
            let mut arena = vec![0u8; model.arena_len_for(exec.workers())];
            let mut logits = vec![0f32; a.num_classes];
            let mut ticks = vec![0u64; Op::count(&a)];
            let origin = Instant::now();
            for _ in 0..n {
                let clock = || origin.elapsed().as_nanos() as u64;
                let mut p = Profiler::new(clock, &mut ticks);
                model
                    .run_with_executor(x, &mut arena, &mut logits, Kernels::Auto, &mut p, exec)
                    .expect("run");
            }
            ticks
                .iter()
                .map(|&t| t as f64 / n as f64 / 1e3)
                .collect::<Vec<f64>>()
        };
        profile(&Serial, 20);
        let (s, f, p) = (
            profile(&Serial, iters),
            profile(&SplitOnOneThread, iters),
            profile(&pool, iters),
        );
        println!(
            "{:40} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "step (µs per image)", "serial", "split1", "pool2", "×serial", "×split1"
        );
        for (i, op) in Op::schedule(&a).enumerate() {
            let name = format!("{op}");
            println!(
                "{name:40} {:8.1} {:8.1} {:8.1} {:8.2} {:8.2}",
                s[i],
                f[i],
                p[i],
                s[i] / p[i],
                f[i] / p[i]
            );
        }
        return;
    }
    if args.iter().any(|a| a == "--calls") {
        // Per executor call: µs on the split on one thread and on SpinPool(2) (median over
        // runs), and the gap before it (the calling thread alone).
        let n = 100;
        let per_call = |exec: &dyn Executor| {
            let timed = TimedCalls {
                inner: exec,
                origin: Instant::now(),
                spans: Default::default(),
            };
            let mut arena = vec![0u8; model.arena_len_for(2)];
            let mut logits = vec![0f32; a.num_classes];
            let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
            for _ in 0..n {
                timed.spans.lock().expect("spans").clear();
                let start = timed.origin.elapsed().as_nanos() as u64;
                model
                    .run_parallel(x, &mut arena, &mut logits, Kernels::Auto, &timed)
                    .expect("run");
                let end = timed.origin.elapsed().as_nanos() as u64;
                let spans = timed.spans.lock().expect("spans").clone();
                let mut prev = start;
                let mut calls: Vec<(f64, f64)> = spans
                    .iter()
                    .map(|&(t0, t1, _)| {
                        let gap = (t0 - prev) as f64 / 1e3;
                        prev = t1;
                        ((t1 - t0) as f64 / 1e3, gap)
                    })
                    .collect();
                calls.push((0.0, (end - prev) as f64 / 1e3));
                runs.push(calls);
            }
            let tasks: Vec<usize> = timed
                .spans
                .lock()
                .expect("spans")
                .iter()
                .map(|s| s.2)
                .collect();
            let median = |mut v: Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let calls = runs[0].len();
            let med: Vec<(f64, f64)> = (0..calls)
                .map(|i| {
                    (
                        median(runs.iter().map(|r| r[i].0).collect()),
                        median(runs.iter().map(|r| r[i].1).collect()),
                    )
                })
                .collect();
            (med, tasks)
        };
        per_call(&pool);
        let (one, tasks) = per_call(&SplitOnOneThread);
        let (two, _) = per_call(&pool);
        println!("call  tasks   split1 µs   pool2 µs   ×     | gap before: split1  pool2");
        let (mut s1, mut s2, mut g1, mut g2) = (0.0, 0.0, 0.0, 0.0);
        for (i, ((a1, b1), (a2, b2))) in one.iter().zip(&two).enumerate() {
            let t = tasks.get(i).map_or("end".to_string(), |t| t.to_string());
            println!(
                "{i:4} {t:>6} {a1:10.1} {a2:10.1} {:6.2} | {b1:8.1} {b2:8.1}",
                if *a2 > 0.0 { a1 / a2 } else { 0.0 }
            );
            (s1, s2, g1, g2) = (s1 + a1, s2 + a2, g1 + b1, g2 + b2);
        }
        println!(
            "sum of medians: calls {s1:.1} / {s2:.1} µs ({:.2}×), gaps {g1:.1} / {g2:.1} µs",
            s1 / s2
        );
        return;
    }
    time(&Serial, 20);
    let counting = CountingSplit {
        calls: 0.into(),
        tasks: 0.into(),
    };
    time(&counting, 1);
    println!(
        "a 2-worker plain run hands the executor {} calls ({} tasks) per image",
        counting.calls.into_inner(),
        counting.tasks.into_inner()
    );
    for _ in 0..3 {
        let serial = time(&Serial, iters);
        let split1 = time(&SplitOnOneThread, iters);
        let pool2 = time(&pool, iters);
        let (a_ms, b_ms) = std::thread::scope(|s| {
            let other = s.spawn(|| time(&Serial, iters));
            let mine = time(&Serial, iters);
            (mine, other.join().expect("thread"))
        });
        println!(
            "serial {serial:.3} ms | split on one thread {split1:.3} ms ({:+.1} %) | SpinPool(2) \
             {pool2:.3} ms: {:.3}× serial, {:.3}× the split on one thread | two images at once \
             {:.3} / {:.3} ms: {:.3}× the throughput",
            (split1 / serial - 1.0) * 100.0,
            serial / pool2,
            split1 / pool2,
            a_ms,
            b_ms,
            2.0 * serial / a_ms.max(b_ms)
        );
    }
}
