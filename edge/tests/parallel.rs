//! One image across workers: the logits and every observer tap are bit-identical for 1, 2, 3, 4
//! and 7 workers, f32 and int8, on every kernel set this target runs (host: each set the CPU has;
//! aarch64 under qemu-user, which runs threads: NEON), whatever order the tasks run in.

use std::sync::atomic::{AtomicUsize, Ordering};

mod common;
use common::atto_f32_int8;

use edge::{Executor, Input, Kernels, Model, Observer, QParams, Serial, Tap};

/// `n` threads per `run`, taking tasks from a shared counter (so the order and the worker of
/// each task vary from run to run).
struct Threads(usize);
// SAFETY: the counter hands out each task in 0..tasks once; thread w only runs as worker w;
// the scope joins every thread before `run` returns.
unsafe impl Executor for Threads {
    fn workers(&self) -> usize {
        self.0
    }
    fn run(&self, tasks: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for w in 0..self.0 {
                let next = &next;
                s.spawn(move || loop {
                    let t = next.fetch_add(1, Ordering::Relaxed);
                    if t >= tasks {
                        break;
                    }
                    f(t, w);
                });
            }
        });
    }
}

/// Every tap's bits, in order (f32 values or int8 codes).
#[derive(Default, PartialEq, Debug)]
struct Bits(Vec<(Tap, Vec<u32>)>);
impl Observer for Bits {
    const ENABLED: bool = true;
    fn observe(&mut self, tap: Tap, _: usize, _: usize, _: usize, v: &[f32]) {
        self.0.push((tap, v.iter().map(|x| x.to_bits()).collect()));
    }
    fn observe_i8(&mut self, tap: Tap, _: usize, _: usize, _: usize, q: &[i8], _: QParams) {
        self.0
            .push((tap, q.iter().map(|&x| x as u8 as u32).collect()));
    }
}

fn run<E: Executor + ?Sized>(model: &Model, x: Input, k: Kernels, exec: &E) -> (Vec<u32>, Bits) {
    let mut arena = vec![0u8; model.arena_len_for(exec.workers())];
    let mut logits = vec![0f32; model.arch().num_classes];
    let mut bits = Bits::default();
    model
        .run_with_executor(x, &mut arena, &mut logits, k, &mut bits, exec)
        .unwrap();
    let mut plain = vec![0f32; logits.len()];
    model
        .run_parallel(x, &mut arena, &mut plain, k, exec)
        .unwrap();
    let to_bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(to_bits(&logits), to_bits(&plain), "observed vs plain path");
    (to_bits(&logits), bits)
}

fn sets() -> Vec<Kernels> {
    if cfg!(target_arch = "aarch64") {
        vec![Kernels::Neon]
    } else {
        Kernels::available().collect()
    }
}

#[test]
fn any_worker_count_gives_the_same_bits() {
    // aarch64 runs under emulation: a smaller input keeps it quick.
    let hw = if cfg!(target_arch = "aarch64") {
        96
    } else {
        224
    };
    let (f32_file, i8_file, img) = atto_f32_int8(hw);
    let (f32m, i8m) = (f32_file.model(), i8_file.model());
    let x: Vec<f32> = (0..3 * hw * hw)
        .map(|i| ((i * 7919) % 2000) as f32 / 1000.0 - 1.0)
        .collect();
    for (model, name) in [(&f32m, "f32"), (&i8m, "int8")] {
        for k in sets() {
            // int8's scalar reference is slow: one input for it.
            let inputs: Vec<Input> = if name == "int8" && k == Kernels::Scalar {
                vec![Input::HwcU8(&img)]
            } else {
                vec![Input::HwcU8(&img), Input::NchwF32(&x)]
            };
            for input in inputs {
                let (want, want_taps) = run(model, input, k, &Serial);
                for workers in [1, 2, 3, 4, 7] {
                    // Threads spawned per call, and edge's own persistent pool (feature std).
                    #[allow(unused_mut)]
                    let mut runs = vec![("threads", run(model, input, k, &Threads(workers)))];
                    #[cfg(feature = "std")]
                    runs.push((
                        "SpinPool",
                        run(model, input, k, &edge::SpinPool::new(workers).unwrap()),
                    ));
                    for (pool, (got, taps)) in runs {
                        let at = format!("{name} {} {workers} workers ({pool})", k.name());
                        assert_eq!(got, want, "{at}: logits");
                        assert_eq!(taps.0.len(), want_taps.0.len());
                        for ((t, a), (_, b)) in taps.0.iter().zip(&want_taps.0) {
                            assert!(a == b, "{at}: tap {t:?} differs");
                        }
                    }
                }
                println!(
                    "{name} {}: logits and {} taps bit-identical for 1, 2, 3, 4, 7 workers",
                    k.resolved_name_for(model.precision()).unwrap(),
                    want_taps.0.len()
                );
            }
        }
    }
}

