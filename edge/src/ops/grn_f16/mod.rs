//! GRN of the int8 path, in fp16 (`GrnF16`): int8 hidden activations in, int8 out (the second
//! pointwise conv's input). GRN's per-channel statistics span the whole feature map, which is
//! what int8 breaks; fp16 keeps them, with one trap avoided:
//!
//! 1. `x = f16((q − z_in) · s_in)` with `s_in` an fp16 value (an exact integer times an fp16
//!    number, rounded once: one native fp16 `FMUL`, or an f32 multiply — exact, 8 × 11 bits —
//!    then rounding to fp16);
//! 2. `ss[c] = Σ_pixels x²` accumulated in **f32**: over 56×56 pixels an fp16 sum overflows
//!    (65504) once the RMS exceeds ~4.6, and would lose the small channels; `x²` of an fp16
//!    value is exact in f32 (22 significant bits), so fused and unfused multiply-adds agree.
//!    The order is fixed by the shape, never by the worker count: the pixels are cut into
//!    blocks of `block` pixels (the runtime's pixel tasks, the last one shorter), each block
//!    summed pixels in order from zero, the blocks' partial sums then added in block order
//!    from zero. So each pixel task sums its own rows right after fc1 wrote them, and any
//!    number of workers gets the same bits (the f32 path sums GRN's squares the same way);
//! 3. `g[c] = √ss[c]`, `m = Σ_c g[c] / C` (channels in order), `nx[c] = f16(g[c] / (m + eps))`
//!    (C values: f32, shared by every kernel set);
//! 4. `y = ((γ·(x·nx)) + β) + x`, each operation rounded to fp16 (γ, β stored as fp16);
//! 5. `out = sat8(rint(f16(y · r_out)) + z_out)` with `r_out = f16(1/s_out)`: one fp16 multiply
//!    (exact in f32, then rounded to fp16), round half to even (`FCVTNS`).
//!
//! Both scales are fp16 values ([`GrnF16Quant::new`] rounds them; the model file's scales are
//! checked at parse to land in fp16's normal range), so that the FEAT_FP16 kernel does
//! steps 1, 4 and 5 on 8 lanes per instruction with nothing widened to f32 but the sum of squares.
//! Rounding the scales to fp16 moves them by at most 2^−11 relative: far below the int8 step.
//!
//! fp16 arithmetic is emulated exactly by f32 operations rounded to fp16 after each step (f32's
//! 24 bits ≥ 2·11 + 2, so the double rounding is innocuous for +, ×): the reference uses
//! `half`, the NEON kernel `FCVTN`/`FCVTL` (base ARMv8.0).

use core::ops::Range;
use half::f16;

/// Quantization of the kernel's input and output (per tensor), scales as fp16 values.
#[derive(Clone, Copy, Debug)]
pub struct GrnF16Quant {
    in_scale: f32,
    in_zero: i32,
    out_inv_scale: f32,
    out_zero: i32,
}

impl GrnF16Quant {
    /// Input `real = (q − in_zero) · in_scale`, output `real = (q − out_zero) · out_scale`.
    /// `in_scale` and `1 / out_scale` are rounded to fp16; `None` unless both land in fp16's
    /// normal range (6.1e-5 ..= 65504) and the zero points are in −128..=127.
    pub fn new(in_scale: f32, in_zero: i32, out_scale: f32, out_zero: i32) -> Option<Self> {
        let h = |v: f32| {
            let r = f16::from_f32(v);
            (r.is_normal() && r.to_f32() > 0.0).then(|| r.to_f32())
        };
        let zero_ok = |z: i32| (-128..=127).contains(&z);
        if !(zero_ok(in_zero) && zero_ok(out_zero)) {
            return None;
        }
        Some(Self {
            in_scale: h(in_scale)?,
            in_zero,
            out_inv_scale: h(1.0 / out_scale)?,
            out_zero,
        })
    }
}

/// f32 scratch per channel [`grn_f16_scalar`] takes: the sums and one block's partial sums.
pub const SCRATCH_PER_CHANNEL: usize = 2;

