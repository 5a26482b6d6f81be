//! Depthwise 7×7 convolution, stride 1, zero padding 3, over NHWC. Weights are stored
//! `[7][7][C]` so that each tap is a contiguous run of channels (vector lanes on SIMD).

use core::ops::Range;

/// Kernel size.
pub const K: usize = 7;
/// Padding on each side.
pub const PAD: usize = 3;

/// Packs PyTorch's `[C][1][7][7]` weights into `[7][7][C]`.
pub fn pack_dw<T: Copy>(cikk: &[T], c: usize, out: &mut [T]) {
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
    dwconv7x7_rows_f32_scalar(input, h, w, c, weight, bias, 0..h, out)
}

/// Output rows `rows` of [`dwconv7x7_f32_scalar`] (the input is the whole `h×w` map; `out`
/// holds only those rows): the form the runtime splits across workers, every kernel set's slot.
#[allow(clippy::too_many_arguments)]
pub fn dwconv7x7_rows_f32_scalar(
    input: &[f32],
    h: usize,
    w: usize,
    c: usize,
    weight: &[f32],
    bias: &[f32],
    rows: Range<usize>,
    out: &mut [f32],
) {
    for y in rows.clone() {
        let ky0 = PAD.saturating_sub(y);
        let ky1 = K.min(h + PAD - y);
        for x in 0..w {
            let kx0 = PAD.saturating_sub(x);
            let kx1 = K.min(w + PAD - x);
            let acc = &mut out[((y - rows.start) * w + x) * c..][..c];
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
    dwconv7x7_ln_rows_f32_scalar(input, h, w, c, weight, bias, ln, 0..h, out)
}

/// Output rows `rows` of [`dwconv7x7_ln_f32_scalar`] (`out` holds only those rows).
#[allow(clippy::too_many_arguments)]
pub fn dwconv7x7_ln_rows_f32_scalar(
    input: &[f32],
    h: usize,
    w: usize,
    c: usize,
    weight: &[f32],
    bias: &[f32],
    ln: (&[f32], &[f32], f32),
    rows: Range<usize>,
    out: &mut [f32],
) {
    let p = rows.len() * w;
    dwconv7x7_rows_f32_scalar(input, h, w, c, weight, bias, rows, out);
    crate::ops::layernorm::layernorm_f32_scalar(out, p, c, ln.0, ln.1, ln.2);
}

#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
pub use x86::{
    dwconv7x7_f32_avx2, dwconv7x7_f32_avx512, dwconv7x7_ln_f32_avx2, dwconv7x7_ln_f32_avx512,
    dwconv7x7_ln_rows_f32_avx2, dwconv7x7_ln_rows_f32_avx512, dwconv7x7_rows_f32_avx2,
    dwconv7x7_rows_f32_avx512,
};

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
    dwconv7x7_ln_rows_f32_neon(input, h, w, c, weight, bias, ln, 0..h, out)
}

/// Output rows `rows` of [`dwconv7x7_ln_f32_neon`] (`out` holds only those rows).
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
pub fn dwconv7x7_ln_rows_f32_neon(
    input: &[f32],
    h: usize,
    w: usize,
    c: usize,
    weight: &[f32],
    bias: &[f32],
    ln: (&[f32], &[f32], f32),
    rows: Range<usize>,
    out: &mut [f32],
) {
    dwconv7x7_neon_impl(input, h, w, c, weight, bias, rows, out, |px| {
        crate::ops::layernorm::layernorm_f32_neon(px, 1, c, ln.0, ln.1, ln.2)
    })
}

/// NEON depthwise 7×7: channels in vector lanes (4 per step, then a scalar tail), output
/// pixels in horizontal strips of 8 (then 4, 2, 1). Per kernel row, a strip keeps the 7 tap
/// weights in registers and loads each of its `MR + 6` input vectors once for the up-to-7
/// outputs that use it. Strips whose windows reach past the left or right edge skip those
/// columns by index (resolved once per column, not per tap); rows past the top/bottom are
/// excluded by the loop bounds. Same contract as [`dwconv7x7_f32_scalar`], and the same
/// accumulation order (bias, then taps row by row), with fused multiply-adds.
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
    dwconv7x7_rows_f32_neon(input, h, w, c, weight, bias, 0..h, out)
}

