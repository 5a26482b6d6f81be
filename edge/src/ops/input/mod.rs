//! Input staging: the caller's image (normalized f32 NCHW, or u8 RGB HWC) → normalized f32 HWC,
//! or, for int8 models, straight to quantized int8 HWC (one pass, no f32 copy of the image).

use crate::model::QParams;

/// ImageNet mean (RGB), as timm/torchvision use it.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet standard deviation (RGB).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The index of the first NaN or ±inf in `x`, or `None`: the runtime's check of an f32
/// image (of each task's pixels in a plain run). Branch-free over blocks of 256 values (the
/// compiler vectorizes the fold; an early-exit scan of Atto's 150,528 inputs took 44 µs on
/// the x86-64 host), then the exact index within the first block that has one.
pub fn first_non_finite(x: &[f32]) -> Option<usize> {
    const BLOCK: usize = 256;
    let block = x
        .chunks(BLOCK)
        .position(|b| b.iter().fold(false, |bad, v| bad | !v.is_finite()))?;
    let start = block * BLOCK;
    Some(start + x[start..].iter().position(|v| !v.is_finite())?)
}

/// `[C][H·W]` → `[H·W][C]`.
pub fn nchw_to_hwc_f32_scalar(input: &[f32], pixels: usize, c: usize, out: &mut [f32]) {
    for (p, px) in out[..pixels * c].chunks_exact_mut(c).enumerate() {
        for (ch, v) in px.iter_mut().enumerate() {
            *v = input[ch * pixels + p];
        }
    }
}

