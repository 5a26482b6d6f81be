//! Structure-aware model-file fuzzing: `arbitrary` picks a tiny architecture (depths 1–2 per
//! stage, dims 8–32, classes 1–16, input 16–64 px a side, so sizes below the stride and odd
//! sizes occur), weights come from a seed, the file is written as f32 or calibrated to int8
//! through quant's library path, then bytes are flipped, the file is truncated and optionally
//! resealed (CRC recomputed). Every outcome must be `Ok` or a typed error, never a panic; a
//! file that parses is run.
#![no_main]

use arbitrary::Arbitrary;
use edge::builder::AlignedBytes;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Case {
    depths: [u8; 4],
    dims: [u8; 4],
    classes: u8,
    h: u8,
    w: u8,
    int8: bool,
    seed: u64,
    flips: Vec<(u32, u8)>,
    truncate: Option<u32>,
    reseal: bool,
}

fuzz_target!(|c: Case| {
    let arch = edge::Arch::new(
        c.depths.map(|d| 1 + (d % 2) as usize),
        c.dims.map(|d| 8 * (1 + (d % 4) as usize)),
        1 + (c.classes % 16) as usize,
        16 + (c.h % 49) as usize,
        16 + (c.w % 49) as usize,
    );
    let Ok(f32_file) = quant::synth::synth_model(&arch, c.seed) else {
        return; // A typed refusal (e.g. input smaller than the stride).
    };
    let mut file = f32_file;
    if c.int8 {
        let buf = AlignedBytes::from_slice(&file);
        let m = edge::Model::parse(buf.as_slice()).expect("synth writes valid f32 files");
        let img: Vec<u8> = (0..arch.input_h * arch.input_w * 3)
            .map(|i| (i as u64 * 37 + c.seed) as u8)
            .collect();
        file = quant::quantize::quantize_with_inputs(
            &m,
            [edge::Input::HwcU8(&img)],
            quant::calib::Method::MinMax,
        )
        .expect("calibration of a valid model succeeds");
    }
    for &(at, x) in &c.flips {
        let n = file.len();
        file[at as usize % n] ^= x;
    }
    if let Some(t) = c.truncate {
        file.truncate(t as usize % (file.len() + 1));
    }
    edge_fuzz::parse_and_run(&file, c.reseal);
});
