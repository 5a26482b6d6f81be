//! Non-overlapping k×k / stride k convolution over NHWC: the stem (4×4/s4, 3→C0) and the
//! downsample layers (2×2/s2, C→2C). Weights are stored HWIO (`[kh][kw][cin][cout]`), so the
//! inner loop runs over contiguous output channels.

/// Packs PyTorch's OIHW `[cout][cin][k][k]` weights into HWIO `[k][k][cin][cout]`.
pub fn pack_hwio(oihw: &[f32], cout: usize, cin: usize, k: usize, out: &mut [f32]) {
    for o in 0..cout {
        for i in 0..cin {
            for y in 0..k {
                for x in 0..k {
                    out[((y * k + x) * cin + i) * cout + o] = oihw[((o * cin + i) * k + y) * k + x];
                }
            }
        }
    }
}

/// `out[oy][ox][co] = bias[co] + Σ_{ky,kx,ci} in[k·oy+ky][k·ox+kx][ci] · w[ky][kx][ci][co]`.
/// `input` is `h×w×cin` (h, w multiples of k); `out` is `(h/k)×(w/k)×cout`.
#[allow(clippy::too_many_arguments)]
pub fn patch_conv_f32_scalar(
    input: &[f32],
    h: usize,
    w: usize,
    cin: usize,
    k: usize,
    weight: &[f32],
    bias: &[f32],
    cout: usize,
    out: &mut [f32],
) {
    let (oh, ow) = (h / k, w / k);
    for oy in 0..oh {
        for ox in 0..ow {
            let acc = &mut out[(oy * ow + ox) * cout..][..cout];
            acc.copy_from_slice(&bias[..cout]);
            for ky in 0..k {
                let row = &input[((oy * k + ky) * w + ox * k) * cin..][..k * cin];
                for (kx_ci, &v) in row.iter().enumerate() {
                    let wrow = &weight[(ky * k * cin + kx_ci) * cout..][..cout];
                    for (a, &wv) in acc.iter_mut().zip(wrow) {
                        *a += v * wv;
                    }
                }
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
    fn matches_naive_nchw_convolution() {
        let mut rng = Rng::new(2);
        for &(h, w, cin, cout, k) in &[
            (8, 8, 3, 5, 4),
            (4, 12, 3, 40, 4),
            (6, 2, 7, 3, 2),
            (2, 2, 1, 1, 2),
        ] {
            let x = rng.vec(h * w * cin, 1.0);
            let oihw = rng.vec(cout * cin * k * k, 1.0);
            let b = rng.vec(cout, 1.0);
            let mut hwio = vec![0.0; oihw.len()];
            pack_hwio(&oihw, cout, cin, k, &mut hwio);
            let mut y = vec![0.0; (h / k) * (w / k) * cout];
            patch_conv_f32_scalar(&x, h, w, cin, k, &hwio, &b, cout, &mut y);
            let mut want = vec![0.0f32; y.len()];
            for oy in 0..h / k {
                for ox in 0..w / k {
                    for o in 0..cout {
                        let mut s = b[o] as f64;
                        for i in 0..cin {
                            for ky in 0..k {
                                for kx in 0..k {
                                    s += x[((oy * k + ky) * w + ox * k + kx) * cin + i] as f64
                                        * oihw[((o * cin + i) * k + ky) * k + kx] as f64;
                                }
                            }
                        }
                        want[(oy * (w / k) + ox) * cout + o] = s as f32;
                    }
                }
            }
            assert!(max_rel_err(&y, &want) < 1e-5);
        }
    }
}
