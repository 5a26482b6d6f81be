//! x86-64 GRN (AVX2+FMA; also used by the AVX-512 set): the per-channel sums of squares over a
//! channel range and the per-pixel update `x += β + γ·(x·N)`, vectorized over channels; the
//! normalization of the C norms stays [`super::normalized_norms`] (C values, once per block).
//! Tested with the scalar split in `super::split_tests`.

use crate::cpu::X86Features;
use core::arch::x86_64::*;

/// [`super::grn_scale_f32_scalar`] on AVX2+FMA (norms already normalized). Panics if the CPU
/// lacks it or a slice is short.
pub fn grn_scale_f32_avx2(
    x: &mut [f32],
    pixels: usize,
    c: usize,
    weight: &[f32],
    bias: &[f32],
    nx: &[f32],
) {
    assert!(X86Features::get().avx2, "AVX2+FMA not available");
    assert!(x.len() >= pixels * c && weight.len() >= c && bias.len() >= c && nx.len() >= c);
    // SAFETY: the CPU has AVX2+FMA (asserted).
    unsafe { apply_avx2(x, pixels, c, weight, bias, nx) }
}

/// [`super::sumsq_channels_f32_scalar`] on AVX2+FMA: 8 channels per vector, pixels in order
/// (f32 FMA), the range's last `len mod 8` channels in scalar f32. Panics if the CPU lacks it
/// or a slice is short.
pub fn sumsq_channels_f32_avx2(
    x: &[f32],
    pixels: usize,
    c: usize,
    ch: core::ops::Range<usize>,
    out: &mut [f32],
) {
    assert!(X86Features::get().avx2, "AVX2+FMA not available");
    assert!(x.len() >= pixels * c && ch.end <= c && out.len() >= ch.len());
    // SAFETY: the CPU has AVX2+FMA (asserted); lengths asserted above.
    unsafe { sumsq_avx2(x, pixels, c, ch.clone(), out) };
    let n8 = ch.len() / 8 * 8;
    for (o, j) in out[n8..ch.len()].iter_mut().zip(ch.start + n8..ch.end) {
        *o = (0..pixels)
            .map(|p| x[p * c + j] * x[p * c + j])
            .fold(0.0, |a, v| a + v);
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn sumsq_avx2(
    x: &[f32],
    pixels: usize,
    c: usize,
    ch: core::ops::Range<usize>,
    out: &mut [f32],
) {
    // Four 8-channel groups at a time: four independent FMA chains (one chain is bound by the
    // FMA's latency) and 128 contiguous bytes per pixel; each channel is still summed over the
    // pixels in order, so the sums are those of the one-group loop below, bit for bit.
    let n8 = ch.len() / 8 * 8;
    let n32 = ch.len() / 32 * 32;
    for i in (0..n32).step_by(32) {
        let j = ch.start + i;
        // SAFETY: channels j..j+32 ≤ ch.end ≤ c of every pixel, and out[i..i+32].
        unsafe {
            let mut a = [_mm256_setzero_ps(); 4];
            for p in 0..pixels {
                let x = x.as_ptr().add(p * c + j);
                for (g, a) in a.iter_mut().enumerate() {
                    let v = _mm256_loadu_ps(x.add(8 * g));
                    *a = _mm256_fmadd_ps(v, v, *a);
                }
            }
            for (g, a) in a.iter().enumerate() {
                _mm256_storeu_ps(out.as_mut_ptr().add(i + 8 * g), *a);
            }
        }
    }
    for i in (n32..n8).step_by(8) {
        let j = ch.start + i;
        // SAFETY: channels j..j+8 ≤ ch.end ≤ c of every pixel, and out[i..i+8].
        unsafe {
            let mut a = _mm256_setzero_ps();
            for p in 0..pixels {
                let v = _mm256_loadu_ps(x.as_ptr().add(p * c + j));
                a = _mm256_fmadd_ps(v, v, a);
            }
            _mm256_storeu_ps(out.as_mut_ptr().add(i), a);
        }
    }
}

#[target_feature(enable = "avx2,fma")]
fn apply_avx2(x: &mut [f32], pixels: usize, c: usize, w: &[f32], b: &[f32], n: &[f32]) {
    let c8 = c / 8 * 8;
    for px in x[..pixels * c].chunks_exact_mut(c) {
        let p = px.as_mut_ptr();
        // SAFETY: lanes j..j+8 ≤ c8 ≤ c of the pixel, `w`, `b` and `n` (asserted by the caller).
        unsafe {
            for j in (0..c8).step_by(8) {
                let v = _mm256_loadu_ps(p.add(j));
                let t = _mm256_mul_ps(v, _mm256_loadu_ps(n.as_ptr().add(j)));
                let t = _mm256_fmadd_ps(
                    _mm256_loadu_ps(w.as_ptr().add(j)),
                    t,
                    _mm256_loadu_ps(b.as_ptr().add(j)),
                );
                _mm256_storeu_ps(p.add(j), _mm256_add_ps(v, t));
            }
        }
        for j in c8..c {
            px[j] += b[j] + w[j] * (px[j] * n[j]);
        }
    }
}