#[inline]
fn dequant(q: i8, qp: &GrnF16Quant) -> f16 {
    f16::from_f32((q as i32 - qp.in_zero) as f32 * qp.in_scale)
}

#[inline]
fn quant(y: f16, qp: &GrnF16Quant) -> i8 {
    // The product of two fp16 values is exact in f32: one rounding to fp16, as FMUL .8h.
    let v = f16::from_f32(y.to_f32() * qp.out_inv_scale).to_f32();
    // `as` saturates (NaN → 0), as FCVTNS does.
    let r = libm::rintf(v) as i32;
    (r as i64 + qp.out_zero as i64).clamp(-128, 127) as i8
}

/// Step 4 for one value (`nx` holds an fp16 value as f32).
#[inline]
fn apply(x: f16, nx: f32, gamma: f16, beta: f16) -> f16 {
    let m = |a: f16, b: f16| f16::from_f32(a.to_f32() * b.to_f32());
    let a = |a: f16, b: f16| f16::from_f32(a.to_f32() + b.to_f32());
    a(a(m(gamma, m(x, f16::from_f32(nx))), beta), x)
}

/// Step 3 from the sums of squares in `ss[..c]`, written over them as `nx` (fp16 values).
pub fn grn_f16_stats(ss: &mut [f32], eps: f32) {
    let mut mean = 0f32;
    for s in ss.iter_mut() {
        *s = libm::sqrtf(*s);
        mean += *s;
    }
    let denom = mean / ss.len() as f32 + eps;
    for s in ss.iter_mut() {
        *s = f16::from_f32(*s / denom).to_f32();
    }
}

/// The reference: `input`, `out` are `pixels × c` (HWC); statistics over pixel blocks of
/// `block` pixels (step 2). `scratch`: at least [`SCRATCH_PER_CHANNEL`]`·c` f32. The runtime
/// composes the same three steps from the kernel sets' [`grn_f16_sumsq_scalar`] (per pixel
/// task), [`grn_f16_stats`] and [`grn_f16_apply_scalar`] (by pixel ranges).
#[allow(clippy::too_many_arguments)]
pub fn grn_f16_scalar(
    input: &[i8],
    pixels: usize,
    c: usize,
    gamma: &[f16],
    beta: &[f16],
    eps: f32,
    qp: &GrnF16Quant,
    out: &mut [i8],
    scratch: &mut [f32],
    block: usize,
) {
    let (ss, part) = scratch[..2 * c].split_at_mut(c);
    ss.fill(0.0);
    let block = block.max(1);
    for rows in input[..pixels * c].chunks(block * c.max(1)) {
        grn_f16_sumsq_scalar(rows, rows.len() / c.max(1), c, 0..c, qp, part);
        for (s, v) in ss.iter_mut().zip(part.iter()) {
            *s += *v;
        }
    }
    grn_f16_stats(ss, eps);
    grn_f16_apply_scalar(input, pixels, c, gamma, beta, ss, qp, out);
}

/// Step 2 over one block of `pixels` rows (`input`: those rows), channels `ch` only:
/// `ss[j − ch.start] = Σ_pixels x[·][j]²` in f32, pixels in order from zero (the block's
/// partial sums; the caller adds the blocks' in block order, as [`grn_f16_scalar`] does).
pub fn grn_f16_sumsq_scalar(
    input: &[i8],
    pixels: usize,
    c: usize,
    ch: Range<usize>,
    qp: &GrnF16Quant,
    ss: &mut [f32],
) {
    let ss = &mut ss[..ch.len()];
    ss.fill(0.0);
    for px in input[..pixels * c].chunks_exact(c) {
        for (s, &q) in ss.iter_mut().zip(&px[ch.clone()]) {
            let x = dequant(q, qp).to_f32();
            *s += x * x;
        }
    }
}

