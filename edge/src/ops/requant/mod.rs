//! Requantization of int32 accumulators to int8: the fixed-point multiply and shifts that turn
//! `acc · real_scale` into an output code, per output channel, bit-exactly the same on every
//! kernel set.
//!
//! `real_scale` (e.g. `s_in · s_w[n] / s_out`) is represented as `M · 2^(pre − 31 − post)` with
//! `M ∈ [2^30, 2^31)` (31 significant bits). The steps are those of the NEON instructions that
//! run them (gemmlowp's fixed-point multiply, with a round-half-up shift), so the scalar code
//! below is their exact specification:
//! 1. `x = sat32(acc << pre)` (`SQSHL`);
//! 2. `x = (x · M + 2^30) >> 31` (`SQRDMULH`: doubling multiply, high half, rounded half up);
//! 3. `x = (x + 2^(post−1)) >> post` for `post > 0` (`SRSHL` by −post: round half up);
//! 4. `y = sat8(x + zero_point)` (saturating narrow).
//!
//! Rounding rule: round half up, twice (steps 2 and 3), so the result is within
//! `0.5 + 2^−(post+1)` of `acc · real_scale + zero_point` before saturation; saturation at both
//! ends of int8. `>>` is arithmetic (toward −∞), as in the instructions.

/// Per-output-channel requantization parameters (see the module docs). Stored in model files
/// as is (8 bytes, little-endian, the last two zero), and read from them in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Requant {
    /// `M`, in `[2^30, 2^31)`.
    pub multiplier: i32,
    /// Left shift before the multiply, 0..=31.
    pub pre_shift: u8,
    /// Rounding right shift after it, 0..=62.
    pub post_shift: u8,
    reserved: [u8; 2],
}

// SAFETY: `repr(C)` with fields of 4 + 1 + 1 + 2 bytes at offsets 0, 4, 5, 6: no padding, and
// every bit pattern is a value of every field. (Whether a value is a *valid* requantization is
// checked by `Requant::is_valid` where files are parsed.)
unsafe impl bytemuck::Zeroable for Requant {}
// SAFETY: as above; `Copy + 'static`.
unsafe impl bytemuck::Pod for Requant {}

/// Bounds of a valid record (see [`Requant::is_valid`]).
pub const MAX_PRE_SHIFT: u8 = 31;
/// See [`MAX_PRE_SHIFT`].
pub const MAX_POST_SHIFT: u8 = 62;

/// Why a scale cannot be represented.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScaleError {
    /// Not finite, or ≤ 0.
    NotPositive(f64),
    /// Outside `[2^−62, 2^31)`.
    OutOfRange(f64),
}

impl Requant {
    /// The scale 0.5 (`M = 2^30`, no shifts): a valid filler for unused lanes.
    pub const HALF: Requant = Requant {
        multiplier: 1 << 30,
        pre_shift: 0,
        post_shift: 0,
        reserved: [0; 2],
    };

    /// The parameters nearest to `real` (relative error ≤ 2^−31).
    pub fn from_scale(real: f64) -> Result<Requant, ScaleError> {
        if !(real.is_finite() && real > 0.0) {
            return Err(ScaleError::NotPositive(real));
        }
        // real = m · 2^e with m ∈ [0.5, 1).
        let mut e = 0i32;
        let mut m = real;
        while m >= 1.0 {
            m *= 0.5;
            e += 1;
        }
        while m < 0.5 {
            m *= 2.0;
            e -= 1;
        }
        let mut q = libm::round(m * (1u64 << 31) as f64) as i64;
        if q == 1i64 << 31 {
            // m rounded up to 1.0.
            q >>= 1;
            e += 1;
        }
        // real = q · 2^(e − 31): pre − post = e.
        let (pre, post) = if e >= 0 { (e, 0) } else { (0, -e) };
        if pre > 31 || post > 62 {
            return Err(ScaleError::OutOfRange(real));
        }
        Ok(Requant {
            multiplier: q as i32,
            pre_shift: pre as u8,
            post_shift: post as u8,
            reserved: [0; 2],
        })
    }

    /// Whether the record is one `from_scale` can produce: `M ∈ [2^30, 2^31)`, shifts within
    /// their bounds, reserved bytes zero. The kernels assume it (file parsing checks it).
    pub fn is_valid(&self) -> bool {
        self.multiplier >= 1 << 30
            && self.pre_shift <= MAX_PRE_SHIFT
            && self.post_shift <= MAX_POST_SHIFT
            && self.reserved == [0; 2]
    }

    /// The real scale these parameters represent.
    pub fn scale(&self) -> f64 {
        self.multiplier as f64
            * libm::pow(2.0, self.pre_shift as f64 - 31.0 - self.post_shift as f64)
    }
}

