//! `quant convert` / `quant inspect` as a user runs them: success, and every failure named with
//! nothing written.

use std::path::PathBuf;
mod common;
use common::*;

use safetensors::{serialize, tensor::TensorView, Dtype};

fn tmp(name: &str) -> PathBuf {
    tmp_in("cli", name)
}

#[test]
fn converts_and_inspects_atto() {
    let out = tmp("atto.cnx");
    let w = fixtures().join("atto/weights.safetensors");
    let (ok, stdout, stderr) = quant(&[
        "convert",
        "--weights",
        w.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("atto") && stdout.contains("3708400 params"),
        "{stdout}"
    );
    let (ok, stdout, _) = quant(&["inspect", out.to_str().unwrap()]);
    assert!(ok);
    assert!(stdout.contains("arena 3015695 bytes"), "{stdout}");
    // --arch that disagrees with the weights: every mis-shaped tensor is named.
    let bad = tmp("femto.cnx");
    let (ok, _, stderr) = quant(&[
        "convert",
        "--weights",
        w.to_str().unwrap(),
        "--arch",
        "femto",
        "--out",
        bad.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("mis-shaped: stem.0.weight: expected [48, 3, 4, 4], found [40, 3, 4, 4]"),
        "{stderr}"
    );
    assert!(!bad.exists());
    let (ok, _, stderr) = quant(&[
        "convert",
        "--weights",
        w.to_str().unwrap(),
        "--arch",
        "gigantic",
        "--out",
        bad.to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("unknown --arch"), "{stderr}");
    let (ok, _, stderr) = quant(&[
        "convert",
        "--weights",
        w.to_str().unwrap(),
        "--input-size",
        "224x31",
        "--out",
        bad.to_str().unwrap(),
    ]);
    assert!(
        !ok && stderr.contains("the smallest this network accepts is 32x32"),
        "{stderr}"
    );
    // A model fine-tuned at 48 px deploys at its own size (timm floors: 12, 6, 3, 1).
    let at48 = tmp("atto48.cnx");
    let (ok, _, stderr) = quant(&[
        "convert",
        "--weights",
        w.to_str().unwrap(),
        "--input-size",
        "48",
        "--out",
        at48.to_str().unwrap(),
    ]);
    assert!(ok && at48.exists(), "{stderr}");
    assert!(!bad.exists());
}

#[test]
fn missing_unexpected_and_misshaped_tensors_are_all_named_and_nothing_is_written() {
    let src = std::fs::read(fixtures().join("extra/custom_official_f32.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&src).unwrap();
    let mut keep: Vec<(String, TensorView)> = Vec::new();
    let short = vec![0u8; 47 * 4];
    let extra = vec![0u8; 8];
    for (name, view) in st.tensors() {
        match name.as_str() {
            "stages.0.0.grn.beta" => {}
            "stages.2.1.norm.weight" => {
                keep.push((name, TensorView::new(Dtype::F32, vec![47], &short).unwrap()))
            }
            _ => keep.push((name, view)),
        }
    }
    keep.push((
        "decoder.pred.weight".into(),
        TensorView::new(Dtype::F32, vec![2], &extra).unwrap(),
    ));
    let w = tmp("broken.safetensors");
    std::fs::write(&w, serialize(keep, None).unwrap()).unwrap();
    let out = tmp("broken.cnx");
    let (ok, _, stderr) = quant(&[
        "convert",
        "--weights",
        w.to_str().unwrap(),
        "--input-size",
        "96x128",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("1 missing, 1 unexpected, 1 mis-shaped"),
        "{stderr}"
    );
    assert!(
        stderr.contains("missing:    stages.0.blocks.0.mlp.grn.bias"),
        "{stderr}"
    );
    assert!(
        stderr.contains("unexpected: decoder.pred.weight"),
        "{stderr}"
    );
    assert!(
        stderr.contains("mis-shaped: stages.2.blocks.1.norm.weight: expected [48], found [47]"),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn unreadable_inputs_are_typed_errors() {
    let out = tmp("x.cnx");
    let junk = tmp("junk.safetensors");
    std::fs::write(&junk, b"definitely not safetensors").unwrap();
    let (ok, _, stderr) = quant(&[
        "convert",
        "--weights",
        junk.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        !ok && stderr.contains("not a valid safetensors file"),
        "{stderr}"
    );
    let (ok, _, stderr) = quant(&[
        "convert",
        "--weights",
        "/nonexistent/w.safetensors",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        !ok && stderr.contains("/nonexistent/w.safetensors"),
        "{stderr}"
    );
    let ints = vec![0u8; 16];
    let w = tmp("ints.safetensors");
    let t = vec![(
        "stem.0.weight".to_string(),
        TensorView::new(Dtype::I32, vec![4], &ints).unwrap(),
    )];
    std::fs::write(&w, serialize(t, None).unwrap()).unwrap();
    let (ok, _, stderr) = quant(&[
        "convert",
        "--weights",
        w.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        !ok && stderr.contains("stem.0.weight: dtype I32 is not supported"),
        "{stderr}"
    );
    let (ok, _, stderr) = quant(&["inspect", junk.to_str().unwrap()]);
    assert!(!ok && stderr.contains("bad magic"), "{stderr}");
    assert!(!out.exists());
}
