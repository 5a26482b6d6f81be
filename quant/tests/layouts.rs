//! Weight layouts other than timm's — Hugging Face transformers' own state dicts
//! (tools/make_hf_fixtures.py) and an official FCMAE pretraining checkpoint
//! (tools/make_layout_fixtures.py: the `custom` fixture's values moved, never recomputed) — read
//! into timm's names and shapes; encoder-only files and unknown layouts are
//! typed errors naming what is wrong, with nothing written.

mod common;
use common::*;

#[test]
fn hugging_face_files_read_as_the_timm_state_dict() {
    // transformers' own names: every key placed, none left over (the logits are checked against
    // transformers' in edge's parity_timm test).
    let (hf, notes) = quant::load_state_dict_entry(
        &fixtures().join("extra/hf_tiny.safetensors"),
        quant::Entry::Default,
    )
    .unwrap();
    assert_eq!(hf.len(), 70);
    for k in hf.keys() {
        assert!(quant::names::tensor_id(k).is_some(), "{k} not a timm name");
    }
    // GRN's [1, 1, 1, 4C] became timm's [4C]; nn.Linear stays [out, in].
    assert_eq!(hf["stages.2.blocks.1.mlp.grn.weight"].shape, [192]);
    assert_eq!(hf["stages.2.blocks.1.mlp.fc1.weight"].shape, [192, 48]);
    assert_eq!(hf["head.fc.weight"].shape, [5, 64]);
    let layout = notes.layout.expect("a layout note");
    assert!(layout.contains("Hugging Face"), "{layout}");
    let bare = quant::load_state_dict(&fixtures().join("extra/hf_tiny_bare.safetensors")).unwrap();
    assert_same_tensors(&bare, &hf, Some("head.fc."), "ConvNextV2Model");
}

#[test]
fn an_fcmae_pretraining_checkpoint_reads_as_its_encoder_and_says_the_decoder_is_dropped() {
    let official =
        quant::load_state_dict(&fixtures().join("extra/custom_official_f32.safetensors")).unwrap();
    let w = fixtures().join("extra/custom_fcmae_checkpoint.pth");
    let (enc, notes) = quant::load_state_dict_entry(&w, quant::Entry::Default).unwrap();
    // The sparse encoder has no head; every other tensor is the official one, Minkowski kernels
    // permuted back (tools/make_layout_fixtures.py checked them with remap_checkpoint_keys).
    assert_same_tensors(&enc, &official, Some("head."), "FCMAE checkpoint");
    assert_eq!(enc["stages.1.downsample.1.weight"].shape, [32, 16, 2, 2]);
    assert_eq!(enc["stages.0.blocks.0.conv_dw.weight"].shape, [16, 1, 7, 7]);
    assert_eq!(enc["stages.0.blocks.0.conv_dw.bias"].shape, [16]);
    let layout = notes.layout.expect("a layout note");
    assert!(
        layout.contains("FCMAE") && layout.contains("decoder side dropped (15 tensors"),
        "{layout}"
    );
    // No EMA in FCMAE pretraining: nothing to say about entries.
    assert_eq!(notes.entry, None);

    // The CLI: says so on stdout, then refuses for want of a classifier, writing nothing.
    let out = tmp_in("layouts", "fcmae.cnx");
    let (ok, stdout, stderr) = convert(&w, &out, &["--input-size", "96x128"]);
    assert!(!ok && !out.exists(), "{stdout}");
    assert!(stdout.contains("decoder side dropped"), "{stdout}");
    assert!(
        stderr.contains("no classifier") && stderr.contains("train finetune --init"),
        "{stderr}"
    );
}

#[test]
fn encoder_only_files_are_refused_by_convert_naming_the_missing_classifier() {
    for (file, extra) in [
        ("extra/hf_tiny_bare.safetensors", &[][..]),
        ("extra/hf_tiny_bare.safetensors", &["--arch", "atto"][..]),
    ] {
        let out = tmp_in("layouts", "bare.cnx");
        let (ok, _, stderr) = convert(&fixtures().join(file), &out, extra);
        assert!(!ok && !out.exists(), "{file} {extra:?}");
        assert!(stderr.contains("no classifier (head.fc.weight"), "{stderr}");
    }
}

#[test]
fn unknown_and_broken_layouts_are_typed_errors_naming_keys() {
    use safetensors::tensor::{Dtype, TensorView};
    let write = |name: &str, tensors: &[(&str, Vec<usize>)]| {
        let bufs: Vec<Vec<u8>> = tensors
            .iter()
            .map(|(_, s)| vec![0u8; 4 * s.iter().product::<usize>()])
            .collect();
        let views: Vec<(&str, TensorView)> = tensors
            .iter()
            .zip(&bufs)
            .map(|((k, s), b)| (*k, TensorView::new(Dtype::F32, s.clone(), b).unwrap()))
            .collect();
        let p = tmp_in("layouts", name);
        std::fs::write(&p, safetensors::serialize(views, None).unwrap()).unwrap();
        p
    };
    // A ResNet's keys: no layout places any of them.
    let resnet = write(
        "resnet.safetensors",
        &[("conv1.weight", vec![8, 3, 7, 7]), ("fc.bias", vec![10])],
    );
    let e = quant::load_state_dict(&resnet).unwrap_err();
    assert!(
        matches!(e, quant::ConvertError::UnknownLayout { .. }),
        "{e:?}"
    );
    let m = e.to_string();
    for want in [
        "conv1.weight",
        "fc.bias",
        "timm (",
        "Hugging Face",
        "FCMAE",
        "official ConvNeXt-V2",
    ] {
        assert!(m.contains(want), "{want}: {m}");
    }
    let out = tmp_in("layouts", "resnet.cnx");
    let (ok, _, stderr) = convert(&resnet, &out, &[]);
    assert!(
        !ok && !out.exists() && stderr.contains("conv1.weight"),
        "{stderr}"
    );

    // Hugging Face and official keys in one file: two models, named by one key each.
    let mixed = write(
        "mixed.safetensors",
        &[
            (
                "convnextv2.embeddings.patch_embeddings.weight",
                vec![8, 3, 4, 4],
            ),
            ("downsample_layers.0.1.weight", vec![8]),
        ],
    );
    let m = quant::load_state_dict(&mixed).unwrap_err().to_string();
    assert!(
        m.contains("two layouts")
            && m.contains("convnextv2.embeddings.patch_embeddings.weight")
            && m.contains("downsample_layers.0.1.weight"),
        "{m}"
    );

    // A Minkowski kernel whose volume is not k²: named.
    let odd = write(
        "odd_kernel.safetensors",
        &[("encoder.stages.0.0.dwconv.kernel", vec![48, 16])],
    );
    let m = quant::load_state_dict(&odd).unwrap_err().to_string();
    assert!(
        m.contains("encoder.stages.0.0.dwconv.kernel") && m.contains("k²"),
        "{m}"
    );
}
