//! What one `SpinPool` call costs beyond its tasks' work (host timing, not a test): the
//! fork-join round trip of an empty call (every worker sees the job, runs its share of no-op
//! tasks and checks out), and the overhead around real work split into 2, 8, 24 and 25 tasks
//! (time on 2 threads minus half the serial time). A plain Atto image makes ~50 calls
//! (`split_costs` prints the count), so each microsecond here is ~1 % of a 2-thread int8 image.
//!
//! `cargo run --release -p edge --features std --example pool_cost`
use edge::{Executor, SpinPool};
use std::hint::black_box;
use std::time::Instant;

fn work(n: usize) -> f64 {
    let mut x = 1.0f64;
    for i in 0..n {
        x = x * 1.0000001 + (i as f64) * 1e-12;
    }
    x
}

fn main() {
    let pool = SpinPool::new(2).expect("2 threads");
    for tasks in [2usize, 8] {
        let reps = 200_000;
        let t0 = Instant::now();
        for _ in 0..reps {
            pool.run(tasks, &|t, _| {
                black_box(t);
            });
        }
        let us = t0.elapsed().as_secs_f64() * 1e6 / reps as f64;
        println!("empty call, {tasks} tasks: {us:.3} µs per call");
    }
    let unit = 2000; // iterations per task-unit
    for tasks in [2usize, 8, 24, 25] {
        let total = 48usize; // units of work overall
        let per = total * unit / tasks;
        let reps = 3000;
        let t0 = Instant::now();
        for _ in 0..reps {
            for _ in 0..tasks {
                black_box(work(black_box(per)));
            }
        }
        let ser = t0.elapsed().as_secs_f64() * 1e6 / reps as f64;
        let t0 = Instant::now();
        for _ in 0..reps {
            pool.run(tasks, &|_, _| {
                black_box(work(black_box(per)));
            });
        }
        let par = t0.elapsed().as_secs_f64() * 1e6 / reps as f64;
        println!(
            "{tasks} tasks: serial {ser:.1} µs, 2 threads {par:.1} µs, ideal {:.1}, overhead {:.2} µs",
            ser / 2.0,
            par - ser / 2.0
        );
    }
}
