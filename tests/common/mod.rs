//! Shared helpers for the cross-crate tests: fixture paths, raw f32 files, conversions.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use edge::builder::AlignedBytes;

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

pub fn read_f32(rel: &str) -> Vec<f32> {
    let b = std::fs::read(fixture(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

pub fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Converts a fixture's safetensors with `quant`'s library path, returning the aligned file.
pub fn convert(weights_rel: &str, arch: Option<&str>, hw: (usize, usize)) -> AlignedBytes {
    let sd = quant::load_state_dict(&fixture(weights_rel)).unwrap();
    let a = match arch {
        Some(n) => quant::convert::named_arch(n, &sd, hw.0, hw.1).unwrap(),
        None => quant::infer_arch(&sd, hw.0, hw.1).unwrap(),
    };
    AlignedBytes::from_slice(&quant::convert::convert(&sd, &a).unwrap())
}

pub fn atto() -> AlignedBytes {
    convert("atto/weights.safetensors", None, (224, 224))
}

pub fn run_logits(model: &edge::Model, input: edge::Input) -> Vec<f32> {
    let mut arena = vec![0u8; model.arena_len()];
    let mut logits = vec![0f32; model.arch().num_classes];
    model.run(input, &mut arena, &mut logits).unwrap();
    logits
}

/// NHWC → NCHW.
pub fn to_nchw(nhwc: &[f32], h: usize, w: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0f32; nhwc.len()];
    for p in 0..h * w {
        for ch in 0..c {
            out[ch * h * w + p] = nhwc[p * c + ch];
        }
    }
    out
}

/// A tiny random model (for format tests that run every truncation).
pub fn tiny_model(seed: u64) -> (edge::Arch, AlignedBytes) {
    let arch = edge::Arch::new([1, 1, 2, 1], [8, 12, 16, 20], 5, 32, 64);
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.4
    };
    let tensors: Vec<Vec<f32>> = edge::format::tensor_ids(&arch, edge::Precision::F32)
        .map(|id| {
            let n = edge::builder::logical_len(&edge::builder::logical_shape(&arch, id));
            (0..n).map(|_| next()).collect()
        })
        .collect();
    let mut i = 0;
    let file = edge::builder::build(&arch, |_| {
        i += 1;
        &tensors[i - 1][..]
    })
    .unwrap();
    (arch, AlignedBytes::from_slice(&file))
}

/// The tiny random model of `tiny_model(seed)` calibrated to int8 on two synthetic images.
pub fn tiny_int8_model(seed: u64) -> (edge::Arch, AlignedBytes) {
    let (arch, f32_file) = tiny_model(seed);
    let m = edge::Model::parse(f32_file.as_slice()).unwrap();
    let n = arch.input_h * arch.input_w * 3;
    let a: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
    let b: Vec<u8> = (0..n).map(|i| (i / 3 % 256) as u8).collect();
    let raw = quant::quantize::quantize_with_inputs(
        &m,
        [edge::Input::HwcU8(&a), edge::Input::HwcU8(&b)],
        quant::calib::Method::MinMax,
    )
    .unwrap();
    (arch, AlignedBytes::from_slice(&raw))
}
