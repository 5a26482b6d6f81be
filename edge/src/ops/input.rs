//! Input staging: the caller's image (normalized f32 NCHW, or u8 RGB HWC) → normalized f32 HWC.

/// ImageNet mean (RGB), as timm/torchvision use it.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet standard deviation (RGB).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// `[C][H·W]` → `[H·W][C]`.
pub fn nchw_to_hwc_f32_scalar(input: &[f32], pixels: usize, c: usize, out: &mut [f32]) {
    for (p, px) in out[..pixels * c].chunks_exact_mut(c).enumerate() {
        for (ch, v) in px.iter_mut().enumerate() {
            *v = input[ch * pixels + p];
        }
    }
}

/// u8 RGB HWC → `(v/255 − mean)/std` f32 HWC, in that order of f32 operations (what the
/// fixtures and torchvision's `ToTensor` + `Normalize` compute).
pub fn normalize_u8_hwc_scalar(input: &[u8], out: &mut [f32]) {
    for (src, dst) in input.chunks_exact(3).zip(out.chunks_exact_mut(3)) {
        for ch in 0..3 {
            dst[ch] = (src[ch] as f32 / 255.0 - IMAGENET_MEAN[ch]) / IMAGENET_STD[ch];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposes_and_normalizes() {
        let nchw: [f32; 12] = core::array::from_fn(|i| i as f32);
        let mut hwc = [0f32; 12];
        nchw_to_hwc_f32_scalar(&nchw, 4, 3, &mut hwc);
        assert_eq!(hwc, [0., 4., 8., 1., 5., 9., 2., 6., 10., 3., 7., 11.]);
        let mut out = [0f32; 6];
        normalize_u8_hwc_scalar(&[0, 0, 0, 255, 255, 255], &mut out);
        assert!((out[0] - (-0.485 / 0.229)).abs() < 1e-6);
        assert!((out[5] - ((1.0 - 0.406) / 0.225)).abs() < 1e-6);
    }
}