/// Pixels `rows` of [`nchw_to_hwc_f32_scalar`] (`out` holds only those pixels): the planes are
/// read with their full stride, so that a pixel range can be one task.
pub fn nchw_to_hwc_rows_f32_scalar(
    input: &[f32],
    pixels: usize,
    c: usize,
    rows: core::ops::Range<usize>,
    out: &mut [f32],
) {
    for (p, px) in rows.zip(out.chunks_exact_mut(c)) {
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

/// Quantizes one value: `sat8(rint(v · inv_scale) + zero)` (round half to even).
#[inline]
pub fn quantize_one(v: f32, inv_scale: f32, zero: i32) -> i8 {
    let q = libm::rintf(v * inv_scale);
    // `as` saturates (and maps NaN to 0) before the zero point is added.
    (q.clamp(-1024.0, 1024.0) as i32 + zero).clamp(-128, 127) as i8
}

/// Normalized f32 planes → int8 `[pixels][C]` with the model's input quantization: channel
/// `ch` of pixel `p` is `input[ch·stride + p]` (`stride` = H·W for a whole `[C][H·W]` image; a
/// pixel range `a..b` of it is `&image[a..]` with `pixels = b − a`, so the runtime splits the
/// image by pixel ranges).
pub fn quantize_nchw_f32_i8_scalar(
    input: &[f32],
    stride: usize,
    pixels: usize,
    c: usize,
    q: QParams,
    out: &mut [i8],
) {
    let inv = 1.0 / q.scale;
    for (p, px) in out[..pixels * c].chunks_exact_mut(c).enumerate() {
        for (ch, v) in px.iter_mut().enumerate() {
            *v = quantize_one(input[ch * stride + p], inv, q.zero);
        }
    }
}

/// NEON [`quantize_nchw_f32_i8_scalar`] for RGB (`c == 3`; other channel counts take the
/// reference): 8 pixels per step, each plane multiplied, rounded half to even (`FRINTN`, as
/// `rintf`), clamped, converted, offset and narrowed with saturation, then interleaved into HWC
/// by one `ST3`. Bit-identical to the reference (NaN → the zero point, ±inf saturate).
#[cfg(target_arch = "aarch64")]
pub fn quantize_nchw_f32_i8_neon(
    input: &[f32],
    stride: usize,
    pixels: usize,
    c: usize,
    q: QParams,
    out: &mut [i8],
) {
    use core::arch::aarch64::*;
    if c != 3 {
        return quantize_nchw_f32_i8_scalar(input, stride, pixels, c, q, out);
    }
    assert!(pixels <= stride && input.len() >= 2 * stride + pixels && out.len() >= 3 * pixels);
    let inv = 1.0 / q.scale;
    let p8 = pixels / 8 * 8;
    let (r, g, b) = (
        &input[..pixels],
        &input[stride..stride + pixels],
        &input[2 * stride..2 * stride + pixels],
    );
    let code8 = |plane: &[f32], p: usize| {
        // SAFETY: pixels p..p+8 ≤ p8 of `plane`; register arithmetic otherwise.
        unsafe {
            let (inv, lim) = (vdupq_n_f32(inv), vdupq_n_f32(1024.0));
            let half = |v: float32x4_t| {
                let v = vrndnq_f32(vmulq_f32(v, inv));
                // FMIN/FMAX keep NaN, FCVTZS maps it to 0: `clamp` then `as` in the reference.
                vcvtq_s32_f32(vmaxq_f32(vminq_f32(v, lim), vnegq_f32(lim)))
            };
            let lo = half(vld1q_f32(plane.as_ptr().add(p)));
            let hi = half(vld1q_f32(plane.as_ptr().add(p + 4)));
            let z = vdupq_n_s16(q.zero as i16);
            // |code| ≤ 1024 and |zero| ≤ 128 fit i16: the narrows below only saturate to i8.
            vqmovn_s16(vaddq_s16(vcombine_s16(vmovn_s32(lo), vmovn_s32(hi)), z))
        }
    };
    let mut p = 0;
    while p < p8 {
        let px = int8x8x3_t(code8(r, p), code8(g, p), code8(b, p));
        // SAFETY: out[3p..3p+24] is inside `out` (p + 8 ≤ pixels).
        unsafe { vst3_s8(out.as_mut_ptr().add(3 * p), px) };
        p += 8;
    }
    for p in p8..pixels {
        for ch in 0..3 {
            out[3 * p + ch] = quantize_one(input[ch * stride + p], inv, q.zero);
        }
    }
}

/// The int8 code of every u8 value of each RGB channel: `quantize((v/255 − mean)/std)`, the
/// same f32 operations as [`normalize_u8_hwc_scalar`] then [`quantize_one`].
pub fn u8_to_i8_table(q: QParams) -> [[i8; 256]; 3] {
    let inv = 1.0 / q.scale;
    core::array::from_fn(|ch| {
        core::array::from_fn(|v| {
            quantize_one(
                (v as f32 / 255.0 - IMAGENET_MEAN[ch]) / IMAGENET_STD[ch],
                inv,
                q.zero,
            )
        })
    })
}

/// u8 RGB HWC → int8 HWC through [`u8_to_i8_table`].
pub fn quantize_u8_hwc_i8_scalar(input: &[u8], table: &[[i8; 256]; 3], out: &mut [i8]) {
    for (src, dst) in input.chunks_exact(3).zip(out.chunks_exact_mut(3)) {
        for ch in 0..3 {
            dst[ch] = table[ch][src[ch] as usize];
        }
    }
}

/// f32 → int8 with a per-tensor quantization (the head's pooled features).
pub fn quantize_f32_i8_scalar(input: &[f32], q: QParams, out: &mut [i8]) {
    let inv = 1.0 / q.scale;
    for (o, &v) in out.iter_mut().zip(input) {
        *o = quantize_one(v, inv, q.zero);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
pub use x86::quantize_nchw_f32_i8_avx2;

#[cfg(test)]
mod tests {
    use super::*;

    /// The first NaN or infinity wherever it falls in a block (against the plain scan).
    #[test]
    fn first_non_finite_is_the_first_index() {
        let n = 1000;
        let base: std::vec::Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 7.0).collect();
        assert_eq!(first_non_finite(&base), None);
        assert_eq!(first_non_finite(&[]), None);
        for (i, j) in [
            (0, 999),
            (255, 256),
            (256, 3),
            (511, 600),
            (999, 999),
            (700, 257),
        ] {
            for (a, b) in [(f32::NAN, f32::INFINITY), (f32::NEG_INFINITY, f32::NAN)] {
                let mut x = base.clone();
                x[i] = a;
                x[j] = b;
                assert_eq!(first_non_finite(&x), Some(i.min(j)), "{i} {j}");
            }
        }
        let mut x = base;
        x[300] = f32::MAX;
        x[301] = f32::MIN_POSITIVE / 2.0;
        assert_eq!(first_non_finite(&x), None, "finite extremes pass");
    }

    #[test]
    fn quantizes_with_rounding_and_saturation() {
        let q = QParams {
            scale: 0.5,
            zero: -3,
        };
        let mut out = [0i8; 6];
        quantize_f32_i8_scalar(&[0.0, 0.25, 0.75, -1.0, 1e9, -1e9], q, &mut out);
        // 0.25/0.5 = 0.5 → 0 (half to even); 0.75/0.5 = 1.5 → 2.
        assert_eq!(out, [-3, -3, -1, -5, 127, -128]);
        // The u8 table is the normalize-then-quantize composition.
        let q = QParams {
            scale: 0.02,
            zero: 5,
        };
        let t = u8_to_i8_table(q);
        let rgb = [0u8, 128, 255, 17, 99, 201];
        let mut via_f32 = [0f32; 6];
        normalize_u8_hwc_scalar(&rgb, &mut via_f32);
        let mut a = [0i8; 6];
        let mut b = [0i8; 6];
        quantize_u8_hwc_i8_scalar(&rgb, &t, &mut a);
        quantize_f32_i8_scalar(&via_f32, q, &mut b);
        assert_eq!(a, b);
        let nchw = [0.1f32, -0.2, 0.3, -0.4, 0.5, -0.6];
        let mut hwc = [0i8; 6];
        quantize_nchw_f32_i8_scalar(&nchw, 2, 2, 3, q, &mut hwc);
        assert_eq!(hwc, [10, 20, 30, -5, -15, -25]);
        // The second pixel alone, as a pixel-range task sees it (planes 2 apart).
        let mut one = [0i8; 3];
        quantize_nchw_f32_i8_scalar(&nchw[1..], 2, 1, 3, q, &mut one);
        assert_eq!(one, [-5, -15, -25]);
    }

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

#[cfg(all(test, target_arch = "aarch64"))]
mod neon_tests {
    use super::*;
    use crate::ops::testutil::*;

    #[test]
    fn neon_quantization_bit_identical_to_reference() {
        let mut rng = Rng::new(17);
        // Ties at scale 0.5 (v · 2 = k + 0.5) and 0.02 (v · 50), saturation, NaN, infinities.
        let specials = [
            f32::NAN,
            f32::INFINITY,
            -f32::INFINITY,
            1e30,
            -1e30,
            0.25,
            -0.75,
            0.05,
        ];
        for pixels in [1, 7, 8, 9, 50, 224 * 224] {
            for (scale, zero) in [(0.02, 5), (0.5, -128), (1e-3, 127), (0.037, 0)] {
                let q = QParams { scale, zero };
                let mut x: std::vec::Vec<f32> = (0..3 * pixels).map(|_| 3.0 * rng.f32()).collect();
                let n = x.len();
                for (i, s) in specials.iter().enumerate() {
                    x[i * 7 % n] = *s;
                }
                let (mut want, mut got) = (std::vec![0i8; 3 * pixels], std::vec![1i8; 3 * pixels]);
                quantize_nchw_f32_i8_scalar(&x, pixels, pixels, 3, q, &mut want);
                quantize_nchw_f32_i8_neon(&x, pixels, pixels, 3, q, &mut got);
                assert_eq!(got, want, "{pixels} px, scale {scale}, zero {zero}");
                // Pixel ranges (the runtime's tasks), cutting the 8-pixel blocks.
                for (a, e) in [(0, pixels / 2), (pixels / 3, pixels), (1, pixels.min(20))] {
                    let mut part = std::vec![1i8; 3 * (e - a)];
                    quantize_nchw_f32_i8_neon(&x[a..], pixels, e - a, 3, q, &mut part);
                    assert_eq!(part, want[3 * a..3 * e], "{pixels} px, range {a}..{e}");
                }
            }
        }
    }
}