/// Steps 4–5 on `pixels` rows (`input`, `out`: those rows) given `nx` for all `c` channels
/// (from [`grn_f16_stats`]), by pixel ranges. With [`grn_f16_sumsq_scalar`] per block it is
/// [`grn_f16_scalar`].
#[allow(clippy::too_many_arguments)]
pub fn grn_f16_apply_scalar(
    input: &[i8],
    pixels: usize,
    c: usize,
    gamma: &[f16],
    beta: &[f16],
    nx: &[f32],
    qp: &GrnF16Quant,
    out: &mut [i8],
) {
    for (px, o) in input[..pixels * c]
        .chunks_exact(c)
        .zip(out.chunks_exact_mut(c))
    {
        for j in 0..c {
            o[j] = quant(apply(dequant(px[j], qp), nx[j], gamma[j], beta[j]), qp);
        }
    }
}

/// [`grn_f16_sumsq_scalar`] on NEON (ARMv8.0): 8 channels per step held in registers over the
/// pixel loop (pixels in order per channel, as the reference), a scalar tail. The dequantized
/// values are those of every NEON form (one fp16 rounding), so the native-fp16 set uses it too.
#[cfg(target_arch = "aarch64")]
pub fn grn_f16_sumsq_neon(
    input: &[i8],
    pixels: usize,
    c: usize,
    ch: Range<usize>,
    qp: &GrnF16Quant,
    ss: &mut [f32],
) {
    use core::arch::aarch64::*;
    assert!(ch.start <= ch.end && ch.end <= c && input.len() >= pixels * c);
    let ss = &mut ss[..ch.len()];
    let c8 = ch.start + ch.len() / 8 * 8;
    let mut j = ch.start;
    while j < c8 {
        // SAFETY: channels j..j+8 ≤ c of every pixel < `pixels`, and of `ss` (offset by
        // ch.start); lengths asserted above.
        unsafe {
            let (mut lo_acc, mut hi_acc) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
            for p in 0..pixels {
                let (lo, hi) = neon::dequant8(vld1_s8(input.as_ptr().add(p * c + j)), qp);
                lo_acc = vfmaq_f32(lo_acc, lo, lo);
                hi_acc = vfmaq_f32(hi_acc, hi, hi);
            }
            let s = ss.as_mut_ptr().add(j - ch.start);
            vst1q_f32(s, lo_acc);
            vst1q_f32(s.add(4), hi_acc);
        }
        j += 8;
    }
    grn_f16_sumsq_scalar(input, pixels, c, c8..ch.end, qp, &mut ss[c8 - ch.start..]);
}

/// [`grn_f16_apply_scalar`] on NEON (ARMv8.0, fp16 emulated by `FCVTN`/`FCVTL`): channel blocks
/// of 8 outer (γ, β widened and `nx` loaded once per block), pixels inner. Bit-identical.
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
pub fn grn_f16_apply_neon(
    input: &[i8],
    pixels: usize,
    c: usize,
    gamma: &[f16],
    beta: &[f16],
    nx: &[f32],
    qp: &GrnF16Quant,
    out: &mut [i8],
) {
    use core::arch::aarch64::*;
    use neon::*;
    assert!(input.len() >= pixels * c && out.len() >= pixels * c);
    assert!(gamma.len() >= c && beta.len() >= c && nx.len() >= c);
    let c8 = c / 8 * 8;
    let mut j = 0;
    while j < c8 {
        // SAFETY: channels j..j+8 ≤ c8 of every pixel's row, of `gamma`, `beta` and `nx`.
        unsafe {
            let (g0, g1) = widen_f16x8(vld1q_u16(gamma.as_ptr().add(j).cast()));
            let (b0, b1) = widen_f16x8(vld1q_u16(beta.as_ptr().add(j).cast()));
            let (n0, n1) = (
                vld1q_f32(nx.as_ptr().add(j)),
                vld1q_f32(nx.as_ptr().add(j + 4)),
            );
            let y = |x: float32x4_t, n, g, b| {
                let t = round_f16(vmulq_f32(x, n));
                let t = round_f16(vmulq_f32(g, t));
                let t = round_f16(vaddq_f32(t, b));
                round_f16(vaddq_f32(t, x))
            };
            for p in 0..pixels {
                let at = p * c + j;
                let (x0, x1) = dequant8(vld1_s8(input.as_ptr().add(at)), qp);
                let q = quant8(y(x0, n0, g0, b0), y(x1, n1, g1, b1), qp);
                vst1_s8(out.as_mut_ptr().add(at), q);
            }
        }
        j += 8;
    }
    for p in 0..pixels {
        for j in c8..c {
            let at = p * c + j;
            out[at] = quant(apply(dequant(input[at], qp), nx[j], gamma[j], beta[j]), qp);
        }
    }
}

