//! x86-64 depthwise 7×7 (AVX2+FMA: 8 channels per `ymm`; AVX-512: 16 per `zmm`), NHWC,
//! vectorized over channels. Interior pixels go four at a time: per kernel row, the 10 input
//! pixels the strip needs are loaded once and each of the 7 weights once for 4 FMAs; border
//! pixels (and maps narrower than 10) take one pixel at a time with the taps clipped to the
//! image. The last channel block, when `c` is not a multiple of the lane count, is masked.
//! Same per-output order as [`super::dwconv7x7_f32_scalar`] (bias, then taps in raster
//! order), with FMA: within f32 rounding of it.

use super::{K, PAD};
use core::ops::Range;

/// The algorithm, expanded once per ISA over that ISA's `V`, `L`, `ld`, `st`, `fma`, `splat`.
macro_rules! dwconv_body {
    ($feat:literal) => {
        /// One output row `y`, channels `[cb, cb + L)` (`valid` of them), all `w` pixels.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn row_block<const FULL: bool>(g: &Geom, y: usize, cb: usize, m: Mask) {
            let (w, c) = (g.w, g.c);
            let ky0 = PAD.saturating_sub(y);
            let ky1 = K.min(g.h + PAD - y);
            // SAFETY: every pixel index below is inside the h×w map and channels cb..cb+L are
            // < c or masked off; `Geom` was built from slices of the right lengths.
            unsafe {
                let bias = ld::<FULL>(g.bias.add(cb), m);
                let mut x = 0;
                while x < w {
                    if x >= PAD && x + 4 + PAD <= w {
                        let mut acc = [bias; 4];
                        for ky in ky0..ky1 {
                            let row = g.input.add(((y + ky - PAD) * w + x - PAD) * c + cb);
                            let v: [V; 10] =
                                core::array::from_fn(|i| ld::<FULL>(row.add(i * c), m));
                            for kx in 0..K {
                                let wt = ld::<FULL>(g.weight.add((ky * K + kx) * c + cb), m);
                                for (j, a) in acc.iter_mut().enumerate() {
                                    *a = fma(v[j + kx], wt, *a);
                                }
                            }
                        }
                        for (j, a) in acc.iter().enumerate() {
                            st::<FULL>(g.out.add(((y - g.y0) * w + x + j) * c + cb), m, *a);
                        }
                        x += 4;
                    } else {
                        let kx0 = PAD.saturating_sub(x);
                        let kx1 = K.min(w + PAD - x);
                        let mut acc = bias;
                        for ky in ky0..ky1 {
                            let iy = y + ky - PAD;
                            for kx in kx0..kx1 {
                                let v =
                                    ld::<FULL>(g.input.add((iy * w + x + kx - PAD) * c + cb), m);
                                let wt = ld::<FULL>(g.weight.add((ky * K + kx) * c + cb), m);
                                acc = fma(v, wt, acc);
                            }
                        }
                        st::<FULL>(g.out.add(((y - g.y0) * w + x) * c + cb), m, acc);
                        x += 1;
                    }
                }
            }
        }

        /// Output row `y`, every channel.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn row(g: &Geom, y: usize) {
            let full = g.c / L * L;
            // SAFETY: as in `row_block`.
            unsafe {
                for cb in (0..full).step_by(L) {
                    row_block::<true>(g, y, cb, mask(L));
                }
                if full < g.c {
                    row_block::<false>(g, y, full, mask(g.c - full));
                }
            }
        }
    };
}

/// Raw view of one call's operands (lengths checked by [`Geom::new`]).
pub(crate) struct Geom {
    input: *const f32,
    weight: *const f32,
    bias: *const f32,
    out: *mut f32,
    h: usize,
    w: usize,
    c: usize,
    /// The first output row `out` holds.
    y0: usize,
}

impl Geom {
    #[allow(clippy::too_many_arguments)]
    fn new(
        input: &[f32],
        h: usize,
        w: usize,
        c: usize,
        weight: &[f32],
        bias: &[f32],
        rows: &Range<usize>,
        out: &mut [f32],
    ) -> Geom {
        assert!(
            input.len() >= h * w * c
                && weight.len() >= K * K * c
                && bias.len() >= c
                && rows.end <= h
                && out.len() >= rows.len() * w * c
        );
        Geom {
            input: input.as_ptr(),
            weight: weight.as_ptr(),
            bias: bias.as_ptr(),
            out: out.as_mut_ptr(),
            h,
            w,
            c,
            y0: rows.start,
        }
    }
}

