//! x86-64 GELU: the exact GELU `x/2·(1 + erf(x/√2))` with erf as the Eigen/XLA rational
//! approximation `erf(z) ≈ z·p(z²)/q(z²)` on `z ∈ [−4, 4]` (outside, |erf| rounds to 1 in f32),
//! the same one the NEON kernel uses; Horner with FMA. Within 1e-6·max(1, |x|) of
//! [`super::gelu_f32_scalar`] (tested).

use crate::cpu::X86Features;
use core::arch::x86_64::*;

/// p's coefficients, highest power first (Eigen's, as published).
#[allow(clippy::excessive_precision)]
const P: [f32; 7] = [
    -2.726_142_3e-10,
    2.770_681_4e-8,
    -2.101_024e-6,
    -5.692_506_4e-5,
    -7.349_906_3e-4,
    -2.954_599_8e-3,
    -1.609_603_3e-2,
];
/// q's coefficients, highest power first.
#[allow(clippy::excessive_precision)]
const Q: [f32; 5] = [
    -1.456_607_2e-5,
    -2.133_740_6e-4,
    -1.682_827e-3,
    -7.373_329e-3,
    -1.426_473_9e-2,
];

/// GELU of 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn gelu8(x: __m256) -> __m256 {
    let z = _mm256_mul_ps(x, _mm256_set1_ps(core::f32::consts::FRAC_1_SQRT_2));
    let z = _mm256_min_ps(_mm256_max_ps(z, _mm256_set1_ps(-4.0)), _mm256_set1_ps(4.0));
    let y = _mm256_mul_ps(z, z);
    let mut p = _mm256_set1_ps(P[0]);
    for &c in &P[1..] {
        p = _mm256_fmadd_ps(p, y, _mm256_set1_ps(c));
    }
    let mut q = _mm256_set1_ps(Q[0]);
    for &c in &Q[1..] {
        q = _mm256_fmadd_ps(q, y, _mm256_set1_ps(c));
    }
    let erf = _mm256_div_ps(_mm256_mul_ps(z, p), q);
    let half_x = _mm256_mul_ps(_mm256_set1_ps(0.5), x);
    _mm256_fmadd_ps(half_x, erf, half_x)
}

/// GELU of 16 lanes.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn gelu16(x: __m512) -> __m512 {
    let z = _mm512_mul_ps(x, _mm512_set1_ps(core::f32::consts::FRAC_1_SQRT_2));
    let z = _mm512_min_ps(_mm512_max_ps(z, _mm512_set1_ps(-4.0)), _mm512_set1_ps(4.0));
    let y = _mm512_mul_ps(z, z);
    let mut p = _mm512_set1_ps(P[0]);
    for &c in &P[1..] {
        p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(c));
    }
    let mut q = _mm512_set1_ps(Q[0]);
    for &c in &Q[1..] {
        q = _mm512_fmadd_ps(q, y, _mm512_set1_ps(c));
    }
    let erf = _mm512_div_ps(_mm512_mul_ps(z, p), q);
    let half_x = _mm512_mul_ps(_mm512_set1_ps(0.5), x);
    _mm512_fmadd_ps(half_x, erf, half_x)
}

/// AVX2+FMA form of [`super::gelu_f32_scalar`]. Panics if the CPU lacks AVX2+FMA.
pub fn gelu_f32_avx2(x: &mut [f32]) {
    assert!(X86Features::get().avx2, "gelu_f32_avx2 needs AVX2+FMA");
    // SAFETY: the CPU has AVX2+FMA (asserted above).
    unsafe { gelu_avx2(x) }
}

#[target_feature(enable = "avx2,fma")]
fn gelu_avx2(x: &mut [f32]) {
    let mut chunks = x.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: `c` holds exactly 8 floats.
        unsafe { _mm256_storeu_ps(c.as_mut_ptr(), gelu8(_mm256_loadu_ps(c.as_ptr()))) };
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let mut t = [0f32; 8];
        t[..rest.len()].copy_from_slice(rest);
        // SAFETY: `t` holds 8 floats.
        unsafe { _mm256_storeu_ps(t.as_mut_ptr(), gelu8(_mm256_loadu_ps(t.as_ptr()))) };
        rest.copy_from_slice(&t[..rest.len()]);
    }
}

/// AVX-512 form of [`super::gelu_f32_scalar`]. Panics if the CPU lacks AVX-512.
pub fn gelu_f32_avx512(x: &mut [f32]) {
    assert!(X86Features::get().avx512, "gelu_f32_avx512 needs AVX-512");
    // SAFETY: the CPU has AVX-512 F (asserted above).
    unsafe { gelu_avx512(x) }
}

#[target_feature(enable = "avx512f")]
fn gelu_avx512(x: &mut [f32]) {
    let mut chunks = x.chunks_exact_mut(16);
    for c in &mut chunks {
        // SAFETY: `c` holds exactly 16 floats.
        unsafe { _mm512_storeu_ps(c.as_mut_ptr(), gelu16(_mm512_loadu_ps(c.as_ptr()))) };
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let m = (1u32 << rest.len()) as u16 - 1;
        // SAFETY: the mask covers exactly `rest.len()` floats.
        unsafe {
            let v = _mm512_maskz_loadu_ps(m, rest.as_ptr());
            _mm512_mask_storeu_ps(rest.as_mut_ptr(), m, gelu16(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gelu::gelu_f32_scalar;
    use crate::ops::testutil::*;
    use std::vec::Vec;

    #[test]
    fn x86_within_stated_error_of_reference() {
        let f = X86Features::get();
        let mut rng = Rng::new(71);
        let mut x: Vec<f32> = (0..=2400).map(|i| -12.0 + i as f32 * 0.01).collect();
        x.extend(rng.vec(1037, 6.0));
        let mut want = x.clone();
        gelu_f32_scalar(&mut want);
        type Gelu = fn(&mut [f32]);
        let sets: [(&str, bool, Gelu); 2] = [
            ("avx2", f.avx2, gelu_f32_avx2),
            ("avx512", f.avx512, gelu_f32_avx512),
        ];
        for (name, has, kernel) in sets {
            if !has {
                std::println!("gelu {name}: not on this CPU, skipped");
                continue;
            }
            for len in [x.len(), 1, 7, 15, 17] {
                let mut got = x[..len].to_vec();
                kernel(&mut got);
                let worst = max_rel_err(&got, &want[..len]);
                std::println!("gelu {name} len {len}: max error / max(1,|x|) = {worst:e}");
                assert!(worst <= 1e-6, "{name}: {worst}");
            }
        }
    }
}
