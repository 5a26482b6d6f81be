//! temp: fixed cost of a SpinPool run around real work
use edge::{Executor, SpinPool};
use std::time::Instant;
fn work(n: usize) -> f64 {
    let mut x = 1.0f64;
    for i in 0..n {
        x = x * 1.0000001 + (i as f64) * 1e-12;
    }
    x
}
fn main() {
    let pool = SpinPool::new(2).unwrap();
    let unit = 2000; // iterations per task-unit
    for tasks in [2usize, 8, 24, 25] {
        let total = 48usize; // units of work overall
        let per = total * unit / tasks;
        let reps = 3000;
        let t0 = Instant::now();
        let mut s = 0.0;
        for _ in 0..reps {
            for _ in 0..tasks {
                s += work(per);
            }
        }
        let ser = t0.elapsed().as_secs_f64() * 1e6 / reps as f64;
        let acc = std::sync::Mutex::new(0.0);
        let t0 = Instant::now();
        for _ in 0..reps {
            pool.run(tasks, &|_, _| {
                let v = work(per);
                if v < 0.0 {
                    *acc.lock().unwrap() += v;
                }
            });
        }
        let par = t0.elapsed().as_secs_f64() * 1e6 / reps as f64;
        println!("{tasks} tasks: serial {ser:.1} us, pool2 {par:.1} us, ideal {:.1}, overhead {:.2} us ({s:.0})", ser / 2.0, par - ser / 2.0);
    }
}
