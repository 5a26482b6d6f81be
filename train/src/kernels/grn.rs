//! Global response normalization on channels-last data (timm's `GlobalResponseNorm`) and its
//! gradients, two passes over the activation each way.
//!
//! Per image `n` and channel `c`: `g = ‖x[n,·,·,c]‖₂` (the sum of squares clamped at
//! [`crate::model::GRN_SUMSQ_FLOOR`] below, whose gradient is then zero), `r = g / (mean_c g + ε)`,
//! `y = x·(1 + γ·r) + β`. Backward, with `P = Σ_hw dy·x`, `a = γ·P` (the gradient reaching `r`):
//! `∂L/∂g = a/(m+ε) − mean_c(a·g)/(m+ε)²`, `dx = dy·(1 + γ·r) + ∂L/∂g · x/g`, `dγ = Σ_n r·P`,
//! `dβ = Σ dy`. Burn composes this from a dozen tensor ops over the widest activation of the
//! block (4C channels), forward and backward.

use rayon::prelude::*;

/// Forward: `x`, `y` `[n, hw, c]` (channels last); returns each image's `g` `[n, c]`.
pub fn grn_f32(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    [n, hw, c]: [usize; 3],
    floor: f32,
    eps: f32,
    y: &mut [f32],
) -> Vec<f32> {
    assert!(x.len() == n * hw * c && y.len() == x.len() && gamma.len() == c && beta.len() == c);
    let mut norms = vec![0f32; n * c];
    if x.is_empty() {
        return norms;
    }
    y.par_chunks_mut(hw * c)
        .zip(x.par_chunks(hw * c))
        .zip(norms.par_chunks_mut(c))
        .for_each(|((y, x), g)| {
            for row in x.chunks_exact(c) {
                for (s, &v) in g.iter_mut().zip(row) {
                    *s += v * v;
                }
            }
            g.iter_mut().for_each(|s| *s = s.max(floor).sqrt());
            let denom = g.iter().sum::<f32>() / c as f32 + eps;
            let scale: Vec<f32> = g
                .iter()
                .zip(gamma)
                .map(|(g, w)| 1.0 + w * (g / denom))
                .collect();
            for (yr, xr) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
                for (((o, &v), &s), &b) in yr.iter_mut().zip(xr).zip(&scale).zip(beta) {
                    *o = v * s + b;
                }
            }
        });
    norms
}

