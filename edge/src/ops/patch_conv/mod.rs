//! Non-overlapping k×k / stride k convolution over NHWC: the stem (4×4/s4, 3→C0) and the
//! downsample layers (2×2/s2, C→2C). Weights are stored HWIO (`[kh][kw][cin][cout]`), so the
//! inner loop runs over contiguous output channels.

use core::ops::Range;

/// The signature of every kernel set's f32 patch convolution ([`patch_conv_f32_scalar`]'s).
pub type PatchConvF32 =
    fn(&[f32], usize, usize, usize, usize, &[f32], &[f32], usize, Range<usize>, &mut [f32]);

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

/// `out[oy][ox][co] = bias[co] + Σ_{ky,kx,ci} in[k·oy+ky][k·ox+kx][ci] · w[ky][kx][ci][co]`
/// for the output channels `co` in `cols` of a convolution with `cout` (the HWIO weights' row
/// length): `input` is `h×w×cin` (h, w multiples of k); `out` is `(h/k)×(w/k)×cols.len()`
/// (`cols = 0..cout`: the whole convolution). Each channel is computed on its own, so in every
/// kernel set a range from one 8-column panel's start to another's (or to `cout`) has the bits
/// of those columns of a whole call (the vector kernels' ragged tails take this loop); the
/// runtime cuts the last downsample by output panels that way. Panics if a slice is short or
/// `cols.end > cout`.
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
    cols: Range<usize>,
    out: &mut [f32],
) {
    assert!(cols.start <= cols.end && cols.end <= cout);
    let (oh, ow, nc) = (h / k, w / k, cols.len());
    for oy in 0..oh {
        for ox in 0..ow {
            let acc = &mut out[(oy * ow + ox) * nc..][..nc];
            acc.copy_from_slice(&bias[cols.clone()]);
            for ky in 0..k {
                let row = &input[((oy * k + ky) * w + ox * k) * cin..][..k * cin];
                for (kx_ci, &v) in row.iter().enumerate() {
                    let wrow = &weight[(ky * k * cin + kx_ci) * cout + cols.start..][..nc];
                    for (a, &wv) in acc.iter_mut().zip(wrow) {
                        *a += v * wv;
                    }
                }
            }
        }
    }
}