#[test]
fn zero_workers_and_short_arenas_are_typed_errors() {
    /// Claims this many workers; the runtime must refuse it before asking for any task.
    struct NeverRuns(usize);
    // SAFETY: never runs a task (both counts below are refused before `run` is called).
    unsafe impl Executor for NeverRuns {
        fn workers(&self) -> usize {
            self.0
        }
        fn run(&self, _: usize, _: &(dyn Fn(usize, usize) + Sync)) {
            panic!("no task may run");
        }
    }
    let (f32_file, i8_file, _) = atto_f32_int8(64);
    let (m, q) = (f32_file.model(), i8_file.model());
    let img = vec![7u8; 64 * 64 * 3];
    let mut arena = vec![0u8; m.arena_len()];
    let mut logits = vec![0f32; 1000];
    let e = m.run_parallel(
        Input::HwcU8(&img),
        &mut arena,
        &mut logits,
        Kernels::Auto,
        &NeverRuns(0),
    );
    assert_eq!(e, Err(edge::Error::NoWorkers));
    // One worker needs exactly `arena_len`; several need more (f32: GRN's partial sums per
    // task; int8: each worker's rows), stated per worker count, and a buffer short of it (past
    // the alignment slack) is refused with the size it needs.
    for (model, workers) in [(&m, 7), (&q, 64)] {
        assert_eq!(model.arena_len_for(1), model.arena_len());
        assert!(model.arena_len_for(workers) > model.arena_len());
        let need = model.arena_len_for(workers);
        let mut short = vec![0u8; need - 16];
        let e = model.run_parallel(
            Input::HwcU8(&img),
            &mut short,
            &mut logits,
            Kernels::Auto,
            &Threads(workers),
        );
        assert!(
            matches!(e, Err(edge::Error::ArenaTooSmall { needed, .. }) if needed == need),
            "{e:?}"
        );
    }
    // So many workers that the plan's size overflows `usize`: the typed error (needing
    // usize::MAX), before any task runs, whatever buffer is given.
    for model in [&m, &q] {
        let mut arena = vec![0u8; model.arena_len_for(8)];
        let e = model.run_parallel(
            Input::HwcU8(&img),
            &mut arena,
            &mut logits,
            Kernels::Auto,
            &NeverRuns(usize::MAX / 64),
        );
        assert!(
            matches!(e, Err(edge::Error::ArenaTooSmall { needed: usize::MAX, got }) if got == arena.len()),
            "{e:?}"
        );
    }
}

/// `arena_len_for(n)` is enough for any worker count, its per-worker blocks included, with the
/// same logits as one worker. At 224 px 64 workers' tiles of int8 GRN output outgrow the
/// buffers one worker needs (the plan is the same code on every target; aarch64, emulated,
/// runs 96 px, where the blocks fit anyway).
#[test]
fn many_workers_run_in_the_arena_they_are_given() {
    /// `n` workers in name, the tasks run in turn on this thread as worker `task mod n`.
    struct InTurn(usize);
    // SAFETY: each task runs once, one at a time, as a worker below `n`.
    unsafe impl Executor for InTurn {
        fn workers(&self) -> usize {
            self.0
        }
        fn run(&self, tasks: usize, f: &(dyn Fn(usize, usize) + Sync)) {
            (0..tasks).for_each(|t| f(t, t % self.0));
        }
    }
    // aarch64 runs under emulation: a smaller input keeps it quick.
    let hw = if cfg!(target_arch = "aarch64") {
        96
    } else {
        224
    };
    let (f32_file, i8_file, img) = atto_f32_int8(hw);
    for model in [f32_file.model(), i8_file.model()] {
        let x = Input::HwcU8(&img);
        let (one, _) = run(&model, x, Kernels::Auto, &Serial);
        for workers in [64, 200] {
            let (many, _) = run(&model, x, Kernels::Auto, &InTurn(workers));
            assert_eq!(many, one, "{:?} {workers} workers", model.precision());
        }
    }
}