/// Backward of [`grn_f32`] given its `norms`: `dx` into `dx`, `(dγ, dβ)` returned.
#[allow(clippy::too_many_arguments)]
pub fn grn_backward_f32(
    x: &[f32],
    gamma: &[f32],
    norms: &[f32],
    dy: &[f32],
    [n, hw, c]: [usize; 3],
    floor: f32,
    eps: f32,
    dx: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    assert!(x.len() == n * hw * c && dy.len() == x.len() && dx.len() == x.len());
    assert!(gamma.len() == c && norms.len() == n * c);
    if x.is_empty() {
        return (vec![0.0; c], vec![0.0; c]);
    }
    let partials = dx
        .par_chunks_mut(hw * c)
        .zip(x.par_chunks(hw * c))
        .zip(dy.par_chunks(hw * c))
        .zip(norms.par_chunks(c))
        .map(|(((dx, x), dy), g)| {
            // [dγ | dβ] of this image.
            let mut acc = vec![0f32; 2 * c];
            let (dgam, dbet) = acc.split_at_mut(c);
            let mut p = vec![0f32; c];
            for (xr, dr) in x.chunks_exact(c).zip(dy.chunks_exact(c)) {
                for (((pk, bk), &v), &d) in p.iter_mut().zip(dbet.iter_mut()).zip(xr).zip(dr) {
                    *pk += d * v;
                    *bk += d;
                }
            }
            let denom = g.iter().sum::<f32>() / c as f32 + eps;
            // a = γ·P; mean_c(a·g)
            let mean_ag = p
                .iter()
                .zip(gamma)
                .zip(g)
                .map(|((p, w), g)| p * w * g)
                .sum::<f32>()
                / c as f32;
            // dx = dy·scale + coef·x, coef = ∂L/∂g / g (0 where the sum of squares was clamped).
            let mut scale = vec![0f32; c];
            let mut coef = vec![0f32; c];
            for k in 0..c {
                let r = g[k] / denom;
                scale[k] = 1.0 + gamma[k] * r;
                dgam[k] = r * p[k];
                let dg = gamma[k] * p[k] / denom - mean_ag / (denom * denom);
                coef[k] = if g[k] * g[k] > floor { dg / g[k] } else { 0.0 };
            }
            for ((o, xr), dr) in dx
                .chunks_exact_mut(c)
                .zip(x.chunks_exact(c))
                .zip(dy.chunks_exact(c))
            {
                for ((((o, &v), &d), &s), &q) in o.iter_mut().zip(xr).zip(dr).zip(&scale).zip(&coef)
                {
                    *o = d * s + q * v;
                }
            }
            acc
        });
    super::sum_scale_shift_grads(partials, c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// GRN in f64 by its definition (timm's formula).
    fn grn64(x: &[f64], gamma: &[f64], beta: &[f64], [n, hw, c]: [usize; 3]) -> Vec<f64> {
        let mut y = vec![0f64; x.len()];
        for b in 0..n {
            let img = &x[b * hw * c..(b + 1) * hw * c];
            let g: Vec<f64> = (0..c)
                .map(|k| (0..hw).map(|i| img[i * c + k].powi(2)).sum::<f64>().sqrt())
                .collect();
            let m = g.iter().sum::<f64>() / c as f64 + 1e-6;
            for i in 0..hw {
                for k in 0..c {
                    let v = img[i * c + k];
                    y[b * hw * c + i * c + k] = v + gamma[k] * (v * g[k] / m) + beta[k];
                }
            }
        }
        y
    }

    /// Values against f64; gradients against central differences of L = Σ w·GRN(x) in f64,
    /// including a channel that is zero everywhere in one image (an FCMAE-masked channel).
    #[test]
    fn values_and_gradients_match_f64() {
        let mut rng = SplitMix64::new(41);
        for shape in [[1usize, 1, 1], [2, 4, 3], [3, 16, 24], [2, 5, 160]] {
            let [n, hw, c] = shape;
            let len = n * hw * c;
            let mut x: Vec<f32> = (0..len).map(|_| rng.next_normal() as f32).collect();
            if c > 2 {
                for i in 0..hw {
                    x[i * c + 1] = 0.0;
                }
            }
            let w: Vec<f32> = (0..len).map(|_| rng.next_normal() as f32).collect();
            let gamma: Vec<f32> = (0..c).map(|k| 0.5 - 0.1 * (k % 5) as f32).collect();
            let beta: Vec<f32> = (0..c).map(|k| 0.05 * (k % 3) as f32).collect();
            let floor = crate::model::GRN_SUMSQ_FLOOR;
            let mut y = vec![0f32; len];
            let norms = grn_f32(&x, &gamma, &beta, shape, floor, 1e-6, &mut y);
            let f = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
            let (x64, g64, b64) = (f(&x), f(&gamma), f(&beta));
            for (a, b) in y.iter().zip(grn64(&x64, &g64, &b64, shape)) {
                assert!(
                    (*a as f64 - b).abs() < 1e-5 * b.abs().max(1.0),
                    "{shape:?} y"
                );
            }
            let mut dx = vec![0f32; len];
            let (dg, db) = grn_backward_f32(&x, &gamma, &norms, &w, shape, floor, 1e-6, &mut dx);
            let loss = |x: &[f64], g: &[f64], b: &[f64]| {
                grn64(x, g, b, shape)
                    .iter()
                    .zip(&w)
                    .map(|(a, &w)| a * w as f64)
                    .sum::<f64>()
            };
            let num = |which: usize, i: usize| {
                super::super::central_difference(loss, [&x64, &g64, &b64], which, i, 1e-6)
            };
            for i in (0..len).step_by(len.div_ceil(60)) {
                // The zeroed channel: ‖·‖ has no derivative at 0; PyTorch's norm backward gives
                // 0 there, so dx is dy·(1 + γ·0) = dy.
                if c > 2 && i < hw * c && i % c == 1 {
                    assert!(
                        (dx[i] - w[i]).abs() < 1e-6,
                        "{shape:?} dx[{i}] at the zero channel"
                    );
                    continue;
                }
                let want = num(0, i);
                assert!(
                    (dx[i] as f64 - want).abs() < 1e-3 * want.abs().max(1.0),
                    "{shape:?} dx[{i}]: {} vs {want}",
                    dx[i]
                );
            }
            for k in 0..c {
                let (wg, wb) = (num(1, k), num(2, k));
                assert!(
                    (dg[k] as f64 - wg).abs() < 1e-3 * wg.abs().max(1.0),
                    "{shape:?} dγ[{k}]"
                );
                assert!(
                    (db[k] as f64 - wb).abs() < 1e-3 * wb.abs().max(1.0),
                    "{shape:?} dβ[{k}]"
                );
            }
        }
    }
}
