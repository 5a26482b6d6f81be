//! The C entry points called as C would: the Atto fixture parsed in place and run on the
//! astronaut image gives the Rust API's logits bit for bit (u8 HWC and f32 NCHW, f32 and int8);
//! every misuse is its status with a message naming the culprit.

use std::ffi::CStr;
use std::path::{Path, PathBuf};

use edge_capi::*;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(rel)
}

fn aligned(raw: &[u8]) -> Vec<u128> {
    let mut w = vec![0u128; raw.len().div_ceil(16)];
    bytemuck::cast_slice_mut::<u128, u8>(&mut w)[..raw.len()].copy_from_slice(raw);
    w
}

/// An error record as C leaves it: garbage (the API writes it, never reads it).
fn new_err() -> EdgeError {
    EdgeError {
        status: 0xdead_beef,
        message: [0x55; EDGE_MESSAGE_BYTES],
    }
}

fn msg(e: &EdgeError) -> String {
    // SAFETY: the API always NUL-terminates the message.
    unsafe { CStr::from_ptr(e.message.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn blank() -> EdgeModel {
    // SAFETY: any bytes are a valid (unparsed) EdgeModel; zeroes are what C's `= {0}` gives.
    unsafe { std::mem::zeroed() }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn parse_info_and_run_match_the_rust_api_bit_for_bit() {
    let sd = quant::load_state_dict(&fixture("atto/weights.safetensors")).unwrap();
    let arch = quant::infer_arch(&sd, 224, 224).unwrap();
    let f32_raw = quant::convert::convert(&sd, &arch).unwrap();
    let f32_words = aligned(&f32_raw);
    let f32_bytes = &bytemuck::cast_slice::<u128, u8>(&f32_words)[..f32_raw.len()];
    let rgb = std::fs::read(fixture("atto/inputs/astronaut_u8_hwc_224x224x3.bin")).unwrap();
    let nchw: Vec<f32> = std::fs::read(fixture("atto/inputs/astronaut.bin"))
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let f32m = edge::Model::parse(f32_bytes).unwrap();
    let i8_raw = quant::quantize::quantize_with_inputs(
        &f32m,
        [edge::Input::HwcU8(&rgb)],
        quant::calib::Method::Mse,
    )
    .unwrap();
    let i8_words = aligned(&i8_raw);
    let i8_bytes = &bytemuck::cast_slice::<u128, u8>(&i8_words)[..i8_raw.len()];
    for (bytes, int8) in [(f32_bytes, 0u8), (i8_bytes, 1)] {
        let mut model = blank();
        let mut err = new_err();
        // SAFETY: valid pointers and lengths throughout; the file outlives the handle.
        unsafe {
            assert_eq!(
                edge_model_parse(bytes.as_ptr(), bytes.len(), &mut model, &mut err),
                EDGE_STATUS_OK,
                "{}",
                msg(&err)
            );
            let mut info = EdgeModelInfo::default();
            assert_eq!(edge_model_info(&model, &mut info, &mut err), EDGE_STATUS_OK);
            assert_eq!(
                (
                    info.input_h,
                    info.input_w,
                    info.in_chans,
                    info.num_classes,
                    info.int8
                ),
                (224, 224, 3, 1000, int8)
            );
            assert_eq!(info.macs, arch.macs());
            let rust = edge::Model::parse(bytes).unwrap();
            let need = edge_model_arena_len(&model, 1);
            assert_eq!(need, rust.arena_len());
            // An arena at an odd address: the API takes any alignment.
            let mut arena = vec![0u8; need + 1];
            let mut logits = vec![0f32; 1000];
            for kernels in [EDGE_KERNELS_AUTO, EDGE_KERNELS_SCALAR] {
                let want_k = if kernels == EDGE_KERNELS_AUTO {
                    edge::Kernels::Auto
                } else {
                    edge::Kernels::Scalar
                };
                let mut want = vec![0f32; 1000];
                let mut ra = vec![0u8; need];
                rust.run_with(
                    edge::Input::HwcU8(&rgb),
                    &mut ra,
                    &mut want,
                    want_k,
                    &mut edge::NoObserver,
                )
                .unwrap();
                let s = edge_run_u8_hwc(
                    &model,
                    rgb.as_ptr(),
                    rgb.len(),
                    arena.as_mut_ptr().add(1),
                    need,
                    logits.as_mut_ptr(),
                    1000,
                    kernels,
                    &mut err,
                );
                assert_eq!(s, EDGE_STATUS_OK, "{}", msg(&err));
                assert_eq!(
                    bits(&logits),
                    bits(&want),
                    "u8 HWC, int8 {int8}, {kernels:?}"
                );
                rust.run_with(
                    edge::Input::NchwF32(&nchw),
                    &mut ra,
                    &mut want,
                    want_k,
                    &mut edge::NoObserver,
                )
                .unwrap();
                let s = edge_run_f32_nchw(
                    &model,
                    nchw.as_ptr(),
                    nchw.len(),
                    arena.as_mut_ptr(),
                    need,
                    logits.as_mut_ptr(),
                    1000,
                    kernels,
                    std::ptr::null_mut(),
                );
                assert_eq!(s, EDGE_STATUS_OK);
                assert_eq!(
                    bits(&logits),
                    bits(&want),
                    "f32 NCHW, int8 {int8}, {kernels:?}"
                );
            }
            // f32 against timm's logits (the file's own oracle).
            if int8 == 0 {
                let timm: Vec<f32> = std::fs::read(fixture("atto/logits/astronaut.bin"))
                    .unwrap()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                let err_max = logits
                    .iter()
                    .zip(&timm)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(err_max <= 1e-4, "{err_max}");
            }
        }
    }
}

#[test]
fn misuse_is_a_status_and_a_message_naming_the_culprit() {
    let sd = quant::load_state_dict(&fixture("atto/weights.safetensors")).unwrap();
    let arch = quant::infer_arch(&sd, 64, 64).unwrap();
    let raw = quant::convert::convert(&sd, &arch).unwrap();
    let words = aligned(&raw);
    let bytes = &bytemuck::cast_slice::<u128, u8>(&words)[..raw.len()];
    let mut err = new_err();
    let mut model = blank();
    // SAFETY: every pointer is valid or deliberately NULL; lengths match the buffers.
    unsafe {
        // Not parsed yet.
        assert_eq!(edge_model_arena_len(&model, 1), 0);
        let mut info = EdgeModelInfo::default();
        assert_eq!(
            edge_model_info(&model, &mut info, &mut err),
            EDGE_STATUS_NOT_PARSED
        );
        assert!(msg(&err).contains("edge_model_parse"), "{}", msg(&err));
        // NULL arguments are named.
        assert_eq!(
            edge_model_parse(std::ptr::null(), 10, &mut model, &mut err),
            EDGE_STATUS_NULL_ARGUMENT
        );
        assert_eq!(msg(&err), "data is NULL");
        assert_eq!(
            edge_model_parse(bytes.as_ptr(), bytes.len(), std::ptr::null_mut(), &mut err),
            EDGE_STATUS_NULL_ARGUMENT
        );
        assert_eq!(msg(&err), "model is NULL");
        // A misaligned and a truncated file: the model's own typed errors.
        let mut copy = vec![0u8; raw.len() + 1];
        copy[1..].copy_from_slice(&raw);
        assert_eq!(
            edge_model_parse(copy.as_ptr().add(1), raw.len(), &mut model, &mut err),
            EDGE_STATUS_INVALID_MODEL
        );
        assert!(msg(&err).contains("16-byte boundary"), "{}", msg(&err));
        assert_eq!(
            edge_model_parse(bytes.as_ptr(), 100, &mut model, &mut err),
            EDGE_STATUS_INVALID_MODEL
        );
        assert!(msg(&err).contains("truncated"), "{}", msg(&err));
        // A failed parse leaves no usable handle behind.
        assert_eq!(edge_model_arena_len(&model, 1), 0);
        assert_eq!(
            edge_model_parse(bytes.as_ptr(), bytes.len(), &mut model, &mut err),
            EDGE_STATUS_OK
        );
        assert_eq!(err.status, EDGE_STATUS_OK);
        assert_eq!(msg(&err), "");
        let need = edge_model_arena_len(&model, 1);
        let mut arena = vec![0u8; need];
        let mut logits = vec![0f32; 1000];
        let rgb = vec![0u8; 64 * 64 * 3];
        let run = |rgb_len: usize,
                   arena_len: usize,
                   logits_len: usize,
                   k: EdgeKernels,
                   err: &mut EdgeError,
                   arena: &mut Vec<u8>,
                   logits: &mut Vec<f32>| {
            edge_run_u8_hwc(
                &model,
                rgb.as_ptr(),
                rgb_len,
                arena.as_mut_ptr(),
                arena_len,
                logits.as_mut_ptr(),
                logits_len,
                k,
                err,
            )
        };
        assert_eq!(
            run(
                rgb.len() - 3,
                need,
                1000,
                EDGE_KERNELS_AUTO,
                &mut err,
                &mut arena,
                &mut logits
            ),
            EDGE_STATUS_BAD_INPUT
        );
        assert!(
            msg(&err).contains(&format!("{}", 64 * 64 * 3)),
            "{}",
            msg(&err)
        );
        assert_eq!(
            run(
                rgb.len(),
                need / 2,
                1000,
                EDGE_KERNELS_AUTO,
                &mut err,
                &mut arena,
                &mut logits
            ),
            EDGE_STATUS_ARENA_TOO_SMALL
        );
        assert!(
            msg(&err).contains(&need.to_string()),
            "the size needed is stated: {}",
            msg(&err)
        );
        assert_eq!(
            run(
                rgb.len(),
                need,
                10,
                EDGE_KERNELS_AUTO,
                &mut err,
                &mut arena,
                &mut logits
            ),
            EDGE_STATUS_BAD_OUTPUT
        );
        let missing = if cfg!(target_arch = "aarch64") {
            EDGE_KERNELS_AVX2
        } else {
            EDGE_KERNELS_NEON
        };
        assert_eq!(
            run(
                rgb.len(),
                need,
                1000,
                missing,
                &mut err,
                &mut arena,
                &mut logits
            ),
            EDGE_STATUS_KERNELS_UNAVAILABLE
        );
        let nan = vec![f32::NAN; 3 * 64 * 64];
        let s = edge_run_f32_nchw(
            &model,
            nan.as_ptr(),
            nan.len(),
            arena.as_mut_ptr(),
            need,
            logits.as_mut_ptr(),
            1000,
            EDGE_KERNELS_AUTO,
            &mut err,
        );
        assert_eq!(s, EDGE_STATUS_BAD_INPUT);
        assert!(
            msg(&err).contains("index 0") || msg(&err).contains("element 0"),
            "{}",
            msg(&err)
        );
        assert_eq!(
            CStr::from_ptr(edge_status_name(EDGE_STATUS_ARENA_TOO_SMALL))
                .to_str()
                .unwrap(),
            "arena too small"
        );
    }
}
