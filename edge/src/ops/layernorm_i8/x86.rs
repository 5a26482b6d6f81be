//! x86-64 int8-path LayerNorm (AVX2), bit-identical to [`super::layernorm_i32_i8_scalar`]: the
//! sums run in 4 lanes of an `xmm` exactly as the reference orders them (lane `l` adds the
//! channels `≡ l mod 4`, lanes combined `(l0 + l1) + (l2 + l3)`, the tail in order), products
//! and sums rounded separately (no FMA); the normalization and quantization are per element
//! (8 lanes), `rint` as `vcvtps2dq` in the default round-to-nearest-even mode with NaN sent to
//! 0 and out-of-range values clamped first, as Rust's saturating `as` does.

use super::OutQuant;
use crate::cpu::X86Features;
use core::arch::x86_64::*;

/// [`super::layernorm_i32_i8_scalar`] on AVX2. Panics if the CPU lacks it or a slice is short.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_i32_i8_avx2(
    acc: &[i32],
    pixels: usize,
    c: usize,
    deq: &[f32],
    weight: &[f32],
    bias: &[f32],
    eps: f32,
    q: OutQuant,
    out: &mut [i8],
    scratch: &mut [f32],
) {
    assert!(X86Features::get().avx2, "AVX2 not available");
    assert!(
        acc.len() >= pixels * c
            && out.len() >= pixels * c
            && deq.len() >= c
            && weight.len() >= c
            && bias.len() >= c
            && scratch.len() >= c
    );
    // SAFETY: the CPU has AVX2 (asserted); lengths asserted above.
    unsafe {
        ln_avx2(
            acc,
            pixels,
            c,
            deq,
            weight,
            bias,
            eps,
            q,
            out,
            &mut scratch[..c],
        )
    }
}

