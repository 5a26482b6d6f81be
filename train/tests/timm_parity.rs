//! The Burn model against PyTorch/timm (fixtures: tests/fixtures/atto, PyTorch 2.15 + timm 1.0.31):
//! parameter counts, logits and stage activations within 1e-4, the `train predict` binary, and
//! export → `quant convert` → edge runtime giving the same logits.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::{Device, Tensor, TensorData};
use train::model::{Config, ConvNeXtV2, Size};
use train::{predict, weights};

const TOL: f32 = 1e-4;

fn cpu() -> Device {
    train::finetune::device(train::finetune::DeviceKind::Cpu).unwrap()
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/atto")
        .join(rel)
}

fn read_f32(path: &Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn atto() -> (ConvNeXtV2, Device) {
    atto_on(cpu())
}

fn atto_on(dev: Device) -> (ConvNeXtV2, Device) {
    let m = predict::load_model(
        &fixture("weights.safetensors"),
        &Size::named("atto").unwrap(),
        &Default::default(),
        &dev,
    )
    .unwrap();
    (m, dev)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("train-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn parameter_counts_equal_timms() {
    let dev = cpu();
    let count = |name: &str, classes: usize| {
        let m = ConvNeXtV2::new(
            &Config {
                size: Size::named(name).unwrap(),
                num_classes: classes,
                drop_path: 0.0,
                grn: true,
            },
            0,
            &dev,
        );
        burn::module::Module::num_params(&m)
    };
    // timm: convnextv2_atto 3,708,400; femto 5,233,240; pico 9,066,280 (1000 classes).
    assert_eq!(count("atto", 1000), 3_708_400);
    assert_eq!(count("femto", 1000), 5_233_240);
    assert_eq!(count("pico", 1000), 9_066_280);
    // And the count of the timm state dict itself, tensor by tensor.
    let sd = quant::convert::load_state_dict(&fixture("weights.safetensors")).unwrap();
    let n: usize = sd.values().map(|t| t.data.len()).sum();
    assert_eq!(count("atto", 1000), n);
    assert_eq!(count("atto", 10), 3_708_400 - 990 * 321);
}

#[test]
fn logits_and_activations_match_pytorch() {
    let (m, dev) = atto();
    for input in ["randn_s0", "randn_s1", "astronaut"] {
        let x = read_f32(&fixture(&format!("inputs/{input}.bin")));
        let want = read_f32(&fixture(&format!("logits/{input}.bin")));
        let got = predict::predict(&m, x.clone(), 224, &dev).unwrap();
        let err = max_abs(&got, &want);
        println!("{input}: Burn vs PyTorch logits max |Δ| = {err:.2e}");
        assert!(err <= TOL, "{input}: logits max |Δ| {err}");
        let argmax = |v: &[f32]| {
            v.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0
        };
        assert_eq!(argmax(&got), argmax(&want), "{input}: top-1");
        if input == "randn_s1" {
            continue;
        }
        let t = Tensor::<4>::from_data(TensorData::new(x, [1, 3, 224, 224]), &dev);
        let f: Vec<f32> = m
            .forward_features(t, None, None)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let want = read_f32(&fixture(&format!("act/{input}__stage3.bin")));
        let err = max_abs(&f, &want);
        println!("{input}: stage3 max |Δ| = {err:.2e}");
        assert!(err <= TOL, "{input}: stage3 max |Δ| {err}");
    }
}

#[test]
fn export_reimports_exactly_and_edge_runs_it_to_the_same_logits() {
    let (m, dev) = atto();
    let dir = tmp("export");
    let out = dir.join("atto.safetensors");
    predict::export(&m, &Size::named("atto").unwrap(), 224, None, &out, false).unwrap();
    // The export is byte-for-byte the timm state dict it came from (same keys, shapes, values).
    let a = quant::convert::load_state_dict(&fixture("weights.safetensors")).unwrap();
    let b = quant::convert::load_state_dict(&out).unwrap();
    assert_eq!(a.len(), b.len());
    for (k, t) in &a {
        let u = &b[k];
        assert_eq!(t.shape, u.shape, "{k}");
        assert!(t.data == u.data, "{k}: values differ");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(json["architecture"], "convnextv2_atto");
    assert_eq!(json["num_classes"], 1000);

    // export → quant convert → edge: same logits as Burn.
    let sd = quant::convert::load_state_dict(&out).unwrap();
    let arch = quant::convert::infer_arch(&sd, 224, 224).unwrap();
    let raw = quant::convert::convert(&sd, &arch).unwrap();
    let mut words = vec![0u128; raw.len().div_ceil(16)];
    bytemuck::cast_slice_mut::<u128, u8>(&mut words)[..raw.len()].copy_from_slice(&raw);
    let bytes = &bytemuck::cast_slice::<u128, u8>(&words)[..raw.len()];
    let model = edge::Model::parse(bytes).unwrap();
    let x = read_f32(&fixture("inputs/astronaut.bin"));
    let mut arena = vec![0u8; model.arena_len()];
    let mut logits = vec![0f32; 1000];
    model
        .run(edge::Input::NchwF32(&x), &mut arena, &mut logits)
        .unwrap();
    let burn_logits = predict::predict(&m, x, 224, &dev).unwrap();
    let err = max_abs(&logits, &burn_logits);
    println!("export → quant convert → edge vs Burn: max |Δ| = {err:.2e}");
    assert!(err <= TOL, "edge vs burn max |Δ| {err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn official_names_load_like_timm_names() {
    // Rewrite the fixture into the official repository's names and layouts.
    let sd = quant::convert::load_state_dict(&fixture("weights.safetensors")).unwrap();
    let mut official = quant::convert::StateDict::new();
    for (k, t) in sd {
        let mut t = t;
        let k = if let Some(r) = k.strip_prefix("stem.") {
            format!("downsample_layers.0.{r}")
        } else if k.starts_with("stages.") && k.contains(".downsample.") {
            k.replace("stages.", "downsample_layers.")
                .replace(".downsample.", ".")
        } else if k.starts_with("stages.") {
            let k = k
                .replace(".blocks.", ".")
                .replace(".conv_dw.", ".dwconv.")
                .replace(".mlp.fc1.", ".pwconv1.")
                .replace(".mlp.fc2.", ".pwconv2.");
            if k.contains(".mlp.grn.") {
                t.shape = vec![1, 1, 1, t.data.len()];
                k.replace(".mlp.grn.weight", ".grn.gamma")
                    .replace(".mlp.grn.bias", ".grn.beta")
            } else {
                if k.contains(".pwconv") && t.shape.len() == 4 {
                    t.shape.truncate(2);
                }
                k
            }
        } else {
            k.replace("head.norm.", "norm.")
                .replace("head.fc.", "head.")
        };
        official.insert(k, t);
    }
    assert!(official.contains_key("stages.2.5.grn.gamma"));
    let dir = tmp("official");
    let p = dir.join("official.safetensors");
    weights::write_safetensors(&p, &official, None).unwrap();
    let dev = cpu();
    let m =
        predict::load_model(&p, &Size::named("atto").unwrap(), &Default::default(), &dev).unwrap();
    let x = read_f32(&fixture("inputs/randn_s0.bin"));
    let want = read_f32(&fixture("logits/randn_s0.bin"));
    let err = max_abs(&predict::predict(&m, x, 224, &dev).unwrap(), &want);
    assert!(err <= TOL, "official names: logits max |Δ| {err}");
    std::fs::remove_dir_all(dir).ok();
}

/// An untrained Atto (1000 classes) to load weights into.
fn fresh_atto(dev: &Device) -> ConvNeXtV2 {
    ConvNeXtV2::new(
        &Config {
            size: Size::named("atto").unwrap(),
            num_classes: 1000,
            drop_path: 0.0,
            grn: true,
        },
        0,
        dev,
    )
}

#[test]
fn mismatched_weights_are_a_typed_error_listing_every_problem() {
    let dev = cpu();
    let sd = quant::convert::load_state_dict(&fixture("weights.safetensors")).unwrap();
    let mut bad = sd.clone();
    bad.remove("stages.1.blocks.0.mlp.grn.weight");
    bad.get_mut("stem.0.bias").unwrap().shape = vec![41];
    bad.insert(
        "extra.weight".into(),
        quant::convert::Tensor {
            shape: vec![1],
            data: vec![0.0],
        },
    );
    match weights::load_timm(fresh_atto(&dev), &bad, weights::Fresh::Nothing) {
        Err(weights::WeightsError::Mismatch {
            missing,
            misshaped,
            unused,
        }) => {
            assert_eq!(
                missing,
                vec!["stages.1.blocks.0.mlp.grn.weight".to_string()]
            );
            assert_eq!(misshaped.len(), 1);
            assert_eq!(misshaped[0].0, "stem.0.bias");
            assert_eq!(unused, vec!["extra.weight".to_string()]);
        }
        other => panic!("expected a mismatch, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn predict_cli_writes_the_pytorch_logits() {
    let dir = tmp("predict");
    let out = dir.join("logits.bin");
    let st = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["predict", "--size", "atto", "--weights"])
        .arg(fixture("weights.safetensors"))
        .arg("--input")
        .arg(fixture("inputs/astronaut.bin"))
        .arg("--logits-out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let err = max_abs(&read_f32(&out), &read_f32(&fixture("logits/astronaut.bin")));
    assert!(err <= TOL, "CLI logits max |Δ| {err}");
    // A truncated input is an error, not a panic.
    let bad = dir.join("bad.bin");
    std::fs::write(&bad, [0u8; 10]).unwrap();
    let st = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["predict", "--weights"])
        .arg(fixture("weights.safetensors"))
        .arg("--input")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&st.stderr).contains("not 3 planes"));
    // A JPEG cut at 60 % of its bytes is an error, not the logits of a half-grey picture.
    let raw: Vec<u8> = (0..300 * 200 * 3).map(|i| (i * 7 % 251) as u8).collect();
    let jpg = dir.join("cut.jpg");
    image::RgbImage::from_raw(300, 200, raw)
        .unwrap()
        .save(&jpg)
        .unwrap();
    let whole = std::fs::read(&jpg).unwrap();
    std::fs::write(&jpg, &whole[..whole.len() * 6 / 10]).unwrap();
    let st = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["predict", "--weights"])
        .arg(fixture("weights.safetensors"))
        .arg("--input")
        .arg(&jpg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&st.stderr);
    assert_eq!(st.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cut.jpg: JPEG is truncated or corrupt"),
        "{err}"
    );
    assert!(st.stdout.is_empty());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn the_ndarray_backend_matches_pytorch_too() {
    let (m, dev) = atto_on(train::finetune::device(train::finetune::DeviceKind::Ndarray).unwrap());
    let x = read_f32(&fixture("inputs/astronaut.bin"));
    let want = read_f32(&fixture("logits/astronaut.bin"));
    let err = max_abs(&predict::predict(&m, x, 224, &dev).unwrap(), &want);
    assert!(err <= TOL, "burn-ndarray: logits max |Δ| {err}");
}

#[test]
fn pytorch_checkpoints_load_and_give_timms_logits() {
    // tools/make_pth_fixtures.py: torch.save files holding the `custom` fixture's weights (depths
    // 1,1,3,1, dims 16..64, 7 classes, 96×128): the official layout nested under "model" (ZIP
    // format) and timm names in bf16 (legacy pickle format).
    let extra = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/extra");
    let x = read_f32(&extra.join("custom_input.bin"));
    let want = read_f32(&extra.join("custom_logits.bin"));
    let size = Size {
        name: "custom",
        depths: [1, 1, 3, 1],
        dims: [16, 32, 48, 64],
    };
    let dev = cpu();
    for file in ["custom_official.pth", "custom_timm_bf16_legacy.pth"] {
        let m = predict::load_model(&extra.join(file), &size, &Default::default(), &dev).unwrap();
        let t = Tensor::<4>::from_data(TensorData::new(x.clone(), [1, 3, 96, 128]), &dev);
        let got: Vec<f32> = m.forward(t, None).into_data().try_to_vec().unwrap();
        let err = max_abs(&got, &want);
        println!("{file}: Burn vs PyTorch logits max |Δ| = {err:.2e}");
        assert!(err <= TOL, "{file}: logits max |Δ| {err}");
    }
    // Sizes that are not multiples of 32 (tools/make_odd_size_fixtures.py): timm's floors.
    let m = predict::load_model(
        &extra.join("custom_weights.safetensors"),
        &size,
        &Default::default(),
        &dev,
    )
    .unwrap();
    for (h, w) in [(77usize, 45usize), (50, 200)] {
        let x = read_f32(&extra.join(format!("custom_odd_{h}x{w}_input.bin")));
        let want = read_f32(&extra.join(format!("custom_odd_{h}x{w}_logits.bin")));
        let t = Tensor::<4>::from_data(TensorData::new(x, [1, 3, h, w]), &dev);
        let got: Vec<f32> = m.forward(t, None).into_data().try_to_vec().unwrap();
        let err = max_abs(&got, &want);
        println!("custom {h}x{w}: Burn vs PyTorch logits max |Δ| = {err:.2e}");
        assert!(err <= TOL, "{h}x{w}: logits max |Δ| {err}");
    }
}

#[test]
fn non_finite_weights_are_named_by_every_loader_and_predict_never_prints_non_finite_logits() {
    let dev = cpu();
    let dir = tmp("nonfinite");
    let sd = quant::convert::load_state_dict(&fixture("weights.safetensors")).unwrap();
    let mut bad = sd.clone();
    bad.get_mut("stages.1.blocks.0.mlp.fc2.bias").unwrap().data[3] = f32::INFINITY;
    bad.get_mut("stages.2.blocks.4.mlp.grn.weight")
        .unwrap()
        .data[0] = f32::NAN;
    // In memory (a training checkpoint's path): load_timm names both.
    match weights::load_timm(fresh_atto(&dev), &bad, weights::Fresh::Nothing) {
        Err(weights::WeightsError::Values(v)) => {
            let names: Vec<&str> = v.0.iter().map(|b| b.tensor.as_str()).collect();
            assert_eq!(
                names,
                [
                    "stages.1.blocks.0.mlp.fc2.bias",
                    "stages.2.blocks.4.mlp.grn.weight"
                ]
            );
            assert_eq!((v.0[0].index, v.0[1].index), (3, 0));
        }
        other => panic!("expected Values, got {:?}", other.map(|_| ())),
    }
    // From a file: `train predict` refuses by name and exits 1.
    let w = dir.join("nonfinite.safetensors");
    weights::write_safetensors(&w, &bad, None).unwrap();
    let predict = |weights: &Path| {
        Command::new(env!("CARGO_BIN_EXE_train"))
            .args(["predict", "--size", "atto", "--weights"])
            .arg(weights)
            .arg("--input")
            .arg(fixture("inputs/astronaut.bin"))
            .output()
            .unwrap()
    };
    let o = predict(&w);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("stages.1.blocks.0.mlp.fc2.bias: element 3 = inf")
            && err.contains("stages.2.blocks.4.mlp.grn.weight: element 0 = NaN"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
    // Finite weights whose activations overflow f32: an error, not NaN logits with exit 0.
    let mut huge = sd.clone();
    for v in &mut huge.get_mut("head.fc.weight").unwrap().data {
        *v *= 3e38;
    }
    let w = dir.join("huge.safetensors");
    weights::write_safetensors(&w, &huge, None).unwrap();
    let o = predict(&w);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("logits are not finite"), "{err}");
    assert!(o.stdout.is_empty());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn finetune_init_takes_the_encoder_of_fcmae_checkpoints_and_bare_hugging_face_files() {
    // tools/make_layout_fixtures.py: the `custom` weights as an official FCMAE pretraining
    // checkpoint (encoder only, MinkowskiEngine layouts, decoder side beside it);
    // tools/make_hf_fixtures.py: a bare Hugging Face ConvNextV2Model (no classifier).
    let extra = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/extra");
    let official = quant::load_state_dict(&extra.join("custom_official_f32.safetensors")).unwrap();
    let hf = quant::load_state_dict(&extra.join("hf_tiny.safetensors")).unwrap();
    let custom = Size {
        name: "custom",
        depths: [1, 1, 3, 1],
        dims: [16, 32, 48, 64],
    };
    let hf_tiny = Size {
        name: "hf_tiny",
        depths: [1, 1, 2, 1],
        dims: [16, 32, 48, 64],
    };
    let dev = cpu();
    for (file, size, reference, fresh, from_file) in [
        (
            "custom_fcmae_checkpoint.pth",
            &custom,
            &official,
            "head norm and classifier",
            "head.",
        ),
        (
            "hf_tiny_bare.safetensors",
            &hf_tiny,
            &hf,
            "classifier",
            "head.fc.",
        ),
    ] {
        let config = Config {
            size: size.clone(),
            num_classes: 7,
            drop_path: 0.0,
            grn: true,
        };
        let model = ConvNeXtV2::new(&config, 0, &dev);
        let (model, note) =
            train::finetune::load_init(model, &extra.join(file), &Default::default(), 1).unwrap();
        assert!(
            note.contains(&format!("{fresh} initialized fresh")),
            "{file}: {note}"
        );
        let got = weights::to_timm(&model);
        let mut checked = 0;
        for (k, t) in reference.iter().filter(|(k, _)| !k.starts_with(from_file)) {
            assert_eq!(got[k].data, t.data, "{file}: {k}");
            checked += 1;
        }
        assert_eq!(
            checked + if from_file == "head." { 4 } else { 2 },
            reference.len()
        );
        assert_eq!(got["head.fc.bias"].data.len(), 7, "{file}");
    }
}

#[test]
fn a_hugging_face_model_gives_transformers_logits_in_burn() {
    // tools/make_hf_fixtures.py: transformers' own state dict and logits.
    let extra = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/extra");
    let size = Size {
        name: "hf_tiny",
        depths: [1, 1, 2, 1],
        dims: [16, 32, 48, 64],
    };
    let dev = cpu();
    let want = read_f32(&extra.join("hf_tiny_logits.bin"));
    let x = read_f32(&extra.join("hf_tiny_input.bin"));
    for file in ["hf_tiny.safetensors", "hf_tiny_opset13.onnx"] {
        let m = predict::load_model(&extra.join(file), &size, &Default::default(), &dev).unwrap();
        let t = Tensor::<4>::from_data(TensorData::new(x.clone(), [1, 3, 64, 96]), &dev);
        let got: Vec<f32> = m.forward(t, None).into_data().try_to_vec().unwrap();
        let err = max_abs(&got, &want);
        println!("{file}: Burn vs transformers logits max |Δ| = {err:.2e}");
        assert!(err <= TOL, "{file}: logits max |Δ| {err}");
    }
}
