//! LayerNorm over the last dimension (timm's `LayerNorm` on channels-last data: biased variance,
//! ε inside the square root) and its gradients, one pass per row each way.
//!
//! Burn composes LayerNorm from about ten tensor ops (mean, centre, square, mean, add, sqrt,
//! divide, scale, shift), each a pass over memory with its own buffer, and the backward of each;
//! here the forward keeps each row's mean and 1/σ, and the backward is the closed form
//! `dx = (1/σ)·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))` with `ĝ = dy·γ`, `x̂ = (x − μ)/σ`.

use rayon::prelude::*;

/// Rows per rayon task.
const ROWS: usize = 64;

/// `y = (x − μ)/√(σ² + eps) · γ + β` per row of `c`; returns `y` and each row's `(μ, 1/√(σ²+eps))`.
pub fn layer_norm_f32(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    y: &mut [f32],
) -> Vec<[f32; 2]> {
    let c = gamma.len();
    assert!(c > 0 && beta.len() == c && x.len() == y.len() && x.len().is_multiple_of(c));
    let mut stats = vec![[0f32; 2]; x.len() / c];
    y.par_chunks_mut(ROWS * c)
        .zip(x.par_chunks(ROWS * c))
        .zip(stats.par_chunks_mut(ROWS))
        .for_each(|((y, x), st)| {
            for ((yr, xr), s) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)).zip(st) {
                let mean = xr.iter().sum::<f32>() / c as f32;
                let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / c as f32;
                let rstd = 1.0 / (var + eps).sqrt();
                for (((o, &v), &g), &b) in yr.iter_mut().zip(xr).zip(gamma).zip(beta) {
                    *o = (v - mean) * rstd * g + b;
                }
                *s = [mean, rstd];
            }
        });
    stats
}

/// Gradients of [`layer_norm_f32`]: `dx` into `dx`, and `(dγ, dβ)` returned.
pub fn layer_norm_backward_f32(
    x: &[f32],
    gamma: &[f32],
    stats: &[[f32; 2]],
    dy: &[f32],
    dx: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let c = gamma.len();
    assert!(c > 0 && x.len() == dy.len() && x.len() == dx.len() && x.len() == stats.len() * c);
    let partials = dx
        .par_chunks_mut(ROWS * c)
        .zip(x.par_chunks(ROWS * c))
        .zip(dy.par_chunks(ROWS * c))
        .zip(stats.par_chunks(ROWS))
        .map(|(((dx, x), dy), st)| {
            // [dγ | dβ] of these rows.
            let mut acc = vec![0f32; 2 * c];
            let (dg, db) = acc.split_at_mut(c);
            for (((dxr, xr), dyr), &[mean, rstd]) in dx
                .chunks_exact_mut(c)
                .zip(x.chunks_exact(c))
                .zip(dy.chunks_exact(c))
                .zip(st)
            {
                let (mut sum_g, mut sum_gx) = (0f32, 0f32);
                for (((&v, &d), &g), (dgk, dbk)) in xr
                    .iter()
                    .zip(dyr)
                    .zip(gamma)
                    .zip(dg.iter_mut().zip(db.iter_mut()))
                {
                    let xh = (v - mean) * rstd;
                    let gh = d * g;
                    sum_g += gh;
                    sum_gx += gh * xh;
                    *dgk += d * xh;
                    *dbk += d;
                }
                let (a, b) = (sum_g / c as f32, sum_gx / c as f32);
                for (((o, &v), &d), &g) in dxr.iter_mut().zip(xr).zip(dyr).zip(gamma) {
                    let xh = (v - mean) * rstd;
                    *o = rstd * (d * g - a - xh * b);
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

    /// LayerNorm of one row in f64.
    fn ln64(x: &[f64], g: &[f64], b: &[f64], eps: f64) -> Vec<f64> {
        let c = x.len() as f64;
        let m = x.iter().sum::<f64>() / c;
        let v = x.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / c;
        x.iter()
            .zip(g.iter().zip(b))
            .map(|(a, (g, b))| (a - m) / (v + eps).sqrt() * g + b)
            .collect()
    }

    /// Values against f64, gradients against central differences of L = Σ w·LN(x) in f64.
    #[test]
    fn values_and_gradients_match_f64() {
        let mut rng = SplitMix64::new(31);
        for (rows, c) in [(1usize, 1usize), (3, 5), (130, 40), (7, 320)] {
            let n = rows * c;
            let mut v = |scale: f64, shift: f64| -> Vec<f32> {
                (0..n)
                    .map(|_| (rng.next_normal() * scale + shift) as f32)
                    .collect()
            };
            let (x, w) = (v(2.0, 0.5), v(1.0, 0.0));
            let g: Vec<f32> = w[..c].iter().map(|a| 1.0 + 0.3 * a).collect();
            let b: Vec<f32> = (0..c).map(|k| 0.1 * (k % 3) as f32 - 0.1).collect();
            let eps = 1e-6;
            let mut y = vec![0f32; n];
            let stats = layer_norm_f32(&x, &g, &b, eps, &mut y);
            let f = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
            let (x64, g64, b64) = (f(&x), f(&g), f(&b));
            let loss = |x: &[f64], g: &[f64], b: &[f64]| -> f64 {
                x.chunks(c)
                    .zip(w.chunks(c))
                    .map(|(xr, wr)| {
                        ln64(xr, g, b, eps as f64)
                            .iter()
                            .zip(wr)
                            .map(|(a, &w)| a * w as f64)
                            .sum::<f64>()
                    })
                    .sum()
            };
            for (r, xr) in x64.chunks(c).enumerate() {
                for (k, want) in ln64(xr, &g64, &b64, eps as f64).iter().enumerate() {
                    assert!((y[r * c + k] as f64 - want).abs() < 1e-5, "y {rows}x{c}");
                }
            }
            let mut dx = vec![0f32; n];
            let (dg, db) = layer_norm_backward_f32(&x, &g, &stats, &w, &mut dx);
            let num = |which: usize, i: usize| {
                super::super::central_difference(loss, [&x64, &g64, &b64], which, i, 1e-5)
            };
            for i in (0..n).step_by(n.div_ceil(50)) {
                let want = num(0, i);
                assert!(
                    (dx[i] as f64 - want).abs() < 1e-3 * want.abs().max(1.0),
                    "dx[{i}] {rows}x{c}: {} vs {want}",
                    dx[i]
                );
            }
            for k in (0..c).step_by(c.div_ceil(20)) {
                let (wg, wb) = (num(1, k), num(2, k));
                assert!(
                    (dg[k] as f64 - wg).abs() < 1e-3 * wg.abs().max(1.0),
                    "dγ[{k}] {rows}x{c}"
                );
                assert!(
                    (db[k] as f64 - wb).abs() < 1e-3 * wb.abs().max(1.0),
                    "dβ[{k}] {rows}x{c}"
                );
            }
        }
    }
}
