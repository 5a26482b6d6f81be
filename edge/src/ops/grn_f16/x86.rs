//! x86-64 GRN in fp16 (AVX2 + F16C), bit-identical to [`super::grn_f16_scalar`]: 8 channels per
//! step; every fp16 rounding of the specification is a `vcvtps2ph` (round to nearest even) and
//! `vcvtph2ps` pair on f32 values, exactly as the reference rounds through `half`; the sum of
//! squares in f32 lanes, pixels in order (`x²` of an fp16 value is exact in f32, so the FMA
//! equals the reference's multiply-then-add); the final `rint` is `vcvtps2dq` in the default
//! round-to-nearest-even mode, with NaN sent to 0 and infinities clamped first as Rust's
//! saturating `as` does. Channels past the last multiple of 8 take the reference's steps.

use super::{apply, dequant, quant, GrnF16Quant};
use crate::cpu::X86Features;
use core::arch::x86_64::*;
use core::ops::Range;
use half::f16;

/// [`super::grn_f16_sumsq_scalar`] on AVX2+F16C (channels `ch` only). Panics if the CPU lacks
/// it or a slice is short.
pub fn grn_f16_sumsq_avx2(
    input: &[i8],
    pixels: usize,
    c: usize,
    ch: Range<usize>,
    qp: &GrnF16Quant,
    ss: &mut [f32],
) {
    assert!(X86Features::get().avx2, "AVX2+F16C not available");
    assert!(ch.start <= ch.end && ch.end <= c && input.len() >= pixels * c);
    let ss = &mut ss[..ch.len()];
    // SAFETY: the CPU has AVX2+FMA+F16C (asserted); lengths asserted above.
    unsafe { sum_squares(input, pixels, c, ch, qp, ss) };
}

/// [`super::grn_f16_apply_scalar`] on AVX2+F16C. Panics if the CPU lacks it or a slice is short.
#[allow(clippy::too_many_arguments)]
pub fn grn_f16_apply_avx2(
    input: &[i8],
    pixels: usize,
    c: usize,
    gamma: &[f16],
    beta: &[f16],
    nx: &[f32],
    qp: &GrnF16Quant,
    out: &mut [i8],
) {
    apply_checks(input, pixels, c, gamma, beta, nx, out);
    // SAFETY: the CPU has AVX2+FMA+F16C and the lengths hold (checked).
    unsafe { apply_quant_from(input, pixels, c, gamma, beta, qp, out, nx, 0) };
}

/// [`super::grn_f16_apply_scalar`] for the AVX-512 set: native fp16 where the CPU has
/// AVX512-FP16, else 16 lanes emulated. Panics if the CPU lacks AVX-512 or a slice is short.
#[allow(clippy::too_many_arguments)]
pub fn grn_f16_apply_avx512_best(
    input: &[i8],
    pixels: usize,
    c: usize,
    gamma: &[f16],
    beta: &[f16],
    nx: &[f32],
    qp: &GrnF16Quant,
    out: &mut [i8],
) {
    let f = X86Features::get();
    assert!(f.avx512, "AVX-512 not available");
    apply_checks(input, pixels, c, gamma, beta, nx, out);
    // SAFETY: the CPU has AVX-512 (and AVX512-FP16 for that branch); lengths checked.
    unsafe {
        if f.avx512_fp16 {
            apply_quant_fp16(input, pixels, c, gamma, beta, qp, out, nx)
        } else {
            apply_quant_avx512(input, pixels, c, gamma, beta, qp, out, nx)
        }
    }
}

fn apply_checks(
    input: &[i8],
    pixels: usize,
    c: usize,
    gamma: &[f16],
    beta: &[f16],
    nx: &[f32],
    out: &[i8],
) {
    assert!(X86Features::get().avx2, "AVX2+F16C not available");
    assert!(
        input.len() >= pixels * c
            && out.len() >= pixels * c
            && gamma.len() >= c
            && beta.len() >= c
            && nx.len() >= c
    );
}

/// f32 → fp16 → f32 (round to nearest even).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn r16(v: __m256) -> __m256 {
    _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v))
}

/// Step 1 on 8 codes at `p`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn dequant8(p: *const i8, zin: __m256i, sin: __m256) -> __m256 {
    // SAFETY: the caller guarantees 8 readable bytes.
    let q = unsafe { _mm_loadl_epi64(p.cast()) };
    let v = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepi8_epi32(q), zin));
    r16(_mm256_mul_ps(v, sin))
}

