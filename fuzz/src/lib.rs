//! What every model-file fuzz target does with its bytes.

use edge::builder::AlignedBytes;

/// Parses `bytes` (after recomputing the CRC when `reseal`, so mutations reach the checks behind
/// it) and runs a file that parses when its arena is small: accepted-but-wrong files cannot hide
/// a panic in `run`.
pub fn parse_and_run(bytes: &[u8], reseal: bool) {
    let mut buf = AlignedBytes::from_slice(bytes);
    if reseal && bytes.len() >= 64 {
        edge::format::seal(buf.as_mut_slice());
    }
    if let Ok(m) = edge::Model::parse(buf.as_slice()) {
        let a = m.arch();
        if m.arena_len() <= 1 << 22 && a.num_classes <= 4096 {
            let mut arena = vec![0u8; m.arena_len()];
            let mut logits = vec![0f32; a.num_classes];
            let img = vec![7u8; a.input_h * a.input_w * 3];
            let _ = m.run(edge::Input::HwcU8(&img), &mut arena, &mut logits);
        }
    }
}