mod avx2 {
    use super::*;
    use core::arch::x86_64::*;
    type V = __m256;
    type Mask = __m256i;
    const L: usize = 8;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn mask(valid: usize) -> Mask {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(valid as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn ld<const FULL: bool>(p: *const f32, m: Mask) -> V {
        // SAFETY: the caller guarantees the unmasked lanes are readable.
        unsafe {
            if FULL {
                _mm256_loadu_ps(p)
            } else {
                _mm256_maskload_ps(p, m)
            }
        }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn st<const FULL: bool>(p: *mut f32, m: Mask, v: V) {
        // SAFETY: the caller guarantees the unmasked lanes are writable.
        unsafe {
            if FULL {
                _mm256_storeu_ps(p, v)
            } else {
                _mm256_maskstore_ps(p, m, v)
            }
        }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn fma(a: V, b: V, c: V) -> V {
        _mm256_fmadd_ps(a, b, c)
    }

    dwconv_body!("avx2,fma");
}

mod avx512 {
    use super::*;
    use core::arch::x86_64::*;
    type V = __m512;
    type Mask = __mmask16;
    const L: usize = 16;

    #[inline]
    fn mask(valid: usize) -> Mask {
        ((1u32 << valid) - 1) as u16
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn ld<const FULL: bool>(p: *const f32, m: Mask) -> V {
        // SAFETY: the caller guarantees the unmasked lanes are readable.
        unsafe {
            if FULL {
                _mm512_loadu_ps(p)
            } else {
                _mm512_maskz_loadu_ps(m, p)
            }
        }
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn st<const FULL: bool>(p: *mut f32, m: Mask, v: V) {
        // SAFETY: the caller guarantees the unmasked lanes are writable.
        unsafe {
            if FULL {
                _mm512_storeu_ps(p, v)
            } else {
                _mm512_mask_storeu_ps(p, m, v)
            }
        }
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn fma(a: V, b: V, c: V) -> V {
        _mm512_fmadd_ps(a, b, c)
    }

    dwconv_body!("avx512f,avx512vl,avx2,fma");
}

/// Defines the safe entry points of one ISA: the depthwise conv and its fusion with LayerNorm
/// (each output row normalized while it is still in cache), over output rows `rows` (`out`
/// holds only those rows), and the whole-map forms over them.
macro_rules! entry_points {
    ($isa:literal, $has:ident, $m:ident, $dw:ident, $dw_ln:ident, $dw_rows:ident, $dw_ln_rows:ident) => {
        #[doc = concat!("Rows `rows` of [`super::dwconv7x7_f32_scalar`] on ", $isa, " (`out` holds only those rows). Panics if the CPU lacks it or a slice is short.")]
        #[allow(clippy::too_many_arguments)]
        pub fn $dw_rows(
            input: &[f32],
            h: usize,
            w: usize,
            c: usize,
            weight: &[f32],
            bias: &[f32],
            rows: Range<usize>,
            out: &mut [f32],
        ) {
            assert!(crate::cpu::X86Features::get().$has, concat!($isa, " not available"));
            let g = Geom::new(input, h, w, c, weight, bias, &rows, out);
            for y in rows {
                // SAFETY: the CPU has the ISA (asserted); `Geom::new` checked the lengths.
                unsafe { $m::row(&g, y) }
            }
        }

        #[doc = concat!("Rows `rows` of [`super::dwconv7x7_ln_f32_scalar`] on ", $isa, ".")]
        #[allow(clippy::too_many_arguments)]
        pub fn $dw_ln_rows(
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
            assert!(crate::cpu::X86Features::get().$has, concat!($isa, " not available"));
            let g = Geom::new(input, h, w, c, weight, bias, &rows, out);
            for y in rows.clone() {
                // SAFETY: as above; output row y (w·c values) is inside `out`, and `g` is not
                // used while `row` lives.
                let row = unsafe {
                    $m::row(&g, y);
                    core::slice::from_raw_parts_mut(g.out.add((y - rows.start) * w * c), w * c)
                };
                crate::ops::layernorm::layernorm_f32_avx2(row, w, c, ln.0, ln.1, ln.2);
            }
        }

        #[doc = concat!("[`super::dwconv7x7_f32_scalar`] on ", $isa, ": rows `0..h` of the row form.")]
        pub fn $dw(input: &[f32], h: usize, w: usize, c: usize, weight: &[f32], bias: &[f32], out: &mut [f32]) {
            $dw_rows(input, h, w, c, weight, bias, 0..h, out)
        }

        #[doc = concat!("[`super::dwconv7x7_ln_f32_scalar`] on ", $isa, ": rows `0..h` of the row form.")]
        #[allow(clippy::too_many_arguments)]
        pub fn $dw_ln(
            input: &[f32],
            h: usize,
            w: usize,
            c: usize,
            weight: &[f32],
            bias: &[f32],
            ln: (&[f32], &[f32], f32),
            out: &mut [f32],
        ) {
            $dw_ln_rows(input, h, w, c, weight, bias, ln, 0..h, out)
        }
    };
}

entry_points!(
    "AVX2+FMA",
    avx2,
    avx2,
    dwconv7x7_f32_avx2,
    dwconv7x7_ln_f32_avx2,
    dwconv7x7_rows_f32_avx2,
    dwconv7x7_ln_rows_f32_avx2
);
entry_points!(
    "AVX-512",
    avx512,
    avx512,
    dwconv7x7_f32_avx512,
    dwconv7x7_ln_f32_avx512,
    dwconv7x7_rows_f32_avx512,
    dwconv7x7_ln_rows_f32_avx512
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::X86Features;
    use crate::ops::dwconv7x7::{dwconv7x7_f32_scalar, dwconv7x7_ln_f32_scalar};
    use crate::ops::testutil::*;
    use std::vec;

    type Dw = fn(&[f32], usize, usize, usize, &[f32], &[f32], &mut [f32]);
    type DwLn = fn(&[f32], usize, usize, usize, &[f32], &[f32], (&[f32], &[f32], f32), &mut [f32]);

    #[test]
    fn x86_matches_reference() {
        let f = X86Features::get();
        let sets: [(&str, bool, Dw, DwLn); 2] = [
            ("avx2", f.avx2, dwconv7x7_f32_avx2, dwconv7x7_ln_f32_avx2),
            (
                "avx512",
                f.avx512,
                dwconv7x7_f32_avx512,
                dwconv7x7_ln_f32_avx512,
            ),
        ];
        let mut rng = Rng::new(75);
        for (name, has, dw, dw_ln) in sets {
            if !has {
                std::println!("dwconv7x7 {name}: not on this CPU, skipped");
                continue;
            }
            // 1×1, 7×7 and odd maps; channel counts off the lane widths.
            for (h, w, c) in [
                (1, 1, 8),
                (7, 7, 320),
                (56, 56, 40),
                (5, 11, 13),
                (13, 3, 17),
                (9, 10, 1),
                (14, 14, 24),
            ] {
                let x = rng.vec(h * w * c, 1.0);
                let wt = rng.vec(K * K * c, 1.0);
                let b = rng.vec(c, 1.0);
                let (lw, lb) = (rng.vec(c, 1.0), rng.vec(c, 1.0));
                let (mut want, mut got) = (vec![0.0; h * w * c + 1], vec![0.0; h * w * c + 1]);
                dwconv7x7_f32_scalar(&x, h, w, c, &wt, &b, &mut want);
                dw(&x, h, w, c, &wt, &b, &mut got);
                assert!(max_rel_err(&got, &want) <= 1e-6 * 7.0, "{name} {h}x{w}x{c}");
                assert_eq!(got[h * w * c], 0.0);
                dwconv7x7_ln_f32_scalar(&x, h, w, c, &wt, &b, (&lw, &lb, 1e-6), &mut want);
                dw_ln(&x, h, w, c, &wt, &b, (&lw, &lb, 1e-6), &mut got);
                // LayerNorm divides by σ: a small σ (c = 1: σ = 0) amplifies rounding.
                assert!(
                    max_rel_err(&got, &want) <= 1e-4,
                    "{name} {h}x{w}x{c} +LN: {}",
                    max_rel_err(&got, &want)
                );
            }
            std::println!("dwconv7x7 {name}: ran");
        }
    }
}
