//! f32 parity with PyTorch/timm: `quant` conversion + `edge` scalar kernels against the logits and
//! activations timm computed (fixtures: PyTorch 2.15 + timm 1.0.31, see tests/fixtures/atto/ORACLE.md;
//! extra sizes: tools/make_fixtures.py, PyTorch 2.11 + timm 1.0.29).

use std::path::{Path, PathBuf};

use edge::{BlockOp, Input, Kernels, Model, Observer, Tap};

const TOL: f32 = 1e-4;

/// The kernel sets checked end to end: on the host every set this CPU has (scalar, and on x86-64
/// AVX2 and AVX-512 where present); on aarch64 NEON only, since emulation is slow and every NEON
/// kernel is already checked against the scalar reference on random shapes by its op module's
/// tests.
fn kernel_sets() -> Vec<Kernels> {
    let sets: Vec<Kernels> = if cfg!(target_arch = "aarch64") {
        vec![Kernels::Neon]
    } else {
        Kernels::available().collect()
    };
    println!(
        "kernel sets checked: {:?}",
        sets.iter().map(|k| k.name()).collect::<Vec<_>>()
    );
    sets
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(rel)
}

fn read_f32(rel: &str) -> Vec<f32> {
    let b = std::fs::read(fixture(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
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

/// A 16-byte aligned copy of a converted model file.
struct File(Vec<u128>, usize);
impl File {
    fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.0)[..self.1]
    }
}

fn convert(weights_rel: &str, hw: (usize, usize)) -> File {
    convert_state_dict(&quant::load_state_dict(&fixture(weights_rel)).unwrap(), hw)
}

fn convert_state_dict(sd: &quant::StateDict, hw: (usize, usize)) -> File {
    let arch = quant::infer_arch(sd, hw.0, hw.1).unwrap();
    let raw = quant::convert::convert(sd, &arch).unwrap();
    let mut words = vec![0u128; raw.len().div_ceil(16)];
    bytemuck::cast_slice_mut::<u128, u8>(&mut words)[..raw.len()].copy_from_slice(&raw);
    File(words, raw.len())
}

fn atto() -> File {
    convert("atto/weights.safetensors", (224, 224))
}

fn run_logits(model: &Model, input: Input, kernels: Kernels) -> Vec<f32> {
    let mut arena = vec![0u8; model.arena_len()];
    let mut logits = vec![0f32; model.arch().num_classes];
    model
        .run_with(
            input,
            &mut arena,
            &mut logits,
            kernels,
            &mut edge::NoObserver,
        )
        .unwrap();
    logits
}

fn to_nchw(nhwc: &[f32], h: usize, w: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0f32; nhwc.len()];
    for p in 0..h * w {
        for ch in 0..c {
            out[ch * h * w + p] = nhwc[p * c + ch];
        }
    }
    out
}

#[test]
fn atto_logits_match_timm_on_every_input() {
    let file = atto();
    let model = Model::parse(file.bytes()).unwrap();
    for k in kernel_sets() {
        for name in ["randn_s0", "randn_s1", "astronaut"] {
            let x = read_f32(&format!("atto/inputs/{name}.bin"));
            let got = run_logits(&model, Input::NchwF32(&x), k);
            let want = read_f32(&format!("atto/logits/{name}.bin"));
            let err = max_abs(&got, &want);
            println!(
                "atto {name} [{}]: max |edge - timm| = {err:.3e}",
                k.resolved_name().unwrap()
            );
            assert!(err <= TOL, "{name} {k:?}: {err}");
        }
    }
}

#[test]
fn atto_u8_image_input_matches_timm() {
    let file = atto();
    let model = Model::parse(file.bytes()).unwrap();
    let img = std::fs::read(fixture("atto/inputs/astronaut_u8_hwc_224x224x3.bin")).unwrap();
    for k in kernel_sets() {
        let got = run_logits(&model, Input::HwcU8(&img), k);
        let err = max_abs(&got, &read_f32("atto/logits/astronaut.bin"));
        println!(
            "atto astronaut u8 HWC [{}]: max |edge - timm| = {err:.3e}",
            k.resolved_name().unwrap()
        );
        assert!(err <= TOL, "{k:?}: {err}");
    }
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
    let model = Model::parse(file.bytes()).unwrap();
    for (k, input) in kernel_sets()
        .into_iter()
        .flat_map(|k| [(k, "randn_s0"), (k, "astronaut")])
    {
        let x = read_f32(&format!("atto/inputs/{input}.bin"));
        let mut taps = Taps(Vec::new());
        let mut arena = vec![0u8; model.arena_len()];
        let mut logits = vec![0f32; 1000];
        model
            .run_with(Input::NchwF32(&x), &mut arena, &mut logits, k, &mut taps)
            .unwrap();
        // The observed (unfused residual) path gives the same logits as the fused one.
        assert!(max_abs(&logits, &run_logits(&model, Input::NchwF32(&x), k)) <= 1e-6);
        let names: Vec<&str> = taps.0.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(names.len(), 14, "{names:?}");
        for (name, got) in &taps.0 {
            let want = read_f32(&format!("atto/act/{input}__{name}.bin"));
            let err = max_abs(got, &want);
            println!("{input} {name} [{}]: {err:.3e}", k.resolved_name().unwrap());
            assert!(err <= TOL, "{input} {name} {k:?}: {err}");
        }
    }
}

