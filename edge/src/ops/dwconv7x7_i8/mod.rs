//! int8 depthwise 7×7, stride 1, zero padding 3, over NHWC, to int32 accumulators:
//! `acc[y][x][c] = bias[c] + Σ_{taps inside} (in[y+ky−3][x+kx−3][c] − z_in) · w[ky][kx][c]`.
//!
//! Subtracting the input zero point per tap (instead of folding `−z_in·Σw` into the bias)
//! keeps padding exact: a tap outside the image contributes nothing, as a real zero does, at
//! every border, with one bias per channel. `(x − z_in)` spans [−255, 255] and `w` [−128, 127],
//! so each product fits int16's neighbour int32 exactly; sums wrap as the instructions do.
//! The block's LayerNorm consumes the accumulators (dequantized per channel), so there is no
//! requantization here. Weights `[7][7][C]` int8 (per-channel symmetric), as the f32 layout.

use crate::ops::dwconv7x7::{K, PAD};
use core::ops::Range;

/// The reference.
#[allow(clippy::too_many_arguments)]
pub fn dwconv7x7_i8_scalar(
    input: &[i8],
    h: usize,
    w: usize,
    c: usize,
    zero_point: i32,
    weight: &[i8],
    bias: &[i32],
    out: &mut [i32],
) {
    dwconv7x7_rows_i8_scalar(input, h, w, c, zero_point, weight, bias, 0..h, out)
}