/// A NaN or infinity anywhere in an f32 image is the typed error with the smallest (NCHW)
/// index, for any worker count, plain runs (which check the image inside their input tasks),
/// observed and profiled runs (which check it first) alike, and the logits are left as they
/// were. At 66 px the stem's last output row ends at row 64: rows 64 and 65 are converted by
/// no task, and are checked all the same.
#[test]
fn non_finite_inputs_name_the_first_index_for_any_worker_count() {
    for hw in [64, 66] {
        let (f32_file, i8_file, _) = atto_f32_int8(hw);
        let (f32m, i8m) = (f32_file.model(), i8_file.model());
        let plane = hw * hw;
        // (index, value) sets: one value; the first in a later plane than another found by a
        // later task; several in one task and plane; the very first and very last elements;
        // one in the rows below the stem's last output row and one in a later plane.
        let mut cases: Vec<Vec<(usize, f32)>> = vec![
            vec![(2 * plane + 1000, f32::NAN)],
            vec![
                (3000, f32::INFINITY),
                (plane + 10, f32::NAN),
                (2 * plane + 5, f32::NAN),
            ],
            vec![(plane - 1, f32::NEG_INFINITY), (plane - 2, f32::NAN)],
            vec![(3 * plane - 1, f32::NAN), (0, f32::INFINITY)],
        ];
        if hw % 4 != 0 {
            cases.push(vec![(plane + 70, f32::NAN), (plane - 3, f32::INFINITY)]);
            cases.push(vec![(3 * plane - hw, f32::NAN)]);
        }
        for (model, name) in [(&f32m, "f32"), (&i8m, "int8")] {
            for case in &cases {
                let mut x: Vec<f32> = (0..3 * plane)
                    .map(|i| (i % 17) as f32 * 0.1 - 0.8)
                    .collect();
                for &(i, v) in case {
                    x[i] = v;
                }
                let want = case.iter().map(|&(i, _)| i).min().unwrap();
                for workers in [1, 2, 3, 7] {
                    let exec = Threads(workers);
                    let mut arena = vec![0u8; model.arena_len_for(workers)];
                    let mut logits = vec![1.5f32; model.arch().num_classes];
                    let input = Input::NchwF32(&x);
                    let plain =
                        model.run_parallel(input, &mut arena, &mut logits, Kernels::Auto, &exec);
                    let mut bits = Bits::default();
                    let observed = model.run_with_executor(
                        input,
                        &mut arena,
                        &mut logits,
                        Kernels::Auto,
                        &mut bits,
                        &exec,
                    );
                    let origin = std::time::Instant::now();
                    let clock = || origin.elapsed().as_nanos() as u64;
                    let mut ticks = vec![0u64; edge::Op::count(model.arch())];
                    let mut profiler = edge::Profiler::new(clock, &mut ticks);
                    let profiled = model.run_with_executor(
                        input,
                        &mut arena,
                        &mut logits,
                        Kernels::Auto,
                        &mut profiler,
                        &exec,
                    );
                    for (path, e) in [
                        ("plain", plain),
                        ("observed", observed),
                        ("profiled", profiled),
                    ] {
                        assert_eq!(
                            e,
                            Err(edge::Error::NonFiniteInput { index: want }),
                            "{name} {hw} px {workers} workers, {path}, {case:?}"
                        );
                    }
                    assert!(logits.iter().all(|&l| l == 1.5), "{name}: logits written");
                    assert!(bits.0.is_empty(), "{name}: a tap was observed");
                    // A short logits buffer is reported first by every kind of run.
                    let short = &mut logits[1..];
                    let plain = model.run_parallel(input, &mut arena, short, Kernels::Auto, &exec);
                    let mut bits = Bits::default();
                    let observed = model.run_with_executor(
                        input,
                        &mut arena,
                        short,
                        Kernels::Auto,
                        &mut bits,
                        &exec,
                    );
                    for e in [plain, observed] {
                        assert!(matches!(e, Err(edge::Error::OutputLength { .. })), "{e:?}");
                    }
                }
            }
        }
    }
}
