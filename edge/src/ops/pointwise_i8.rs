//! int8 pointwise (1×1) convolution as a GEMM over NHWC pixels:
//! `out[p][n] = requant(bias[n] + Σ_k in[p][k]·W[n][k])`, int8 inputs and weights, int32
//! accumulation (wrapping, as the instructions do), per-output-channel requantization
//! ([`crate::ops::requant`]) to int8 with an output zero point.
//!
//! Scheme: weights symmetric per output channel (no zero point); activations per tensor with a
//! zero point (post-GELU activations are far from symmetric), whose correction
//! `−z_in·Σ_k W[n][k]` the quantizer folds into `bias[n]` once, so the kernel has no
//! zero-point term. Integer sums do not depend on order, so every kernel set's output is
//! bit-identical to the reference.
//!
//! Weights are packed `[ceil(N/8)][ceil(K/8)][8 outputs][8 k]`, zero-padded ("c8" layout): the
//! NEON kernel multiplies 8 consecutive inputs by 8 weights of one output with one `SMULL`
//! (8 int16 products) and adds pairs of them into 4 int32 lanes with one `SADALP`.

use crate::ops::requant::{requantize_scalar, Requant};

/// Outputs per panel and inputs per group.
pub const C8: usize = 8;

/// Packed length of an `n × k` weight matrix.
pub const fn packed_len(n: usize, k: usize) -> usize {
    n.div_ceil(C8) * k.div_ceil(C8) * C8 * C8
}

/// Index of `W[j][i]` in the packed layout.
#[inline]
fn packed_index(k: usize, j: usize, i: usize) -> usize {
    ((j / C8) * k.div_ceil(C8) + i / C8) * C8 * C8 + (j % C8) * C8 + i % C8
}

/// Packs row-major `[n][k]` int8 weights.
pub fn pack_c8(w: &[i8], n: usize, k: usize, out: &mut [i8]) {
    out[..packed_len(n, k)].fill(0);
    for j in 0..n {
        for i in 0..k {
            out[packed_index(k, j, i)] = w[j * k + i];
        }
    }
}

