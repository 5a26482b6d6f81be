//! Writes the fuzz seed corpora: tiny *valid* files that get past every early check, so that
//! mutations reach the deep validation branches and `run` (a real model is megabytes; a
//! fuzzer's own inputs of ≤ 4 KiB never get past the header).
//!
//! `cargo run --bin make_seeds` (from fuzz/) → seeds/{parse,weights,image}/. The `.pth` seeds
//! come from `tools/make_fuzz_pth_seeds.py` (PyTorch), from the safetensors written here; the
//! ONNX seed from `tools/make_hf_fixtures.py … fuzz/seeds/weights` (PyTorch + transformers).

use std::path::Path;

use edge::format::{self, TensorId};
use edge::{Arch, Model};

/// Architectures small enough to run in microseconds, covering odd sizes and depth 2.
fn archs() -> Vec<(&'static str, Arch)> {
    vec![
        (
            "d1111_c8-16_32px",
            Arch::new([1, 1, 1, 1], [8, 8, 8, 16], 3, 32, 32),
        ),
        (
            "d1211_c8-16_40x36",
            Arch::new([1, 2, 1, 1], [8, 8, 16, 16], 5, 40, 36),
        ),
    ]
}

fn aligned_model(file: &[u8]) -> edge::builder::AlignedBytes {
    edge::builder::AlignedBytes::from_slice(file)
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for d in ["parse", "weights", "image"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (name, arch) in archs() {
        let f32_file = quant::synth::synth_model(&arch, 7).unwrap();
        std::fs::write(root.join(format!("parse/{name}_f32.cnx")), &f32_file).unwrap();
        let buf = aligned_model(&f32_file);
        let model = Model::parse(buf.as_slice()).unwrap();
        let img: Vec<u8> = (0..arch.input_h * arch.input_w * 3)
            .map(|i| (i * 37 % 251) as u8)
            .collect();
        let int8 = quant::quantize::quantize_with_inputs(
            &model,
            [edge::Input::HwcU8(&img)],
            quant::calib::Method::MinMax,
        )
        .unwrap();
        std::fs::write(root.join(format!("parse/{name}_int8.cnx")), &int8).unwrap();
        // The same weights as a timm-named state dict, f32 and f16.
        let weights = quant::quantize::f32_weights(&model).unwrap();
        for (dtype, ext) in [
            (safetensors::Dtype::F32, "f32"),
            (safetensors::Dtype::F16, "f16"),
        ] {
            let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
            for id in format::tensor_ids(&arch, edge::Precision::F32) {
                let v = &weights[&id];
                let (shape, ndim) = edge::builder::logical_shape(&arch, id);
                let bytes = match dtype {
                    safetensors::Dtype::F16 => v
                        .iter()
                        .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                        .collect(),
                    _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                };
                tensors.push((name_of(id), shape[..ndim].to_vec(), bytes));
            }
            let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
                .iter()
                .map(|(n, s, b)| {
                    (
                        n.clone(),
                        safetensors::tensor::TensorView::new(dtype, s.clone(), b).unwrap(),
                    )
                })
                .collect();
            let bytes = safetensors::serialize(views, None).unwrap();
            std::fs::write(
                root.join(format!("weights/{name}_{ext}.safetensors")),
                bytes,
            )
            .unwrap();
        }
    }
    // Images: each format the front end reads, small.
    let pic = image::RgbImage::from_fn(24, 16, |x, y| {
        image::Rgb([(x * 10) as u8, (y * 15) as u8, ((x ^ y) * 8) as u8])
    });
    for (file, fmt) in [
        ("rgb.png", image::ImageFormat::Png),
        ("rgb.jpg", image::ImageFormat::Jpeg),
        ("rgb.ppm", image::ImageFormat::Pnm),
    ] {
        pic.save_with_format(root.join("image").join(file), fmt)
            .unwrap();
    }
    let gray = image::DynamicImage::ImageRgb8(pic).to_luma8();
    gray.save_with_format(root.join("image/gray.jpg"), image::ImageFormat::Jpeg)
        .unwrap();
    gray.save_with_format(root.join("image/gray.png"), image::ImageFormat::Png)
        .unwrap();
    println!("seeds written to {}", root.display());
}

fn name_of(id: TensorId) -> String {
    quant::names::timm_name(id)
}
