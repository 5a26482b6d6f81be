//! LayerNorm over channels of NHWC pixels (timm's LayerNorm2d): biased variance, eps inside the
//! square root, then the per-channel affine.

/// In place over `pixels` rows of `c` channels. Two passes per pixel (mean, then centred
/// variance) so that large means do not cancel.
pub fn layernorm_f32_scalar(
    x: &mut [f32],
    pixels: usize,
    c: usize,
    weight: &[f32],
    bias: &[f32],
    eps: f32,
) {
    let inv_c = 1.0 / c as f32;
    for px in x[..pixels * c].chunks_exact_mut(c) {
        let mean = px.iter().sum::<f32>() * inv_c;
        let var = px.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() * inv_c;
        let rstd = 1.0 / libm::sqrtf(var + eps);
        for ((v, w), b) in px.iter_mut().zip(weight).zip(bias) {
            *v = (*v - mean) * rstd * w + b;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
pub use x86::layernorm_f32_avx2;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::*;

    #[test]
    fn matches_f64_formula() {
        let mut rng = Rng::new(1);
        for &(p, c) in &[(1, 1), (3, 7), (5, 40), (2, 320)] {
            let x = rng.vec(p * c, 3.0);
            let w = rng.vec(c, 1.0);
            let b = rng.vec(c, 1.0);
            let mut y = x.clone();
            layernorm_f32_scalar(&mut y, p, c, &w, &b, 1e-6);
            for i in 0..p {
                let row: std::vec::Vec<f64> =
                    x[i * c..(i + 1) * c].iter().map(|&v| v as f64).collect();
                let m = row.iter().sum::<f64>() / c as f64;
                let v = row.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / c as f64;
                for j in 0..c {
                    let want = (row[j] - m) / (v + 1e-6).sqrt() * w[j] as f64 + b[j] as f64;
                    assert!(
                        (y[i * c + j] as f64 - want).abs() < 1e-4 * want.abs().max(1.0),
                        "{p} {c} {j}"
                    );
                }
            }
        }
    }
}

/// NEON LayerNorm, per pixel: vector sums for the mean and the centred variance, then one
/// subtract, multiply and FMA per 4 values. Same contract as [`layernorm_f32_scalar`].
#[cfg(target_arch = "aarch64")]
pub fn layernorm_f32_neon(
    x: &mut [f32],
    pixels: usize,
    c: usize,
    weight: &[f32],
    bias: &[f32],
    eps: f32,
) {
    use core::arch::aarch64::*;
    assert!(x.len() >= pixels * c && weight.len() >= c && bias.len() >= c);
    let c4 = c / 4 * 4;
    let inv_c = 1.0 / c as f32;
    for px in x[..pixels * c].chunks_exact_mut(c) {
        // SAFETY: all 4-lane accesses are below c4 ≤ c = px.len() = the used part of weight/bias.
        unsafe {
            let p = px.as_mut_ptr();
            // Two vectors per iteration, two accumulators (halves the loop bookkeeping).
            let (mut s, mut s1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
            let mut j = 0;
            while j + 8 <= c4 {
                s = vaddq_f32(s, vld1q_f32(p.add(j)));
                s1 = vaddq_f32(s1, vld1q_f32(p.add(j + 4)));
                j += 8;
            }
            if j < c4 {
                s = vaddq_f32(s, vld1q_f32(p.add(j)));
            }
            let mut sum = vaddvq_f32(vaddq_f32(s, s1));
            for &v in &px[c4..] {
                sum += v;
            }
            let mean = sum * inv_c;
            let m = vdupq_n_f32(mean);
            let (mut s, mut s1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
            let mut j = 0;
            while j + 8 <= c4 {
                let d = vsubq_f32(vld1q_f32(p.add(j)), m);
                let d1 = vsubq_f32(vld1q_f32(p.add(j + 4)), m);
                s = vfmaq_f32(s, d, d);
                s1 = vfmaq_f32(s1, d1, d1);
                j += 8;
            }
            if j < c4 {
                let d = vsubq_f32(vld1q_f32(p.add(j)), m);
                s = vfmaq_f32(s, d, d);
            }
            let mut var = vaddvq_f32(vaddq_f32(s, s1));
            for &v in &px[c4..] {
                var += (v - mean) * (v - mean);
            }
            let rstd = 1.0 / libm::sqrtf(var * inv_c + eps);
            let r = vdupq_n_f32(rstd);
            let mut norm = |j: usize| {
                let t = vmulq_f32(vsubq_f32(vld1q_f32(p.add(j)), m), r);
                let y = vfmaq_f32(
                    vld1q_f32(bias.as_ptr().add(j)),
                    t,
                    vld1q_f32(weight.as_ptr().add(j)),
                );
                vst1q_f32(p.add(j), y);
            };
            crate::ops::each_vec4_by2(c4, &mut norm);
            for j in c4..c {
                px[j] = (px[j] - mean) * rstd * weight[j] + bias[j];
            }
        }
    }
}

#[cfg(all(test, target_arch = "aarch64"))]
mod neon_tests {
    use super::*;
    use crate::ops::testutil::*;

    #[test]
    fn neon_matches_reference_on_random_shapes() {
        let mut rng = Rng::new(45);
        let mut shapes = std::vec![(1, 1), (3, 3), (5, 40), (2, 320), (7, 13), (1, 1280)];
        for _ in 0..20 {
            shapes.push((
                1 + rng.next_u64() as usize % 20,
                1 + rng.next_u64() as usize % 90,
            ));
        }
        for (p, c) in shapes {
            let x = rng.vec(p * c, 3.0);
            let w = rng.vec(c, 1.0);
            let b = rng.vec(c, 1.0);
            let (mut want, mut got) = (x.clone(), x.clone());
            layernorm_f32_scalar(&mut want, p, c, &w, &b, 1e-6);
            layernorm_f32_neon(&mut got, p, c, &w, &b, 1e-6);
            assert!(
                max_rel_err(&got, &want) <= 1e-5,
                "{p}x{c}: {}",
                max_rel_err(&got, &want)
            );
        }
    }
}
