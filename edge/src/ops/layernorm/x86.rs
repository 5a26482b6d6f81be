//! x86-64 LayerNorm over channels (AVX2+FMA, 8 lanes; also used by the AVX-512 set: at C ≤ 320
//! a pixel is a few vectors and the op is bound by loads and the reductions). Two passes per
//! pixel like [`super::layernorm_f32_scalar`] (mean, then the centred variance), so cancellation
//! does not bite; sums in 8 lanes then reduced: within 1e-5 relative of the reference (tested).

use crate::cpu::X86Features;
use core::arch::x86_64::*;

/// [`super::layernorm_f32_scalar`] on AVX2+FMA. Panics if the CPU lacks it or a slice is short.
pub fn layernorm_f32_avx2(
    x: &mut [f32],
    pixels: usize,
    c: usize,
    weight: &[f32],
    bias: &[f32],
    eps: f32,
) {
    assert!(X86Features::get().avx2, "AVX2+FMA not available");
    assert!(x.len() >= pixels * c && weight.len() >= c && bias.len() >= c);
    // SAFETY: the CPU has AVX2+FMA (asserted).
    unsafe { layernorm_avx2(x, pixels, c, weight, bias, eps) }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

#[target_feature(enable = "avx2,fma")]
fn layernorm_avx2(x: &mut [f32], pixels: usize, c: usize, weight: &[f32], bias: &[f32], eps: f32) {
    let c8 = c / 8 * 8;
    let inv_c = 1.0 / c as f32;
    for px in x[..pixels * c].chunks_exact_mut(c) {
        let p = px.as_mut_ptr();
        // SAFETY: lanes j..j+8 ≤ c8 ≤ c of the pixel, of `weight` and of `bias`.
        unsafe {
            let mut s = _mm256_setzero_ps();
            for j in (0..c8).step_by(8) {
                s = _mm256_add_ps(s, _mm256_loadu_ps(p.add(j)));
            }
            let mean = (hsum(s) + px[c8..].iter().sum::<f32>()) * inv_c;
            let mv = _mm256_set1_ps(mean);
            let mut q = _mm256_setzero_ps();
            for j in (0..c8).step_by(8) {
                let d = _mm256_sub_ps(_mm256_loadu_ps(p.add(j)), mv);
                q = _mm256_fmadd_ps(d, d, q);
            }
            let tail: f32 = px[c8..].iter().map(|v| (v - mean) * (v - mean)).sum();
            let var = (hsum(q) + tail) * inv_c;
            // `vsqrtss`, not libm's legacy-encoded `sqrtss` (an SSE/AVX transition inside AVX code
            // costs more than the rest of the pixel); both are IEEE-exact, so the results agree.
            let rstd = 1.0 / _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(var + eps)));
            let rv = _mm256_set1_ps(rstd);
            for j in (0..c8).step_by(8) {
                let d = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(p.add(j)), mv), rv);
                let y = _mm256_fmadd_ps(
                    d,
                    _mm256_loadu_ps(weight.as_ptr().add(j)),
                    _mm256_loadu_ps(bias.as_ptr().add(j)),
                );
                _mm256_storeu_ps(p.add(j), y);
            }
            for j in c8..c {
                px[j] = (px[j] - mean) * rstd * weight[j] + bias[j];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::layernorm::layernorm_f32_scalar;
    use crate::ops::testutil::*;

    #[test]
    fn avx2_matches_reference() {
        if !X86Features::get().avx2 {
            std::println!("layernorm avx2: not on this CPU, skipped");
            return;
        }
        let mut rng = Rng::new(72);
        for (p, c) in [
            (1, 1),
            (3, 7),
            (49, 320),
            (3136, 40),
            (5, 13),
            (2, 17),
            (4, 1280),
        ] {
            // An offset mean, as real activations have.
            let x: std::vec::Vec<f32> = rng.vec(p * c, 3.0).iter().map(|v| v + 5.0).collect();
            let w = rng.vec(c, 1.0);
            let b = rng.vec(c, 1.0);
            let (mut want, mut got) = (x.clone(), x.clone());
            layernorm_f32_scalar(&mut want, p, c, &w, &b, 1e-6);
            layernorm_f32_avx2(&mut got, p, c, &w, &b, 1e-6);
            let err = max_rel_err(&got, &want);
            assert!(err <= 1e-5, "{p}x{c}: {err}");
        }
        std::println!("layernorm avx2: ran");
    }
}
