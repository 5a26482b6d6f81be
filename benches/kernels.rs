//! Criterion benchmarks of each operator kernel at Atto's stage-0/stage-3 shapes, every kernel
//! set this target has (scalar on x86-64; scalar and NEON on aarch64). `cargo bench --bench kernels`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use edge::ops::{dwconv7x7, gelu, grn, layernorm, patch_conv, pointwise, pool};

fn data(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1 << 24) as f32 - 0.5
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    // (pixels h, w, channels) of Atto's first and last stage at 224.
    for &(h, w, ch) in &[(56usize, 56usize, 40usize), (7, 7, 320)] {
        let p = h * w;
        let x = data(p * ch, 1);
        let hid = data(p * 4 * ch, 2);
        let wdw = data(49 * ch, 3);
        let b = data(4 * ch, 4);
        let w1 = data(pointwise::packed_len(4 * ch, ch), 5);
        let mut out = vec![0f32; p * 4 * ch];
        let mut g = c.benchmark_group(format!("atto_{h}x{w}x{ch}"));
        g.throughput(Throughput::Elements((p * ch * 49) as u64));
        g.bench_function(BenchmarkId::new("dwconv7x7", "scalar"), |bn| {
            bn.iter(|| dwconv7x7::dwconv7x7_f32_scalar(&x, h, w, ch, &wdw, &b, &mut out))
        });
        #[cfg(target_arch = "aarch64")]
        g.bench_function(BenchmarkId::new("dwconv7x7", "neon"), |bn| {
            bn.iter(|| dwconv7x7::dwconv7x7_f32_neon(&x, h, w, ch, &wdw, &b, &mut out))
        });
        g.throughput(Throughput::Elements((p * ch * 4 * ch) as u64));
        g.bench_function(BenchmarkId::new("pointwise_fc1", "scalar"), |bn| {
            bn.iter(|| pointwise::pointwise_f32_scalar(&x, p, ch, &w1, &b, 4 * ch, &mut out, false))
        });
        #[cfg(target_arch = "aarch64")]
        g.bench_function(BenchmarkId::new("pointwise_fc1", "neon"), |bn| {
            bn.iter(|| pointwise::pointwise_f32_neon(&x, p, ch, &w1, &b, 4 * ch, &mut out, false))
        });
        g.throughput(Throughput::Elements((p * 4 * ch) as u64));
        g.bench_function(BenchmarkId::new("gelu", "scalar"), |bn| {
            bn.iter(|| {
                out.copy_from_slice(&hid);
                gelu::gelu_f32_scalar(&mut out)
            })
        });
        #[cfg(target_arch = "aarch64")]
        g.bench_function(BenchmarkId::new("gelu", "neon"), |bn| {
            bn.iter(|| {
                out.copy_from_slice(&hid);
                gelu::gelu_f32_neon(&mut out)
            })
        });
        let mut norms = vec![0f32; 4 * ch];
        g.bench_function(BenchmarkId::new("grn", "scalar"), |bn| {
            bn.iter(|| {
                out.copy_from_slice(&hid);
                grn::grn_f32_scalar(&mut out, p, 4 * ch, &b, &b, 1e-6, &mut norms)
            })
        });
        g.throughput(Throughput::Elements((p * ch) as u64));
        g.bench_function(BenchmarkId::new("layernorm", "scalar"), |bn| {
            bn.iter(|| {
                out[..p * ch].copy_from_slice(&x);
                layernorm::layernorm_f32_scalar(&mut out[..p * ch], p, ch, &b, &b, 1e-6)
            })
        });
        g.bench_function(BenchmarkId::new("avgpool", "scalar"), |bn| {
            bn.iter(|| pool::avgpool_f32_scalar(&x, p, ch, &mut norms))
        });
        g.finish();
    }
    let img = data(224 * 224 * 3, 6);
    let ws = data(4 * 4 * 3 * 40, 7);
    let bs = data(40, 8);
    let mut out = vec![0f32; 56 * 56 * 40];
    c.bench_function("stem_patch_conv4x4/scalar", |bn| {
        bn.iter(|| {
            patch_conv::patch_conv_f32_scalar(&img, 224, 224, 3, 4, &ws, &bs, 40, 0..40, &mut out)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
