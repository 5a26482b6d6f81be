//! The block LayerNorm of the int8 path, in f32: int32 accumulators of the depthwise conv in,
//! dequantized per channel, normalized over channels, quantized to int8 for the first pointwise
//! conv. Float, so that int8 never has to represent a normalization.
//!
//! Bit-identical across kernel sets because the reference fixes the evaluation order the NEON
//! kernel has: sums over the first `c4 = 4·⌊c/4⌋` channels in 4 lanes (lane `l` adds channels
//! `≡ l mod 4` in order), lanes combined as `(l0 + l1) + (l2 + l3)`, then the tail channels in
//! order; products and sums rounded separately (no fused multiply-add); `1/√` in scalar code;
//! quantization `sat8(rint(y · (1/s_out)) + z_out)` (round half to even).

/// Per-tensor quantization of the output.
#[derive(Clone, Copy, Debug)]
pub struct OutQuant {
    /// 1 / output scale.
    pub inv_scale: f32,
    /// Output zero point, in int8 range.
    pub zero: i32,
}

#[inline]
fn quant(y: f32, q: OutQuant) -> i8 {
    // `as` saturates (NaN → 0), as FCVTNS does.
    let r = libm::rintf(y * q.inv_scale) as i32;
    (r as i64 + q.zero as i64).clamp(-128, 127) as i8
}

/// Lane-ordered sum of `f(j)` over `0..c` (see the module docs).
#[inline(always)]
fn ordered_sum(c: usize, f: impl Fn(usize) -> f32) -> f32 {
    let c4 = c / 4 * 4;
    let mut lanes = [0f32; 4];
    for j in (0..c4).step_by(4) {
        for (l, s) in lanes.iter_mut().enumerate() {
            *s += f(j + l);
        }
    }
    let mut sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    for j in c4..c {
        sum += f(j);
    }
    sum
}

/// The reference: `out[p][j] = quant(LN(acc[p][·] · deq[·])[j] · w[j] + b[j])`. `scratch`:
/// at least `c` f32.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_i32_i8_scalar(
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
    let inv_c = 1.0 / c as f32;
    let v = &mut scratch[..c];
    for (a, o) in acc[..pixels * c]
        .chunks_exact(c)
        .zip(out.chunks_exact_mut(c))
    {
        for j in 0..c {
            v[j] = a[j] as f32 * deq[j];
        }
        let mean = ordered_sum(c, |j| v[j]) * inv_c;
        let var = ordered_sum(c, |j| (v[j] - mean) * (v[j] - mean)) * inv_c;
        let rstd = 1.0 / libm::sqrtf(var + eps);
        for j in 0..c {
            o[j] = quant((v[j] - mean) * rstd * weight[j] + bias[j], q);
        }
    }
}

