//! fc1/fc2 GEMMs of Atto 224 (every stage) on each x86-64 kernel set this CPU has: GFLOP/s and
//! the share of this core's FMA peak, measured here by a loop of independent FMAs (no clock
//! frequency is assumed). `cargo run --release -p edge --example gemm_roofline`.

#[cfg(target_arch = "x86_64")]
fn main() {
    use edge::cpu::X86Features;
    use edge::ops::pointwise::{self, packed_len};
    use std::time::Instant;

    type Pw = fn(&[f32], usize, usize, &[f32], &[f32], usize, &mut [f32], bool);
    let f = X86Features::get();
    let mut sets: Vec<(&str, Pw, f64)> = Vec::new();
    if f.avx2 {
        sets.push(("avx2", pointwise::pointwise_f32_avx2, peak::avx2()));
    }
    if f.avx512 {
        sets.push(("avx512", pointwise::pointwise_f32_avx512, peak::avx512()));
    }
    if sets.is_empty() {
        println!("no AVX2 on this CPU: nothing to measure");
        return;
    }
    for (name, _, p) in &sets {
        println!("{name}: measured FMA peak {p:.1} GFLOP/s (one core)");
    }
    println!(
        "{:<8} {:<22} {:>10} {:>8}",
        "set", "GEMM (pixels×K→N)", "GFLOP/s", "% peak"
    );
    let data = |n: usize| {
        (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect::<Vec<f32>>()
    };
    for (name, kernel, peak) in &sets {
        for (s, (p, c)) in [(3136, 40), (784, 80), (196, 160), (49, 320)]
            .into_iter()
            .enumerate()
        {
            for (op, k, n) in [("fc1", c, 4 * c), ("fc2", 4 * c, c)] {
                let (x, w, b) = (data(p * k), data(packed_len(n, k)), data(n));
                let mut out = vec![0f32; p * n];
                let reps = (2e8 / (2.0 * (p * k * n) as f64)).ceil() as usize;
                let mut best = f64::MAX;
                for _ in 0..5 {
                    let t = Instant::now();
                    for _ in 0..reps {
                        kernel(&x, p, k, &w, &b, n, &mut out, op == "fc2");
                    }
                    best = best.min(t.elapsed().as_secs_f64() / reps as f64);
                }
                let gflops = 2.0 * (p * k * n) as f64 / best / 1e9;
                let shape = format!("s{s} {op} {p}×{k}→{n}");
                println!(
                    "{name:<8} {shape:<22} {gflops:>10.1} {:>7.0}%",
                    100.0 * gflops / peak
                );
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod peak {
    use core::arch::x86_64::*;
    use std::time::Instant;

    const ITERS: usize = 20_000_000;

    /// GFLOP/s of 16 independent `zmm` FMA chains (enough to cover latency × ports).
    pub fn avx512() -> f64 {
        // SAFETY: called only when the CPU has AVX-512 F.
        best(|| unsafe { fma512() }, 16.0 * 16.0)
    }

    /// GFLOP/s of 12 independent `ymm` FMA chains.
    pub fn avx2() -> f64 {
        // SAFETY: called only when the CPU has AVX2+FMA.
        best(|| unsafe { fma256() }, 12.0 * 8.0)
    }

    fn best(f: impl Fn() -> f32, lanes_per_iter: f64) -> f64 {
        let mut t_best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            std::hint::black_box(f());
            t_best = t_best.min(t.elapsed().as_secs_f64());
        }
        2.0 * lanes_per_iter * ITERS as f64 / t_best / 1e9
    }

    /// `$n` named accumulators (not an array, so that they stay in registers), each updated once
    /// per iteration: independent FMA chains.
    macro_rules! chains {
        ($fma:ident, $set1:ident, $add:ident, $($v:ident),+) => {{
            let m = $set1(std::hint::black_box(0.999_999));
            let a = $set1(std::hint::black_box(1e-7));
            $(let mut $v = $set1(1.0);)+
            for _ in 0..ITERS {
                $($v = $fma($v, m, a);)+
            }
            let mut s = $set1(0.0);
            $(s = $add(s, $v);)+
            s
        }};
    }

    #[target_feature(enable = "avx512f")]
    fn fma512() -> f32 {
        let s = chains!(
            _mm512_fmadd_ps,
            _mm512_set1_ps,
            _mm512_add_ps,
            a0,
            a1,
            a2,
            a3,
            a4,
            a5,
            a6,
            a7,
            a8,
            a9,
            a10,
            a11,
            a12,
            a13,
            a14,
            a15
        );
        _mm512_reduce_add_ps(s)
    }

    #[target_feature(enable = "avx2,fma")]
    fn fma256() -> f32 {
        let s = chains!(
            _mm256_fmadd_ps,
            _mm256_set1_ps,
            _mm256_add_ps,
            a0,
            a1,
            a2,
            a3,
            a4,
            a5,
            a6,
            a7,
            a8,
            a9,
            a10,
            a11
        );
        let mut t = [0f32; 8];
        // SAFETY: `t` holds 8 floats.
        unsafe { _mm256_storeu_ps(t.as_mut_ptr(), s) };
        t.iter().sum()
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!("gemm_roofline measures the x86-64 kernel sets; nothing to do on this target");
}