/// Output rows `rows` of [`dwconv7x7_i8_scalar`] (the input is the whole map; `out` holds only
/// those rows): every kernel set's slot, so that the runtime can split rows across workers.
#[allow(clippy::too_many_arguments)]
pub fn dwconv7x7_rows_i8_scalar(
    input: &[i8],
    h: usize,
    w: usize,
    c: usize,
    zero_point: i32,
    weight: &[i8],
    bias: &[i32],
    rows: Range<usize>,
    out: &mut [i32],
) {
    for y in rows.clone() {
        for x in 0..w {
            let acc = &mut out[((y - rows.start) * w + x) * c..][..c];
            acc.copy_from_slice(&bias[..c]);
            for ky in PAD.saturating_sub(y)..K.min(h + PAD - y) {
                for kx in PAD.saturating_sub(x)..K.min(w + PAD - x) {
                    let src = &input[((y + ky - PAD) * w + x + kx - PAD) * c..][..c];
                    let wt = &weight[(ky * K + kx) * c..][..c];
                    for ((a, &v), &k) in acc.iter_mut().zip(src).zip(wt) {
                        *a = a.wrapping_add((v as i32 - zero_point) * k as i32);
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
pub use x86::{
    dwconv7x7_i8_avx2, dwconv7x7_i8_avx512, dwconv7x7_rows_i8_avx2, dwconv7x7_rows_i8_avx512,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::*;
    use std::vec::Vec;

    /// Against the f32 reference on dequantized values: with scale 1 every product and sum
    /// is an exact small integer in f32, so both must agree exactly.
    #[test]
    fn equals_f32_reference_on_integer_values() {
        let mut rng = Rng::new(80);
        for (h, w, c) in [(1, 1, 1), (7, 7, 5), (9, 4, 8), (3, 12, 17)] {
            let x = rng.bytes(h * w * c);
            let wt = rng.bytes(49 * c);
            let b: Vec<i32> = (0..c)
                .map(|_| (rng.next_u64() % 2001) as i32 - 1000)
                .collect();
            let zp = (rng.next_u64() % 256) as i32 - 128;
            let mut got = std::vec![0i32; h * w * c];
            dwconv7x7_i8_scalar(&x, h, w, c, zp, &wt, &b, &mut got);
            let xf: Vec<f32> = x.iter().map(|&v| (v as i32 - zp) as f32).collect();
            let wf: Vec<f32> = wt.iter().map(|&v| v as f32).collect();
            let bf: Vec<f32> = b.iter().map(|&v| v as f32).collect();
            let mut want = std::vec![0f32; h * w * c];
            crate::ops::dwconv7x7::dwconv7x7_f32_scalar(&xf, h, w, c, &wf, &bf, &mut want);
            for (g, wv) in got.iter().zip(&want) {
                assert_eq!(*g as f32, *wv, "{h}x{w}x{c}");
            }
        }
    }
}

/// NEON: 8 channels per step, `SSUBL` widens `x − z_in` to int16, `SXTL` the weights, and two
/// `SMLAL` accumulate into int32; interior pixels in strips of 8 ([`strip8`]), border pixels
/// one at a time (taps excluded by loop bounds); a scalar tail for the last `c mod 8` channels.
/// Bit-identical to [`dwconv7x7_i8_scalar`].
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
pub fn dwconv7x7_i8_neon(
    input: &[i8],
    h: usize,
    w: usize,
    c: usize,
    zero_point: i32,
    weight: &[i8],
    bias: &[i32],
    out: &mut [i32],
) {
    dwconv7x7_rows_i8_neon(input, h, w, c, zero_point, weight, bias, 0..h, out)
}

/// Output rows `rows` of [`dwconv7x7_i8_neon`] (`out` holds only those rows).
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
pub fn dwconv7x7_rows_i8_neon(
    input: &[i8],
    h: usize,
    w: usize,
    c: usize,
    zero_point: i32,
    weight: &[i8],
    bias: &[i32],
    rows: Range<usize>,
    out: &mut [i32],
) {
    use core::arch::aarch64::*;
    assert!(
        input.len() >= h * w * c
            && rows.end <= h
            && out.len() >= rows.len() * w * c
            && weight.len() >= K * K * c
            && bias.len() >= c
    );
    let c8 = c / 8 * 8;
    let zp = zero_point.clamp(-128, 127) as i8;
    for y in rows.clone() {
        // Output row within `out`.
        let oy = y - rows.start;
        let kys = PAD.saturating_sub(y)..K.min(h + PAD - y);
        let mut x = 0;
        while x < w {
            // Strip input columns j (image column x − 3 + j) inside the image: lo..hi. The
            // interior and the two border cases of 224-class shapes have compiled bounds.
            let (lo, hi) = (
                PAD.saturating_sub(x),
                (w + PAD).saturating_sub(x).min(STRIP + K - 1),
            );
            let strip: Option<StripFn> = match (lo, hi) {
                _ if x + STRIP > w || c8 == 0 => None,
                (0, 14) => Some(strip8::<0, 14>),
                (3, 14) => Some(strip8::<3, 14>),
                (0, 11) => Some(strip8::<0, 11>),
                _ => None,
            };
            if let Some(strip) = strip {
                // SAFETY: rows `kys` around y are inside the image, and columns lo..hi of the
                // strip (the others are skipped); channels 0..c8 ≤ c; outputs of pixels
                // x..x+8 are in bounds (assertion).
                unsafe {
                    strip(
                        input.as_ptr(),
                        weight.as_ptr(),
                        bias.as_ptr(),
                        out.as_mut_ptr(),
                        (y, oy, x, w, c),
                        kys.clone(),
                        c8,
                        zp,
                    )
                };
                for x in x..x + STRIP {
                    tail(
                        input,
                        weight,
                        bias,
                        out,
                        (y, oy, x, w, c),
                        kys.clone(),
                        c8,
                        zero_point,
                    );
                }
                x += STRIP;
                continue;
            }
            let kxs = PAD.saturating_sub(x)..K.min(w + PAD - x);
            let o = (oy * w + x) * c;
            let mut ch = 0;
            while ch < c8 {
                // SAFETY: channels ch..ch+8 ≤ c of in-image taps (bounds above) and of pixel
                // (y, x), bias and weights, are in bounds by the assertion.
                unsafe {
                    let z = vdup_n_s8(zp);
                    let mut lo = vld1q_s32(bias.as_ptr().add(ch));
                    let mut hi = vld1q_s32(bias.as_ptr().add(ch + 4));
                    for ky in kys.clone() {
                        for kx in kxs.clone() {
                            let src = input
                                .as_ptr()
                                .add(((y + ky - PAD) * w + x + kx - PAD) * c + ch);
                            let wt = weight.as_ptr().add((ky * K + kx) * c + ch);
                            let d = vsubl_s8(vld1_s8(src), z);
                            let k = vmovl_s8(vld1_s8(wt));
                            lo = vmlal_s16(lo, vget_low_s16(d), vget_low_s16(k));
                            hi = vmlal_high_s16(hi, d, k);
                        }
                    }
                    vst1q_s32(out.as_mut_ptr().add(o + ch), lo);
                    vst1q_s32(out.as_mut_ptr().add(o + ch + 4), hi);
                }
                ch += 8;
            }
            tail(
                input,
                weight,
                bias,
                out,
                (y, oy, x, w, c),
                kys.clone(),
                c8,
                zero_point,
            );
            x += 1;
        }
    }
}

/// Output pixels per strip.
#[cfg(target_arch = "aarch64")]
const STRIP: usize = 8;

/// A [`strip8`] instance.
#[cfg(target_arch = "aarch64")]
type StripFn = unsafe fn(
    *const i8,
    *const i8,
    *const i32,
    *mut i32,
    (usize, usize, usize, usize, usize),
    core::ops::Range<usize>,
    usize,
    i8,
);

/// Channels `from..c` of pixel (y, x) by the reference formula.
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
fn tail(
    input: &[i8],
    weight: &[i8],
    bias: &[i32],
    out: &mut [i32],
    (y, oy, x, w, c): (usize, usize, usize, usize, usize),
    kys: core::ops::Range<usize>,
    from: usize,
    zero_point: i32,
) {
    let kxs = PAD.saturating_sub(x)..K.min(w + PAD - x);
    for ch in from..c {
        let mut acc = bias[ch];
        for ky in kys.clone() {
            for kx in kxs.clone() {
                let v = input[((y + ky - PAD) * w + x + kx - PAD) * c + ch] as i32;
                acc = acc.wrapping_add((v - zero_point) * weight[(ky * K + kx) * c + ch] as i32);
            }
        }
        out[(oy * w + x) * c + ch] = acc;
    }
}

/// 8 output pixels from (y, x), channels `0..c8` eight at a time, strip input columns outside
/// `LO..HI` (outside the image) skipped: per kernel row the 7 widened tap weights stay in registers and each
/// of the 14 input vectors is widened (`SSUBL`) once for the up-to-7 outputs using it
/// (16 int32 accumulators). Never inlined, so its 24 vector registers are allocated alone.
///
/// # Safety
/// Rows `kys` around y and strip columns `LO..HI` are inside the image; `c8 ≤ c`, a multiple of 8;
/// the pointers cover the image, 49·c weights, c biases and the outputs.
#[cfg(target_arch = "aarch64")]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
unsafe fn strip8<const LO: usize, const HI: usize>(
    input: *const i8,
    weight: *const i8,
    bias: *const i32,
    out: *mut i32,
    (y, oy, x, w, c): (usize, usize, usize, usize, usize),
    kys: core::ops::Range<usize>,
    c8: usize,
    zp: i8,
) {
    use core::arch::aarch64::*;
    let offs: [usize; STRIP + K - 1] = core::array::from_fn(|j| j * c);
    for ch in (0..c8).step_by(8) {
        // SAFETY: guaranteed by the caller.
        unsafe {
            let z = vdup_n_s8(zp);
            let (b0, b1) = (vld1q_s32(bias.add(ch)), vld1q_s32(bias.add(ch + 4)));
            let mut lo = [b0; STRIP];
            let mut hi = [b1; STRIP];
            for ky in kys.clone() {
                // Column −3 may lie before the image: wrapping arithmetic, never dereferenced there.
                let first = ((y + ky - PAD) * w + x) as isize - PAD as isize;
                let ip = input.wrapping_offset(first * c as isize + ch as isize);
                let wp = weight.add(ky * K * c + ch);
                let wt: [int16x8_t; K] =
                    core::array::from_fn(|t| vmovl_s8(vld1_s8(wp.add(offs[t]))));
                // Written out per column: LLVM does not fully unroll the 14×7 nest by itself,
                // and a rolled loop indexes the accumulators through memory.
                macro_rules! column {
                    ($($j:literal)*) => {$(if $j >= LO && $j < HI {
                        let v = vsubl_s8(vld1_s8(ip.wrapping_add(offs[$j])), z);
                        // Input column j feeds output p through tap j − p.
                        for (t, &wv) in wt.iter().enumerate() {
                            if $j >= t && $j - t < STRIP {
                                let p = $j - t;
                                lo[p] = vmlal_s16(lo[p], vget_low_s16(v), vget_low_s16(wv));
                                hi[p] = vmlal_high_s16(hi[p], v, wv);
                            }
                        }
                    })*};
                }
                column!(0 1 2 3 4 5 6 7 8 9 10 11 12 13);
            }
            let o = out.add((oy * w + x) * c + ch);
            for p in 0..STRIP {
                vst1q_s32(o.add(p * c), lo[p]);
                vst1q_s32(o.add(p * c + 4), hi[p]);
            }
        }
    }
}

#[cfg(all(test, target_arch = "aarch64"))]
mod neon_tests {
    use super::*;
    use crate::ops::testutil::*;
    use std::vec::Vec;

    #[test]
    fn neon_bit_identical_to_reference() {
        let mut rng = Rng::new(81);
        let mut shapes = std::vec![
            (1, 1, 1),
            (7, 7, 320),
            (14, 14, 160),
            (56, 56, 40),
            (5, 9, 13),
            // Widths mixing interior and border strips.
            (6, 30, 16),
            (5, 23, 9),
            (3, 22, 8),
            (4, 11, 8),
            (2, 19, 24),
        ];
        for _ in 0..30 {
            shapes.push((
                1 + rng.next_u64() as usize % 12,
                1 + rng.next_u64() as usize % 12,
                1 + rng.next_u64() as usize % 45,
            ));
        }
        for (h, w, c) in shapes {
            let mut x = rng.bytes(h * w * c);
            let mut wt = rng.bytes(49 * c);
            let b: Vec<i32> = (0..c).map(|_| (rng.next_u64() as i32) >> 8).collect();
            let zp = (rng.next_u64() % 256) as i32 - 128;
            if h * w > 4 {
                // Extremes: the largest |x − z|·|w| products.
                x[..c].fill(if zp >= 0 { -128 } else { 127 });
                wt[..c].fill(-128);
            }
            let (mut want, mut got) = (std::vec![0i32; h * w * c], std::vec![0i32; h * w * c]);
            dwconv7x7_i8_scalar(&x, h, w, c, zp, &wt, &b, &mut want);
            dwconv7x7_i8_neon(&x, h, w, c, zp, &wt, &b, &mut got);
            assert_eq!(got, want, "{h}x{w}x{c} zp {zp}");
        }
    }
}

/// Every kernel set's row form, cut into row ranges, equals the whole-map reference.
#[cfg(test)]
mod rows_tests {
    use super::*;
    use crate::ops::testutil::*;
    use std::vec;

    type Rows = fn(&[i8], usize, usize, usize, i32, &[i8], &[i32], Range<usize>, &mut [i32]);

    #[test]
    fn row_ranges_equal_the_whole_map() {
        #[allow(unused_mut)]
        let mut sets: std::vec::Vec<(&str, Rows)> = vec![("scalar", dwconv7x7_rows_i8_scalar)];
        #[cfg(target_arch = "aarch64")]
        sets.push(("neon", dwconv7x7_rows_i8_neon));
        #[cfg(target_arch = "x86_64")]
        {
            let f = crate::cpu::X86Features::get();
            if f.avx2 {
                sets.push(("avx2", dwconv7x7_rows_i8_avx2));
            }
            if f.avx512 {
                sets.push(("avx512", dwconv7x7_rows_i8_avx512));
            }
        }
        let mut rng = Rng::new(101);
        for (h, w, c) in [(14, 14, 40), (7, 7, 24), (9, 5, 13), (1, 3, 8)] {
            let x = rng.bytes(h * w * c);
            let wt = rng.bytes(K * K * c);
            let b: std::vec::Vec<i32> = (0..c).map(|i| i as i32 * 7 - 50).collect();
            let mut want = vec![0i32; h * w * c];
            dwconv7x7_i8_scalar(&x, h, w, c, -5, &wt, &b, &mut want);
            for (name, rows) in &sets {
                for step in [1, 2, 3, h] {
                    let mut got = vec![0i32; h * w * c];
                    for y0 in (0..h).step_by(step) {
                        let r = y0..(y0 + step).min(h);
                        rows(
                            &x,
                            h,
                            w,
                            c,
                            -5,
                            &wt,
                            &b,
                            r.clone(),
                            &mut got[r.start * w * c..r.end * w * c],
                        );
                    }
                    assert_eq!(got, want, "{name} {h}x{w}x{c} rows of {step}");
                }
            }
        }
    }
}
