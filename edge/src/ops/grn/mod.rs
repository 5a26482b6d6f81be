//! Global Response Normalization, per sample, exactly as timm's `GlobalResponseNorm`:
//! `g[c] = sqrt(Σ_hw x²)`, `nx[c] = g[c] / (mean_c g + eps)`, `y = x + (bias + weight·(x·nx))`.
//! The spatial sum of squares is accumulated in f64: it spans up to 56·56 terms and is the one
//! statistic whose rounding would otherwise reach every output of the block.

use core::ops::Range;

/// In place over `pixels × c`; `norms` is scratch of at least `c` floats.
pub fn grn_f32_scalar(
    x: &mut [f32],
    pixels: usize,
    c: usize,
    weight: &[f32],
    bias: &[f32],
    eps: f32,
    norms: &mut [f32],
) {
    norms[..c].fill(0.0);
    sumsq_f32_scalar(x, pixels, c, &mut norms[..c]);
    grn_apply_f32_scalar(x, pixels, c, weight, bias, eps, norms);
}

/// Adds Σ_pixels x² of each channel to `sumsq[..c]`, accumulating in f64 (up to 56·56 terms,
/// the one statistic whose rounding would reach every output of the block).
pub fn sumsq_f32_scalar(x: &[f32], pixels: usize, c: usize, sumsq: &mut [f32]) {
    const CH: usize = 64;
    let mut acc = [0f64; CH];
    for c0 in (0..c).step_by(CH) {
        let cw = CH.min(c - c0);
        for (a, s) in acc[..cw].iter_mut().zip(&sumsq[c0..c0 + cw]) {
            *a = *s as f64;
        }
        for px in x[..pixels * c].chunks_exact(c) {
            for (a, &v) in acc[..cw].iter_mut().zip(&px[c0..c0 + cw]) {
                *a += v as f64 * v as f64;
            }
        }
        for (s, a) in sumsq[c0..c0 + cw].iter_mut().zip(&acc[..cw]) {
            *s = *a as f32;
        }
    }
}

/// Sums of squares → `nx[c] = sqrt(sumsq[c]) / (mean_c sqrt(sumsq) + eps)`, in place (the
/// channel mean summed in f64).
pub fn normalized_norms(norms: &mut [f32], eps: f32) {
    let mut sum = 0f64;
    for nv in norms.iter_mut() {
        *nv = libm::sqrtf(*nv);
        sum += *nv as f64;
    }
    let denom = (sum / norms.len().max(1) as f64) as f32 + eps;
    for nv in norms.iter_mut() {
        *nv /= denom;
    }
}

/// GRN given the channels' sums of squares in `norms[..c]` (overwritten): `g = sqrt(sumsq)`,
/// `nx = g / (mean_c g + eps)`, `y = x + (b + w·(x·nx))`.
pub fn grn_apply_f32_scalar(
    x: &mut [f32],
    pixels: usize,
    c: usize,
    weight: &[f32],
    bias: &[f32],
    eps: f32,
    norms: &mut [f32],
) {
    let norms = &mut norms[..c];
    normalized_norms(norms, eps);
    grn_scale_f32_scalar(x, pixels, c, weight, bias, norms);
}

/// GRN's statistics cut by channel: `out[i] = Σ_pixels x[p][j]²` for `j = ch.start + i`
/// (f64 accumulation, pixels in order). Each channel's sum is one task's whole job, so a split
/// of the channels across workers cannot change it.
pub fn sumsq_channels_f32_scalar(
    x: &[f32],
    pixels: usize,
    c: usize,
    ch: Range<usize>,
    out: &mut [f32],
) {
    const CH: usize = 64;
    let mut acc = [0f64; CH];
    let mut c0 = ch.start;
    while c0 < ch.end {
        let cw = CH.min(ch.end - c0);
        acc[..cw].fill(0.0);
        for px in x[..pixels * c].chunks_exact(c) {
            for (a, &v) in acc[..cw].iter_mut().zip(&px[c0..c0 + cw]) {
                *a += v as f64 * v as f64;
            }
        }
        for (o, a) in out[c0 - ch.start..][..cw].iter_mut().zip(&acc[..cw]) {
            *o = *a as f32;
        }
        c0 += cw;
    }
}

