//! x86-64 GRN (AVX2+FMA; also used by the AVX-512 set): the per-pixel update
//! `x += β + γ·(x·N)` vectorized over channels; the normalization of the C norms stays
//! [`super::normalized_norms`] (C values, once per block).

use crate::cpu::X86Features;
use core::arch::x86_64::*;

/// [`super::grn_apply_f32_scalar`] on AVX2+FMA. Panics if the CPU lacks it or a slice is short.
pub fn grn_apply_f32_avx2(
    x: &mut [f32],
    pixels: usize,
    c: usize,
    weight: &[f32],
    bias: &[f32],
    eps: f32,
    norms: &mut [f32],
) {
    assert!(X86Features::get().avx2, "AVX2+FMA not available");
    assert!(x.len() >= pixels * c && weight.len() >= c && bias.len() >= c && norms.len() >= c);
    super::normalized_norms(&mut norms[..c], eps);
    // SAFETY: the CPU has AVX2+FMA (asserted).
    unsafe { apply_avx2(x, pixels, c, weight, bias, norms) }
}

/// [`super::grn_f32_scalar`] on AVX2+FMA (the unfused form the observer path runs): the sums of
/// squares by the reference (f64), then [`grn_apply_f32_avx2`].
pub fn grn_f32_avx2(
    x: &mut [f32],
    pixels: usize,
    c: usize,
    weight: &[f32],
    bias: &[f32],
    eps: f32,
    norms: &mut [f32],
) {
    norms[..c].fill(0.0);
    super::sumsq_f32_scalar(x, pixels, c, &mut norms[..c]);
    grn_apply_f32_avx2(x, pixels, c, weight, bias, eps, norms);
}

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
    for i in (0..ch.len() / 8 * 8).step_by(8) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::grn::{grn_apply_f32_scalar, grn_f32_scalar};
    use crate::ops::testutil::*;
    use std::vec;

    #[test]
    fn avx2_matches_reference() {
        if !X86Features::get().avx2 {
            std::println!("grn avx2: not on this CPU, skipped");
            return;
        }
        let mut rng = Rng::new(73);
        for (p, c) in [(1, 1), (3, 7), (49, 1280), (3136, 160), (5, 13), (2, 17)] {
            let x = rng.vec(p * c, 2.0);
            let w = rng.vec(c, 1.0);
            let b = rng.vec(c, 1.0);
            let s: std::vec::Vec<f32> = rng.vec(c, 1.0).iter().map(|v| v * v * p as f32).collect();
            let (mut want, mut got) = (x.clone(), x.clone());
            let (mut sw, mut sg) = (s.clone(), s.clone());
            grn_apply_f32_scalar(&mut want, p, c, &w, &b, 1e-6, &mut sw);
            grn_apply_f32_avx2(&mut got, p, c, &w, &b, 1e-6, &mut sg);
            assert!(max_rel_err(&got, &want) <= 1e-6, "{p}x{c} apply");
            let (mut want, mut got) = (x.clone(), x.clone());
            let (mut nw, mut ng) = (vec![0.0; c], vec![0.0; c]);
            grn_f32_scalar(&mut want, p, c, &w, &b, 1e-6, &mut nw);
            grn_f32_avx2(&mut got, p, c, &w, &b, 1e-6, &mut ng);
            assert!(max_rel_err(&got, &want) <= 1e-6, "{p}x{c} grn");
        }
        std::println!("grn avx2: ran");
    }
}
