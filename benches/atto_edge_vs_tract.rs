//! Atto at 224, batch 1, one thread: edge with every kernel set this CPU has (scalar reference,
//! and NEON, AVX2 or AVX-512), f32 and int8 (calibrated on the same photo), vs tract-onnx on
//! timm's ONNX export of the same weights, same input, in one run.
//! The best set also runs on 2 threads (`Model::run_parallel` on `edge::SpinPool`, and on a
//! rayon pool: `_2threads_rayon`).
//! `cargo bench --bench atto_edge_vs_tract`; `scripts/bench-x86.sh` adds onnxruntime.

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::Path;
use tract_onnx::prelude::*;

fn fixture(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn bench(c: &mut Criterion) {
    let raw = std::fs::read(fixture("atto/inputs/astronaut.bin")).unwrap();
    let x: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();

    let sd = quant::load_state_dict(&fixture("atto/weights.safetensors")).unwrap();
    let arch = quant::infer_arch(&sd, 224, 224).unwrap();
    let file =
        edge::builder::AlignedBytes::from_slice(&quant::convert::convert(&sd, &arch).unwrap());
    let model = edge::Model::parse(file.as_slice()).unwrap();
    let mut logits = vec![0f32; 1000];
    let int8 = edge::builder::AlignedBytes::from_slice(
        &quant::quantize::quantize_with_inputs(
            &model,
            [edge::Input::NchwF32(&x)],
            quant::calib::Method::Mse,
        )
        .unwrap(),
    );
    let model_i8 = edge::Model::parse(int8.as_slice()).unwrap();
    let mut arena = vec![0u8; model.arena_len().max(model_i8.arena_len())];

    let plan = tract_onnx::onnx()
        .model_for_path(fixture("atto/model_static.onnx"))
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input: TValue = tract_ndarray::Array4::from_shape_vec((1, 3, 224, 224), x.clone())
        .unwrap()
        .into_tensor()
        .into();

    let mut g = c.benchmark_group("atto224_batch1_1thread");
    g.sample_size(20);
    for k in edge::Kernels::available() {
        for (m, precision) in [(&model, "f32"), (&model_i8, "int8")] {
            let name = k.resolved_name_for(m.precision()).unwrap();
            g.bench_function(format!("edge_{precision}_{name}"), |b| {
                b.iter(|| {
                    m.run_with(
                        edge::Input::NchwF32(&x),
                        &mut arena,
                        &mut logits,
                        k,
                        &mut edge::NoObserver,
                    )
                    .unwrap()
                })
            });
        }
    }
    let spin = edge::SpinPool::new(2).unwrap();
    let pool = edge::RayonExecutor::new(2).unwrap();
    for (m, precision) in [(&model, "f32"), (&model_i8, "int8")] {
        let name = edge::Kernels::Auto
            .resolved_name_for(m.precision())
            .unwrap();
        let mut arena = vec![0u8; m.arena_len_for(2)];
        g.bench_function(format!("edge_{precision}_{name}_2threads"), |b| {
            // The calling thread and one helper that spins between operators (`SpinPool`).
            b.iter(|| {
                m.run_parallel(
                    edge::Input::NchwF32(&x),
                    &mut arena,
                    &mut logits,
                    edge::Kernels::Auto,
                    &spin,
                )
                .unwrap()
            })
        });
        g.bench_function(format!("edge_{precision}_{name}_2threads_rayon"), |b| {
            // The run on a pool thread: it works on every operator too (`RayonExecutor::install`).
            b.iter(|| {
                pool.install(|| {
                    m.run_parallel(
                        edge::Input::NchwF32(&x),
                        &mut arena,
                        &mut logits,
                        edge::Kernels::Auto,
                        &pool,
                    )
                })
                .unwrap()
            })
        });
    }
    g.bench_function("tract_onnx", |b| {
        b.iter(|| plan.run(tvec!(input.clone())).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