/// The reference's lane-ordered sum of `v[..c]` (`centre`: of `(v − mean)²` instead).
#[inline]
#[target_feature(enable = "avx2")]
fn ordered_sum(v: &[f32], centre: Option<f32>) -> f32 {
    let c = v.len();
    let c4 = c / 4 * 4;
    let m = _mm_set1_ps(centre.unwrap_or(0.0));
    let mut s = _mm_setzero_ps();
    for j in (0..c4).step_by(4) {
        // SAFETY: j + 4 ≤ c4 ≤ c.
        let x = unsafe { _mm_loadu_ps(v.as_ptr().add(j)) };
        let t = if centre.is_some() {
            let d = _mm_sub_ps(x, m);
            _mm_mul_ps(d, d)
        } else {
            x
        };
        s = _mm_add_ps(s, t);
    }
    let mut l = [0f32; 4];
    // SAFETY: `l` holds 4 floats.
    unsafe { _mm_storeu_ps(l.as_mut_ptr(), s) };
    let mut sum = (l[0] + l[1]) + (l[2] + l[3]);
    for &x in &v[c4..] {
        sum += match centre {
            Some(mean) => (x - mean) * (x - mean),
            None => x,
        };
    }
    sum
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
unsafe fn ln_avx2(
    acc: &[i32],
    pixels: usize,
    c: usize,
    deq: &[f32],
    weight: &[f32],
    bias: &[f32],
    eps: f32,
    q: OutQuant,
    out: &mut [i8],
    v: &mut [f32],
) {
    let inv_c = 1.0 / c as f32;
    let c8 = c / 8 * 8;
    let inv_s = _mm256_set1_ps(q.inv_scale);
    let zero = _mm256_set1_epi32(q.zero);
    let big = _mm256_set1_ps(1024.0);
    for p in 0..pixels {
        let a = &acc[p * c..][..c];
        // SAFETY: channel blocks j..j+8 ≤ c8 ≤ c of `a`, `deq`, `v`, `weight`, `bias`, the
        // output pixel (lengths asserted by the caller).
        unsafe {
            for j in (0..c8).step_by(8) {
                let x = _mm256_cvtepi32_ps(_mm256_loadu_si256(a.as_ptr().add(j).cast()));
                let d = _mm256_loadu_ps(deq.as_ptr().add(j));
                _mm256_storeu_ps(v.as_mut_ptr().add(j), _mm256_mul_ps(x, d));
            }
            for j in c8..c {
                v[j] = a[j] as f32 * deq[j];
            }
            let mean = ordered_sum(v, None) * inv_c;
            let var = ordered_sum(v, Some(mean)) * inv_c;
            // `vsqrtss`, not libm's legacy-encoded `sqrtss` (an SSE/AVX transition inside AVX code
            // costs more than the rest of the pixel); both are IEEE-exact, so the results agree.
            let rstd = 1.0 / _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(var + eps)));
            let (mv, rv) = (_mm256_set1_ps(mean), _mm256_set1_ps(rstd));
            let o = out.as_mut_ptr().add(p * c);
            for j in (0..c8).step_by(8) {
                let x = _mm256_loadu_ps(v.as_ptr().add(j));
                let y = _mm256_mul_ps(
                    _mm256_mul_ps(_mm256_sub_ps(x, mv), rv),
                    _mm256_loadu_ps(weight.as_ptr().add(j)),
                );
                let y = _mm256_add_ps(y, _mm256_loadu_ps(bias.as_ptr().add(j)));
                let t = _mm256_mul_ps(y, inv_s);
                let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(t, t);
                let t = _mm256_blendv_ps(t, _mm256_setzero_ps(), nan);
                let t = _mm256_min_ps(
                    _mm256_max_ps(t, _mm256_sub_ps(_mm256_setzero_ps(), big)),
                    big,
                );
                let r = _mm256_add_epi32(_mm256_cvtps_epi32(t), zero);
                let w = _mm256_packs_epi32(r, r);
                let b = _mm256_packs_epi16(w, w);
                let b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4));
                _mm_storel_epi64(o.add(j).cast(), _mm256_castsi256_si128(b));
            }
            for j in c8..c {
                *o.add(j) = super::quant((v[j] - mean) * rstd * weight[j] + bias[j], q);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::layernorm_i8::layernorm_i32_i8_scalar;
    use crate::ops::testutil::*;
    use std::vec;

    #[test]
    fn avx2_bit_identical_to_reference() {
        if !X86Features::get().avx2 {
            std::println!("layernorm_i8 avx2: not on this CPU, skipped");
            return;
        }
        let mut rng = Rng::new(96);
        for (p, c) in [
            (1, 1),
            (3, 7),
            (49, 320),
            (3136, 40),
            (5, 13),
            (2, 17),
            (4, 8),
        ] {
            let acc: std::vec::Vec<i32> = (0..p * c).map(|_| rng.next_u64() as i32 >> 12).collect();
            let deq: std::vec::Vec<f32> = rng.vec(c, 1e-3).iter().map(|v| v.abs() + 1e-4).collect();
            let (w, b) = (rng.vec(c, 1.0), rng.vec(c, 0.5));
            // Output scales from fine (saturating often) to coarse (ties at .5 more likely).
            for inv_scale in [40.0, 8.0, 0.5] {
                let q = OutQuant {
                    inv_scale,
                    zero: (rng.next_u64() % 41) as i32 - 20,
                };
                let (mut want, mut got) = (vec![0i8; p * c + 1], vec![4i8; p * c + 1]);
                want[p * c] = 4;
                let (mut s1, mut s2) = (vec![0f32; c], vec![0f32; c]);
                layernorm_i32_i8_scalar(&acc, p, c, &deq, &w, &b, 1e-6, q, &mut want, &mut s1);
                layernorm_i32_i8_avx2(&acc, p, c, &deq, &w, &b, 1e-6, q, &mut got, &mut s2);
                assert_eq!(got, want, "{p}x{c} 1/s {inv_scale}");
            }
        }
        std::println!("layernorm_i8 avx2: ran");
    }
}
