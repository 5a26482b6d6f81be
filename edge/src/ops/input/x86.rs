//! x86-64 input quantization (AVX2): normalized f32 NCHW → int8 HWC for RGB, 8 pixels per step:
//! each plane multiplied by `1/scale`, NaN sent to 0 and clamped to ±1024 (what the
//! reference's `rint`, `clamp` and saturating `as` do), rounded half to even by `vcvtps2dq`
//! (the default rounding mode, as `rintf`), offset, narrowed with saturation, then interleaved
//! into HWC. Bit-identical to [`super::quantize_nchw_f32_i8_scalar`]; other channel counts take
//! the reference.

use crate::cpu::X86Features;
use crate::model::QParams;
use core::arch::x86_64::*;

/// [`super::quantize_nchw_f32_i8_scalar`] on AVX2. Panics if the CPU lacks it or a slice is
/// short.
pub fn quantize_nchw_f32_i8_avx2(
    input: &[f32],
    stride: usize,
    pixels: usize,
    c: usize,
    q: QParams,
    out: &mut [i8],
) {
    assert!(X86Features::get().avx2, "AVX2 not available");
    assert!(pixels <= stride || c <= 1);
    assert!(c == 0 || input.len() >= (c - 1) * stride + pixels);
    assert!(out.len() >= pixels * c);
    if c != 3 || !(-128..=127).contains(&q.zero) {
        return super::quantize_nchw_f32_i8_scalar(input, stride, pixels, c, q, out);
    }
    let p8 = pixels / 8 * 8;
    // SAFETY: the CPU has AVX2 (asserted); pixels 0..p8 of each plane (planes `stride` apart)
    // and of `out` are in bounds (asserted).
    unsafe { rgb_avx2(input, stride, p8, q, out) };
    let inv = 1.0 / q.scale;
    for p in p8..pixels {
        for ch in 0..3 {
            out[p * 3 + ch] = super::quantize_one(input[ch * stride + p], inv, q.zero);
        }
    }
}

#[target_feature(enable = "avx2")]
unsafe fn rgb_avx2(input: &[f32], stride: usize, p8: usize, q: QParams, out: &mut [i8]) {
    let inv = _mm256_set1_ps(1.0 / q.scale);
    let zero = _mm256_set1_epi32(q.zero);
    let big = _mm256_set1_ps(1024.0);
    let code = |v: __m256| {
        let t = _mm256_mul_ps(v, inv);
        let t = _mm256_blendv_ps(t, _mm256_setzero_ps(), _mm256_cmp_ps::<_CMP_UNORD_Q>(t, t));
        let t = _mm256_min_ps(
            _mm256_max_ps(t, _mm256_sub_ps(_mm256_setzero_ps(), big)),
            big,
        );
        let r = _mm256_add_epi32(_mm256_cvtps_epi32(t), zero);
        let w = _mm256_packs_epi32(r, r);
        let b = _mm256_packs_epi16(w, w);
        let b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4));
        let mut bytes = [0i8; 16];
        // SAFETY: `bytes` holds 16 bytes.
        unsafe { _mm_storeu_si128(bytes.as_mut_ptr().cast(), _mm256_castsi256_si128(b)) };
        bytes
    };
    for p in (0..p8).step_by(8) {
        // SAFETY: pixels p..p+8 ≤ p8 of each of the 3 planes.
        let planes: [[i8; 16]; 3] = core::array::from_fn(|ch| unsafe {
            code(_mm256_loadu_ps(input.as_ptr().add(ch * stride + p)))
        });
        for i in 0..8 {
            for (ch, plane) in planes.iter().enumerate() {
                out[(p + i) * 3 + ch] = plane[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::input::quantize_nchw_f32_i8_scalar;
    use crate::ops::testutil::*;
    use std::vec;

    #[test]
    fn avx2_bit_identical_to_reference() {
        if !X86Features::get().avx2 {
            std::println!("input quantization avx2: not on this CPU, skipped");
            return;
        }
        let mut rng = Rng::new(100);
        for (pixels, c) in [(224 * 224, 3), (13, 3), (5, 1), (17, 4)] {
            let mut x = rng.vec(pixels * c, 3.0);
            // Ties at .5 after scaling, NaN and infinities.
            x[0] = f32::NAN;
            x[1] = f32::INFINITY;
            x[2] = f32::NEG_INFINITY;
            if x.len() > 5 {
                x[3] = 0.25;
                x[4] = -0.75;
                x[5] = 1e9;
            }
            for (scale, zero) in [(0.5, 0), (0.02, -3), (0.05, 127), (0.01, -128)] {
                let q = QParams { scale, zero };
                let (mut want, mut got) = (vec![0i8; pixels * c + 1], vec![2i8; pixels * c + 1]);
                want[pixels * c] = 2;
                quantize_nchw_f32_i8_scalar(&x, pixels, pixels, c, q, &mut want);
                quantize_nchw_f32_i8_avx2(&x, pixels, pixels, c, q, &mut got);
                assert_eq!(got, want, "{pixels}x{c} scale {scale} zero {zero}");
                // Pixel ranges (the runtime's tasks), cutting the 8-pixel blocks.
                for (a, e) in [(0, pixels / 2), (pixels / 3, pixels), (1, pixels.min(20))] {
                    let mut part = vec![1i8; c * (e - a)];
                    quantize_nchw_f32_i8_avx2(&x[a..], pixels, e - a, c, q, &mut part);
                    assert_eq!(part, want[c * a..c * e], "{pixels}x{c} range {a}..{e}");
                }
            }
        }
        std::println!("input quantization avx2: ran");
    }
}
