//! x86-64 requantization (AVX2, and AVX-512 for 16 lanes), bit-identical to the scalar steps
//! of the module above: the vector form every x86 int8 kernel uses (the GEMM epilogues, the
//! downsample's among them, and the residual add).

use super::Requant;
use core::arch::x86_64::*;

const NR: usize = 8;

/// Per-channel requantization parameters of one panel, as lanes.
#[derive(Clone, Copy)]
pub(crate) struct RequantLanes {
    mult: __m256i,
    pre: __m256i,
    post: __m256i,
    /// `max(post − 1, 0)`.
    post_m1: __m256i,
    /// 1 where `post > 0`, else 0.
    post_nz: __m256i,
}

impl RequantLanes {
    /// Lane 0 of `r` in every lane.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) fn splat(r: RequantLanes) -> RequantLanes {
        let b = |v: __m256i| _mm256_permutevar8x32_epi32(v, _mm256_setzero_si256());
        RequantLanes {
            mult: b(r.mult),
            pre: b(r.pre),
            post: b(r.post),
            post_m1: b(r.post_m1),
            post_nz: b(r.post_nz),
        }
    }

    /// Lanes `[0, valid)` from `rq`; the rest get [`Requant::HALF`] (never stored).
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn load(rq: *const Requant, valid: usize) -> RequantLanes {
        if valid == NR {
            // SAFETY: 8 records of 8 bytes (`repr(C)`), the caller's contract.
            return unsafe { Self::load8(rq) };
        }
        let mut a = [[0i32; NR]; 5];
        let records: [Requant; NR] = core::array::from_fn(|l| {
            // SAFETY: the caller guarantees `valid` records.
            if l < valid {
                unsafe { *rq.add(l) }
            } else {
                Requant::HALF
            }
        });
        for (l, r) in records.iter().enumerate() {
            a[0][l] = r.multiplier;
            a[1][l] = r.pre_shift as i32;
            a[2][l] = r.post_shift as i32;
            a[3][l] = (r.post_shift as i32 - 1).max(0);
            a[4][l] = (r.post_shift > 0) as i32;
        }
        // SAFETY: each row holds 8 i32.
        let ld = |v: &[i32; NR]| unsafe { _mm256_loadu_si256(v.as_ptr().cast()) };
        RequantLanes {
            mult: ld(&a[0]),
            pre: ld(&a[1]),
            post: ld(&a[2]),
            post_m1: ld(&a[3]),
            post_nz: ld(&a[4]),
        }
    }

    /// [`RequantLanes::load`] of 8 records without a scalar transpose: every GEMM call (and a
    /// pixel task of several workers is one) reloads its panels' records, and for Atto's
    /// 8-row tasks the transpose through memory was a tenth of fc1's time. Each record is two
    /// dwords, `multiplier` and `pre_shift | post_shift << 8` (the reserved bytes zero, which
    /// the masks drop anyway).
    ///
    /// # Safety
    /// `rq` points at 8 records.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load8(rq: *const Requant) -> RequantLanes {
        // SAFETY: 64 bytes at `rq` (the caller's contract); unaligned loads.
        let (lo, hi) = unsafe {
            (
                _mm256_loadu_si256(rq.cast()),
                _mm256_loadu_si256(rq.add(4).cast()),
            )
        };
        // [m0 s0 m1 s1 | m2 s2 m3 s3] → [m0 m1 m2 m3 | s0 s1 s2 s3].
        let split = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
        let (lo, hi) = (
            _mm256_permutevar8x32_epi32(lo, split),
            _mm256_permutevar8x32_epi32(hi, split),
        );
        let mult = _mm256_permute2x128_si256::<0x20>(lo, hi);
        let shifts = _mm256_permute2x128_si256::<0x31>(lo, hi);
        let byte = _mm256_set1_epi32(0xff);
        let pre = _mm256_and_si256(shifts, byte);
        let post = _mm256_and_si256(_mm256_srli_epi32::<8>(shifts), byte);
        let one = _mm256_set1_epi32(1);
        RequantLanes {
            mult,
            pre,
            post,
            post_m1: _mm256_max_epi32(_mm256_sub_epi32(post, one), _mm256_setzero_si256()),
            post_nz: _mm256_min_epi32(post, one),
        }
    }
}

/// [`crate::ops::requant::requantize_scalar`] on 8 lanes, bit for bit: [`requant_i32x8`], then
/// `+ zero_point` saturated to int8 ([`narrow_i8x8`]). Returns the 8 codes in the low 8 bytes.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn requant8(acc: __m256i, r: &RequantLanes, zp: __m256i) -> __m128i {
    narrow_i8x8(requant_i32x8(acc, r), zp)
}

