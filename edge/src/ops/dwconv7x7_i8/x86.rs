//! x86-64 int8 depthwise 7×7 (AVX2), bit-identical to [`super::dwconv7x7_i8_scalar`]: 8
//! channels per `ymm` as int32 (`(v − z)·k` is exact in int32, sums wrap as the reference's);
//! interior pixels four at a time (each kernel row's 10 input vectors widened once, each weight
//! once for 4 products), border pixels one at a time with the taps clipped; channels past the
//! last multiple of 8 take the reference's loop.

use crate::cpu::X86Features;
use crate::ops::dwconv7x7::{K, PAD};
use core::arch::x86_64::*;
use core::ops::Range;

/// [`super::dwconv7x7_i8_scalar`] on AVX2. Panics if the CPU lacks it or a slice is short.
#[allow(clippy::too_many_arguments)]
pub fn dwconv7x7_i8_avx2(
    input: &[i8],
    h: usize,
    w: usize,
    c: usize,
    zero_point: i32,
    weight: &[i8],
    bias: &[i32],
    out: &mut [i32],
) {
    dwconv7x7_rows_i8_avx2(input, h, w, c, zero_point, weight, bias, 0..h, out)
}

/// Output rows `rows` of [`dwconv7x7_i8_avx2`] (`out` holds only those rows).
#[allow(clippy::too_many_arguments)]
pub fn dwconv7x7_rows_i8_avx2(
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
    assert!(X86Features::get().avx2, "AVX2 not available");
    check_lengths(input, h, w, c, weight, bias, &rows, out);
    // SAFETY: the CPU has AVX2 (asserted); lengths asserted above.
    unsafe { dw_avx2(input, h, w, c, zero_point, weight, bias, rows.clone(), out) };
    let c8 = c / 8 * 8;
    if c8 < c {
        for y in rows.clone() {
            for x in 0..w {
                for j in c8..c {
                    let mut acc = bias[j];
                    for ky in PAD.saturating_sub(y)..K.min(h + PAD - y) {
                        for kx in PAD.saturating_sub(x)..K.min(w + PAD - x) {
                            let v = input[((y + ky - PAD) * w + x + kx - PAD) * c + j] as i32;
                            let k = weight[(ky * K + kx) * c + j] as i32;
                            acc = acc.wrapping_add((v - zero_point) * k);
                        }
                    }
                    out[((y - rows.start) * w + x) * c + j] = acc;
                }
            }
        }
    }
}

/// The slice lengths every entry point's kernel relies on (the input is the whole map, `out`
/// holds rows `rows`).
#[allow(clippy::too_many_arguments)]
fn check_lengths(
    input: &[i8],
    h: usize,
    w: usize,
    c: usize,
    weight: &[i8],
    bias: &[i32],
    rows: &Range<usize>,
    out: &[i32],
) {
    assert!(
        input.len() >= h * w * c
            && weight.len() >= K * K * c
            && bias.len() >= c
            && rows.end <= h
            && out.len() >= rows.len() * w * c
    );
}

/// 8 int8 values at `p`, widened to int32.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn widen8(p: *const i8) -> __m256i {
    // SAFETY: the caller guarantees 8 readable bytes.
    _mm256_cvtepi8_epi32(unsafe { _mm_loadl_epi64(p.cast()) })
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
unsafe fn dw_avx2(
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
    let zp = _mm256_set1_epi32(zero_point);
    let (xi, wi, oi) = (input.as_ptr(), weight.as_ptr(), out.as_mut_ptr());
    for y in rows.clone() {
        let oy = y - rows.start;
        let ky0 = PAD.saturating_sub(y);
        let ky1 = K.min(h + PAD - y);
        for cb in (0..c / 8 * 8).step_by(8) {
            // SAFETY: pixel indices stay inside the h×w map, channels cb..cb+8 ≤ c (lengths
            // asserted by the caller).
            unsafe {
                let b = _mm256_loadu_si256(bias.as_ptr().add(cb).cast());
                let mut x = 0;
                while x < w {
                    if x >= PAD && x + 4 + PAD <= w {
                        let mut acc = [b; 4];
                        for ky in ky0..ky1 {
                            let row = xi.add(((y + ky - PAD) * w + x - PAD) * c + cb);
                            let v: [__m256i; 10] = core::array::from_fn(|i| {
                                _mm256_sub_epi32(widen8(row.add(i * c)), zp)
                            });
                            for kx in 0..K {
                                let k = widen8(wi.add((ky * K + kx) * c + cb));
                                for (j, a) in acc.iter_mut().enumerate() {
                                    *a = _mm256_add_epi32(*a, _mm256_mullo_epi32(v[j + kx], k));
                                }
                            }
                        }
                        for (j, a) in acc.iter().enumerate() {
                            _mm256_storeu_si256(oi.add((oy * w + x + j) * c + cb).cast(), *a);
                        }
                        x += 4;
                    } else {
                        let mut acc = b;
                        for ky in ky0..ky1 {
                            for kx in PAD.saturating_sub(x)..K.min(w + PAD - x) {
                                let at = ((y + ky - PAD) * w + x + kx - PAD) * c + cb;
                                let v = _mm256_sub_epi32(widen8(xi.add(at)), zp);
                                let k = widen8(wi.add((ky * K + kx) * c + cb));
                                acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(v, k));
                            }
                        }
                        _mm256_storeu_si256(oi.add((oy * w + x) * c + cb).cast(), acc);
                        x += 1;
                    }
                }
            }
        }
    }
}

