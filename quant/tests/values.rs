//! Weights whose values cannot be used — NaN, infinities, f64 beyond f32, GRN parameters beyond
//! fp16 for int8 — are refused by name, every offender at once, with nothing written.

use std::path::{Path, PathBuf};
mod common;
use common::*;

use safetensors::{serialize, tensor::TensorView, Dtype};

fn tmp(name: &str) -> PathBuf {
    tmp_in("values", name)
}

/// The custom fixture (official names, f32) with `edit(name, values)` applied to each tensor,
/// stored as `dtype` (F32 or F64).
fn edited(path: &Path, dtype: Dtype, edit: impl Fn(&str, &mut Vec<f64>)) {
    let src = std::fs::read(fixtures().join("extra/custom_official_f32.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&src).unwrap();
    let mut bytes: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        let mut v: Vec<f64> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect();
        edit(&name, &mut v);
        let raw = match dtype {
            Dtype::F64 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            _ => v.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect(),
        };
        bytes.push((name, view.shape().to_vec(), raw));
    }
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, s, b)| (n.clone(), TensorView::new(dtype, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, serialize(views, None).unwrap()).unwrap();
}

#[test]
fn non_finite_weights_are_all_named_by_quant_convert_and_nothing_is_written() {
    let w = tmp("nonfinite.safetensors");
    edited(&w, Dtype::F32, |name, v| match name {
        "stages.1.0.pwconv2.bias" => v[3] = f64::INFINITY,
        "stages.2.1.grn.gamma" => {
            v[5] = f64::NAN;
            v[9] = f64::NAN;
        }
        _ => {}
    });
    let out = tmp("nonfinite.cnx");
    let (ok, _, stderr) = convert(&w, &out, &["--input-size", "96x128"]);
    assert!(!ok);
    assert!(stderr.contains("2 tensors hold values"), "{stderr}");
    assert!(
        stderr.contains("stages.1.blocks.0.mlp.fc2.bias: element 3 = inf is not finite (1 of 32"),
        "{stderr}"
    );
    assert!(
        stderr.contains("stages.2.blocks.1.mlp.grn.weight: element 5 = NaN is not finite (2 of"),
        "{stderr}"
    );
    assert!(!stderr.contains("internal error"), "{stderr}");
    assert!(!out.exists());
    // The same file given to calibrate: the same named refusal, before any image is read.
    let out8 = tmp("nonfinite_int8.cnx");
    let (ok, _, stderr) = quant(&[
        "calibrate",
        "--weights",
        w.to_str().unwrap(),
        "--input-size",
        "96x128",
        "--images",
        "/nonexistent-images",
        "--out",
        out8.to_str().unwrap(),
    ]);
    assert!(
        !ok && stderr.contains("stages.1.blocks.0.mlp.fc2.bias: element 3"),
        "{stderr}"
    );
    assert!(!out8.exists());
}

#[test]
fn f64_values_beyond_f32_are_named_not_turned_into_infinities() {
    let w = tmp("f64.safetensors");
    edited(&w, Dtype::F64, |name, v| {
        if name == "stages.0.0.dwconv.weight" {
            v[7] = -1e39;
        }
    });
    let out = tmp("f64.cnx");
    let (ok, _, stderr) = convert(&w, &out, &["--input-size", "96x128"]);
    assert!(
        !ok && stderr
            .contains("stages.0.blocks.0.conv_dw.weight: element 7 = -1e39 is beyond f32's range"),
        "{stderr}"
    );
    assert!(!out.exists());
    // In range, the f64 file converts (widening rounds once).
    edited(&w, Dtype::F64, |_, _| {});
    let (ok, _, stderr) = convert(&w, &out, &["--input-size", "96x128"]);
    assert!(ok, "{stderr}");
}

#[test]
fn grn_parameters_beyond_fp16_are_refused_for_int8_by_name_and_run_in_f32() {
    let w = tmp("grn_big.safetensors");
    edited(&w, Dtype::F32, |name, v| match name {
        "stages.0.0.grn.beta" => v[2] = 7e4,
        "stages.3.0.grn.gamma" => v[0] = -1e5,
        _ => {}
    });
    let out = tmp("grn_big.cnx");
    // f32 stores them as they are.
    let (ok, _, stderr) = convert(&w, &out, &["--input-size", "96x128"]);
    assert!(ok, "{stderr}");
    let file = edge::builder::AlignedBytes::from_slice(&std::fs::read(&out).unwrap());
    let model = edge::Model::parse(file.as_slice()).unwrap();
    let img = vec![100u8; 96 * 128 * 3];
    let e = quant::quantize::quantize_with_inputs(
        &model,
        [edge::Input::HwcU8(&img)],
        quant::calib::Method::MinMax,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("2 tensors hold values"), "{e}");
    assert!(
        e.contains("stages.0.blocks.0.mlp.grn.bias: element 2 = 70000 is beyond fp16's range"),
        "{e}"
    );
    assert!(
        e.contains("stages.3.blocks.0.mlp.grn.weight: element 0 = -100000 is beyond fp16"),
        "{e}"
    );
    assert!(e.contains("Run the f32 model"), "{e}");
}

#[test]
fn safetensors_headers_declaring_sizes_beyond_the_file_are_refused_without_allocating() {
    // 100 000 × 100 000 f32 (40 GB) declared by a 150-byte file.
    let header = br#"{"stem.0.weight":{"dtype":"F32","shape":[100000,100000],"data_offsets":[0,40000000000]}}"#;
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header);
    file.extend_from_slice(&[0u8; 16]);
    let w = tmp("bomb.safetensors");
    std::fs::write(&w, &file).unwrap();
    let e = quant::load_state_dict(&w).unwrap_err();
    assert!(matches!(e, quant::ConvertError::Safetensors { .. }), "{e}");
    // A header length beyond the file.
    let mut file = (1u64 << 40).to_le_bytes().to_vec();
    file.extend_from_slice(b"{}");
    std::fs::write(&w, &file).unwrap();
    assert!(matches!(
        quant::load_state_dict(&w),
        Err(quant::ConvertError::Safetensors { .. })
    ));
}
