//! f32 parity with PyTorch/timm: `quant` conversion + `edge` scalar kernels against the logits and
//! activations timm computed (fixtures: PyTorch 2.15 + timm 1.0.31, see tests/fixtures/atto/ORACLE.md;
//! extra sizes: tools/make_fixtures.py, PyTorch 2.11 + timm 1.0.29).

mod common;
use common::*;
use edge::{BlockOp, Input, Kernels, Model, Observer, Tap};

const TOL: f32 = 1e-4;

#[test]
fn atto_logits_match_timm_on_every_input() {
    let file = atto();
    let model = Model::parse(file.as_slice()).unwrap();
    for name in ["randn_s0", "randn_s1", "astronaut"] {
        let x = read_f32(&format!("atto/inputs/{name}.bin"));
        let got = run_logits(&model, Input::NchwF32(&x));
        let want = read_f32(&format!("atto/logits/{name}.bin"));
        let err = max_abs(&got, &want);
        println!("atto {name}: max |edge - timm| = {err:.3e}");
        assert!(err <= TOL, "{name}: {err}");
    }
}

#[test]
fn atto_u8_image_input_matches_timm() {
    let file = atto();
    let model = Model::parse(file.as_slice()).unwrap();
    let img = std::fs::read(fixture("atto/inputs/astronaut_u8_hwc_224x224x3.bin")).unwrap();
    let got = run_logits(&model, Input::HwcU8(&img));
    let err = max_abs(&got, &read_f32("atto/logits/astronaut.bin"));
    println!("atto astronaut u8 HWC: max |edge - timm| = {err:.3e}");
    assert!(err <= TOL, "{err}");
}

/// Collects taps as NCHW, keyed by the oracle's names.
struct Taps(Vec<(String, Vec<f32>)>);
impl Observer for Taps {
    const ENABLED: bool = true;
    fn observe(&mut self, tap: Tap, h: usize, w: usize, c: usize, nhwc: &[f32]) {
        let name = match tap {
            Tap::Stem => "stem".to_string(),
            Tap::Stage(s) => format!("stage{s}"),
            Tap::Downsample(3) => "s3_downsample".to_string(),
            Tap::PreLogits => "prelogits".to_string(),
            Tap::Block {
                stage: 3,
                block: 0,
                op,
            } => format!(
                "s3b0_{}",
                match op {
                    BlockOp::DwConv => "conv_dw",
                    BlockOp::Norm => "norm",
                    BlockOp::Fc1 => "fc1",
                    BlockOp::Gelu => "gelu",
                    BlockOp::Grn => "grn",
                    BlockOp::Fc2 => "fc2",
                    BlockOp::Out => "out",
                }
            ),
            _ => return,
        };
        self.0.push((name, to_nchw(nhwc, h, w, c)));
    }
}

#[test]
fn atto_activations_match_timm_at_every_tap() {
    let file = atto();
    let model = Model::parse(file.as_slice()).unwrap();
    for input in ["randn_s0", "astronaut"] {
        let x = read_f32(&format!("atto/inputs/{input}.bin"));
        let mut taps = Taps(Vec::new());
        let mut arena = vec![0u8; model.arena_len()];
        let mut logits = vec![0f32; 1000];
        model
            .run_with(
                Input::NchwF32(&x),
                &mut arena,
                &mut logits,
                Kernels::Scalar,
                &mut taps,
            )
            .unwrap();
        // The observed (unfused residual) path gives the same logits as the fused one.
        assert!(max_abs(&logits, &run_logits(&model, Input::NchwF32(&x))) <= 1e-6);
        let names: Vec<&str> = taps.0.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(names.len(), 14, "{names:?}");
        for (name, got) in &taps.0 {
            let want = read_f32(&format!("atto/act/{input}__{name}.bin"));
            let err = max_abs(got, &want);
            println!("{input} {name}: {err:.3e}");
            assert!(err <= TOL, "{input} {name}: {err}");
        }
    }
}

#[test]
fn femto_from_f16_timm_weights_matches_timm() {
    let file = convert("extra/femto_weights.safetensors", None, (224, 224));
    let model = Model::parse(file.as_slice()).unwrap();
    assert_eq!(model.arch().name(), Some("femto"));
    let got = run_logits(&model, Input::NchwF32(&read_f32("extra/femto_input.bin")));
    let err = max_abs(&got, &read_f32("extra/femto_logits.bin"));
    println!("femto: {err:.3e}");
    assert!(err <= TOL, "{err}");
}

#[test]
fn custom_arch_non_square_input_matches_timm_with_both_naming_schemes() {
    let want = read_f32("extra/custom_logits.bin");
    let x = read_f32("extra/custom_input.bin");
    for weights in [
        "extra/custom_weights.safetensors",
        "extra/custom_official_f32.safetensors",
    ] {
        let file = convert(weights, None, (96, 128));
        let model = Model::parse(file.as_slice()).unwrap();
        let a = model.arch();
        assert_eq!(
            (a.depths(), a.dims(), a.num_classes),
            (&[1, 1, 3, 1][..], &[16, 32, 48, 64][..], 7)
        );
        let got = run_logits(&model, Input::NchwF32(&x));
        let err = max_abs(&got, &want);
        println!("custom ({weights}): {err:.3e}");
        assert!(err <= TOL, "{weights}: {err}");
    }
}
