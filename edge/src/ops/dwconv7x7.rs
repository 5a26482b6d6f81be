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

/// The depthwise conv with the block's LayerNorm fused, as the composition of references.
#[allow(clippy::too_many_arguments)]
pub fn dwconv7x7_ln_f32_scalar(
    input: &[f32],
    h: usize,
    w: usize,
    c: usize,
    weight: &[f32],
    bias: &[f32],
    ln: (&[f32], &[f32], f32),
    out: &mut [f32],
) {
    dwconv7x7_f32_scalar(input, h, w, c, weight, bias, out);
    crate::ops::layernorm::layernorm_f32_scalar(out, h * w, c, ln.0, ln.1, ln.2);
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

/// NEON depthwise 7×7 with the block's LayerNorm fused into the epilogue: each output pixel is
/// normalized while its channels are still in L1. Same contract as [`dwconv7x7_ln_f32_scalar`].
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
pub fn dwconv7x7_ln_f32_neon(
    input: &[f32],
    h: usize,
    w: usize,
    c: usize,
    weight: &[f32],
    bias: &[f32],
    ln: (&[f32], &[f32], f32),
    out: &mut [f32],
) {
    dwconv7x7_neon_impl(input, h, w, c, weight, bias, out, |px| {
        crate::ops::layernorm::layernorm_f32_neon(px, 1, c, ln.0, ln.1, ln.2)
    })
}

/// NEON depthwise 7×7: channels in vector lanes, 16 channels (4 independent accumulators) per
/// step, then 4, then a scalar tail. Border taps are excluded by the loop bounds computed once
/// per pixel, so the inner loop has no branch. Same contract as [`dwconv7x7_f32_scalar`].
#[cfg(target_arch = "aarch64")]
pub fn dwconv7x7_f32_neon(
    input: &[f32],
    h: usize,
    w: usize,
    c: usize,
    weight: &[f32],
    bias: &[f32],
    out: &mut [f32],
) {
    dwconv7x7_neon_impl(input, h, w, c, weight, bias, out, |_| {})
}

#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn dwconv7x7_neon_impl(
    input: &[f32],
    h: usize,
    w: usize,
    c: usize,
    weight: &[f32],
    bias: &[f32],
    out: &mut [f32],
    mut epilogue: impl FnMut(&mut [f32]),
) {
    assert!(
        input.len() >= h * w * c
            && out.len() >= h * w * c
            && weight.len() >= K * K * c
            && bias.len() >= c
    );
    for y in 0..h {
        let (ky0, ky1) = (PAD.saturating_sub(y), K.min(h + PAD - y));
        for x in 0..w {
            let (kx0, kx1) = (PAD.saturating_sub(x), K.min(w + PAD - x));
            let taps = neon::Taps {
                y,
                x,
                w,
                c,
                ky0,
                ky1,
                kx0,
                kx1,
            };
            let mut ch = 0;
            // SAFETY: channel ranges [ch, ch+16) / [ch, ch+4) lie inside c; taps inside the image
            // (bounds above); `out` pixel (y, x) is in bounds by the assertion.
            unsafe {
                macro_rules! run {
                    ($kernel:ident, $nb:literal) => {{
                        neon::$kernel::<$nb>(
                            input.as_ptr(),
                            weight.as_ptr(),
                            bias.as_ptr(),
                            out.as_mut_ptr(),
                            &taps,
                            ch,
                        );
                        ch += 4 * $nb;
                    }};
                }
                if ky1 - ky0 == K && kx1 - kx0 == K {
                    // Interior pixel: all 49 taps with constant trip counts (one branch per pixel).
                    while ch + 16 <= c {
                        run!(block_interior, 4);
                    }
                    if ch + 8 <= c {
                        run!(block_interior, 2);
                    }
                    if ch + 4 <= c {
                        run!(block_interior, 1);
                    }
                }
                while ch + 16 <= c {
                    run!(block, 4);
                }
                while ch + 4 <= c {
                    run!(block, 1);
                }
            }
            for ch in ch..c {
                let mut acc = bias[ch];
                for ky in ky0..ky1 {
                    for kx in kx0..kx1 {
                        acc += input[((y + ky - PAD) * w + x + kx - PAD) * c + ch]
                            * weight[(ky * K + kx) * c + ch];
                    }
                }
                out[(y * w + x) * c + ch] = acc;
            }
            epilogue(&mut out[(y * w + x) * c..][..c]);
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::{K, PAD};
    use core::arch::aarch64::*;

    #[derive(Clone, Copy)]
    pub(super) struct Taps {
        pub y: usize,
        pub x: usize,
        pub w: usize,
        pub c: usize,
        pub ky0: usize,
        pub ky1: usize,
        pub kx0: usize,
        pub kx1: usize,
    }

    /// [`block`] for a pixel whose 7×7 window lies inside the image: with the bounds constant
    /// after inlining, the 49 taps unroll.
    #[inline(always)]
    pub(super) unsafe fn block_interior<const NB: usize>(
        input: *const f32,
        weight: *const f32,
        bias: *const f32,
        out: *mut f32,
        t: &Taps,
        ch: usize,
    ) {
        let full = Taps {
            ky0: 0,
            ky1: K,
            kx0: 0,
            kx1: K,
            ..*t
        };
        // SAFETY: the caller guarantees every tap of the window lies inside the image.
        unsafe { block::<NB>(input, weight, bias, out, &full, ch) }
    }

    /// `NT` consecutive taps of one kernel row: input and weight advance by `c` per tap.
    #[inline(always)]
    unsafe fn row<const NB: usize, const NT: usize>(
        acc: &mut [float32x4_t; NB],
        ip: *const f32,
        wp: *const f32,
        c: usize,
    ) {
        // SAFETY: the caller passes NT valid taps from ip / wp, NB·4 channels each.
        unsafe {
            for tap in 0..NT {
                for (v, a) in acc.iter_mut().enumerate() {
                    *a = vfmaq_f32(
                        *a,
                        vld1q_f32(ip.add(tap * c + 4 * v)),
                        vld1q_f32(wp.add(tap * c + 4 * v)),
                    );
                }
            }
        }
    }

    /// `NB`·4 channels starting at `ch` for output pixel (y, x).
    #[inline(always)]
    pub(super) unsafe fn block<const NB: usize>(
        input: *const f32,
        weight: *const f32,
        bias: *const f32,
        out: *mut f32,
        t: &Taps,
        ch: usize,
    ) {
        // SAFETY: guaranteed by the caller (see the wrapper).
        unsafe {
            let mut acc = [vdupq_n_f32(0.0); NB];
            for (v, a) in acc.iter_mut().enumerate() {
                *a = vld1q_f32(bias.add(ch + 4 * v));
            }
            for ky in t.ky0..t.ky1 {
                let ip = input.add(((t.y + ky - PAD) * t.w + t.x + t.kx0 - PAD) * t.c + ch);
                let wp = weight.add((ky * K + t.kx0) * t.c + ch);
                // One jump per row to a fully unrolled run of the row's valid taps.
                match t.kx1 - t.kx0 {
                    7 => row::<NB, 7>(&mut acc, ip, wp, t.c),
                    6 => row::<NB, 6>(&mut acc, ip, wp, t.c),
                    5 => row::<NB, 5>(&mut acc, ip, wp, t.c),
                    4 => row::<NB, 4>(&mut acc, ip, wp, t.c),
                    3 => row::<NB, 3>(&mut acc, ip, wp, t.c),
                    2 => row::<NB, 2>(&mut acc, ip, wp, t.c),
                    1 => row::<NB, 1>(&mut acc, ip, wp, t.c),
                    _ => {}
                }
            }
            let o = out.add((t.y * t.w + t.x) * t.c + ch);
            for (v, a) in acc.iter().enumerate() {
                vst1q_f32(o.add(4 * v), *a);
            }
        }
    }
}

#[cfg(all(test, target_arch = "aarch64"))]
mod neon_tests {
    use super::*;
    use crate::ops::testutil::*;
    use std::vec;

    #[test]
    fn fused_layernorm_matches_reference() {
        let mut rng = Rng::new(47);
        for (h, w, c) in [
            (1, 1, 1),
            (7, 7, 320),
            (14, 14, 160),
            (56, 56, 40),
            (5, 9, 13),
        ] {
            let x = rng.vec(h * w * c, 1.0);
            let wt = rng.vec(49 * c, 0.3);
            let b = rng.vec(c, 0.3);
            let (lw, lb) = (rng.vec(c, 1.0), rng.vec(c, 1.0));
            let (mut want, mut got) = (vec![0.0; h * w * c], vec![0.0; h * w * c]);
            dwconv7x7_ln_f32_scalar(&x, h, w, c, &wt, &b, (&lw, &lb, 1e-6), &mut want);
            dwconv7x7_ln_f32_neon(&x, h, w, c, &wt, &b, (&lw, &lb, 1e-6), &mut got);
            // c = 1: LN of one value is its bias exactly; elsewhere relative to |y| ~ 1.
            assert!(
                max_rel_err(&got, &want) <= 2e-5,
                "{h}x{w}x{c}: {}",
                max_rel_err(&got, &want)
            );
        }
    }

    #[test]
    fn neon_matches_reference_on_random_shapes() {
        let mut rng = Rng::new(41);
        let mut shapes = vec![
            (1, 1, 1),
            (1, 1, 16),
            (7, 7, 40),
            (7, 7, 13),
            (14, 14, 160),
            (56, 56, 40),
            (3, 2, 21),
        ];
        for _ in 0..30 {
            shapes.push((
                1 + rng.next_u64() as usize % 12,
                1 + rng.next_u64() as usize % 12,
                1 + rng.next_u64() as usize % 45,
            ));
        }
        for (h, w, c) in shapes {
            let x = rng.vec(h * w * c, 1.0);
            let wt = rng.vec(49 * c, 1.0);
            let b = rng.vec(c, 1.0);
            let mut want = vec![0.0; h * w * c];
            let mut got = vec![0.0; h * w * c];
            dwconv7x7_f32_scalar(&x, h, w, c, &wt, &b, &mut want);
            dwconv7x7_f32_neon(&x, h, w, c, &wt, &b, &mut got);
            let err = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs() / 7.0)
                .fold(0.0, f32::max);
            assert!(err <= 1e-6, "{h}x{w}x{c}: {err}");
        }
    }
}