/// GRN applied with norms already normalized by [`normalized_norms`] (`nx`, shared by every
/// pixel range): `x += β + γ·(x·nx)`, the per-pixel half of [`grn_apply_f32_scalar`].
pub fn grn_scale_f32_scalar(
    x: &mut [f32],
    pixels: usize,
    c: usize,
    weight: &[f32],
    bias: &[f32],
    nx: &[f32],
) {
    for px in x[..pixels * c].chunks_exact_mut(c) {
        for (((v, &n), &w), &b) in px.iter_mut().zip(&nx[..c]).zip(weight).zip(bias) {
            *v += b + w * (*v * n);
        }
    }
}

/// [`sumsq_channels_f32_scalar`] on NEON: 4 channels per lane group, pixels in order (f32
/// FMA), the range's last `len mod 4` channels in scalar f32.
#[cfg(target_arch = "aarch64")]
pub fn sumsq_channels_f32_neon(
    x: &[f32],
    pixels: usize,
    c: usize,
    ch: Range<usize>,
    out: &mut [f32],
) {
    use core::arch::aarch64::*;
    assert!(x.len() >= pixels * c && ch.end <= c && out.len() >= ch.len());
    let n4 = ch.len() / 4 * 4;
    // Eight 4-channel groups at a time: eight independent FMA chains (one chain is bound by the
    // FMA's latency) and 128 contiguous bytes per pixel; each channel is still summed over the
    // pixels in order, so the sums are those of the one-group loop below, bit for bit.
    let n32 = ch.len() / 32 * 32;
    for i in (0..n32).step_by(32) {
        let j = ch.start + i;
        // SAFETY: channels j..j+32 ≤ ch.end ≤ c of every pixel, and out[i..i+32].
        unsafe {
            let mut a = [vdupq_n_f32(0.0); 8];
            for p in 0..pixels {
                let x = x.as_ptr().add(p * c + j);
                for (g, a) in a.iter_mut().enumerate() {
                    let v = vld1q_f32(x.add(4 * g));
                    *a = vfmaq_f32(*a, v, v);
                }
            }
            for (g, a) in a.iter().enumerate() {
                vst1q_f32(out.as_mut_ptr().add(i + 4 * g), *a);
            }
        }
    }
    for i in (n32..n4).step_by(4) {
        let j = ch.start + i;
        // SAFETY: channels j..j+4 ≤ ch.end ≤ c of every pixel, and out[i..i+4].
        unsafe {
            let mut a = vdupq_n_f32(0.0);
            for p in 0..pixels {
                let v = vld1q_f32(x.as_ptr().add(p * c + j));
                a = vfmaq_f32(a, v, v);
            }
            vst1q_f32(out.as_mut_ptr().add(i), a);
        }
    }
    for (o, j) in out[n4..ch.len()].iter_mut().zip(ch.start + n4..ch.end) {
        *o = (0..pixels)
            .map(|p| x[p * c + j] * x[p * c + j])
            .fold(0.0, |a, v| a + v);
    }
}

