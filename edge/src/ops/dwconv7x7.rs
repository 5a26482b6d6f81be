//! Depthwise 7×7 convolution, stride 1, zero padding 3, over NHWC. Weights are stored
//! `[7][7][C]` so that each tap is a contiguous run of channels (vector lanes on SIMD).

/// Kernel size.
pub const K: usize = 7;
/// Padding on each side.
pub const PAD: usize = 3;

/// Packs PyTorch's `[C][1][7][7]` weights into `[7][7][C]`.
pub fn pack_dw(cikk: &[f32], c: usize, out: &mut [f32]) {
    for ch in 0..c {
        for t in 0..K * K {
            out[t * c + ch] = cikk[ch * K * K + t];
        }
    }
}

/// `out[y][x][c] = bias[c] + Σ_{ky,kx} in[y+ky−3][x+kx−3][c] · w[ky][kx][c]`, taps outside the
/// image contributing zero. Accumulation order: bias, then taps row by row.
pub fn dwconv7x7_f32_scalar(
    input: &[f32],
    h: usize,
    w: usize,
    c: usize,
    weight: &[f32],
    bias: &[f32],
    out: &mut [f32],
) {
    for y in 0..h {
        let ky0 = PAD.saturating_sub(y);
        let ky1 = K.min(h + PAD - y);
        for x in 0..w {
            let kx0 = PAD.saturating_sub(x);
            let kx1 = K.min(w + PAD - x);
            let acc = &mut out[(y * w + x) * c..][..c];
            acc.copy_from_slice(&bias[..c]);
            for ky in ky0..ky1 {
                let iy = y + ky - PAD;
                for kx in kx0..kx1 {
                    let ix = x + kx - PAD;
                    let src = &input[(iy * w + ix) * c..][..c];
                    let wt = &weight[(ky * K + kx) * c..][..c];
                    for ((a, &v), &k) in acc.iter_mut().zip(src).zip(wt) {
                        *a += v * k;
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
    fn matches_naive_padded_convolution() {
        let mut rng = Rng::new(3);
        for &(h, w, c) in &[
            (1, 1, 1),
            (1, 1, 5),
            (7, 7, 40),
            (3, 9, 13),
            (14, 14, 8),
            (8, 2, 4),
        ] {
            let x = rng.vec(h * w * c, 1.0);
            let wt_t = rng.vec(c * 49, 1.0);
            let b = rng.vec(c, 1.0);
            let mut wt = vec![0.0; wt_t.len()];
            pack_dw(&wt_t, c, &mut wt);
            let mut y = vec![0.0; h * w * c];
            dwconv7x7_f32_scalar(&x, h, w, c, &wt, &b, &mut y);
            let mut want = vec![0.0f32; y.len()];
            for yy in 0..h as isize {
                for xx in 0..w as isize {
                    for ch in 0..c {
                        let mut s = b[ch] as f64;
                        for ky in 0..7isize {
                            for kx in 0..7isize {
                                let (iy, ix) = (yy + ky - 3, xx + kx - 3);
                                if iy >= 0 && ix >= 0 && iy < h as isize && ix < w as isize {
                                    s += x[((iy as usize) * w + ix as usize) * c + ch] as f64
                                        * wt_t[ch * 49 + (ky * 7 + kx) as usize] as f64;
                                }
                            }
                        }
                        want[(yy as usize * w + xx as usize) * c + ch] = s as f32;
                    }
                }
            }
            assert!(max_rel_err(&y, &want) < 1e-5, "{h}x{w}x{c}");
        }
    }
}