/// The residual stream's codes as LayerNorm input: `out[i] = x[i] − zero` (the downsample's
/// LayerNorm then dequantizes with the stream's scale for every channel).
pub fn widen_i8_i32_scalar(x: &[i8], zero: i32, out: &mut [i32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v as i32 - zero;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
pub use x86::layernorm_i32_i8_avx2;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::*;
    use std::vec::Vec;

    pub(super) struct Case {
        pub acc: Vec<i32>,
        pub deq: Vec<f32>,
        pub w: Vec<f32>,
        pub b: Vec<f32>,
        pub q: OutQuant,
    }

    pub(super) fn case(rng: &mut Rng, p: usize, c: usize) -> Case {
        Case {
            acc: (0..p * c).map(|_| (rng.next_u64() as i32) >> 8).collect(),
            deq: (0..c).map(|_| (1.0 + rng.f32().abs()) * 1e-6).collect(),
            w: rng.vec(c, 1.0),
            b: rng.vec(c, 0.5),
            q: OutQuant {
                inv_scale: 127.0 / 3.0,
                zero: (rng.next_u64() % 21) as i32 - 10,
            },
        }
    }

    /// Against the f32 LayerNorm reference on the dequantized values: within one output step.
    #[test]
    fn close_to_f32_layernorm() {
        let mut rng = Rng::new(110);
        for (p, c) in [(1, 1), (3, 7), (49, 40), (2, 320)] {
            let t = case(&mut rng, p, c);
            let mut got = std::vec![0i8; p * c];
            let mut scratch = std::vec![0f32; c];
            layernorm_i32_i8_scalar(
                &t.acc,
                p,
                c,
                &t.deq,
                &t.w,
                &t.b,
                1e-6,
                t.q,
                &mut got,
                &mut scratch,
            );
            let mut x: Vec<f32> = (0..p * c).map(|i| t.acc[i] as f32 * t.deq[i % c]).collect();
            crate::ops::layernorm::layernorm_f32_scalar(&mut x, p, c, &t.w, &t.b, 1e-6);
            for (&g, &y) in got.iter().zip(&x) {
                let want = (y * t.q.inv_scale + t.q.zero as f32).clamp(-128.0, 127.0);
                assert!((g as f32 - want).abs() <= 1.0, "{p}x{c}: {g} vs {want}");
            }
        }
    }
}

/// NEON: the module's evaluation order in 4 lanes (one accumulator, separate multiply and add),
/// quantization by `FCVTNS` and saturating narrows. Bit-identical to
/// [`layernorm_i32_i8_scalar`].
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
pub fn layernorm_i32_i8_neon(
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
    use core::arch::aarch64::*;
    assert!(acc.len() >= pixels * c && out.len() >= pixels * c && scratch.len() >= c);
    assert!(deq.len() >= c && weight.len() >= c && bias.len() >= c);
    let inv_c = 1.0 / c as f32;
    let c4 = c / 4 * 4;
    let v = &mut scratch[..c];
    let lanes_sum = |s: float32x4_t| {
        // SAFETY: register lane reads.
        unsafe {
            (vgetq_lane_f32::<0>(s) + vgetq_lane_f32::<1>(s))
                + (vgetq_lane_f32::<2>(s) + vgetq_lane_f32::<3>(s))
        }
    };
    for (a, o) in acc[..pixels * c]
        .chunks_exact(c)
        .zip(out.chunks_exact_mut(c))
    {
        // SAFETY: every 4-lane access is below c4 ≤ c, the length of `a`, `o`, `v` and the
        // used parts of `deq`, `weight`, `bias`; 8-lane stores to `o` stop at c4 − 4 + 4.
        unsafe {
            let mut s = vdupq_n_f32(0.0);
            for j in (0..c4).step_by(4) {
                let x = vmulq_f32(
                    vcvtq_f32_s32(vld1q_s32(a.as_ptr().add(j))),
                    vld1q_f32(deq.as_ptr().add(j)),
                );
                vst1q_f32(v.as_mut_ptr().add(j), x);
                s = vaddq_f32(s, x);
            }
            let mut sum = lanes_sum(s);
            for j in c4..c {
                v[j] = a[j] as f32 * deq[j];
                sum += v[j];
            }
            let mean = sum * inv_c;
            let m = vdupq_n_f32(mean);
            let mut s = vdupq_n_f32(0.0);
            for j in (0..c4).step_by(4) {
                let d = vsubq_f32(vld1q_f32(v.as_ptr().add(j)), m);
                s = vaddq_f32(s, vmulq_f32(d, d));
            }
            let mut var = lanes_sum(s);
            for &x in &v[c4..c] {
                var += (x - mean) * (x - mean);
            }
            let rstd = 1.0 / libm::sqrtf(var * inv_c + eps);
            let r = vdupq_n_f32(rstd);
            let inv = vdupq_n_f32(q.inv_scale);
            let z = vdupq_n_s32(q.zero);
            for j in (0..c4).step_by(4) {
                let t = vmulq_f32(vsubq_f32(vld1q_f32(v.as_ptr().add(j)), m), r);
                let y = vaddq_f32(
                    vmulq_f32(t, vld1q_f32(weight.as_ptr().add(j))),
                    vld1q_f32(bias.as_ptr().add(j)),
                );
                let n = vqaddq_s32(vcvtnq_s32_f32(vmulq_f32(y, inv)), z);
                let n8 = vqmovn_s16(vcombine_s16(vqmovn_s32(n), vdup_n_s16(0)));
                // Lanes 0..4 of the narrowed vector are this step's 4 outputs.
                let mut b = [0i8; 8];
                vst1_s8(b.as_mut_ptr(), n8);
                o[j..j + 4].copy_from_slice(&b[..4]);
            }
            for j in c4..c {
                o[j] = quant((v[j] - mean) * rstd * weight[j] + bias[j], q);
            }
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
        let mut rng = Rng::new(111);
        for (p, c) in rng.pixel_channel_shapes() {
            let t = case(&mut rng, p, c);
            let (mut want, mut got) = (std::vec![0i8; p * c], std::vec![0i8; p * c]);
            let mut scratch = std::vec![0f32; c];
            layernorm_i32_i8_scalar(
                &t.acc,
                p,
                c,
                &t.deq,
                &t.w,
                &t.b,
                1e-6,
                t.q,
                &mut want,
                &mut scratch,
            );
            layernorm_i32_i8_neon(
                &t.acc,
                p,
                c,
                &t.deq,
                &t.w,
                &t.b,
                1e-6,
                t.q,
                &mut got,
                &mut scratch,
            );
            assert_eq!(got, want, "{p}x{c}");
        }
    }
}
