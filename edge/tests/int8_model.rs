//! int8 models end to end: calibrated from the timm fixture weights (quant's library path),
//! then run by every int8 kernel set available here. The NEON sets (ARMv8.0, and SDOT + fp16
//! when the build targets them) must be bit-identical to the scalar reference at every tap and
//! in the logits; on the host, int8 must stay close to f32.

use std::path::{Path, PathBuf};

use edge::{Input, Kernels, Model, Observer, Precision, QParams, Tap};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(rel)
}

fn aligned(raw: &[u8]) -> Vec<u128> {
    let mut words = vec![0u128; raw.len().div_ceil(16)];
    bytemuck::cast_slice_mut::<u128, u8>(&mut words)[..raw.len()].copy_from_slice(raw);
    words
}

/// Every int8 tap's codes, in order.
#[derive(Default)]
struct Codes(Vec<(Tap, Vec<i8>, QParams)>);
impl Observer for Codes {
    const ENABLED: bool = true;
    fn observe(&mut self, _: Tap, _: usize, _: usize, _: usize, _: &[f32]) {}
    fn observe_i8(&mut self, tap: Tap, _: usize, _: usize, _: usize, q: &[i8], qp: QParams) {
        self.0.push((tap, q.to_vec(), qp));
    }
}

fn run(model: &Model, x: Input, k: Kernels) -> (Vec<f32>, Codes) {
    let mut arena = vec![0u8; model.arena_len()];
    let mut logits = vec![0f32; model.arch().num_classes];
    let mut codes = Codes::default();
    model
        .run_with(x, &mut arena, &mut logits, k, &mut codes)
        .unwrap();
    // The observer-free (production) path gives the same logits.
    let mut plain = vec![0f32; logits.len()];
    model
        .run_with(x, &mut arena, &mut plain, k, &mut edge::NoObserver)
        .unwrap();
    assert_eq!(
        logits.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        plain.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    (logits, codes)
}

/// A u8 RGB image of `h × w`: the astronaut fixture, nearest-neighbour resampled.
fn astronaut(h: usize, w: usize) -> Vec<u8> {
    let src = std::fs::read(fixture("atto/inputs/astronaut_u8_hwc_224x224x3.bin")).unwrap();
    let mut out = vec![0u8; h * w * 3];
    for y in 0..h {
        for x in 0..w {
            let (sy, sx) = (y * 224 / h, x * 224 / w);
            out[(y * w + x) * 3..][..3].copy_from_slice(&src[(sy * 224 + sx) * 3..][..3]);
        }
    }
    out
}

/// A smooth synthetic image (calibration input different from the evaluated one).
fn gradient(h: usize, w: usize) -> Vec<u8> {
    (0..h * w * 3)
        .map(|i| {
            let (p, c) = (i / 3, i % 3);
            ((p / w * 255 / h + (p % w) * 255 / w * c) / (c + 1)) as u8
        })
        .collect()
}

#[test]
fn int8_kernel_sets_are_bit_identical_to_the_reference_on_atto() {
    // 224: the stage widths the depthwise kernel specialises (56/28/14/7); 96: run-time bounds;
    // 77×45: not a multiple of 32 (timm's floors: stage maps 19×11, 9×5, 4×2, 2×1), every patch
    // conv dropping trailing rows and columns.
    for (h, w) in [(224usize, 224usize), (96, 96), (77, 45)] {
        let hw = format!("{h}x{w}");
        let sd = quant::load_state_dict(&fixture("atto/weights.safetensors")).unwrap();
        let arch = quant::infer_arch(&sd, h, w).unwrap();
        let f32_raw = quant::convert::convert(&sd, &arch).unwrap();
        let f32_words = aligned(&f32_raw);
        let f32_bytes = &bytemuck::cast_slice::<u128, u8>(&f32_words)[..f32_raw.len()];
        let f32m = Model::parse(f32_bytes).unwrap();
        let calib = gradient(h, w);
        let inputs = [Input::HwcU8(&calib)];
        let raw = quant::quantize::quantize_with_inputs(&f32m, inputs, quant::calib::Method::Mse)
            .unwrap();
        let words = aligned(&raw);
        let model = Model::parse(&bytemuck::cast_slice::<u128, u8>(&words)[..raw.len()]).unwrap();
        assert_eq!(model.precision(), Precision::Int8);
        let img = astronaut(h, w);
        let (reference, ref_codes) = run(&model, Input::HwcU8(&img), Kernels::Scalar);
        // aarch64: NEON (Auto is the same set); host: every other set this CPU has (AVX2,
        // AVX-512 with VNNI where present).
        let sets: Vec<Kernels> = if cfg!(target_arch = "aarch64") {
            vec![Kernels::Neon]
        } else {
            Kernels::available()
                .filter(|&k| k != Kernels::Scalar)
                .collect()
        };
        for k in sets {
            let (got, codes) = run(&model, Input::HwcU8(&img), k);
            let name = k.resolved_name_for(Precision::Int8).unwrap();
            assert_eq!(codes.0.len(), ref_codes.0.len());
            for ((t, q, _), (rt, rq, _)) in codes.0.iter().zip(&ref_codes.0) {
                assert_eq!(t, rt);
                let diff = q.iter().zip(rq).filter(|(a, b)| a != b).count();
                assert_eq!(diff, 0, "{hw}px {name}: {diff} codes differ at {t:?}");
            }
            assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                reference.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{hw}px {name}: logits differ"
            );
            println!(
                "atto {hw}px int8 [{name}]: {} taps and {} logits bit-identical to scalar",
                codes.0.len(),
                got.len()
            );
        }
        if h == 224 && !cfg!(target_arch = "aarch64") {
            // Host only (slow to emulate): int8 stays close to f32 on a real photo.
            let mut arena = vec![0u8; f32m.arena_len()];
            let mut lf = vec![0f32; 1000];
            f32m.run(Input::HwcU8(&img), &mut arena, &mut lf).unwrap();
            let dot: f64 = lf
                .iter()
                .zip(&reference)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum();
            let n = |v: &[f32]| v.iter().map(|&a| a as f64 * a as f64).sum::<f64>().sqrt();
            let cos = dot / (n(&lf) * n(&reference));
            let top = |v: &[f32]| (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b });
            println!(
                "atto 224 int8 vs f32 on the astronaut: cosine {cos:.5}, top-1 {} vs {}",
                top(&reference),
                top(&lf)
            );
            assert!(cos > 0.99, "{cos}");
            assert_eq!(top(&reference), top(&lf));
        }
    }
}