/// Steps 1–3 of [`crate::ops::requant`] ([`crate::ops::requant::requantize_i32_scalar`]) on 8
/// lanes, bit for bit:
/// 1. `sat32(acc << pre)`: shift, and saturate the lanes where shifting back differs;
/// 2. `(x·M + 2^30) >> 31` in 64-bit products (even and odd lanes separately);
/// 3. the rounding shift `(x + 2^(post−1)) >> post` as `(x >> post) + bit_{post−1}(x)` (equal
///    for arithmetic shifts, and free of the addition's overflow).
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn requant_i32x8(acc: __m256i, r: &RequantLanes) -> __m256i {
    let shifted = _mm256_sllv_epi32(acc, r.pre);
    let back = _mm256_srav_epi32(shifted, r.pre);
    let overflow = _mm256_xor_si256(_mm256_cmpeq_epi32(back, acc), _mm256_set1_epi32(-1));
    let sat = _mm256_xor_si256(_mm256_srai_epi32::<31>(acc), _mm256_set1_epi32(i32::MAX));
    let x = _mm256_blendv_epi8(shifted, sat, overflow);
    let half = _mm256_set1_epi64x(1 << 30);
    let even = _mm256_add_epi64(_mm256_mul_epi32(x, r.mult), half);
    let odd = _mm256_add_epi64(
        _mm256_mul_epi32(_mm256_srli_epi64::<32>(x), _mm256_srli_epi64::<32>(r.mult)),
        half,
    );
    // Bits 31..62 of each product: low dword of `even >> 31`, high dword of `odd << 1`.
    let x = _mm256_blend_epi32::<0b1010_1010>(
        _mm256_srli_epi64::<31>(even),
        _mm256_slli_epi64::<1>(odd),
    );
    let round = _mm256_and_si256(_mm256_srav_epi32(x, r.post_m1), r.post_nz);
    _mm256_add_epi32(_mm256_srav_epi32(x, r.post), round)
}

/// `sat8(x + zp)` on 8 lanes (`zp` within ±2^16), the codes in the low 8 bytes.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn narrow_i8x8(x: __m256i, zp: __m256i) -> __m128i {
    // |x| ≤ 2^16 before adding the zero point changes no int8 result.
    let lim = _mm256_set1_epi32(65536);
    let x = _mm256_min_epi32(
        _mm256_max_epi32(x, _mm256_sub_epi32(_mm256_setzero_si256(), lim)),
        lim,
    );
    let y = _mm256_add_epi32(x, zp);
    let w = _mm256_packs_epi32(y, y); // [y0..3 y0..3 | y4..7 y4..7] as i16
    let b = _mm256_packs_epi16(w, w); // bytes: y0..3 ×4 | y4..7 ×4
    let b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4));
    _mm256_castsi256_si128(b)
}

/// The [`RequantLanes`] of two panels, as 16 lanes (AVX-512).
#[derive(Clone, Copy)]
pub(crate) struct RequantLanes16 {
    mult: __m512i,
    pre: __m512i,
    post: __m512i,
    post_m1: __m512i,
    post_nz: __m512i,
}

impl RequantLanes16 {
    /// 16 records' lanes straight from memory: two 64-byte loads, whose even dwords are the
    /// multipliers and odd ones `pre_shift | post_shift << 8` (see [`RequantLanes::load8`]).
    ///
    /// # Safety
    /// `rq` points at 16 records.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn load16(rq: *const Requant) -> RequantLanes16 {
        // SAFETY: 128 bytes at `rq` (the caller's contract); unaligned loads.
        let (lo, hi) = unsafe {
            (
                _mm512_loadu_si512(rq.cast()),
                _mm512_loadu_si512(rq.add(8).cast()),
            )
        };
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let mult = _mm512_permutex2var_epi32(lo, even, hi);
        let shifts = _mm512_permutex2var_epi32(lo, odd, hi);
        let byte = _mm512_set1_epi32(0xff);
        let pre = _mm512_and_si512(shifts, byte);
        let post = _mm512_and_si512(_mm512_srli_epi32::<8>(shifts), byte);
        let one = _mm512_set1_epi32(1);
        RequantLanes16 {
            mult,
            pre,
            post,
            post_m1: _mm512_max_epi32(_mm512_sub_epi32(post, one), _mm512_setzero_si512()),
            post_nz: _mm512_min_epi32(post, one),
        }
    }
}

/// [`requant8`] on 16 lanes (AVX-512), bit for bit the same steps; the narrowing by `vpmovsdb`
/// (saturating). `zp` within ±2^16. Returns the 16 codes.
#[inline]
#[target_feature(enable = "avx512f,avx512vl")]
pub(crate) fn requant16(acc: __m512i, r: &RequantLanes16, zp: __m512i) -> __m128i {
    let shifted = _mm512_sllv_epi32(acc, r.pre);
    let overflow = _mm512_cmpneq_epi32_mask(_mm512_srav_epi32(shifted, r.pre), acc);
    let sat = _mm512_xor_si512(_mm512_srai_epi32::<31>(acc), _mm512_set1_epi32(i32::MAX));
    let x = _mm512_mask_blend_epi32(overflow, shifted, sat);
    let half = _mm512_set1_epi64(1 << 30);
    let even = _mm512_add_epi64(_mm512_mul_epi32(x, r.mult), half);
    let odd = _mm512_add_epi64(
        _mm512_mul_epi32(_mm512_srli_epi64::<32>(x), _mm512_srli_epi64::<32>(r.mult)),
        half,
    );
    let x = _mm512_mask_blend_epi32(
        0xAAAA,
        _mm512_srli_epi64::<31>(even),
        _mm512_slli_epi64::<1>(odd),
    );
    let round = _mm512_and_si512(_mm512_srav_epi32(x, r.post_m1), r.post_nz);
    let x = _mm512_add_epi32(_mm512_srav_epi32(x, r.post), round);
    let lim = _mm512_set1_epi32(65536);
    let x = _mm512_min_epi32(
        _mm512_max_epi32(x, _mm512_sub_epi32(_mm512_setzero_si512(), lim)),
        lim,
    );
    _mm512_cvtsepi32_epi8(_mm512_add_epi32(x, zp))
}