/// Sums of squares of channels `ch` into `ss[..ch.len()]` (overwritten).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn sum_squares(
    input: &[i8],
    pixels: usize,
    c: usize,
    ch: Range<usize>,
    qp: &GrnF16Quant,
    ss: &mut [f32],
) {
    let c8 = ch.start + ch.len() / 8 * 8;
    let (zin, sin) = (_mm256_set1_epi32(qp.in_zero), _mm256_set1_ps(qp.in_scale));
    for j in (ch.start..c8).step_by(8) {
        let mut s = _mm256_setzero_ps();
        for p in 0..pixels {
            // SAFETY: channels j..j+8 ≤ c of pixel p < pixels.
            let x = unsafe { dequant8(input.as_ptr().add(p * c + j), zin, sin) };
            s = _mm256_fmadd_ps(x, x, s);
        }
        // SAFETY: `ss` has ch.len() ≥ j − ch.start + 8 values.
        unsafe { _mm256_storeu_ps(ss.as_mut_ptr().add(j - ch.start), s) };
    }
    for j in c8..ch.end {
        ss[j - ch.start] = 0.0;
    }
    for p in 0..pixels {
        for j in c8..ch.end {
            let x = dequant(input[p * c + j], qp).to_f32();
            ss[j - ch.start] += x * x;
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn apply_quant_from(
    input: &[i8],
    pixels: usize,
    c: usize,
    gamma: &[f16],
    beta: &[f16],
    qp: &GrnF16Quant,
    out: &mut [i8],
    nx: &[f32],
    from: usize,
) {
    let c8 = from + (c - from) / 8 * 8;
    let (zin, sin) = (_mm256_set1_epi32(qp.in_zero), _mm256_set1_ps(qp.in_scale));
    let rout = _mm256_set1_ps(qp.out_inv_scale);
    let zout = _mm256_set1_epi32(qp.out_zero);
    let big = _mm256_set1_ps(1024.0);
    for p in 0..pixels {
        for j in (from..c8).step_by(8) {
            // SAFETY: channels j..j+8 ≤ c of pixel p, of `gamma`, `beta` and `nx`.
            unsafe {
                let x = dequant8(input.as_ptr().add(p * c + j), zin, sin);
                let g = _mm256_cvtph_ps(_mm_loadu_si128(gamma.as_ptr().add(j).cast()));
                let b = _mm256_cvtph_ps(_mm_loadu_si128(beta.as_ptr().add(j).cast()));
                let n = _mm256_loadu_ps(nx.as_ptr().add(j));
                // Step 4: ((γ·(x·nx)) + β) + x, each rounded to fp16.
                let y = r16(_mm256_mul_ps(g, r16(_mm256_mul_ps(x, n))));
                let y = r16(_mm256_add_ps(r16(_mm256_add_ps(y, b)), x));
                // Step 5.
                let v = r16(_mm256_mul_ps(y, rout));
                let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v);
                let v = _mm256_blendv_ps(v, _mm256_setzero_ps(), nan);
                let v = _mm256_min_ps(
                    _mm256_max_ps(v, _mm256_sub_ps(_mm256_setzero_ps(), big)),
                    big,
                );
                let r = _mm256_add_epi32(_mm256_cvtps_epi32(v), zout);
                let w = _mm256_packs_epi32(r, r);
                let bytes = _mm256_packs_epi16(w, w);
                let bytes =
                    _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4));
                _mm_storel_epi64(
                    out.as_mut_ptr().add(p * c + j).cast(),
                    _mm256_castsi256_si128(bytes),
                );
            }
        }
        for j in c8..c {
            let x = dequant(input[p * c + j], qp);
            out[p * c + j] = quant(apply(x, nx[j], gamma[j], beta[j]), qp);
        }
    }
}

/// f32 → fp16 → f32 on 16 lanes.
#[inline]
#[target_feature(enable = "avx512f")]
fn r16x16(v: __m512) -> __m512 {
    _mm512_cvtph_ps(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v))
}

