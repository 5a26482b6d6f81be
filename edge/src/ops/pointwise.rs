//! Pointwise (1×1) convolution as a GEMM over NHWC pixels: `out[p][n] = bias[n] + Σ_k in[p][k]·W[n][k]`.
//! Also the classifier (one pixel). Weights are pre-packed in panels of [`PANEL`] outputs,
//! `[ceil(N/8)][K][8]`, zero-padded: a micro-kernel streams one panel with unit stride while
//! broadcasting inputs, and the scalar loop below vectorises over the 8 lanes.

use crate::format::PANEL;

/// Packed length of an `n × k` weight matrix.
pub const fn packed_len(n: usize, k: usize) -> usize {
    n.div_ceil(PANEL) * k * PANEL
}

/// Packs row-major `[n][k]` (PyTorch `[out][in]`, or `[out][in][1][1]`) into panels.
pub fn pack_panels8(w: &[f32], n: usize, k: usize, out: &mut [f32]) {
    out[..packed_len(n, k)].fill(0.0);
    for j in 0..n {
        for i in 0..k {
            out[((j / PANEL) * k + i) * PANEL + j % PANEL] = w[j * k + i];
        }
    }
}

/// GEMM with bias. With `accumulate`, adds the result into `out` (the fused residual add of a
/// block's second pointwise); otherwise overwrites it. Accumulation order per output: bias (or
/// nothing), then k ascending, then (with `accumulate`) added to the previous value.
#[allow(clippy::too_many_arguments)]
pub fn pointwise_f32_scalar(
    input: &[f32],
    pixels: usize,
    k: usize,
    weight: &[f32],
    bias: &[f32],
    n: usize,
    out: &mut [f32],
    accumulate: bool,
) {
    for p in 0..pixels {
        let x = &input[p * k..][..k];
        let o = &mut out[p * n..][..n];
        for (panel, (oc, bc)) in o.chunks_mut(PANEL).zip(bias.chunks(PANEL)).enumerate() {
            let wp = &weight[panel * k * PANEL..][..k * PANEL];
            let mut acc = [0f32; PANEL];
            acc[..bc.len()].copy_from_slice(bc);
            for (&xv, wrow) in x.iter().zip(wp.chunks_exact(PANEL)) {
                for l in 0..PANEL {
                    acc[l] += xv * wrow[l];
                }
            }
            for (dst, a) in oc.iter_mut().zip(acc) {
                *dst = if accumulate { *dst + a } else { a };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::*;
    use std::vec;

    #[test]
    fn matches_naive_gemm_including_ragged_panels() {
        let mut rng = Rng::new(4);
        for &(p, k, n) in &[
            (1, 1, 1),
            (3, 5, 7),
            (49, 40, 160),
            (2, 160, 40),
            (1, 320, 1000),
            (5, 9, 17),
        ] {
            let x = rng.vec(p * k, 1.0);
            let w = rng.vec(n * k, 1.0);
            let b = rng.vec(n, 1.0);
            let mut wp = vec![0.0; packed_len(n, k)];
            pack_panels8(&w, n, k, &mut wp);
            let prev = rng.vec(p * n, 1.0);
            for accumulate in [false, true] {
                let mut y = prev.clone();
                pointwise_f32_scalar(&x, p, k, &wp, &b, n, &mut y, accumulate);
                let want: std::vec::Vec<f32> = (0..p * n)
                    .map(|i| {
                        let (pp, j) = (i / n, i % n);
                        let dot: f64 = (0..k)
                            .map(|q| x[pp * k + q] as f64 * w[j * k + q] as f64)
                            .sum();
                        (dot + b[j] as f64 + if accumulate { prev[i] as f64 } else { 0.0 }) as f32
                    })
                    .collect();
                assert!(max_rel_err(&y, &want) < 1e-5, "{p} {k} {n}");
            }
        }
    }
}
