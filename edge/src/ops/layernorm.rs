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