/// Steps 1–3 of the module docs for one accumulator (the value before narrowing; it always
/// fits in i32).
#[inline]
pub fn requantize_i32_scalar(acc: i32, rq: Requant) -> i32 {
    let x = ((acc as i64) << rq.pre_shift).clamp(i32::MIN as i64, i32::MAX as i64);
    // SQRDMULH: sat((2·x·M + 2^31) >> 32); only x = M = i32::MIN saturates, and M > 0.
    let x = (x * rq.multiplier as i64 + (1 << 30)) >> 31;
    let x = if rq.post_shift > 0 {
        (x + (1i64 << (rq.post_shift - 1))) >> rq.post_shift
    } else {
        x
    };
    x as i32
}

/// Steps 1–4 of the module docs for one accumulator: the reference every kernel matches.
#[inline]
pub fn requantize_scalar(acc: i32, rq: Requant, zero_point: i32) -> i8 {
    (requantize_i32_scalar(acc, rq) as i64 + zero_point as i64).clamp(-128, 127) as i8
}

/// Requantizes int32 accumulators `[pixels][c]` to int8 with per-channel parameters: the
/// specification the vector forms below are tested against (the kernels requantize in their
/// GEMMs' epilogues, e.g. the downsample's, see `runtime_i8`).
#[cfg(test)]
pub(crate) fn requantize_channels_scalar(
    acc: &[i32],
    pixels: usize,
    c: usize,
    rq: &[Requant],
    zero_point: i32,
    out: &mut [i8],
) {
    for (a, o) in acc[..pixels * c]
        .chunks_exact(c)
        .zip(out[..pixels * c].chunks_exact_mut(c))
    {
        for ((&v, y), &r) in a.iter().zip(o.iter_mut()).zip(&rq[..c]) {
            *y = requantize_scalar(v, r, zero_point);
        }
    }
}