/// [`grn_scale_f32_scalar`] on NEON: `x·(1 + γ·nx) + β` per 4 lanes (the same formula as
/// [`grn_apply_f32_neon`], its factor formed per element since `nx` is shared read-only).
#[cfg(target_arch = "aarch64")]
pub fn grn_scale_f32_neon(
    x: &mut [f32],
    pixels: usize,
    c: usize,
    weight: &[f32],
    bias: &[f32],
    nx: &[f32],
) {
    use core::arch::aarch64::*;
    assert!(x.len() >= pixels * c && weight.len() >= c && bias.len() >= c && nx.len() >= c);
    let c4 = c / 4 * 4;
    for px in x[..pixels * c].chunks_exact_mut(c) {
        // SAFETY: lanes j..j+4 ≤ c4 ≤ c of the pixel, `weight`, `bias`, `nx` (asserted).
        unsafe {
            let one = vdupq_n_f32(1.0);
            let mut apply = |j: usize| {
                let v = vld1q_f32(px.as_ptr().add(j));
                let a = vfmaq_f32(
                    one,
                    vld1q_f32(weight.as_ptr().add(j)),
                    vld1q_f32(nx.as_ptr().add(j)),
                );
                let b = vld1q_f32(bias.as_ptr().add(j));
                vst1q_f32(px.as_mut_ptr().add(j), vfmaq_f32(b, v, a));
            };
            crate::ops::each_vec4_by2(c4, &mut apply);
        }
        for j in c4..c {
            px[j] = px[j] * (1.0 + weight[j] * nx[j]) + bias[j];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
pub use x86::{grn_scale_f32_avx2, sumsq_channels_f32_avx2};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::*;
    use std::vec;

    #[test]
    fn matches_f64_formula() {
        let mut rng = Rng::new(5);
        for &(p, c) in &[(1, 1), (1, 4), (49, 1280), (9, 100), (3136, 8)] {
            let x = rng.vec(p * c, 2.0);
            let w = rng.vec(c, 1.0);
            let b = rng.vec(c, 1.0);
            let mut y = x.clone();
            let mut scratch = vec![0.0; c];
            grn_f32_scalar(&mut y, p, c, &w, &b, 1e-6, &mut scratch);
            let g: std::vec::Vec<f64> = (0..c)
                .map(|j| {
                    (0..p)
                        .map(|i| (x[i * c + j] as f64).powi(2))
                        .sum::<f64>()
                        .sqrt()
                })
                .collect();
            let mean = g.iter().sum::<f64>() / c as f64;
            let want: std::vec::Vec<f32> = (0..p * c)
                .map(|i| {
                    let j = i % c;
                    let v = x[i] as f64;
                    (v + b[j] as f64 + w[j] as f64 * v * g[j] / (mean + 1e-6)) as f32
                })
                .collect();
            assert!(max_rel_err(&y, &want) < 2e-6, "{p} {c}");
        }
    }
}

/// NEON GRN: the spatial sum of squares accumulated in f32 vectors (pixel-major, streaming the
/// hidden buffer once), then `y = x·(1 + w·nx) + b` with the per-channel factor precomputed, one
/// FMA per value. Same contract as [`grn_f32_scalar`]; agrees with it within f32 rounding.
#[cfg(target_arch = "aarch64")]
pub fn grn_f32_neon(
    x: &mut [f32],
    pixels: usize,
    c: usize,
    weight: &[f32],
    bias: &[f32],
    eps: f32,
    norms: &mut [f32],
) {
    assert!(x.len() >= pixels * c && weight.len() >= c && bias.len() >= c && norms.len() >= c);
    let norms = &mut norms[..c];
    norms.fill(0.0);
    let c4 = c / 4 * 4;
    for px in x[..pixels * c].chunks_exact(c) {
        // SAFETY: px and norms hold c ≥ c4 values; 4-lane accesses stay below c4.
        unsafe {
            use core::arch::aarch64::*;
            let mut j = 0;
            while j < c4 {
                let v = vld1q_f32(px.as_ptr().add(j));
                let a = vld1q_f32(norms.as_ptr().add(j));
                vst1q_f32(norms.as_mut_ptr().add(j), vfmaq_f32(a, v, v));
                j += 4;
            }
        }
        for j in c4..c {
            norms[j] += px[j] * px[j];
        }
    }
    grn_apply_f32_neon(x, pixels, c, weight, bias, eps, norms);
}

/// NEON form of [`grn_apply_f32_scalar`]: `y = x·(1 + w·nx) + b`, one FMA per value.
#[cfg(target_arch = "aarch64")]
pub fn grn_apply_f32_neon(
    x: &mut [f32],
    pixels: usize,
    c: usize,
    weight: &[f32],
    bias: &[f32],
    eps: f32,
    norms: &mut [f32],
) {
    assert!(x.len() >= pixels * c && weight.len() >= c && bias.len() >= c && norms.len() >= c);
    let norms = &mut norms[..c];
    let c4 = c / 4 * 4;
    normalized_norms(norms, eps);
    for (nv, &w) in norms.iter_mut().zip(weight) {
        *nv = 1.0 + w * *nv;
    }
    for px in x[..pixels * c].chunks_exact_mut(c) {
        // SAFETY: as above.
        unsafe {
            use core::arch::aarch64::*;
            let mut apply = |j: usize| {
                let v = vld1q_f32(px.as_ptr().add(j));
                let a = vld1q_f32(norms.as_ptr().add(j));
                let b = vld1q_f32(bias.as_ptr().add(j));
                vst1q_f32(px.as_mut_ptr().add(j), vfmaq_f32(b, v, a));
            };
            crate::ops::each_vec4_by2(c4, &mut apply);
        }
        for j in c4..c {
            px[j] = px[j] * norms[j] + bias[j];
        }
    }
}

#[cfg(all(test, target_arch = "aarch64"))]
mod neon_tests {
    use super::*;
    use crate::ops::testutil::*;
    use std::vec;

    #[test]
    fn neon_matches_reference_on_random_shapes() {
        let mut rng = Rng::new(44);
        let mut shapes = vec![(1, 1), (1, 4), (49, 1280), (3136, 160), (9, 13), (7, 6)];
        for _ in 0..20 {
            shapes.push((
                1 + rng.next_u64() as usize % 60,
                1 + rng.next_u64() as usize % 70,
            ));
        }
        for (p, c) in shapes {
            let x = rng.vec(p * c, 2.0);
            let w = rng.vec(c, 1.0);
            let b = rng.vec(c, 1.0);
            let (mut want, mut got) = (x.clone(), x.clone());
            let mut s = vec![0.0; c];
            grn_f32_scalar(&mut want, p, c, &w, &b, 1e-6, &mut s);
            grn_f32_neon(&mut got, p, c, &w, &b, 1e-6, &mut s);
            assert!(
                max_rel_err(&got, &want) <= 1e-5,
                "{p}x{c}: {}",
                max_rel_err(&got, &want)
            );
        }
    }
}

/// The channel-range sums and the normalized update (the runtime's split of GRN) against the
/// whole-tensor references, for every kernel set this target has.
#[cfg(test)]
mod split_tests {
    use super::*;
    use crate::ops::testutil::*;
    use std::vec;

    type Sumsq = fn(&[f32], usize, usize, Range<usize>, &mut [f32]);
    type Scale = fn(&mut [f32], usize, usize, &[f32], &[f32], &[f32]);

    fn sets() -> std::vec::Vec<(&'static str, Sumsq, Scale)> {
        #[allow(unused_mut)]
        let mut v: std::vec::Vec<(&'static str, Sumsq, Scale)> =
            vec![("scalar", sumsq_channels_f32_scalar, grn_scale_f32_scalar)];
        #[cfg(target_arch = "aarch64")]
        v.push(("neon", sumsq_channels_f32_neon, grn_scale_f32_neon));
        #[cfg(target_arch = "x86_64")]
        if crate::cpu::X86Features::get().avx2 {
            v.push(("avx2", sumsq_channels_f32_avx2, grn_scale_f32_avx2));
        }
        v
    }

    #[test]
    fn channel_ranges_and_normalized_update_match_the_references() {
        let mut rng = Rng::new(77);
        for (name, sumsq, scale) in sets() {
            for (p, c) in [(1, 1), (3, 7), (49, 1280), (3136, 160), (5, 13), (9, 40)] {
                let x = rng.vec(p * c, 2.0);
                let (w, b) = (rng.vec(c, 1.0), rng.vec(c, 1.0));
                let mut want = vec![0f32; c];
                sumsq_f32_scalar(&x, p, c, &mut want);
                // In channel ranges of 32 (the runtime's split) and all at once.
                let mut got = vec![0f32; c];
                for c0 in (0..c).step_by(32) {
                    let r = c0..(c0 + 32).min(c);
                    sumsq(&x, p, c, r.clone(), &mut got[r]);
                }
                let scale_err = (p as f32).sqrt() * 1e-6;
                assert!(
                    max_rel_err(&got, &want) <= scale_err.max(1e-6),
                    "{name} {p}x{c} sumsq"
                );
                let mut all = vec![0f32; c];
                sumsq(&x, p, c, 0..c, &mut all);
                assert!(
                    max_rel_err(&all, &want) <= scale_err.max(1e-6),
                    "{name} {p}x{c} sumsq all"
                );
                // The update with normalized norms equals the whole-tensor apply.
                let mut nx = want.clone();
                normalized_norms(&mut nx, 1e-6);
                let (mut y_want, mut y_got) = (x.clone(), x.clone());
                let mut norms = want.clone();
                grn_apply_f32_scalar(&mut y_want, p, c, &w, &b, 1e-6, &mut norms);
                scale(&mut y_got, p, c, &w, &b, &nx);
                assert!(max_rel_err(&y_got, &y_want) <= 1e-6, "{name} {p}x{c} scale");
            }
            std::println!("grn split {name}: ran");
        }
    }
}