/// `requantize_channels_scalar` through [`RequantLanes`] and [`requant8`] (the GEMM epilogues'
/// and the residual add's steps): channel blocks of 8 outer (their parameters loaded once),
/// pixels inner; the last `c mod 8` channels by the reference. Their test driver. Panics if the
/// CPU lacks AVX2, a slice is short or the zero point is not int8.
#[cfg(test)]
fn requantize_channels_avx2(
    acc: &[i32],
    pixels: usize,
    c: usize,
    rq: &[Requant],
    zero_point: i32,
    out: &mut [i8],
) {
    assert!(crate::cpu::X86Features::get().avx2, "AVX2 not available");
    assert!(acc.len() >= pixels * c && out.len() >= pixels * c && rq.len() >= c);
    assert!((-128..=127).contains(&zero_point));
    // SAFETY: the CPU has AVX2 (asserted); lengths asserted above.
    unsafe { channels_avx2(acc, pixels, c, rq, zero_point, out) };
    let c8 = c / NR * NR;
    for p in 0..pixels {
        for j in c8..c {
            out[p * c + j] = super::requantize_scalar(acc[p * c + j], rq[j], zero_point);
        }
    }
}

#[cfg(test)]
#[target_feature(enable = "avx2")]
unsafe fn channels_avx2(
    acc: &[i32],
    pixels: usize,
    c: usize,
    rq: &[Requant],
    zp: i32,
    out: &mut [i8],
) {
    let zp = _mm256_set1_epi32(zp);
    for j in (0..c / NR * NR).step_by(NR) {
        // SAFETY: channels j..j+8 ≤ c of `rq` and of every pixel (asserted by the caller).
        unsafe {
            let r = RequantLanes::load(rq.as_ptr().add(j), NR);
            for p in 0..pixels {
                let a = _mm256_loadu_si256(acc.as_ptr().add(p * c + j).cast());
                _mm_storel_epi64(out.as_mut_ptr().add(p * c + j).cast(), requant8(a, &r, zp));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::X86Features;
    use crate::ops::requant::requantize_channels_scalar;
    use crate::ops::testutil::*;
    use std::vec;

    /// Random records plus the ends of every range: pre 0 and 31, post 0 and 62, multipliers
    /// 2^30 and 2^31 − 1, against accumulators at i32's ends and around ties.
    #[test]
    fn avx2_bit_identical_to_reference() {
        if !X86Features::get().avx2 {
            std::println!("requant avx2: not on this CPU, skipped");
            return;
        }
        let mut rng = Rng::new(97);
        let scales = [
            0.5,
            0.999_999_999,
            1.0 / (1u64 << 62) as f64,
            (1u64 << 30) as f64 * 1.5,
            1e-3,
            3.7e-5,
            0.0625,
        ];
        for (p, c) in [(1, 1), (3, 7), (49, 320), (9, 16), (5, 13)] {
            let rq: std::vec::Vec<Requant> = (0..c)
                .map(|j| {
                    let s = if j % 2 == 0 {
                        scales[j / 2 % scales.len()]
                    } else {
                        1e-4 + rng.f32().abs() as f64 * 1e-2
                    };
                    Requant::from_scale(s).unwrap()
                })
                .collect();
            let specials = [
                i32::MIN,
                i32::MAX,
                0,
                1,
                -1,
                128,
                -128,
                1 << 20,
                -(1 << 20) - 1,
            ];
            let acc: std::vec::Vec<i32> = (0..p * c)
                .map(|i| {
                    if i % 3 == 0 {
                        specials[i / 3 % specials.len()]
                    } else {
                        rng.next_u64() as i32 >> (rng.next_u64() % 31)
                    }
                })
                .collect();
            for zp in [-128, 0, 5, 127] {
                let (mut want, mut got) = (vec![0i8; p * c + 1], vec![1i8; p * c + 1]);
                want[p * c] = 1;
                requantize_channels_scalar(&acc, p, c, &rq, zp, &mut want);
                requantize_channels_avx2(&acc, p, c, &rq, zp, &mut got);
                assert_eq!(got, want, "{p}x{c} zp {zp}");
            }
        }
        std::println!("requant avx2: ran");
    }
}