/// [`super::dwconv7x7_i8_scalar`] on AVX-512 F/BW/VL: 16 channels per `zmm` as int32, the last
/// block masked (so no scalar tail); otherwise as [`dwconv7x7_i8_avx2`]. Bit-identical.
/// Panics if the CPU lacks it or a slice is short.
#[allow(clippy::too_many_arguments)]
pub fn dwconv7x7_i8_avx512(
    input: &[i8],
    h: usize,
    w: usize,
    c: usize,
    zero_point: i32,
    weight: &[i8],
    bias: &[i32],
    out: &mut [i32],
) {
    dwconv7x7_rows_i8_avx512(input, h, w, c, zero_point, weight, bias, 0..h, out)
}

/// Output rows `rows` of [`dwconv7x7_i8_avx512`] (`out` holds only those rows).
#[allow(clippy::too_many_arguments)]
pub fn dwconv7x7_rows_i8_avx512(
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
    assert!(X86Features::get().avx512, "AVX-512 not available");
    check_lengths(input, h, w, c, weight, bias, &rows, out);
    // SAFETY: the CPU has AVX-512 (asserted); lengths asserted above.
    unsafe { dw_avx512(input, h, w, c, zero_point, weight, bias, rows, out) };
}

/// 16 (masked) int8 values at `p`, widened to int32.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn widen16(p: *const i8, m: __mmask16) -> __m512i {
    // SAFETY: the caller guarantees the unmasked bytes are readable.
    _mm512_cvtepi8_epi32(unsafe { _mm_maskz_loadu_epi8(m, p) })
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn dw_avx512(
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
    let zp = _mm512_set1_epi32(zero_point);
    let (xi, wi, oi) = (input.as_ptr(), weight.as_ptr(), out.as_mut_ptr());
    for y in rows.clone() {
        let oy = y - rows.start;
        let ky0 = PAD.saturating_sub(y);
        let ky1 = K.min(h + PAD - y);
        for cb in (0..c).step_by(16) {
            let m: __mmask16 = ((1u32 << (c - cb).min(16)) - 1) as u16;
            // SAFETY: pixel indices stay inside the h×w map; channels past c are masked off.
            unsafe {
                let b = _mm512_maskz_loadu_epi32(m, bias.as_ptr().add(cb).cast());
                let mut x = 0;
                while x < w {
                    if x >= PAD && x + 4 + PAD <= w {
                        let mut acc = [b; 4];
                        for ky in ky0..ky1 {
                            let row = xi.add(((y + ky - PAD) * w + x - PAD) * c + cb);
                            let v: [__m512i; 10] = core::array::from_fn(|i| {
                                _mm512_sub_epi32(widen16(row.add(i * c), m), zp)
                            });
                            for kx in 0..K {
                                let k = widen16(wi.add((ky * K + kx) * c + cb), m);
                                for (j, a) in acc.iter_mut().enumerate() {
                                    *a = _mm512_add_epi32(*a, _mm512_mullo_epi32(v[j + kx], k));
                                }
                            }
                        }
                        for (j, a) in acc.iter().enumerate() {
                            _mm512_mask_storeu_epi32(
                                oi.add((oy * w + x + j) * c + cb).cast(),
                                m,
                                *a,
                            );
                        }
                        x += 4;
                    } else {
                        let mut acc = b;
                        for ky in ky0..ky1 {
                            for kx in PAD.saturating_sub(x)..K.min(w + PAD - x) {
                                let at = ((y + ky - PAD) * w + x + kx - PAD) * c + cb;
                                let v = _mm512_sub_epi32(widen16(xi.add(at), m), zp);
                                let k = widen16(wi.add((ky * K + kx) * c + cb), m);
                                acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(v, k));
                            }
                        }
                        _mm512_mask_storeu_epi32(oi.add((oy * w + x) * c + cb).cast(), m, acc);
                        x += 1;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::dwconv7x7_i8::dwconv7x7_i8_scalar;
    use crate::ops::testutil::*;
    use std::vec;

    #[test]
    fn avx2_bit_identical_to_reference() {
        if !X86Features::get().avx2 {
            std::println!("dwconv7x7_i8 avx2: not on this CPU, skipped");
            return;
        }
        let mut rng = Rng::new(95);
        for (h, w, c) in [
            (1, 1, 8),
            (7, 7, 320),
            (56, 56, 40),
            (5, 11, 13),
            (13, 3, 17),
            (9, 10, 1),
            (8, 8, 16),
        ] {
            let mut x = rng.bytes(h * w * c);
            let mut wt = rng.bytes(K * K * c);
            let zp = if c == 16 {
                // Extremes: (−128 − 127)·(−128) at every tap.
                x.iter_mut().for_each(|v| *v = -128);
                wt.iter_mut().for_each(|v| *v = -128);
                127
            } else {
                (rng.next_u64() % 256) as i32 - 128
            };
            let b: std::vec::Vec<i32> = (0..c).map(|_| rng.next_u64() as i32 >> 4).collect();
            let (mut want, mut got) = (vec![0i32; h * w * c + 1], vec![9i32; h * w * c + 1]);
            want[h * w * c] = 9;
            dwconv7x7_i8_scalar(&x, h, w, c, zp, &wt, &b, &mut want);
            dwconv7x7_i8_avx2(&x, h, w, c, zp, &wt, &b, &mut got);
            assert_eq!(got, want, "{h}x{w}x{c}");
            if X86Features::get().avx512 {
                let mut got = vec![9i32; h * w * c + 1];
                dwconv7x7_i8_avx512(&x, h, w, c, zp, &wt, &b, &mut got);
                assert_eq!(got, want, "avx512 {h}x{w}x{c}");
            }
        }
        std::println!("dwconv7x7_i8 avx2: ran");
    }
}
