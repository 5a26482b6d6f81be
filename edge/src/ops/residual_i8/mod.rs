//! The residual add of the int8 path, in place on the residual stream:
//! `x[p][c] ← sat8(round((x − z_x)·s_x/s_o + acc[p][c]·s_acc[c]/s_o) + z_o)`, where `acc` is the
//! second pointwise conv's int32 accumulator (bias included) and `s_acc[c] = s_h·s_w[c]`.
//!
//! Two explicit scales, one output rounding: each term is requantized ([`crate::ops::requant`],
//! steps 1–3) to 8 extra fraction bits (scales ·256), the two are added (saturating int32),
//! then one round-half-up shift by 8, the zero point and saturation. Error before saturation:
//! at most 0.5 + 2·2^−9 output steps.

use crate::ops::requant::{requantize_i32_scalar, Requant};

/// Fraction bits of the two intermediate terms.
pub const FRAC_BITS: u32 = 8;

/// The parameters: `x_scale` represents `s_x/s_o · 2^8`, `acc_scale[c]` `s_acc[c]/s_o · 2^8`.
#[derive(Clone, Copy, Debug)]
pub struct ResidualQuant<'a> {
    /// Residual input zero point.
    pub x_zero: i32,
    /// Requantization of `x − z_x`.
    pub x_scale: Requant,
    /// Per-channel requantization of the accumulators.
    pub acc_scale: &'a [Requant],
    /// Output zero point, in int8 range.
    pub out_zero: i32,
}

/// One channel `j` of the module's formula.
#[inline]
fn residual_one(x: i8, acc: i32, j: usize, q: &ResidualQuant) -> i8 {
    let a = requantize_i32_scalar(x as i32 - q.x_zero, q.x_scale);
    let b = requantize_i32_scalar(acc, q.acc_scale[j]);
    let r = (a.saturating_add(b) as i64 + (1 << (FRAC_BITS - 1))) >> FRAC_BITS;
    (r + q.out_zero as i64).clamp(-128, 127) as i8
}