/// Output channels `from..cols.end` of [`patch_conv_f32_scalar`] over `cols` (`out` rows of
/// `cols.len()`), in its order (the ragged tail of the vector kernels).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn patch_conv_columns(
    input: &[f32],
    h: usize,
    w: usize,
    cin: usize,
    k: usize,
    weight: &[f32],
    bias: &[f32],
    cout: usize,
    cols: Range<usize>,
    from: usize,
    out: &mut [f32],
) {
    let (oh, ow, nc) = (h / k, w / k, cols.len());
    let kc = k * cin;
    for q in 0..oh * ow {
        let base = ((q / ow) * k * w + (q % ow) * k) * cin;
        for c in from..cols.end {
            let mut acc = bias[c];
            for ky in 0..k {
                let row = &input[base + ky * w * cin..][..kc];
                for (j, &v) in row.iter().enumerate() {
                    acc += v * weight[(ky * kc + j) * cout + c];
                }
            }
            out[q * nc + c - cols.start] = acc;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
pub use x86::{patch_conv_f32_avx2, patch_conv_f32_avx512};

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
            patch_conv_f32_scalar(&x, h, w, cin, k, &hwio, &b, cout, 0..cout, &mut y);
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

    /// Columns `cols` (from an 8-column panel's start to another's or to `cout`) of a kernel's
    /// call are bit for bit those columns of its whole call, for every kernel this target has
    /// (the runtime's cut by output panels relies on it).
    #[test]
    fn column_ranges_are_the_whole_calls_columns() {
        let mut rng = Rng::new(9);
        let mut kernels: std::vec::Vec<(&str, crate::kernels::PatchFn)> =
            vec![("scalar", patch_conv_f32_scalar)];
        #[cfg(target_arch = "aarch64")]
        kernels.push(("neon", patch_conv_f32_neon));
        #[cfg(target_arch = "x86_64")]
        {
            let f = crate::cpu::X86Features::get();
            if f.avx2 {
                kernels.push(("avx2", patch_conv_f32_avx2));
            }
            if f.avx512 {
                kernels.push(("avx512", patch_conv_f32_avx512));
            }
        }
        for (h, w, cin, cout, k) in [(14, 14, 16, 64, 2), (8, 8, 3, 44, 4), (4, 6, 5, 21, 2)] {
            let x = rng.vec(h * w * cin, 1.0);
            let wt = rng.vec(k * k * cin * cout, 1.0);
            let b = rng.vec(cout, 1.0);
            let px = (h / k) * (w / k);
            for (name, kernel) in &kernels {
                let mut whole = vec![0.0; px * cout];
                kernel(&x, h, w, cin, k, &wt, &b, cout, 0..cout, &mut whole);
                // Ranges that start on an 8-column panel and end on one or at `cout`.
                let half = cout / 2 / 8 * 8;
                for cols in [0..half, half..cout, 8..cout.min(40), cout / 8 * 8..cout] {
                    let nc = cols.len();
                    let mut got = vec![7.0; px * nc + 1];
                    kernel(&x, h, w, cin, k, &wt, &b, cout, cols.clone(), &mut got);
                    assert_eq!(got[px * nc], 7.0, "{name}: wrote past the block");
                    for q in 0..px {
                        let want = &whole[q * cout..][cols.clone()];
                        let at = std::format!("{name} {h}x{w}x{cin}->{cout} {cols:?} pixel {q}");
                        assert_eq!(&got[q * nc..][..nc], want, "{at}");
                    }
                }
            }
        }
    }
}

/// NEON patch convolution as a GEMM over output pixels: each output pixel's patch is `k` rows
/// of `k·cin` contiguous inputs, so the pointwise GEMM micro-kernel (8 pixels × 8 channels,
/// [`crate::ops::pointwise`]) runs over it with one segment per kernel row, the HWIO weights
/// read with a stride of `cout`. Channels beyond the last multiple of 8 take 4-wide blocks,
/// then a scalar tail. Same contract as [`patch_conv_f32_scalar`].
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
pub fn patch_conv_f32_neon(
    input: &[f32],
    h: usize,
    w: usize,
    cin: usize,
    k: usize,
    weight: &[f32],
    bias: &[f32],
    cout: usize,
    cols: Range<usize>,
    out: &mut [f32],
) {
    use crate::ops::pointwise::neon::{tile, ATile, EPI_STORE};
    const PANEL: usize = crate::format::PANEL;
    let (oh, ow) = (h / k, w / k);
    assert!(input.len() >= h * w * cin && weight.len() >= k * k * cin * cout && bias.len() >= cout);
    assert!(cols.start <= cols.end && cols.end <= cout);
    let (c0, nc) = (cols.start, cols.len());
    assert!(out.len() >= oh * ow * nc);
    let g = neon::Geometry { w, cin, k, cout };
    let kc = k * cin;
    let full = nc / PANEL * PANEL;
    // Output pixels in raster order, 8 at a time (a tile may span output rows).
    let pixels = oh * ow;
    let patch = |q: usize| ((q / ow) * k * w + (q % ow) * k) * cin;
    let mut q = 0;
    while q < pixels {
        let mr = if pixels - q >= 8 {
            8
        } else if pixels - q >= 4 {
            4
        } else {
            1
        };
        let a = ATile {
            // Rows past `mr` are never read.
            rows: core::array::from_fn(|r| input.as_ptr().wrapping_add(patch(q + r))),
            seg_len: kc,
            segs: k,
            seg_skip: w * cin - kc,
        };
        // Block columns co (0..nc) are the convolution's channels c0 + co.
        for co in (0..full).step_by(PANEL) {
            let b: &[f32; PANEL] = bias[c0 + co..c0 + co + PANEL].try_into().unwrap();
            let wt = weight[c0 + co..].as_ptr();
            let o = out[q * nc + co..].as_mut_ptr();
            // SAFETY: output pixels q..q+mr exist, so each one's k input rows of k·cin values
            // lie inside `input`; weight rows 0..k·k·cin (rows cout apart), columns
            // c0+co..c0+co+8 ≤ cols.end ≤ cout, and `out` pixels q..q+mr (rows nc apart),
            // columns co..co+8 ≤ nc, are in bounds (asserts above).
            unsafe {
                match mr {
                    8 => tile::<8, EPI_STORE>(&a, wt, cout, b, o, nc, PANEL, core::ptr::null_mut()),
                    4 => tile::<4, EPI_STORE>(&a, wt, cout, b, o, nc, PANEL, core::ptr::null_mut()),
                    _ => tile::<1, EPI_STORE>(&a, wt, cout, b, o, nc, PANEL, core::ptr::null_mut()),
                }
            }
        }
        for q in q..q + mr {
            let base = patch(q);
            let o = q * nc;
            let mut co = full;
            // SAFETY: as above, for block columns co..co+4 ≤ nc of pixel q (channels
            // c0+co..c0+co+4 ≤ cout).
            unsafe {
                while co + 4 <= nc {
                    neon::block4(
                        input.as_ptr().add(base),
                        weight.as_ptr().add(c0 + co),
                        bias.as_ptr().add(c0 + co),
                        out.as_mut_ptr().add(o + co),
                        &g,
                    );
                    co += 4;
                }
            }
            for co in co..nc {
                let c = c0 + co;
                let mut acc = bias[c];
                for ky in 0..k {
                    let row = &input[base + ky * w * cin..][..kc];
                    for (j, &v) in row.iter().enumerate() {
                        acc += v * weight[(ky * kc + j) * cout + c];
                    }
                }
                out[o + co] = acc;
            }
        }
        q += mr;
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use core::arch::aarch64::*;

    pub(super) struct Geometry {
        pub w: usize,
        pub cin: usize,
        pub k: usize,
        pub cout: usize,
    }

    /// 4 output channels of one output pixel (the channels past the last full panel of 8).
    /// `x` points at the patch's top-left input value, `wt` at weight column `co`, `b` at
    /// bias `co`, `o` at the output.
    #[inline(always)]
    pub(super) unsafe fn block4(
        x: *const f32,
        wt: *const f32,
        b: *const f32,
        o: *mut f32,
        g: &Geometry,
    ) {
        // SAFETY: guaranteed by the caller (see the wrapper).
        unsafe {
            let mut acc = vld1q_f32(b);
            let kc = g.k * g.cin;
            for ky in 0..g.k {
                let row = x.add(ky * g.w * g.cin);
                let wrow = wt.add(ky * kc * g.cout);
                let mut j = 0;
                while j + 4 <= kc {
                    let xv = vld1q_f32(row.add(j));
                    macro_rules! lane {
                        ($l:literal) => {
                            let wl = wrow.add((j + $l) * g.cout);
                            acc = vfmaq_laneq_f32::<$l>(acc, vld1q_f32(wl), xv);
                        };
                    }
                    lane!(0);
                    lane!(1);
                    lane!(2);
                    lane!(3);
                    j += 4;
                }
                while j < kc {
                    acc = vfmaq_n_f32(acc, vld1q_f32(wrow.add(j * g.cout)), *row.add(j));
                    j += 1;
                }
            }
            vst1q_f32(o, acc);
        }
    }
}

#[cfg(all(test, target_arch = "aarch64"))]
mod neon_tests {
    use super::*;
    use crate::ops::testutil::*;
    use std::vec;

    #[test]
    fn neon_matches_reference_on_random_shapes() {
        let mut rng = Rng::new(43);
        let mut shapes = vec![
            (224, 224, 3, 40, 4),
            (8, 8, 3, 7, 4),
            (56, 56, 40, 80, 2),
            (2, 2, 1, 1, 2),
            (14, 14, 160, 320, 2),
        ];
        for _ in 0..25 {
            let k = if rng.next_u64() % 2 == 0 { 2 } else { 4 };
            let (oh, ow) = (
                1 + rng.next_u64() as usize % 5,
                1 + rng.next_u64() as usize % 5,
            );
            shapes.push((
                oh * k,
                ow * k,
                1 + rng.next_u64() as usize % 20,
                1 + rng.next_u64() as usize % 40,
                k,
            ));
        }
        for (h, w, cin, cout, k) in shapes {
            let x = rng.vec(h * w * cin, 1.0);
            let wt = rng.vec(k * k * cin * cout, 1.0);
            let b = rng.vec(cout, 1.0);
            let mut want = vec![0.0; (h / k) * (w / k) * cout];
            let mut got = want.clone();
            patch_conv_f32_scalar(&x, h, w, cin, k, &wt, &b, cout, 0..cout, &mut want);
            patch_conv_f32_neon(&x, h, w, cin, k, &wt, &b, cout, 0..cout, &mut got);
            let scale = ((k * k * cin) as f32).sqrt();
            let err = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs() / scale)
                .fold(0.0, f32::max);
            assert!(err <= 1e-6, "{h}x{w}x{cin}->{cout} k{k}: {err}");
        }
    }
}