#[test]
fn femto_from_f16_timm_weights_matches_timm() {
    let file = convert("extra/femto_weights.safetensors", (224, 224));
    let model = Model::parse(file.bytes()).unwrap();
    assert_eq!(model.arch().name(), Some("femto"));
    for k in kernel_sets() {
        let got = run_logits(
            &model,
            Input::NchwF32(&read_f32("extra/femto_input.bin")),
            k,
        );
        let err = max_abs(&got, &read_f32("extra/femto_logits.bin"));
        println!("femto [{}]: {err:.3e}", k.resolved_name().unwrap());
        assert!(err <= TOL, "{k:?}: {err}");
    }
}

/// Each of `weights` converted at `hw` has the architecture `(depths, dims, classes)` and gives
/// the reference `logits` for `input` on every kernel set, within [`TOL`].
fn assert_every_form_gives(
    weights: &[&str],
    hw: (usize, usize),
    arch: (&[usize], &[usize], usize),
    input: &str,
    logits: &str,
) {
    let want = read_f32(logits);
    let x = read_f32(input);
    for weights in weights {
        let file = convert(weights, hw);
        let model = Model::parse(file.bytes()).unwrap();
        let a = model.arch();
        assert_eq!((a.depths(), a.dims(), a.num_classes), arch, "{weights}");
        for k in kernel_sets() {
            let got = run_logits(&model, Input::NchwF32(&x), k);
            let err = max_abs(&got, &want);
            println!("{weights} [{}]: {err:.3e}", k.resolved_name().unwrap());
            assert!(err <= TOL, "{weights} {k:?}: {err}");
        }
    }
}

#[test]
fn custom_arch_non_square_input_matches_timm_with_every_naming_scheme() {
    assert_every_form_gives(
        &[
            "extra/custom_weights.safetensors",
            "extra/custom_official_f32.safetensors",
            "extra/custom_official.pth",
            "extra/custom_timm_bf16_legacy.pth",
        ],
        (96, 128),
        (&[1, 1, 3, 1], &[16, 32, 48, 64], 7),
        "extra/custom_input.bin",
        "extra/custom_logits.bin",
    );
}

#[test]
fn a_hugging_face_model_matches_transformers_from_its_state_dict_and_every_onnx_export() {
    // tools/make_hf_fixtures.py: transformers' ConvNextV2ForImageClassification, its state dict
    // and four ONNX exports (LayerNormalization; LayerNorm decomposed; torch.export; the Gelu op),
    // these where quant reads ONNX (the host; cross builds leave tract out).
    let mut forms = vec!["extra/hf_tiny.safetensors"];
    if quant::onnx::AVAILABLE {
        forms.extend([
            "extra/hf_tiny_opset17.onnx",
            "extra/hf_tiny_opset13.onnx",
            "extra/hf_tiny_dynamo.onnx",
            "extra/hf_tiny_gelu_opset20.onnx",
        ]);
    } else {
        println!("quant built without `onnx`: the ONNX forms are checked on the host");
    }
    assert_every_form_gives(
        &forms,
        (64, 96),
        (&[1, 1, 2, 1], &[16, 32, 48, 64], 5),
        "extra/hf_tiny_input.bin",
        "extra/hf_tiny_logits.bin",
    );
}

#[test]
fn an_fcmae_pretraining_checkpoints_encoder_with_the_fine_tuned_head_matches_timm() {
    // tools/make_layout_fixtures.py: the custom fixture's encoder in the official FCMAE
    // checkpoint layout (MinkowskiEngine kernels under `encoder.`, decoder side beside it, no
    // head). With the head of the same weights it must give timm's logits: every kernel
    // permutation and name is then right.
    let mut sd = quant::load_state_dict(&fixture("extra/custom_fcmae_checkpoint.pth")).unwrap();
    assert!(!sd.keys().any(|k| k.starts_with("head.")));
    let official =
        quant::load_state_dict(&fixture("extra/custom_official_f32.safetensors")).unwrap();
    sd.extend(official.into_iter().filter(|(k, _)| k.starts_with("head.")));
    let file = convert_state_dict(&sd, (96, 128));
    let model = Model::parse(file.bytes()).unwrap();
    let want = read_f32("extra/custom_logits.bin");
    for k in kernel_sets() {
        let got = run_logits(
            &model,
            Input::NchwF32(&read_f32("extra/custom_input.bin")),
            k,
        );
        let err = max_abs(&got, &want);
        println!(
            "custom (FCMAE encoder + head) [{}]: {err:.3e}",
            k.resolved_name().unwrap()
        );
        assert!(err <= TOL, "{k:?}: {err}");
    }
}

#[test]
fn input_sizes_that_are_not_multiples_of_32_match_timm() {
    // tools/make_odd_size_fixtures.py: timm floors each strided convolution, so 77×45 runs with
    // stage maps 19×11, 9×5, 4×2, 2×1 and 50×200 with 12×50, 6×25, 3×12, 1×6.
    for (h, w) in [(77usize, 45usize), (50, 200)] {
        let x = read_f32(&format!("extra/custom_odd_{h}x{w}_input.bin"));
        let want = read_f32(&format!("extra/custom_odd_{h}x{w}_logits.bin"));
        let file = convert("extra/custom_weights.safetensors", (h, w));
        let model = Model::parse(file.bytes()).unwrap();
        assert_eq!(model.arch().stage_hw(3), (h / 32, w / 32));
        for k in kernel_sets() {
            let got = run_logits(&model, Input::NchwF32(&x), k);
            let err = max_abs(&got, &want);
            println!("custom {h}x{w} [{}]: {err:.3e}", k.resolved_name().unwrap());
            assert!(err <= TOL, "{h}x{w} {k:?}: {err}");
        }
    }
}