#[test]
fn int8_paths_name_what_runs() {
    let scalar = Kernels::Scalar.int8_paths().unwrap();
    assert!(scalar.gemm.starts_with("scalar reference"), "{scalar}");
    #[cfg(target_arch = "aarch64")]
    {
        let p = Kernels::Neon.int8_paths().unwrap();
        // Features from the build: SDOT with `dotprod` + target feature, native fp16 with +fp16.
        let sdot = cfg!(all(feature = "dotprod", target_feature = "dotprod"));
        assert_eq!(p.gemm.starts_with("SDOT"), sdot, "{p}");
        assert_eq!(
            p.grn.starts_with("native fp16"),
            cfg!(target_feature = "fp16"),
            "{p}"
        );
        assert!(sdot || p.gemm.contains("ARMv8.0"), "{p}");
        println!("neon int8 paths: {p}");
    }
    #[cfg(target_arch = "x86_64")]
    {
        let f = edge::cpu::X86Features::get();
        if f.avx2 {
            let p = Kernels::Avx2.int8_paths().unwrap();
            assert!(p.gemm.contains("vpmaddwd"), "{p}");
        }
        if f.avx512 {
            let p = Kernels::Avx512.int8_paths().unwrap();
            assert_eq!(p.gemm.contains("vpdpbusd"), f.avx512_vnni, "{p}");
        }
        assert!(Kernels::Neon.int8_paths().is_none());
    }
}
