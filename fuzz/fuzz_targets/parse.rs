//! Model-file parser fuzz target. The input is resealed (CRC recomputed) half of the time so
//! mutations reach the structural checks behind the checksum; a file that parses is also run
//! when its arena is small, so accepted-but-wrong files cannot hide a panic in `run`.
#![no_main]

use edge::builder::AlignedBytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = AlignedBytes::from_slice(data);
    if data.first().is_some_and(|b| b & 1 == 1) {
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
});