/// The reference.
pub fn residual_add_i8_scalar(
    x: &mut [i8],
    acc: &[i32],
    pixels: usize,
    c: usize,
    q: &ResidualQuant,
) {
    for (xp, ap) in x[..pixels * c].chunks_exact_mut(c).zip(acc.chunks_exact(c)) {
        for j in 0..c {
            xp[j] = residual_one(xp[j], ap[j], j, q);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
pub use x86::residual_add_i8_avx2;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::*;
    use std::vec::Vec;

    pub(super) struct Case {
        pub x: Vec<i8>,
        pub acc: Vec<i32>,
        pub s_x: f64,
        pub s_acc: Vec<f64>,
        pub x_zero: i32,
        pub out_zero: i32,
    }

    pub(super) fn case(rng: &mut Rng, p: usize, c: usize) -> (Case, Vec<Requant>, Requant) {
        let t = Case {
            x: (0..p * c).map(|_| rng.next_u64() as i8).collect(),
            acc: (0..p * c).map(|_| (rng.next_u64() as i32) >> 10).collect(),
            s_x: 0.5 + rng.f32().abs() as f64,
            s_acc: (0..c)
                .map(|_| (1.0 + rng.f32().abs() as f64) * 1e-5)
                .collect(),
            x_zero: (rng.next_u64() % 256) as i32 - 128,
            out_zero: (rng.next_u64() % 256) as i32 - 128,
        };
        let acc_rq = t
            .s_acc
            .iter()
            .map(|s| Requant::from_scale(s * 256.0).unwrap())
            .collect();
        let x_rq = Requant::from_scale(t.s_x * 256.0).unwrap();
        (t, acc_rq, x_rq)
    }

    #[test]
    fn matches_real_arithmetic() {
        let mut rng = Rng::new(120);
        for (p, c) in [(1, 1), (7, 40), (3, 13)] {
            let (t, acc_rq, x_rq) = case(&mut rng, p, c);
            let q = ResidualQuant {
                x_zero: t.x_zero,
                x_scale: x_rq,
                acc_scale: &acc_rq,
                out_zero: t.out_zero,
            };
            let mut x = t.x.clone();
            residual_add_i8_scalar(&mut x, &t.acc, p, c, &q);
            for (i, &got) in x.iter().enumerate() {
                let exact = (t.x[i] as i32 - t.x_zero) as f64 * t.s_x
                    + t.acc[i] as f64 * t.s_acc[i % c]
                    + t.out_zero as f64;
                let want = exact.clamp(-128.0, 127.0);
                assert!(
                    (got as f64 - want).abs() <= 0.5 + 2.0 / 512.0 + 1e-6,
                    "{i}: {got} vs {exact}"
                );
            }
        }
    }
}

/// NEON: 8 channels per step (`SQRDMULH` path of both terms, `SQADD`, `SRSHR #8`, saturating
/// narrows); a scalar tail. Bit-identical to [`residual_add_i8_scalar`].
#[cfg(target_arch = "aarch64")]
pub fn residual_add_i8_neon(x: &mut [i8], acc: &[i32], pixels: usize, c: usize, q: &ResidualQuant) {
    use crate::ops::requant::neon::{narrow8, scale4, Requant4};
    use core::arch::aarch64::*;
    assert!(x.len() >= pixels * c && acc.len() >= pixels * c && q.acc_scale.len() >= c);
    let c8 = c / 8 * 8;
    let rx = Requant4::load(&[q.x_scale; 4]);
    // SAFETY: register arithmetic only.
    let (zx, zo) = unsafe {
        (
            vdupq_n_s16(q.x_zero as i16),
            vdupq_n_s16(q.out_zero.clamp(-128, 127) as i16),
        )
    };
    for (xp, ap) in x[..pixels * c].chunks_exact_mut(c).zip(acc.chunks_exact(c)) {
        for j in (0..c8).step_by(8) {
            let r = &q.acc_scale[j..j + 8];
            let (ra, rb) = (
                Requant4::load(&[r[0], r[1], r[2], r[3]]),
                Requant4::load(&[r[4], r[5], r[6], r[7]]),
            );
            // SAFETY: channels j..j+8 ≤ c8 of `xp` and `ap`.
            unsafe {
                let xv = vsubq_s16(vmovl_s8(vld1_s8(xp.as_ptr().add(j))), zx);
                let a0 = scale4(vmovl_s16(vget_low_s16(xv)), &rx);
                let a1 = scale4(vmovl_high_s16(xv), &rx);
                let b0 = scale4(vld1q_s32(ap.as_ptr().add(j)), &ra);
                let b1 = scale4(vld1q_s32(ap.as_ptr().add(j + 4)), &rb);
                let s0 = vrshrq_n_s32::<8>(vqaddq_s32(a0, b0));
                let s1 = vrshrq_n_s32::<8>(vqaddq_s32(a1, b1));
                vst1_s8(xp.as_mut_ptr().add(j), narrow8(s0, s1, zo));
            }
        }
        for j in c8..c {
            xp[j] = residual_one(xp[j], ap[j], j, q);
        }
    }
}

#[cfg(all(test, target_arch = "aarch64"))]
mod neon_tests {
    use super::tests::case;
    use super::*;
    use crate::ops::testutil::*;

    #[test]
    fn neon_bit_identical_to_reference() {
        let mut rng = Rng::new(121);
        for (p, c) in rng.pixel_channel_shapes() {
            let (mut t, acc_rq, x_rq) = case(&mut rng, p, c);
            t.acc[0] = i32::MAX;
            let q = ResidualQuant {
                x_zero: t.x_zero,
                x_scale: x_rq,
                acc_scale: &acc_rq,
                out_zero: t.out_zero,
            };
            let (mut want, mut got) = (t.x.clone(), t.x.clone());
            residual_add_i8_scalar(&mut want, &t.acc, p, c, &q);
            residual_add_i8_neon(&mut got, &t.acc, p, c, &q);
            assert_eq!(got, want, "{p}x{c}");
        }
    }
}
