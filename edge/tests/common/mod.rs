//! Helpers shared by edge's integration tests: fixture paths, 16-byte-aligned model files, and
//! the Atto fixture converted to f32 and calibrated to int8 with quant's library path.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use edge::builder::AlignedBytes;
use edge::{Input, Model};

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(rel)
}

/// A model file's bytes kept on a 16-byte boundary (what `Model::parse` needs).
pub struct File(AlignedBytes);

impl File {
    pub fn new(raw: &[u8]) -> File {
        File(AlignedBytes::from_slice(raw))
    }

    pub fn bytes(&self) -> &[u8] {
        self.0.as_slice()
    }

    pub fn model(&self) -> Model<'_> {
        Model::parse(self.bytes()).unwrap()
    }
}

/// A deterministic u8 RGB test image, `hw × hw × 3`.
pub fn pattern(hw: usize) -> Vec<u8> {
    (0..hw * hw * 3)
        .map(|i| ((i * 37 + i / 97) % 251) as u8)
        .collect()
}

/// The timm Atto fixture at `hw × hw`: the f32 file, the int8 file calibrated (MSE) on
/// [`pattern`], and that image.
pub fn atto_f32_int8(hw: usize) -> (File, File, Vec<u8>) {
    let sd = quant::load_state_dict(&fixture("atto/weights.safetensors")).unwrap();
    let arch = quant::infer_arch(&sd, hw, hw).unwrap();
    let f32_file = File::new(&quant::convert::convert(&sd, &arch).unwrap());
    let img = pattern(hw);
    let i8_raw = quant::quantize::quantize_with_inputs(
        &f32_file.model(),
        [Input::HwcU8(&img)],
        quant::calib::Method::Mse,
    )
    .unwrap();
    (f32_file, File::new(&i8_raw), img)
}
