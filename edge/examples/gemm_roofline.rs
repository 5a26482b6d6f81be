//! fc1/fc2 GEMMs of Atto 224 (every stage) on each x86-64 kernel set this CPU has: GFLOP/s (f32)
//! or GOP/s (int8, 2 ops per multiply-add) and the share of this core's peak, measured here by a
//! loop of independent FMAs (`vpdpbusd` for int8; no clock frequency is assumed).
//! `cargo run --release -p edge --example gemm_roofline`.

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
    if f.avx512_vnni {
        int8::run();
    }
}

#[cfg(target_arch = "x86_64")]
mod int8 {
    use edge::ops::pointwise_i8::{self, packed_len};
    use edge::ops::requant::Requant;
    use std::time::Instant;

    pub fn run() {
        let peak = super::peak::vnni256();
        println!("avx512+vnni: measured vpdpbusd (ymm) peak {peak:.1} GOP/s (one core)");
        println!(
            "{:<12} {:<22} {:>10} {:>8}",
            "set", "GEMM (pixels×K→N)", "GOP/s", "% peak"
        );
        let bytes = |n: usize| {
            (0..n)
                .map(|i| ((i * 7919) % 251) as i8)
                .collect::<Vec<i8>>()
        };
        for (s, (p, c)) in [(3136, 40), (784, 80), (196, 160), (49, 320)]
            .into_iter()
            .enumerate()
        {
            for (op, k, n) in [("fc1", c, 4 * c), ("fc2", 4 * c, c)] {
                let (x, w) = (bytes(p * k), bytes(packed_len(n, k)));
                let bias = vec![17i32; n];
                let rq = vec![Requant::from_scale(1e-3).unwrap(); n];
                let (mut o8, mut o32) = (vec![0i8; p * n], vec![0i32; p * n]);
                let reps = (2e8 / (2.0 * (p * k * n) as f64)).ceil() as usize;
                let mut best = f64::MAX;
                for _ in 0..5 {
                    let t = Instant::now();
                    for _ in 0..reps {
                        // fc1 requantizes to int8; fc2 hands int32 to the residual add.
                        if op == "fc1" {
                            pointwise_i8::pointwise_i8_avx512vnni(
                                &x, p, k, &w, &bias, &rq, 3, n, &mut o8,
                            );
                        } else {
                            pointwise_i8::pointwise_i8_acc_avx512vnni(
                                &x, p, k, &w, &bias, n, &mut o32,
                            );
                        }
                    }
                    best = best.min(t.elapsed().as_secs_f64() / reps as f64);
                }
                let gops = 2.0 * (p * k * n) as f64 / best / 1e9;
                let shape = format!("s{s} {op} {p}×{k}→{n}");
                println!(
                    "{:<12} {shape:<22} {gops:>10.1} {:>7.0}%",
                    "avx512+vnni",
                    100.0 * gops / peak
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
            let m = $set1(std::hint::black_box(0.999_999 as _));
            let a = $set1(std::hint::black_box(1e-7 as _));
            $(let mut $v = $set1(1.0 as _);)+
            for _ in 0..ITERS {
                $($v = $fma($v, m, a);)+
            }
            let mut s = $set1(0.0 as _);
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

    /// GOP/s (2 per multiply-add, 32 multiply-adds per instruction) of 12 independent `ymm`
    /// `vpdpbusd` chains.
    pub fn vnni256() -> f64 {
        // SAFETY: called only when the CPU has AVX-512 VNNI and VL.
        best(|| unsafe { dpbusd256() }, 12.0 * 32.0)
    }

    #[target_feature(enable = "avx512f,avx512vl,avx512vnni")]
    fn dpbusd256() -> f32 {
        let dp = |acc: __m256i, a: __m256i, b: __m256i| _mm256_dpbusd_epi32(acc, a, b);
        let zero = |_: i32| _mm256_setzero_si256();
        let add = |a: __m256i, b: __m256i| _mm256_add_epi32(a, b);
        let s = chains!(dp, zero, add, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11);
        let mut t = [0i32; 8];
        // SAFETY: `t` holds 8 i32.
        unsafe { _mm256_storeu_si256(t.as_mut_ptr().cast(), s) };
        t.iter().sum::<i32>() as f32
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!("gemm_roofline measures the x86-64 kernel sets; nothing to do on this target");
}
