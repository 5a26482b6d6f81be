//! Global Response Normalization, per sample, exactly as timm's `GlobalResponseNorm`:
//! `g[c] = sqrt(Σ_hw x²)`, `nx[c] = g[c] / (mean_c g + eps)`, `y = x + (bias + weight·(x·nx))`.
//! The spatial sum of squares is accumulated in f64: it spans up to 56·56 terms and is the one
//! statistic whose rounding would otherwise reach every output of the block.

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
    let norms = &mut norms[..c];
    norms.fill(0.0);
    // Two passes in f64 would need 2·c scratch of f64; instead accumulate per channel in f64
    // chunk by chunk of 64 channels, keeping the scratch f32-sized.
    const CH: usize = 64;
    let mut acc = [0f64; CH];
    for c0 in (0..c).step_by(CH) {
        let cw = CH.min(c - c0);
        acc[..cw].fill(0.0);
        for px in x[..pixels * c].chunks_exact(c) {
            for (a, &v) in acc[..cw].iter_mut().zip(&px[c0..c0 + cw]) {
                *a += v as f64 * v as f64;
            }
        }
        for (nv, a) in norms[c0..c0 + cw].iter_mut().zip(&acc[..cw]) {
            *nv = libm::sqrt(*a) as f32;
        }
    }
    let mean = norms.iter().map(|&v| v as f64).sum::<f64>() as f32 / c as f32;
    let denom = mean + eps;
    for nv in norms.iter_mut() {
        *nv /= denom;
    }
    for px in x[..pixels * c].chunks_exact_mut(c) {
        for (((v, &nx), &w), &b) in px.iter_mut().zip(norms.iter()).zip(weight).zip(bias) {
            *v += b + w * (*v * nx);
        }
    }
}

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