/// Steps 4–5 on AVX-512 F/BW/VL (+F16C): 16 channels per step, the same roundings as the
/// AVX2 form (`vcvtps2ph` zmm), the final narrowing by `vpmovsdb` (saturating, as the
/// reference's clamp).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn apply_quant_avx512(
    input: &[i8],
    pixels: usize,
    c: usize,
    gamma: &[f16],
    beta: &[f16],
    qp: &GrnF16Quant,
    out: &mut [i8],
    nx: &[f32],
) {
    let c16 = c / 16 * 16;
    let (zin, sin) = (_mm512_set1_epi32(qp.in_zero), _mm512_set1_ps(qp.in_scale));
    let rout = _mm512_set1_ps(qp.out_inv_scale);
    let zout = _mm512_set1_epi32(qp.out_zero);
    let big = _mm512_set1_ps(1024.0);
    for p in 0..pixels {
        for j in (0..c16).step_by(16) {
            // SAFETY: channels j..j+16 ≤ c of pixel p, of `gamma`, `beta` and `nx`.
            unsafe {
                let q = _mm512_cvtepi8_epi32(_mm_loadu_si128(input.as_ptr().add(p * c + j).cast()));
                let x = r16x16(_mm512_mul_ps(
                    _mm512_cvtepi32_ps(_mm512_sub_epi32(q, zin)),
                    sin,
                ));
                let g = _mm512_cvtph_ps(_mm256_loadu_si256(gamma.as_ptr().add(j).cast()));
                let b = _mm512_cvtph_ps(_mm256_loadu_si256(beta.as_ptr().add(j).cast()));
                let n = _mm512_loadu_ps(nx.as_ptr().add(j));
                let y = r16x16(_mm512_mul_ps(g, r16x16(_mm512_mul_ps(x, n))));
                let y = r16x16(_mm512_add_ps(r16x16(_mm512_add_ps(y, b)), x));
                let v = r16x16(_mm512_mul_ps(y, rout));
                let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                let v = _mm512_mask_blend_ps(nan, v, _mm512_setzero_ps());
                let v = _mm512_min_ps(
                    _mm512_max_ps(v, _mm512_sub_ps(_mm512_setzero_ps(), big)),
                    big,
                );
                let r = _mm512_add_epi32(_mm512_cvtps_epi32(v), zout);
                _mm_storeu_si128(
                    out.as_mut_ptr().add(p * c + j).cast(),
                    _mm512_cvtsepi32_epi8(r),
                );
            }
        }
    }
    if c16 < c {
        // The last c mod 16 channels: AVX2's 8-lane steps, then the reference.
        // SAFETY: as above; `apply_quant_from` only touches channels ≥ c16.
        unsafe { apply_quant_from(input, pixels, c, gamma, beta, qp, out, nx, c16) };
    }
}

/// One AVX512-FP16 instruction on 32 fp16 lanes, by inline assembly: Rust 1.95 has no stable
/// fp16 intrinsics, and these are plain register-to-register operations.
macro_rules! ph {
    ($ins:literal, $a:expr) => {{
        let r: __m512i;
        // SAFETY: register-only arithmetic; the caller's target features include AVX-512 and
        // the CPU has AVX512-FP16 (checked by the entry point).
        #[allow(unused_unsafe)]
        unsafe {
            core::arch::asm!(concat!($ins, " {o}, {a}"), o = lateout(zmm_reg) r, a = in(zmm_reg) $a,
                options(pure, nomem, nostack, preserves_flags));
        }
        r
    }};
    ($ins:literal, $a:expr, $b:expr) => {{
        let r: __m512i;
        // SAFETY: as above.
        #[allow(unused_unsafe)]
        unsafe {
            core::arch::asm!(concat!($ins, " {o}, {a}, {b}"), o = lateout(zmm_reg) r,
                a = in(zmm_reg) $a, b = in(zmm_reg) $b, options(pure, nomem, nostack, preserves_flags));
        }
        r
    }};
}