/// [`grn_f16_sumsq_scalar`] with native fp16 dequantization (FEAT_FP16): 16 channels per step
/// held in registers over the pixel loop (then 8, then a scalar tail), pixels in order per
/// channel. `x` is rounded once to fp16 (`FMUL` in fp16 of the exact `q − z`), widened exactly
/// (`FCVTL`) and squared into f32 by `FMLA`: the reference's bits, fewer instructions than the
/// ARMv8.0 form's f32 multiply and round trip.
///
/// # Safety
/// The CPU must implement FEAT_FP16.
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "fp16")]
pub unsafe fn grn_f16_sumsq_fp16(
    input: &[i8],
    pixels: usize,
    c: usize,
    ch: Range<usize>,
    qp: &GrnF16Quant,
    ss: &mut [f32],
) {
    use core::arch::aarch64::*;
    assert!(ch.start <= ch.end && ch.end <= c && input.len() >= pixels * c);
    let ss = &mut ss[..ch.len()];
    let (zin, sin) = (
        vdupq_n_s16(qp.in_zero as i16),
        vreinterpretq_f16_u16(vdupq_n_u16(f16::from_f32(qp.in_scale).to_bits())),
    );
    // Step 1 on 8 lanes: exact `q − z` in i16 (|q − z| ≤ 255), exact conversion, one rounding.
    // (A macro: a nested fn would not inherit the fp16 target feature.)
    macro_rules! dequant8 {
        ($q:expr) => {
            vmulq_f16(vcvtq_f16_s16(vsubq_s16($q, zin)), sin)
        };
    }
    let mut j = ch.start;
    while j + 16 <= ch.end {
        // SAFETY: channels j..j+16 ≤ c of every pixel < `pixels`, and of `ss` (offset by
        // ch.start); lengths asserted above; fp16 arithmetic is guaranteed by the caller.
        unsafe {
            let mut acc = [vdupq_n_f32(0.0); 4];
            for p in 0..pixels {
                let q = vld1q_s8(input.as_ptr().add(p * c + j));
                let x0 = dequant8!(vmovl_s8(vget_low_s8(q)));
                let x1 = dequant8!(vmovl_high_s8(q));
                let (a0, a1) = (vcvt_f32_f16(vget_low_f16(x0)), vcvt_high_f32_f16(x0));
                let (b0, b1) = (vcvt_f32_f16(vget_low_f16(x1)), vcvt_high_f32_f16(x1));
                acc[0] = vfmaq_f32(acc[0], a0, a0);
                acc[1] = vfmaq_f32(acc[1], a1, a1);
                acc[2] = vfmaq_f32(acc[2], b0, b0);
                acc[3] = vfmaq_f32(acc[3], b1, b1);
            }
            let s = ss.as_mut_ptr().add(j - ch.start);
            for (i, a) in acc.iter().enumerate() {
                vst1q_f32(s.add(4 * i), *a);
            }
        }
        j += 16;
    }
    if j + 8 <= ch.end {
        // SAFETY: as above, channels j..j+8.
        unsafe {
            let (mut lo_acc, mut hi_acc) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
            for p in 0..pixels {
                let x = dequant8!(vmovl_s8(vld1_s8(input.as_ptr().add(p * c + j))));
                let (lo, hi) = (vcvt_f32_f16(vget_low_f16(x)), vcvt_high_f32_f16(x));
                lo_acc = vfmaq_f32(lo_acc, lo, lo);
                hi_acc = vfmaq_f32(hi_acc, hi, hi);
            }
            let s = ss.as_mut_ptr().add(j - ch.start);
            vst1q_f32(s, lo_acc);
            vst1q_f32(s.add(4), hi_acc);
        }
        j += 8;
    }
    grn_f16_sumsq_scalar(input, pixels, c, j..ch.end, qp, &mut ss[j - ch.start..]);
}