/// Output rows `rows` of [`dwconv7x7_f32_neon`] (`out` holds only those rows).
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
pub fn dwconv7x7_rows_f32_neon(
    input: &[f32],
    h: usize,
    w: usize,
    c: usize,
    weight: &[f32],
    bias: &[f32],
    rows: Range<usize>,
    out: &mut [f32],
) {
    dwconv7x7_neon_impl(input, h, w, c, weight, bias, rows, out, |_| {})
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
    rows: Range<usize>,
    out: &mut [f32],
    mut epilogue: impl FnMut(&mut [f32]),
) {
    assert!(
        input.len() >= h * w * c
            && rows.end <= h
            && out.len() >= rows.len() * w * c
            && weight.len() >= K * K * c
            && bias.len() >= c
    );
    let c4 = c / 4 * 4;
    for y in rows.clone() {
        // Output row within `out`.
        let oy = y - rows.start;
        let (ky0, ky1) = (PAD.saturating_sub(y), K.min(h + PAD - y));
        let mut x = 0;
        while x < w {
            let mr = [8, 4, 2, 1].into_iter().find(|&m| x + m <= w).unwrap_or(1);
            let s = neon::Strip {
                y,
                oy,
                x,
                w,
                c,
                ky0,
                ky1,
            };
            // Input columns of the strip that lie inside the image: j in lo..hi (column j is
            // image column x − 3 + j). The shapes a 224 input (and any multiple of 32) meets
            // get compile-time bounds (no per-column test); others test each column.
            let lo = PAD.saturating_sub(x);
            let hi = (w + PAD - x).min(mr + K - 1);
            // SAFETY: rows ky0..ky1 around y are inside the image (bounds above); columns
            // outside lo..hi are skipped; channels 0..c4 ≤ c; the strip's outputs are in
            // bounds (assertion).
            unsafe {
                let (i, wt, b, o) = (
                    input.as_ptr(),
                    weight.as_ptr(),
                    bias.as_ptr(),
                    out.as_mut_ptr(),
                );
                macro_rules! dispatch {
                    ($(($m:literal, $lo:literal, $hi:literal)),*) => {
                        match (mr, lo, hi) {
                            $(($m, $lo, $hi) => neon::strip::<$m, $lo, $hi>(i, wt, b, o, &s, c4),)*
                            (8, ..) => neon::strip::<8, { neon::DYN }, 0>(i, wt, b, o, &s, c4),
                            (4, ..) => neon::strip::<4, { neon::DYN }, 0>(i, wt, b, o, &s, c4),
                            (2, ..) => neon::strip::<2, { neon::DYN }, 0>(i, wt, b, o, &s, c4),
                            _ => neon::strip::<1, { neon::DYN }, 0>(i, wt, b, o, &s, c4),
                        }
                    };
                }
                dispatch!(
                    (8, 0, 14),
                    (8, 3, 14),
                    (8, 0, 11),
                    (4, 0, 10),
                    (4, 3, 10),
                    (4, 0, 7),
                    (4, 0, 9),
                    (2, 0, 8),
                    (2, 0, 5),
                    (2, 0, 6),
                    (1, 0, 7),
                    (1, 0, 4)
                );
            }
            for x in x..x + mr {
                let kxs = PAD.saturating_sub(x)..K.min(w + PAD - x);
                for ch in c4..c {
                    let mut acc = bias[ch];
                    for ky in ky0..ky1 {
                        for kx in kxs.clone() {
                            acc += input[((y + ky - PAD) * w + x + kx - PAD) * c + ch]
                                * weight[(ky * K + kx) * c + ch];
                        }
                    }
                    out[(oy * w + x) * c + ch] = acc;
                }
                epilogue(&mut out[(oy * w + x) * c..][..c]);
            }
            x += mr;
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::{K, PAD};
    use core::arch::aarch64::*;

    /// A horizontal run of output pixels: row `y` (row `oy` of the output buffer), from column
    /// `x`; kernel rows `ky0..ky1` fall inside the image.
    pub(super) struct Strip {
        pub y: usize,
        pub oy: usize,
        pub x: usize,
        pub w: usize,
        pub c: usize,
        pub ky0: usize,
        pub ky1: usize,
    }

    /// `LO` that means: column bounds computed at run time.
    pub(super) const DYN: usize = usize::MAX;

    /// `MR` consecutive output pixels from (y, x), channels `0..c4` four at a time. Input
    /// columns j (image column x − 3 + j) outside `LO..HI` (or, with `LO` = [`DYN`], outside
    /// the image) are skipped: their taps contribute zero, as in the reference; the caller
    /// guarantees the others are inside. Never inlined: its 8 + 7 + 1 vector registers are
    /// allocated the same whatever the caller's epilogue is.
    #[inline(never)]
    pub(super) unsafe fn strip<const MR: usize, const LO: usize, const HI: usize>(
        input: *const f32,
        weight: *const f32,
        bias: *const f32,
        out: *mut f32,
        s: &Strip,
        c4: usize,
    ) {
        for ch in (0..c4).step_by(4) {
            // SAFETY: forwarded from the caller, for each 4-channel block below c4.
            unsafe { strip_channels::<MR, LO, HI>(input, weight, bias, out, s, ch) }
        }
    }

    /// [`strip`] for channels `ch..ch+4`.
    #[inline(always)]
    unsafe fn strip_channels<const MR: usize, const LO: usize, const HI: usize>(
        input: *const f32,
        weight: *const f32,
        bias: *const f32,
        out: *mut f32,
        s: &Strip,
        ch: usize,
    ) {
        // Column offsets, kept in registers: loads use register-offset addressing.
        let offs: [usize; 14] = core::array::from_fn(|j| j * s.c);
        // Input column j of the strip is image column x − 3 + j.
        let (lo, hi) = if LO == DYN {
            (PAD.saturating_sub(s.x), s.w + PAD - s.x)
        } else {
            (LO, HI)
        };
        // SAFETY: guaranteed by the caller (see the wrapper). Pointers to skipped columns are
        // advanced with wrapping arithmetic and never dereferenced.
        unsafe {
            let mut acc = [vld1q_f32(bias.add(ch)); MR];
            for ky in s.ky0..s.ky1 {
                let row = (s.y + ky - PAD) * s.w;
                let first = (row + s.x) as isize - PAD as isize;
                let ip = input.wrapping_offset(first * s.c as isize + ch as isize);
                let wp = weight.add(ky * K * s.c + ch);
                let mut wt = [vdupq_n_f32(0.0); K];
                for (t, wv) in wt.iter_mut().enumerate() {
                    *wv = vld1q_f32(wp.add(offs[t]));
                }
                for j in 0..MR + K - 1 {
                    if j < lo || j >= hi {
                        continue;
                    }
                    let v = vld1q_f32(ip.wrapping_add(offs[j]));
                    // Input column j feeds output p through tap j − p.
                    for (t, &wv) in wt.iter().enumerate() {
                        if j >= t && j - t < MR {
                            acc[j - t] = vfmaq_f32(acc[j - t], v, wv);
                        }
                    }
                }
            }
            let o = out.add((s.oy * s.w + s.x) * s.c + ch);
            for (p, a) in acc.iter().enumerate() {
                vst1q_f32(o.add(p * s.c), *a);
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
            // Widths that mix interior and border strips of 8, 4, 2 and 1.
            (6, 30, 12),
            (5, 23, 9),
            (2, 17, 4),
            (3, 22, 8),
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

/// Every kernel set's row forms (plain and with LayerNorm), cut into row ranges, equal the
/// whole-map scalar references within f32 rounding.
#[cfg(test)]
mod rows_tests {
    use super::*;
    use crate::ops::testutil::*;
    use std::vec;

    type Rows = fn(&[f32], usize, usize, usize, &[f32], &[f32], Range<usize>, &mut [f32]);
    type RowsLn = fn(
        &[f32],
        usize,
        usize,
        usize,
        &[f32],
        &[f32],
        (&[f32], &[f32], f32),
        Range<usize>,
        &mut [f32],
    );

    #[test]
    fn row_ranges_equal_the_whole_map() {
        #[allow(unused_mut)]
        let mut sets: std::vec::Vec<(&str, Rows, RowsLn)> = vec![(
            "scalar",
            dwconv7x7_rows_f32_scalar,
            dwconv7x7_ln_rows_f32_scalar,
        )];
        #[cfg(target_arch = "aarch64")]
        sets.push(("neon", dwconv7x7_rows_f32_neon, dwconv7x7_ln_rows_f32_neon));
        #[cfg(target_arch = "x86_64")]
        {
            let f = crate::cpu::X86Features::get();
            if f.avx2 {
                sets.push(("avx2", dwconv7x7_rows_f32_avx2, dwconv7x7_ln_rows_f32_avx2));
            }
            if f.avx512 {
                sets.push((
                    "avx512",
                    dwconv7x7_rows_f32_avx512,
                    dwconv7x7_ln_rows_f32_avx512,
                ));
            }
        }
        let mut rng = Rng::new(102);
        for (h, w, c) in [(14, 14, 40), (7, 7, 24), (9, 5, 13), (1, 3, 8)] {
            let x = rng.vec(h * w * c, 1.0);
            let wt = rng.vec(K * K * c, 1.0);
            let b = rng.vec(c, 1.0);
            let (lw, lb) = (rng.vec(c, 1.0), rng.vec(c, 1.0));
            let mut want = vec![0f32; h * w * c];
            let mut want_ln = vec![0f32; h * w * c];
            dwconv7x7_f32_scalar(&x, h, w, c, &wt, &b, &mut want);
            dwconv7x7_ln_f32_scalar(&x, h, w, c, &wt, &b, (&lw, &lb, 1e-6), &mut want_ln);
            for (name, rows, rows_ln) in &sets {
                for step in [1, 3, h] {
                    let (mut got, mut got_ln) = (vec![0f32; h * w * c], vec![0f32; h * w * c]);
                    for y0 in (0..h).step_by(step) {
                        let r = y0..(y0 + step).min(h);
                        let part = r.start * w * c..r.end * w * c;
                        rows(&x, h, w, c, &wt, &b, r.clone(), &mut got[part.clone()]);
                        rows_ln(&x, h, w, c, &wt, &b, (&lw, &lb, 1e-6), r, &mut got_ln[part]);
                    }
                    assert!(
                        max_rel_err(&got, &want) <= 7e-6,
                        "{name} {h}x{w}x{c} rows of {step}"
                    );
                    assert!(
                        max_rel_err(&got_ln, &want_ln) <= 1e-4,
                        "{name} {h}x{w}x{c} +LN rows of {step}"
                    );
                }
            }
        }
    }
}
