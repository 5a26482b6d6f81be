//! x86-64 int8 residual add (AVX2), bit-identical to [`super::residual_add_i8_scalar`]: both
//! terms through the vector requantization ([`crate::ops::requant::x86`]), a saturating int32
//! add (overflow detected from the signs), the round-half-up shift by 8 as
//! `(s >> 8) + bit_7(s)` (no overflow), the zero point and saturation. The last `c mod 8`
//! channels take the reference's steps.

use super::{residual_one, ResidualQuant, FRAC_BITS};
use crate::cpu::X86Features;
use crate::ops::requant::x86::{narrow_i8x8, requant_i32x8, RequantLanes};
use core::arch::x86_64::*;

/// [`super::residual_add_i8_scalar`] on AVX2. Panics if the CPU lacks it, a slice is short or
/// the output zero point is not int8.
pub fn residual_add_i8_avx2(x: &mut [i8], acc: &[i32], pixels: usize, c: usize, q: &ResidualQuant) {
    assert!(X86Features::get().avx2, "AVX2 not available");
    assert!(x.len() >= pixels * c && acc.len() >= pixels * c && q.acc_scale.len() >= c);
    assert!((-128..=127).contains(&q.out_zero));
    // SAFETY: the CPU has AVX2 (asserted); lengths asserted above.
    unsafe { residual_avx2(x, acc, pixels, c, q) };
    let c8 = c / 8 * 8;
    for p in 0..pixels {
        for j in c8..c {
            x[p * c + j] = residual_one(x[p * c + j], acc[p * c + j], j, q);
        }
    }
}

#[target_feature(enable = "avx2")]
unsafe fn residual_avx2(x: &mut [i8], acc: &[i32], pixels: usize, c: usize, q: &ResidualQuant) {
    const _: () = assert!(FRAC_BITS == 8);
    // SAFETY: one record, all lanes the same.
    let xs = unsafe { RequantLanes::load(&q.x_scale, 1) };
    let xs = RequantLanes::splat(xs);
    let (xz, oz) = (_mm256_set1_epi32(q.x_zero), _mm256_set1_epi32(q.out_zero));
    for j in (0..c / 8 * 8).step_by(8) {
        // SAFETY: channels j..j+8 ≤ c of `acc_scale` and of every pixel (asserted by the caller).
        unsafe {
            let r = RequantLanes::load(q.acc_scale.as_ptr().add(j), 8);
            for p in 0..pixels {
                let xp = x.as_mut_ptr().add(p * c + j);
                let xv = _mm256_cvtepi8_epi32(_mm_loadl_epi64(xp.cast()));
                let a = requant_i32x8(_mm256_sub_epi32(xv, xz), &xs);
                let b = requant_i32x8(_mm256_loadu_si256(acc.as_ptr().add(p * c + j).cast()), &r);
                let s = _mm256_add_epi32(a, b);
                // Overflow iff a and b share a sign that the sum does not.
                let ovf = _mm256_andnot_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(a, s));
                let sat = _mm256_xor_si256(_mm256_srai_epi32::<31>(a), _mm256_set1_epi32(i32::MAX));
                let s = _mm256_blendv_epi8(s, sat, _mm256_srai_epi32::<31>(ovf));
                let round = _mm256_and_si256(_mm256_srai_epi32::<7>(s), _mm256_set1_epi32(1));
                let v = _mm256_add_epi32(_mm256_srai_epi32::<8>(s), round);
                _mm_storel_epi64(xp.cast(), narrow_i8x8(v, oz));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::requant::Requant;
    use crate::ops::residual_i8::residual_add_i8_scalar;
    use crate::ops::testutil::*;

    #[test]
    fn avx2_bit_identical_to_reference() {
        if !X86Features::get().avx2 {
            std::println!("residual_i8 avx2: not on this CPU, skipped");
            return;
        }
        let mut rng = Rng::new(98);
        for (p, c) in [(1, 1), (3, 7), (49, 320), (3136, 40), (5, 13), (2, 16)] {
            let acc_scale: std::vec::Vec<Requant> = (0..c)
                .map(|j| {
                    // Some scales large enough for the two terms to saturate their sum.
                    let s = if j % 4 == 0 {
                        3.0e4
                    } else {
                        256.0 * (1e-4 + rng.f32().abs() as f64 * 1e-3)
                    };
                    Requant::from_scale(s).unwrap()
                })
                .collect();
            let x0 = rng.bytes(p * c);
            let acc: std::vec::Vec<i32> = (0..p * c)
                .map(|i| {
                    if i % 7 == 0 {
                        [i32::MIN, i32::MAX][i % 2]
                    } else {
                        rng.next_u64() as i32 >> 10
                    }
                })
                .collect();
            for (xs, xz, oz) in [
                (256.0 * 0.7, 3, -4),
                (256.0 * 1.3e3, -128, 127),
                (1.0, 127, -128),
            ] {
                let q = ResidualQuant {
                    x_zero: xz,
                    x_scale: Requant::from_scale(xs).unwrap(),
                    acc_scale: &acc_scale,
                    out_zero: oz,
                };
                let (mut want, mut got) = (x0.clone(), x0.clone());
                want.push(6);
                got.push(6);
                residual_add_i8_scalar(&mut want, &acc, p, c, &q);
                residual_add_i8_avx2(&mut got, &acc, p, c, &q);
                assert_eq!(got, want, "{p}x{c} x scale {xs}");
            }
        }
        std::println!("residual_i8 avx2: ran");
    }
}