/// [`grn_f16_sumsq_fp16`] in a build whose target has FEAT_FP16: safe to call. Kernel-set slot.
#[cfg(all(target_arch = "aarch64", target_feature = "fp16"))]
pub fn grn_f16_sumsq_fp16_static(
    input: &[i8],
    pixels: usize,
    c: usize,
    ch: Range<usize>,
    qp: &GrnF16Quant,
    ss: &mut [f32],
) {
    // SAFETY: `target_feature = "fp16"` holds for the whole build (cfg above).
    unsafe { grn_f16_sumsq_fp16(input, pixels, c, ch, qp, ss) }
}

/// [`grn_f16_apply_scalar`] with native fp16 arithmetic (FEAT_FP16): channel blocks of 8 outer
/// (`nx` narrowed to fp16 once per block: exact, it holds fp16 values), pixels inner; the same
/// operations, each rounding once as the reference's emulation does. Bit-identical.
///
/// # Safety
/// The CPU must implement FEAT_FP16.
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "fp16")]
pub unsafe fn grn_f16_apply_fp16(
    input: &[i8],
    pixels: usize,
    c: usize,
    gamma: &[f16],
    beta: &[f16],
    nx: &[f32],
    qp: &GrnF16Quant,
    out: &mut [i8],
) {
    use core::arch::aarch64::*;
    assert!(input.len() >= pixels * c && out.len() >= pixels * c);
    assert!(gamma.len() >= c && beta.len() >= c && nx.len() >= c);
    let c8 = c / 8 * 8;
    let h = |v: f32| vreinterpretq_f16_u16(vdupq_n_u16(f16::from_f32(v).to_bits()));
    let (zin, sin) = (vdupq_n_s16(qp.in_zero as i16), h(qp.in_scale));
    let (inv, zout) = (h(qp.out_inv_scale), vdupq_n_s16(qp.out_zero as i16));
    let mut j = 0;
    while j < c8 {
        // SAFETY: channels j..j+8 ≤ c8 of every pixel's row, of `gamma`, `beta` and `nx`;
        // fp16 arithmetic is guaranteed by the caller.
        unsafe {
            let n = vcombine_f16(
                vcvt_f16_f32(vld1q_f32(nx.as_ptr().add(j))),
                vcvt_f16_f32(vld1q_f32(nx.as_ptr().add(j + 4))),
            );
            let g = vreinterpretq_f16_u16(vld1q_u16(gamma.as_ptr().add(j).cast()));
            let b = vreinterpretq_f16_u16(vld1q_u16(beta.as_ptr().add(j).cast()));
            for p in 0..pixels {
                let at = p * c + j;
                let q = vmovl_s8(vld1_s8(input.as_ptr().add(at)));
                let x = vmulq_f16(vcvtq_f16_s16(vsubq_s16(q, zin)), sin);
                let y = vaddq_f16(vaddq_f16(vmulq_f16(g, vmulq_f16(x, n)), b), x);
                let r = vcvtnq_s16_f16(vmulq_f16(y, inv));
                vst1_s8(out.as_mut_ptr().add(at), vqmovn_s16(vqaddq_s16(r, zout)));
            }
        }
        j += 8;
    }
    for p in 0..pixels {
        for j in c8..c {
            let at = p * c + j;
            out[at] = quant(apply(dequant(input[at], qp), nx[j], gamma[j], beta[j]), qp);
        }
    }
}

/// [`grn_f16_apply_fp16`] in a build whose target has FEAT_FP16: safe to call. Kernel-set slot.
#[cfg(all(target_arch = "aarch64", target_feature = "fp16"))]
#[allow(clippy::too_many_arguments)]
pub fn grn_f16_apply_fp16_static(
    input: &[i8],
    pixels: usize,
    c: usize,
    gamma: &[f16],
    beta: &[f16],
    nx: &[f32],
    qp: &GrnF16Quant,
    out: &mut [i8],
) {
    // SAFETY: `target_feature = "fp16"` holds for the whole build (cfg above).
    unsafe { grn_f16_apply_fp16(input, pixels, c, gamma, beta, nx, qp, out) }
}

