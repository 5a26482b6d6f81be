//! Exact GELU, `0.5·x·(1 + erf(x/√2))`, as PyTorch's default (`approximate='none'`).
//! `libm::erff` is the erf (max error ~1 ulp), so this reference is exact to f32 rounding.

/// In place.
pub fn gelu_f32_scalar(x: &mut [f32]) {
    for v in x {
        *v = 0.5 * *v * (1.0 + libm::erff(*v * core::f32::consts::FRAC_1_SQRT_2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::excessive_precision)]
    fn known_values() {
        // gelu(x) computed with mpmath at 30 digits.
        let xs = [-3.0f32, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0];
        let want = [
            -0.0040496941,
            -0.15865525,
            -0.15426877,
            0.0,
            0.34573123,
            0.84134475,
            2.9959503,
        ];
        let mut y = xs;
        gelu_f32_scalar(&mut y);
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() <= 4e-7, "{a} vs {b}");
        }
    }
}

/// NEON GELU, 4 lanes at a time: `0.5·x·(1 + erf(z))`, z = x/√2, with
/// `1 + erf(z) = erfc(|z|)` for z < 0 and `2 − erfc(|z|)` otherwise, and erfc from Abramowitz &
/// Stegun 7.1.26 (|error| ≤ 1.5e-7) with a vectorised exp (Cephes range reduction + degree-6
/// polynomial). Tested: |neon − reference| ≤ 1e-6 · max(1, |x|) over [−12, 12] and random data.
#[cfg(target_arch = "aarch64")]
pub fn gelu_f32_neon(x: &mut [f32]) {
    let mut chunks = x.chunks_exact_mut(4);
    for c in &mut chunks {
        // SAFETY: `c` is exactly 4 f32s.
        unsafe {
            use core::arch::aarch64::*;
            let v = vld1q_f32(c.as_ptr());
            vst1q_f32(c.as_mut_ptr(), neon::gelu4(v));
        }
    }
    gelu_f32_scalar(chunks.into_remainder());
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use core::arch::aarch64::*;

    /// e^a for a ≤ 0 (clamped at −87, where e^a underflows to ~0 anyway).
    #[inline(always)]
    unsafe fn exp_nonpos(a: float32x4_t) -> float32x4_t {
        // SAFETY: pure register arithmetic.
        unsafe {
            let a = vmaxq_f32(a, vdupq_n_f32(-87.0));
            let n = vrndnq_f32(vmulq_f32(a, vdupq_n_f32(core::f32::consts::LOG2_E)));
            let r = vfmaq_f32(a, n, vdupq_n_f32(-0.693_359_4));
            let r = vfmaq_f32(r, n, vdupq_n_f32(2.121_944_4e-4));
            let mut p = vdupq_n_f32(1.987_569_1e-4);
            p = vfmaq_f32(vdupq_n_f32(1.398_199_9e-3), p, r);
            p = vfmaq_f32(vdupq_n_f32(8.333_452e-3), p, r);
            p = vfmaq_f32(vdupq_n_f32(4.166_579_6e-2), p, r);
            p = vfmaq_f32(vdupq_n_f32(0.166_666_65), p, r);
            p = vfmaq_f32(vdupq_n_f32(0.5), p, r);
            let r2 = vmulq_f32(r, r);
            p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0)), p, r2);
            let scale = vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(
                vcvtq_s32_f32(n),
                vdupq_n_s32(127),
            )));
            vmulq_f32(p, scale)
        }
    }

    #[inline(always)]
    pub(super) unsafe fn gelu4(x: float32x4_t) -> float32x4_t {
        // SAFETY: pure register arithmetic.
        unsafe {
            let z = vmulq_f32(x, vdupq_n_f32(core::f32::consts::FRAC_1_SQRT_2));
            let az = vabsq_f32(z);
            let t = vdivq_f32(
                vdupq_n_f32(1.0),
                vfmaq_f32(vdupq_n_f32(1.0), az, vdupq_n_f32(0.327_591_1)),
            );
            let mut p = vdupq_n_f32(1.061_405_4);
            p = vfmaq_f32(vdupq_n_f32(-1.453_152), p, t);
            p = vfmaq_f32(vdupq_n_f32(1.421_413_7), p, t);
            p = vfmaq_f32(vdupq_n_f32(-0.284_496_72), p, t);
            p = vfmaq_f32(vdupq_n_f32(0.254_829_6), p, t);
            p = vmulq_f32(p, t);
            let erfc = vmulq_f32(p, exp_nonpos(vnegq_f32(vmulq_f32(az, az))));
            let neg = vcltq_f32(z, vdupq_n_f32(0.0));
            let one_plus_erf = vbslq_f32(neg, erfc, vsubq_f32(vdupq_n_f32(2.0), erfc));
            vmulq_f32(vmulq_f32(vdupq_n_f32(0.5), x), one_plus_erf)
        }
    }
}

#[cfg(all(test, target_arch = "aarch64"))]
mod neon_tests {
    use super::*;
    use crate::ops::testutil::*;
    use std::vec::Vec;

    #[test]
    fn neon_within_stated_error_of_reference() {
        let mut rng = Rng::new(42);
        let mut xs: Vec<f32> = (-24000..=24000).map(|i| i as f32 * 5e-4).collect();
        xs.extend(rng.vec(10_001, 6.0));
        xs.extend([0.0, -0.0, 1e-30, -1e-30, 30.0, -30.0, 100.0, -100.0]);
        let mut want = xs.clone();
        let mut got = xs.clone();
        gelu_f32_scalar(&mut want);
        gelu_f32_neon(&mut got);
        let mut worst = 0f32;
        for ((x, a), b) in xs.iter().zip(&got).zip(&want) {
            let e = (a - b).abs() / x.abs().max(1.0);
            worst = worst.max(e);
        }
        std::println!("gelu neon max error / max(1,|x|) = {worst:e}");
        assert!(worst <= 1e-6, "{worst}");
    }
}