/// [`requantize_channels_scalar`] through [`neon`]'s steps (the GEMM epilogues' and the
/// residual add's), bit-identical: channel blocks of 8 outer (their parameters loaded once),
/// pixels inner; `SQSHL` → `SQRDMULH` → `SRSHL`, saturating narrows; a scalar tail for the last
/// `c mod 8` channels. Their test driver.
#[cfg(all(test, target_arch = "aarch64"))]
pub(crate) fn requantize_channels_neon(
    acc: &[i32],
    pixels: usize,
    c: usize,
    rq: &[Requant],
    zero_point: i32,
    out: &mut [i8],
) {
    use core::arch::aarch64::*;
    use neon::{narrow8, scale4, Requant4};
    assert!(acc.len() >= pixels * c && out.len() >= pixels * c && rq.len() >= c);
    let c8 = c / 8 * 8;
    // SAFETY: register arithmetic only.
    let zp = unsafe { vdupq_n_s16(zero_point.clamp(-128, 127) as i16) };
    for j in (0..c8).step_by(8) {
        let r = [
            Requant4::load(&[rq[j], rq[j + 1], rq[j + 2], rq[j + 3]]),
            Requant4::load(&[rq[j + 4], rq[j + 5], rq[j + 6], rq[j + 7]]),
        ];
        for p in 0..pixels {
            let at = p * c + j;
            // SAFETY: `at + 8 ≤ pixels·c ≤ acc.len(), out.len()` (asserted above, j + 8 ≤ c).
            unsafe {
                let a = acc.as_ptr().add(at);
                let lo = scale4(vld1q_s32(a), &r[0]);
                let hi = scale4(vld1q_s32(a.add(4)), &r[1]);
                vst1_s8(out.as_mut_ptr().add(at), narrow8(lo, hi, zp));
            }
        }
    }
    if c8 < c {
        for p in 0..pixels {
            for j in c8..c {
                out[p * c + j] = requantize_scalar(acc[p * c + j], rq[j], zero_point);
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
pub(crate) mod neon {
    use super::Requant;
    use core::arch::aarch64::*;

    /// Per-lane parameters of 4 output channels, in the registers the instructions take.
    #[derive(Clone, Copy)]
    pub(crate) struct Requant4 {
        pub pre: int32x4_t,
        pub mult: int32x4_t,
        /// Negative: `SRSHL` by a negative amount shifts right with rounding.
        pub neg_post: int32x4_t,
    }

    impl Requant4 {
        /// Loads 4 channels' parameters.
        #[inline(always)]
        pub(crate) fn load(rq: &[Requant; 4]) -> Requant4 {
            let pre = rq.map(|r| r.pre_shift as i32);
            let mult = rq.map(|r| r.multiplier);
            let neg_post = rq.map(|r| -(r.post_shift as i32));
            // SAFETY: each array holds exactly 4 i32.
            unsafe {
                Requant4 {
                    pre: vld1q_s32(pre.as_ptr()),
                    mult: vld1q_s32(mult.as_ptr()),
                    neg_post: vld1q_s32(neg_post.as_ptr()),
                }
            }
        }
    }

    /// Steps 1–3 of the module docs on 4 accumulators (step 4 is the narrowing).
    #[inline(always)]
    pub(crate) fn scale4(acc: int32x4_t, p: &Requant4) -> int32x4_t {
        // SAFETY: register arithmetic only.
        unsafe { vrshlq_s32(vqrdmulhq_s32(vqshlq_s32(acc, p.pre), p.mult), p.neg_post) }
    }

    /// Step 4 for 8 channels: saturating narrow to i16, add the zero point (saturating),
    /// saturating narrow to i8. Equal to `sat8(x + zp)` because `zp` is itself in i8 range.
    #[inline(always)]
    pub(crate) fn narrow8(lo: int32x4_t, hi: int32x4_t, zp: int16x8_t) -> int8x8_t {
        // SAFETY: register arithmetic only.
        unsafe { vqmovn_s16(vqaddq_s16(vcombine_s16(vqmovn_s32(lo), vqmovn_s32(hi)), zp)) }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::Rng;

    #[test]
    fn scale_roundtrip_and_errors() {
        let mut rng = Rng::new(60);
        for _ in 0..2000 {
            let real = libm::pow(2.0, rng.f32() as f64 * 35.0 - 15.0);
            let rq = Requant::from_scale(real).unwrap();
            assert!((1 << 30..=i32::MAX).contains(&rq.multiplier));
            assert!(((rq.scale() - real) / real).abs() <= 1.0 / (1u64 << 31) as f64);
        }
        assert_eq!(Requant::from_scale(0.0), Err(ScaleError::NotPositive(0.0)));
        assert!(matches!(
            Requant::from_scale(f64::NAN),
            Err(ScaleError::NotPositive(_))
        ));
        assert_eq!(Requant::from_scale(1e10), Err(ScaleError::OutOfRange(1e10)));
        assert_eq!(
            Requant::from_scale(1e-30),
            Err(ScaleError::OutOfRange(1e-30))
        );
    }

    /// Whole-tensor NEON requantization equals the reference (odd channel counts, extremes).
    #[cfg(target_arch = "aarch64")]
    #[test]
    fn channels_neon_matches_scalar() {
        let mut rng = Rng::new(62);
        for &(p, c) in &[
            (1, 1),
            (3, 7),
            (5, 8),
            (4, 13),
            (49, 320),
            (9, 40),
            (2, 161),
        ] {
            let rq: std::vec::Vec<Requant> = (0..c)
                .map(|_| {
                    Requant::from_scale(libm::pow(2.0, rng.f32() as f64 * 30.0 - 25.0)).unwrap()
                })
                .collect();
            let acc: std::vec::Vec<i32> = (0..p * c)
                .map(|i| match i % 11 {
                    0 => i32::MIN,
                    1 => i32::MAX,
                    _ => (rng.next_u64() as i32) >> (rng.next_u64() % 31),
                })
                .collect();
            let zp = (rng.next_u64() % 256) as i32 - 128;
            let (mut a, mut b) = (std::vec![0i8; p * c], std::vec![0i8; p * c]);
            requantize_channels_scalar(&acc, p, c, &rq, zp, &mut a);
            requantize_channels_neon(&acc, p, c, &rq, zp, &mut b);
            assert_eq!(a, b, "{p}x{c}");
        }
    }

    /// Against real arithmetic: within `0.5 + 2^−(post+1)` of `acc · scale + zp` (plus the
    /// 2^−31 relative error of the multiplier), then saturated.
    #[test]
    fn matches_real_arithmetic() {
        let mut rng = Rng::new(61);
        for i in 0..20000 {
            let real = libm::pow(2.0, rng.f32() as f64 * 24.0 - 20.0);
            let rq = Requant::from_scale(real).unwrap();
            let acc = if i % 7 == 0 {
                [i32::MIN, i32::MAX, 0, 1, -1][i % 5]
            } else {
                (rng.next_u64() as i32) >> (rng.next_u64() % 31)
            };
            let zp = (rng.next_u64() % 256) as i32 - 128;
            let got = requantize_scalar(acc, rq, zp) as f64;
            let exact = acc as f64 * rq.scale() + zp as f64;
            let want = exact.clamp(-128.0, 127.0);
            let slack = 0.5
                + libm::pow(2.0, -(rq.post_shift as f64) - 1.0) * (rq.post_shift > 0) as u8 as f64
                + 1e-9 * exact.abs().max(1.0);
            assert!(
                (got - want).abs() <= slack,
                "acc {acc} scale {real} zp {zp}: {got} vs {exact}"
            );
        }
    }
}
