//! Global average pooling over NHWC pixels (the head's `mean` over H, W).

/// `out[c] = (1/P) Σ_p in[p][c]`, summed in f64 so the order of pixels does not matter.
pub fn avgpool_f32_scalar(input: &[f32], pixels: usize, c: usize, out: &mut [f32]) {
    const CH: usize = 64;
    let mut acc = [0f64; CH];
    for c0 in (0..c).step_by(CH) {
        let cw = CH.min(c - c0);
        acc[..cw].fill(0.0);
        for px in input[..pixels * c].chunks_exact(c) {
            for (a, &v) in acc[..cw].iter_mut().zip(&px[c0..c0 + cw]) {
                *a += v as f64;
            }
        }
        for (o, a) in out[c0..c0 + cw].iter_mut().zip(&acc[..cw]) {
            *o = (*a / pixels as f64) as f32;
        }
    }
}

/// int8 global average pool to f32: `out[c] = s · Σ_p (in[p][c] − z) / P`, the sum exact in
/// int32 (|x − z| ≤ 255, so any P < 2^23 fits).
pub fn avgpool_i8_f32_scalar(
    input: &[i8],
    pixels: usize,
    c: usize,
    q: crate::model::QParams,
    out: &mut [f32],
) {
    // Pixel-major over blocks of 64 channels (the sums are exact: any order gives the same
    // bits); a strided walk per channel took ~8 µs for Atto 224's 49 × 320 codes on the x86-64
    // host, serial time at the head.
    const CH: usize = 64;
    let mut acc = [0i32; CH];
    for c0 in (0..c).step_by(CH) {
        let cw = CH.min(c - c0);
        acc[..cw].fill(0);
        for px in input[..pixels * c].chunks_exact(c) {
            for (a, &v) in acc[..cw].iter_mut().zip(&px[c0..c0 + cw]) {
                *a += v as i32;
            }
        }
        for (o, &a) in out[c0..c0 + cw].iter_mut().zip(&acc[..cw]) {
            let sum = a - q.zero * pixels as i32;
            *o = (sum as f64 * q.scale as f64 / pixels as f64) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_pool_dequantizes_the_mean() {
        let x: [i8; 6] = [-128, 10, 127, -2, 0, 3]; // 3 pixels × 2 channels
        let mut y = [0f32; 2];
        let q = crate::model::QParams {
            scale: 0.5,
            zero: 1,
        };
        avgpool_i8_f32_scalar(&x, 3, 2, q, &mut y);
        assert_eq!(
            y,
            [
                (-129.0 + 126.0 - 1.0) * 0.5 / 3.0,
                (9.0 - 3.0 + 2.0) * 0.5 / 3.0
            ]
        );
    }

    /// Against the per-channel definition, over more channels than one block of 64 and a
    /// zero point at either end.
    #[test]
    fn int8_pool_is_the_per_channel_mean() {
        let (pixels, c) = (49, 150);
        let x: std::vec::Vec<i8> = (0..pixels * c)
            .map(|i| ((i * 7919 + 13) % 256) as u8 as i8)
            .collect();
        for zero in [-128, 3, 127] {
            let q = crate::model::QParams { scale: 0.037, zero };
            let mut y = std::vec![0f32; c];
            avgpool_i8_f32_scalar(&x, pixels, c, q, &mut y);
            for (j, &got) in y.iter().enumerate() {
                let sum: i64 = (0..pixels).map(|p| x[p * c + j] as i64 - zero as i64).sum();
                let want = (sum as f64 * q.scale as f64 / pixels as f64) as f32;
                assert_eq!(got.to_bits(), want.to_bits(), "channel {j} zero {zero}");
            }
        }
    }

    #[test]
    fn averages_each_channel() {
        let x: [f32; 12] = core::array::from_fn(|i| i as f32); // 4 pixels × 3 channels
        let mut y = [0f32; 3];
        avgpool_f32_scalar(&x, 4, 3, &mut y);
        assert_eq!(y, [4.5, 5.5, 6.5]);
    }
}

/// NEON global average pool: f32 vector sums per 4 channels, pixel-major. Same contract as
/// [`avgpool_f32_scalar`] (which sums in f64); agrees within f32 rounding of a P-term sum.
#[cfg(target_arch = "aarch64")]
pub fn avgpool_f32_neon(input: &[f32], pixels: usize, c: usize, out: &mut [f32]) {
    use core::arch::aarch64::*;
    assert!(input.len() >= pixels * c && out.len() >= c);
    let c4 = c / 4 * 4;
    let inv = 1.0 / pixels.max(1) as f32;
    let mut j = 0;
    while j < c4 {
        // SAFETY: channels j..j+4 < c of every pixel row are in bounds (assertion above).
        unsafe {
            let mut acc = vdupq_n_f32(0.0);
            for p in 0..pixels {
                acc = vaddq_f32(acc, vld1q_f32(input.as_ptr().add(p * c + j)));
            }
            vst1q_f32(out.as_mut_ptr().add(j), vmulq_n_f32(acc, inv));
        }
        j += 4;
    }
    for (j, o) in out.iter_mut().enumerate().take(c).skip(c4) {
        *o = (0..pixels).map(|p| input[p * c + j]).sum::<f32>() * inv;
    }
}

#[cfg(all(test, target_arch = "aarch64"))]
mod neon_tests {
    use super::*;
    use crate::ops::testutil::*;

    #[test]
    fn neon_matches_reference_on_random_shapes() {
        let mut rng = Rng::new(48);
        for (p, c) in [(1, 1), (49, 320), (49, 13), (3136, 40), (7, 6), (4, 1280)] {
            let x = rng.vec(p * c, 2.0);
            let (mut want, mut got) = (std::vec![0.0; c], std::vec![0.0; c]);
            avgpool_f32_scalar(&x, p, c, &mut want);
            avgpool_f32_neon(&x, p, c, &mut got);
            let err = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err <= 1e-5, "{p}x{c}: {err}");
        }
    }
}