/// Steps 4–5 with native fp16 arithmetic (AVX512-FP16, 32 lanes): steps 1, 4 and 5 of the
/// specification are single fp16 instructions, each rounding once exactly as the reference's
/// f32-then-round emulation does (`vcvtw2ph` of the integer code, `vmulph`, `vaddph`,
/// `vcvtph2w` in round-to-nearest-even after NaN → 0 and a clamp to ±1024). Channel blocks of
/// 32 outer, pixels inner; a block past `c` is finished by the 8-lane kernel.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn apply_quant_fp16(
    input: &[i8],
    pixels: usize,
    c: usize,
    gamma: &[f16],
    beta: &[f16],
    qp: &GrnF16Quant,
    out: &mut [i8],
    nx: &[f32],
) {
    let c32 = c / 32 * 32;
    let h = |v: f32| _mm512_set1_epi16(f16::from_f32(v).to_bits() as i16);
    let (sin, rout) = (h(qp.in_scale), h(qp.out_inv_scale));
    let (lo, hi) = (h(-1024.0), h(1024.0));
    let zin = _mm512_set1_epi16(qp.in_zero as i16);
    let zout = _mm512_set1_epi16(qp.out_zero as i16);
    for j in (0..c32).step_by(32) {
        // SAFETY: channels j..j+32 ≤ c of `gamma`, `beta`, `nx` and of every pixel.
        unsafe {
            let g = _mm512_loadu_si512(gamma.as_ptr().add(j).cast());
            let b = _mm512_loadu_si512(beta.as_ptr().add(j).cast());
            // nx holds fp16 values as f32: converting back is exact.
            let n0 =
                _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm512_loadu_ps(nx.as_ptr().add(j)));
            let n1 = _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm512_loadu_ps(
                nx.as_ptr().add(j + 16),
            ));
            let n = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(n0), n1);
            for p in 0..pixels {
                let at = p * c + j;
                let q = _mm512_cvtepi8_epi16(_mm256_loadu_si256(input.as_ptr().add(at).cast()));
                let x = ph!("vmulph", ph!("vcvtw2ph", _mm512_sub_epi16(q, zin)), sin);
                let y = ph!("vmulph", g, ph!("vmulph", x, n));
                let y = ph!("vaddph", ph!("vaddph", y, b), x);
                let v = ph!("vmulph", y, rout);
                let nan: __mmask32;
                core::arch::asm!("vcmpph {k}, {a}, {a}, 3", k = lateout(kreg) nan, a = in(zmm_reg) v,
                    options(pure, nomem, nostack, preserves_flags));
                let v = _mm512_mask_blend_epi16(nan, v, _mm512_setzero_si512());
                let v = ph!("vminph", ph!("vmaxph", v, lo), hi);
                let r = _mm512_add_epi16(ph!("vcvtph2w", v), zout);
                _mm256_storeu_si256(out.as_mut_ptr().add(at).cast(), _mm512_cvtsepi16_epi8(r));
            }
        }
    }
    if c32 < c {
        // SAFETY: as above; only channels ≥ c32 are touched.
        unsafe { apply_quant_from(input, pixels, c, gamma, beta, qp, out, nx, c32) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::grn_f16::tests::{case, split_run, whole, SPLITS};
    use crate::ops::testutil::*;

    #[test]
    fn avx2_and_avx512_bit_identical_to_reference() {
        if !X86Features::get().avx2 {
            std::println!("grn_f16 avx2: not on this CPU, skipped");
            return;
        }
        let mut rng = Rng::new(93);
        // Including large scales, where γ·(x·nx) overflows fp16 to ±∞ and saturates.
        for (p, c, s) in [
            (1, 1, 0.05),
            (49, 40, 0.05),
            (3136, 16, 0.2),
            (9, 13, 0.2),
            (7, 1280, 0.1),
            (5, 27, 30.0),
            (4, 8, 200.0),
            (40, 72, 0.5),
        ] {
            let mut t = case(&mut rng, p, c, s);
            if s > 10.0 {
                t.gamma
                    .iter_mut()
                    .for_each(|g| *g = f16::from_f32(g.to_f32() * 3000.0));
            }
            for split in SPLITS {
                let want = whole(&t, p, c, split.0);
                let got = split_run(&t, p, c, split, &grn_f16_sumsq_avx2, &grn_f16_apply_avx2);
                assert_eq!(got, want, "avx2 {p}x{c} scale {s} split {split:?}");
                if X86Features::get().avx512 {
                    let apply = &grn_f16_apply_avx512_best;
                    let got = split_run(&t, p, c, split, &grn_f16_sumsq_avx2, apply);
                    assert_eq!(got, want, "avx512 {p}x{c} scale {s} split {split:?}");
                }
            }
        }
        std::println!(
            "grn_f16 avx2, avx512: ran; avx512fp16: {}",
            X86Features::get().avx512_fp16
        );
    }
}
