//! The image front end (`preprocess::decode_rgb8` + timm's centre crop): JPEG, PNG and PNM.
//! Run with `-rss_limit_mb=2048`: decoding is capped at `preprocess::MAX_DECODED_BYTES`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = preprocess::decode_rgb8(data) {
        // 224: the size the tools crop to, so elongated images reach the resize cap.
        if let Ok(rgb) = preprocess::center_crop(&img, 224, 224, 0.875) {
            assert_eq!(rgb.len(), 224 * 224 * 3);
        }
    }
});