#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
pub use x86::{grn_f16_apply_avx2, grn_f16_apply_avx512_best, grn_f16_sumsq_avx2};

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ops::testutil::*;
    use std::vec::Vec;

    pub(super) struct Case {
        pub q: Vec<i8>,
        pub gamma: Vec<f16>,
        pub beta: Vec<f16>,
        pub qp: GrnF16Quant,
    }

    pub(super) fn case(rng: &mut Rng, p: usize, c: usize, in_scale: f32) -> Case {
        Case {
            q: (0..p * c).map(|_| rng.next_u64() as i8).collect(),
            gamma: (0..c).map(|_| f16::from_f32(rng.f32())).collect(),
            beta: (0..c).map(|_| f16::from_f32(rng.f32() * 0.5)).collect(),
            qp: GrnF16Quant::new(
                in_scale,
                (rng.next_u64() % 256) as i32 - 128,
                4.0 * 128.0 * in_scale / 127.0,
                (rng.next_u64() % 41) as i32 - 20,
            )
            .unwrap(),
        }
    }

    /// GRN as the runtime composes it through the given kernels: sums over pixel blocks of
    /// `block` (each by channel ranges of `chunk`), the blocks added in order,
    /// [`grn_f16_stats`], the update by pixel ranges of `rows`.
    #[allow(clippy::type_complexity)]
    pub(super) fn split_run(
        t: &Case,
        p: usize,
        c: usize,
        (block, chunk, rows): (usize, usize, usize),
        sumsq: &dyn Fn(&[i8], usize, usize, Range<usize>, &GrnF16Quant, &mut [f32]),
        apply: &dyn Fn(&[i8], usize, usize, &[f16], &[f16], &[f32], &GrnF16Quant, &mut [i8]),
    ) -> Vec<i8> {
        let (mut ss, mut part) = (std::vec![0f32; c], std::vec![0f32; c]);
        for b in (0..p).step_by(block) {
            let e = (b + block).min(p);
            for s in (0..c).step_by(chunk) {
                let r = s..(s + chunk).min(c);
                sumsq(&t.q[b * c..e * c], e - b, c, r.clone(), &t.qp, &mut part[r]);
            }
            for (s, v) in ss.iter_mut().zip(&part) {
                *s += *v;
            }
        }
        grn_f16_stats(&mut ss, 1e-6);
        let mut out = std::vec![0i8; p * c];
        for s in (0..p).step_by(rows) {
            let e = (s + rows).min(p);
            let (x, o) = (&t.q[s * c..e * c], &mut out[s * c..e * c]);
            apply(x, e - s, c, &t.gamma, &t.beta, &ss, &t.qp, o);
        }
        out
    }

    /// The reference, whole, with blocks of `block` pixels.
    pub(super) fn whole(t: &Case, p: usize, c: usize, block: usize) -> Vec<i8> {
        let mut want = std::vec![0i8; p * c];
        let mut scratch = std::vec![0f32; SCRATCH_PER_CHANNEL * c];
        let (q, g, b) = (&t.q, &t.gamma, &t.beta);
        grn_f16_scalar(q, p, c, g, b, 1e-6, &t.qp, &mut want, &mut scratch, block);
        want
    }

    /// Block splits as the runtime's pixel tasks; each case at several block sizes.
    pub(super) const SPLITS: [(usize, usize, usize); 4] = [
        (8, 32, 8),
        (3, 5, 3),
        (104, 1280, 16),
        (1 << 20, 1 << 20, 1 << 20),
    ];

    /// The composed form (blocks by channel ranges, then pixel ranges) equals the reference
    /// bit for bit, for ranges that cut vector blocks and tails alike; and the block size is
    /// part of the specification: summing in one block moves some sums by an ulp.
    #[test]
    fn split_scalar_equals_reference() {
        let mut rng = Rng::new(94);
        let mut sums_moved = 0;
        for (p, c, s) in [
            (1, 1, 0.05),
            (49, 1280, 0.05),
            (3136, 16, 0.2),
            (9, 13, 1.0),
        ] {
            let t = case(&mut rng, p, c, s);
            for split in SPLITS {
                let want = whole(&t, p, c, split.0);
                let got = split_run(
                    &t,
                    p,
                    c,
                    split,
                    &grn_f16_sumsq_scalar,
                    &grn_f16_apply_scalar,
                );
                assert_eq!(got, want, "{p}x{c} split {split:?}");
            }
            // The order matters (f32 addition does not associate): blocks of 8 against one.
            let qp = &t.qp;
            let sums = |block: usize| {
                let (mut ss, mut part) = (std::vec![0f32; c], std::vec![0f32; c]);
                for rows in t.q.chunks(block * c) {
                    grn_f16_sumsq_scalar(rows, rows.len() / c, c, 0..c, qp, &mut part);
                    ss.iter_mut().zip(&part).for_each(|(s, v)| *s += *v);
                }
                ss
            };
            let (a, b) = (sums(8), sums(p));
            sums_moved += a.iter().zip(&b).filter(|(x, y)| x != y).count();
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() <= 1e-5 * y.abs(), "{p}x{c}: {x} vs {y}");
            }
        }
        assert!(
            sums_moved > 0,
            "block order never changed a sum: test is blind"
        );
    }

    /// Against the f32 GRN reference on the dequantized input: fp16 arithmetic adds a few
    /// fp16 roundings (2^−11 relative each), then the int8 grid: within 1 output step.
    #[test]
    fn close_to_f32_grn() {
        let mut rng = Rng::new(90);
        // in_scale 0.05: RMS ~3.7, and 0.2: RMS ~15 (where an fp16 sum of squares would overflow).
        for (p, c, s) in [(1, 1, 0.05), (49, 40, 0.05), (3136, 16, 0.2), (9, 13, 0.2)] {
            let t = case(&mut rng, p, c, s);
            let mut got = std::vec![0i8; p * c];
            let mut scratch = std::vec![0f32; SCRATCH_PER_CHANNEL * c];
            grn_f16_scalar(
                &t.q,
                p,
                c,
                &t.gamma,
                &t.beta,
                1e-6,
                &t.qp,
                &mut got,
                &mut scratch,
                96,
            );
            let mut x: Vec<f32> =
                t.q.iter()
                    .map(|&v| (v as i32 - t.qp.in_zero) as f32 * s)
                    .collect();
            let g: Vec<f32> = t.gamma.iter().map(|v| v.to_f32()).collect();
            let b: Vec<f32> = t.beta.iter().map(|v| v.to_f32()).collect();
            crate::ops::grn::grn_f32_scalar(&mut x, p, c, &g, &b, 1e-6, &mut scratch);
            for (i, (&q, &y)) in got.iter().zip(&x).enumerate() {
                let want = (y * t.qp.out_inv_scale + t.qp.out_zero as f32).clamp(-128.0, 127.0);
                assert!(
                    (q as f32 - want).abs() <= 1.0,
                    "{p}x{c} [{i}]: {q} vs {want}"
                );
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::GrnF16Quant;
    use core::arch::aarch64::*;

    /// Rounds 4 f32 lanes to fp16 precision and back (`FCVTN` then `FCVTL`: round to nearest
    /// even, fp16 overflow to ±inf, subnormals kept), i.e. `f16::from_f32(v).to_f32()`.
    #[inline(always)]
    pub(super) fn round_f16(v: float32x4_t) -> float32x4_t {
        let r: float32x4_t;
        // SAFETY: register-only instructions of base ARMv8 AdvSIMD.
        unsafe {
            core::arch::asm!(
                "fcvtn {r:v}.4h, {v:v}.4s",
                "fcvtl {r:v}.4s, {r:v}.4h",
                v = in(vreg) v,
                r = out(vreg) r,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        r
    }

    /// 8 fp16 values (their bits) widened to f32 (`FCVTL`, `FCVTL2`: exact).
    #[inline(always)]
    pub(super) fn widen_f16x8(bits: uint16x8_t) -> (float32x4_t, float32x4_t) {
        let (lo, hi): (float32x4_t, float32x4_t);
        // SAFETY: register-only instructions of base ARMv8 AdvSIMD.
        unsafe {
            core::arch::asm!(
                "fcvtl {lo:v}.4s, {v:v}.4h",
                "fcvtl2 {hi:v}.4s, {v:v}.8h",
                v = in(vreg) bits,
                lo = out(vreg) lo,
                hi = out(vreg) hi,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        (lo, hi)
    }

    /// Step 1 for 8 lanes: `(q − z) → f32 → · s → fp16 precision`.
    #[inline(always)]
    pub(super) fn dequant8(q: int8x8_t, qp: &GrnF16Quant) -> (float32x4_t, float32x4_t) {
        // SAFETY: register arithmetic only.
        unsafe {
            let w = vmovl_s8(q);
            let z = vdupq_n_s32(qp.in_zero);
            let lo = vsubq_s32(vmovl_s16(vget_low_s16(w)), z);
            let hi = vsubq_s32(vmovl_high_s16(w), z);
            let s = vdupq_n_f32(qp.in_scale);
            (
                round_f16(vmulq_f32(vcvtq_f32_s32(lo), s)),
                round_f16(vmulq_f32(vcvtq_f32_s32(hi), s)),
            )
        }
    }

    /// Step 5 for 8 lanes.
    #[inline(always)]
    pub(super) fn quant8(y0: float32x4_t, y1: float32x4_t, qp: &GrnF16Quant) -> int8x8_t {
        // SAFETY: register arithmetic only.
        unsafe {
            let inv = vdupq_n_f32(qp.out_inv_scale);
            let r0 = vcvtnq_s32_f32(round_f16(vmulq_f32(y0, inv)));
            let r1 = vcvtnq_s32_f32(round_f16(vmulq_f32(y1, inv)));
            let z = vdupq_n_s16(qp.out_zero.clamp(-128, 127) as i16);
            vqmovn_s16(vqaddq_s16(vcombine_s16(vqmovn_s32(r0), vqmovn_s32(r1)), z))
        }
    }
}

#[cfg(all(test, target_arch = "aarch64"))]
mod neon_tests {
    use super::tests::{case, split_run, whole, SPLITS};
    use super::*;
    use crate::ops::testutil::*;

    #[test]
    fn neon_bit_identical_to_reference() {
        let mut rng = Rng::new(91);
        let mut shapes = std::vec![
            (1, 1, 0.05),
            (49, 1280, 0.05),
            (3136, 160, 0.2),
            (9, 13, 1.0)
        ];
        for _ in 0..25 {
            shapes.push((
                1 + rng.next_u64() as usize % 50,
                1 + rng.next_u64() as usize % 70,
                [0.01, 0.1, 0.5, 4.0][rng.next_u64() as usize % 4],
            ));
        }
        let mut fp16_checked = 0;
        for (p, c, s) in shapes {
            let t = case(&mut rng, p, c, s);
            for split in SPLITS {
                let want = whole(&t, p, c, split.0);
                let got = split_run(&t, p, c, split, &grn_f16_sumsq_neon, &grn_f16_apply_neon);
                assert_eq!(got, want, "NEON {p}x{c} scale {s} split {split:?}");
                if std::arch::is_aarch64_feature_detected!("fp16") {
                    let fp16 = |x: &[i8],
                                p,
                                c,
                                g: &[f16],
                                b: &[f16],
                                nx: &[f32],
                                qp: &GrnF16Quant,
                                o: &mut [i8]| {
                        // SAFETY: fp16 detected.
                        unsafe { grn_f16_apply_fp16(x, p, c, g, b, nx, qp, o) }
                    };
                    let sumsq = |x: &[i8], p, c, ch, qp: &GrnF16Quant, ss: &mut [f32]| {
                        // SAFETY: fp16 detected.
                        unsafe { grn_f16_sumsq_fp16(x, p, c, ch, qp, ss) }
                    };
                    let got = split_run(&t, p, c, split, &sumsq, &fp16);
                    assert_eq!(got, want, "fp16 {p}x{c} scale {s} split {split:?}");
                    fp16_checked += 1;
                }
            }
        }
        std::println!("GrnF16: NEON bit-identical on all shapes; native fp16 on {fp16_checked}");
    }
}