/// The reference. `bias`, `rq`: `n` each; `input`: `pixels × k`; `out`: `pixels × n`.
#[allow(clippy::too_many_arguments)]
pub fn pointwise_i8_scalar(
    input: &[i8],
    pixels: usize,
    k: usize,
    weight: &[i8],
    bias: &[i32],
    rq: &[Requant],
    zero_point: i32,
    n: usize,
    out: &mut [i8],
) {
    for p in 0..pixels {
        let x = &input[p * k..][..k];
        for j in 0..n {
            let mut acc = bias[j];
            for (i, &v) in x.iter().enumerate() {
                acc = acc.wrapping_add(v as i32 * weight[packed_index(k, j, i)] as i32);
            }
            out[p * n + j] = requantize_scalar(acc, rq[j], zero_point);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::*;
    use std::vec::Vec;

    /// Inputs, row-major weights, packed weights, bias, requantization, output zero point.
    pub(super) type Case = (Vec<i8>, Vec<i8>, Vec<i8>, Vec<i32>, Vec<Requant>, i32);

    pub(super) fn random_case(rng: &mut Rng, p: usize, k: usize, n: usize) -> Case {
        let byte = |rng: &mut Rng| rng.next_u64() as i8;
        let x: Vec<i8> = (0..p * k).map(|_| byte(rng)).collect();
        let w: Vec<i8> = (0..n * k).map(|_| byte(rng)).collect();
        let mut wp = std::vec![0i8; packed_len(n, k)];
        pack_c8(&w, n, k, &mut wp);
        let bias: Vec<i32> = (0..n).map(|_| (rng.next_u64() as i32) >> 12).collect();
        // Scales around 1/(64·sqrt(k)) keep most outputs unsaturated; some saturate.
        let rq: Vec<Requant> = (0..n)
            .map(|_| {
                let s = (0.5 + rng.f32().abs() as f64) / (64.0 * (k as f64).sqrt());
                Requant::from_scale(s).unwrap()
            })
            .collect();
        let zp = (rng.next_u64() % 256) as i32 - 128;
        (x, w, wp, bias, rq, zp)
    }

    #[test]
    fn matches_naive_integer_gemm() {
        let mut rng = Rng::new(70);
        for (p, k, n) in [(1, 1, 1), (3, 5, 7), (9, 40, 160), (2, 17, 9), (4, 320, 13)] {
            let (x, w, wp, bias, rq, zp) = random_case(&mut rng, p, k, n);
            let mut got = std::vec![0i8; p * n];
            pointwise_i8_scalar(&x, p, k, &wp, &bias, &rq, zp, n, &mut got);
            for pp in 0..p {
                for j in 0..n {
                    let dot: i64 = (0..k)
                        .map(|i| x[pp * k + i] as i64 * w[j * k + i] as i64)
                        .sum::<i64>()
                        + bias[j] as i64;
                    let want = (dot as f64 * rq[j].scale() + zp as f64).clamp(-128.0, 127.0);
                    let g = got[pp * n + j] as f64;
                    assert!(
                        (g - want).abs() <= 0.75,
                        "{p}x{k}x{n} [{pp}][{j}]: {g} vs {want}"
                    );
                }
            }
        }
    }
}

/// NEON (ARMv8.0): 2 pixels × 8 outputs per tile, `SMULL` + `SADALP` per 8 inputs, lanes
/// reduced with `ADDP`, vectorized requantization. Bit-identical to [`pointwise_i8_scalar`].
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
pub fn pointwise_i8_neon(
    input: &[i8],
    pixels: usize,
    k: usize,
    weight: &[i8],
    bias: &[i32],
    rq: &[Requant],
    zero_point: i32,
    n: usize,
    out: &mut [i8],
) {
    assert!(
        input.len() >= pixels * k
            && weight.len() >= packed_len(n, k)
            && bias.len() >= n
            && rq.len() >= n
            && out.len() >= pixels * n
    );
    let kb = k.div_ceil(C8);
    let zp = zero_point.clamp(-128, 127) as i16;
    let mut p = 0;
    while p < pixels {
        let mr = if pixels - p >= 2 { 2 } else { 1 };
        for j in 0..n.div_ceil(C8) {
            let lanes = C8.min(n - j * C8);
            let mut b = [0i32; C8];
            b[..lanes].copy_from_slice(&bias[j * C8..][..lanes]);
            let mut r = [Requant {
                multiplier: 1 << 30,
                pre_shift: 0,
                post_shift: 0,
            }; C8];
            r[..lanes].copy_from_slice(&rq[j * C8..][..lanes]);
            let w = &weight[j * kb * C8 * C8..][..kb * C8 * C8];
            let mut res = [[0i8; C8]; 2];
            match mr {
                2 => neon::tile::<2>(&input[p * k..][..2 * k], k, w, &b, &r, zp, &mut res),
                _ => neon::tile::<1>(&input[p * k..][..k], k, w, &b, &r, zp, &mut res),
            }
            for (q, row) in res.iter().enumerate().take(mr) {
                out[(p + q) * n + j * C8..][..lanes].copy_from_slice(&row[..lanes]);
            }
        }
        p += mr;
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::C8;
    use crate::ops::requant::neon::{narrow8, scale4, Requant4};
    use crate::ops::requant::Requant;
    use core::arch::aarch64::*;

    /// `MR` rows (`x` holds them, `k` each) × one panel `w` (`ceil(k/8)·64` bytes).
    #[inline(always)]
    pub(super) fn tile<const MR: usize>(
        x: &[i8],
        k: usize,
        w: &[i8],
        bias: &[i32; C8],
        rq: &[Requant; C8],
        zp: i16,
        res: &mut [[i8; C8]; 2],
    ) {
        let kb = k.div_ceil(C8);
        assert!(x.len() >= MR * k && w.len() >= kb * C8 * C8);
        // SAFETY: every load below reads inside `x` (full groups: i·8 + 8 ≤ k within a row;
        // the tail group is copied into `tail`) or inside `w` (group g of the panel: 64 bytes at
        // g·64 < kb·64); stores go to `res`.
        unsafe {
            let mut acc = [[vdupq_n_s32(0); C8]; MR];
            let full = k / C8;
            for g in 0..kb {
                let mut a = [vdup_n_s8(0); MR];
                for (q, av) in a.iter_mut().enumerate() {
                    let row = &x[q * k..][..k];
                    *av = if g < full {
                        vld1_s8(row.as_ptr().add(g * C8))
                    } else {
                        let mut tail = [0i8; C8];
                        tail[..k - g * C8].copy_from_slice(&row[g * C8..]);
                        vld1_s8(tail.as_ptr())
                    };
                }
                let wg = w.as_ptr().add(g * C8 * C8);
                for pair in 0..C8 / 2 {
                    let wv = vld1q_s8(wg.add(pair * 16));
                    for q in 0..MR {
                        let lo = vmull_s8(a[q], vget_low_s8(wv));
                        let hi = vmull_s8(a[q], vget_high_s8(wv));
                        acc[q][2 * pair] = vpadalq_s16(acc[q][2 * pair], lo);
                        acc[q][2 * pair + 1] = vpadalq_s16(acc[q][2 * pair + 1], hi);
                    }
                }
            }
            let (r_lo, r_hi) = (
                Requant4::load(&[rq[0], rq[1], rq[2], rq[3]]),
                Requant4::load(&[rq[4], rq[5], rq[6], rq[7]]),
            );
            let (b_lo, b_hi) = (vld1q_s32(bias.as_ptr()), vld1q_s32(bias.as_ptr().add(4)));
            let zpv = vdupq_n_s16(zp);
            for (q, a) in acc.iter().enumerate() {
                let lo = vpaddq_s32(vpaddq_s32(a[0], a[1]), vpaddq_s32(a[2], a[3]));
                let hi = vpaddq_s32(vpaddq_s32(a[4], a[5]), vpaddq_s32(a[6], a[7]));
                let lo = scale4(vaddq_s32(b_lo, lo), &r_lo);
                let hi = scale4(vaddq_s32(b_hi, hi), &r_hi);
                vst1_s8(res[q].as_mut_ptr(), narrow8(lo, hi, zpv));
            }
        }
    }
}

#[cfg(all(test, target_arch = "aarch64"))]
mod neon_tests {
    use super::tests::random_case;
    use super::*;
    use crate::ops::requant::neon::{scale4, Requant4};
    use crate::ops::testutil::*;
    use std::vec;

    #[test]
    fn neon_bit_identical_to_reference() {
        let mut rng = Rng::new(71);
        let mut shapes = vec![
            (1, 1, 1),
            (2, 8, 8),
            (9, 40, 160),
            (49, 1280, 320),
            (3, 17, 9),
        ];
        for _ in 0..40 {
            shapes.push((
                1 + rng.next_u64() as usize % 9,
                1 + rng.next_u64() as usize % 70,
                1 + rng.next_u64() as usize % 30,
            ));
        }
        for (p, k, n) in shapes {
            let (mut x, _, mut wp, bias, rq, zp) = random_case(&mut rng, p, k, n);
            // Extremes: -128 · -128 products in every lane of some rows.
            if p > 1 {
                x[..k].fill(-128);
                wp[..C8 * C8].fill(-128);
            }
            let (mut want, mut got) = (vec![0i8; p * n], vec![0i8; p * n]);
            pointwise_i8_scalar(&x, p, k, &wp, &bias, &rq, zp, n, &mut want);
            pointwise_i8_neon(&x, p, k, &wp, &bias, &rq, zp, n, &mut got);
            assert_eq!(got, want, "{p}x{k}x{n}");
        }
    }

    #[test]
    fn vector_requantization_equals_scalar() {
        let mut rng = Rng::new(72);
        for i in 0..5000 {
            let rq: [Requant; 4] = core::array::from_fn(|_| {
                Requant::from_scale(libm::pow(2.0, rng.f32() as f64 * 30.0 - 10.0)).unwrap()
            });
            let acc: [i32; 4] = core::array::from_fn(|l| match (i + l) % 9 {
                0 => i32::MIN,
                1 => i32::MAX,
                _ => (rng.next_u64() as i32) >> (rng.next_u64() % 31),
            });
            let mut got = [0i32; 4];
            // SAFETY: 4-lane loads/stores of 4-element arrays.
            unsafe {
                use core::arch::aarch64::*;
                let v = scale4(vld1q_s32(acc.as_ptr()), &Requant4::load(&rq));
                vst1q_s32(got.as_mut_ptr(), v);
            }
            for l in 0..4 {
                // Compare steps 1–3 through step 4 with a zero point of 0 and a wide clamp:
                // the narrowing is tested by the GEMM test; here the full i32 value must agree.
                let r = rq[l];
                let x = ((acc[l] as i64) << r.pre_shift).clamp(i32::MIN as i64, i32::MAX as i64);
                let x = (x * r.multiplier as i64 + (1 << 30)) >> 31;
                let x = if r.post_shift > 0 {
                    (x + (1i64 << (r.post_shift - 1))) >> r.post_shift
                } else {
                    x
                };
                assert_eq!(got[l] as i64, x, "acc {} {:?}", acc[l], r);
                assert_eq!(requantize_scalar(acc[l], r, 0), x.clamp(-128, 127) as i8);
            }
        }
    }
}
