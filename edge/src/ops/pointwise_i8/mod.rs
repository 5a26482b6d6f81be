//! int8 pointwise (1×1) convolution as a GEMM over NHWC pixels:
//! `out[p][n] = requant(bias[n] + Σ_k in[p][k]·W[n][k])`, int8 inputs and weights, int32
//! accumulation (wrapping, as the instructions do), per-output-channel requantization
//! ([`crate::ops::requant`]) to int8 with an output zero point.
//!
//! Scheme: weights symmetric per output channel (no zero point); activations per tensor with a
//! zero point (post-GELU activations are far from symmetric), whose correction
//! `−z_in·Σ_k W[n][k]` the quantizer folds into `bias[n]` once, so the kernel has no
//! zero-point term. Integer sums do not depend on order, so every kernel set's output is
//! bit-identical to the reference.
//!
//! Weights are packed `[ceil(N/8)][ceil(K/4)][8 outputs][4 k]`, zero-padded ("c4" layout), the
//! layout both NEON kernels read: `SDOT` (ARMv8.2 dotprod) multiplies 4 inputs by 4 weights of
//! each of 4 outputs per lane; on plain ARMv8.0, `SMULL` multiplies the same 4 inputs by 4
//! weights of each of 2 outputs (8 int16 products) and `SADALP` adds their pairs into int32.

use crate::ops::requant::{requantize_scalar, Requant};

/// Outputs per panel.
pub const NR: usize = 8;
/// Inputs per group.
pub const KR: usize = 4;
/// Bytes per group of a panel.
pub(crate) const GROUP: usize = NR * KR;

/// Packed length of an `n × k` weight matrix.
pub const fn packed_len(n: usize, k: usize) -> usize {
    n.div_ceil(NR) * k.div_ceil(KR) * GROUP
}

/// Index of `W[j][i]` in the packed layout.
#[inline]
pub(crate) fn packed_index(k: usize, j: usize, i: usize) -> usize {
    ((j / NR) * k.div_ceil(KR) + i / KR) * GROUP + (j % NR) * KR + i % KR
}

/// Packs row-major `[n][k]` int8 weights.
pub fn pack_c4(w: &[i8], n: usize, k: usize, out: &mut [i8]) {
    out[..packed_len(n, k)].fill(0);
    for j in 0..n {
        for i in 0..k {
            out[packed_index(k, j, i)] = w[j * k + i];
        }
    }
}

/// The reference. `bias`, `rq`: `n` each; `input`: `pixels × k`; `out`: `pixels × n`.
#[allow(clippy::too_many_arguments)]
pub fn pointwise_i8_scalar(
    input: &[i8],
    pixels: usize,
    k: usize,
    weight: &[i8],
    bias: &[i32],
    rq: &[Requant],
    zero_point: i32,
    n: usize,
    out: &mut [i8],
) {
    for p in 0..pixels {
        let x = &input[p * k..][..k];
        for j in 0..n {
            out[p * n + j] = requantize_scalar(dot(x, k, weight, j, bias[j]), rq[j], zero_point);
        }
    }
}

/// The reference of the int32-output form (the block's second pointwise conv, whose
/// accumulators the residual add consumes): `out[p][n] = bias[n] + Σ_k in[p][k]·W[n][k]`.
#[allow(clippy::too_many_arguments)]
pub fn pointwise_i8_acc_scalar(
    input: &[i8],
    pixels: usize,
    k: usize,
    weight: &[i8],
    bias: &[i32],
    n: usize,
    out: &mut [i32],
) {
    for p in 0..pixels {
        let x = &input[p * k..][..k];
        for j in 0..n {
            out[p * n + j] = dot(x, k, weight, j, bias[j]);
        }
    }
}

/// `bias + Σ_i x[i]·W[j][i]`, wrapping.
#[inline]
fn dot(x: &[i8], k: usize, weight: &[i8], j: usize, bias: i32) -> i32 {
    let mut acc = bias;
    for (i, &v) in x.iter().enumerate() {
        acc = acc.wrapping_add(v as i32 * weight[packed_index(k, j, i)] as i32);
    }
    acc
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

/// The [`x86::GemmI8`] of one call, after checking every slice covers what the tiles touch.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn gemm_i8_x86(
    input: &[i8],
    pixels: usize,
    k: usize,
    weight: &[i8],
    bias: &[i32],
    rq: &[Requant],
    zero_point: i32,
    n: usize,
    out: *mut u8,
) -> x86::GemmI8 {
    assert!(input.len() >= pixels * k && weight.len() >= packed_len(n, k) && bias.len() >= n);
    x86::GemmI8 {
        a: input.as_ptr(),
        k,
        b: weight.as_ptr(),
        bias: bias.as_ptr(),
        rows: pixels,
        n,
        out,
        rq: rq.as_ptr(),
        zero_point,
    }
}

/// Defines the safe entry points of one x86 ISA (requantizing and int32 forms).
#[cfg(target_arch = "x86_64")]
macro_rules! x86_entry_points {
    ($isa:literal, $has:ident, $gemm:ident, $pw:ident, $acc:ident) => {
        #[doc = concat!("[`pointwise_i8_scalar`] on ", $isa, " (see [`x86`]), bit-identical to it.")]
        #[doc = "Panics if the CPU lacks it, a slice is short or the zero point is not int8."]
        #[allow(clippy::too_many_arguments)]
        pub fn $pw(
            input: &[i8],
            pixels: usize,
            k: usize,
            weight: &[i8],
            bias: &[i32],
            rq: &[Requant],
            zero_point: i32,
            n: usize,
            out: &mut [i8],
        ) {
            assert!(
                crate::cpu::X86Features::get().$has,
                concat!($isa, " not available")
            );
            assert!(rq.len() >= n && out.len() >= pixels * n && (-128..=127).contains(&zero_point));
            let g = gemm_i8_x86(
                input,
                pixels,
                k,
                weight,
                bias,
                rq,
                zero_point,
                n,
                out.as_mut_ptr().cast(),
            );
            // SAFETY: the CPU has the ISA (asserted); every range was checked above.
            unsafe { x86::$gemm::<{ x86::EPI_REQUANT }>(&g) }
        }

        #[doc = concat!("[`pointwise_i8_acc_scalar`] on ", $isa, ", bit-identical to it.")]
        #[allow(clippy::too_many_arguments)]
        pub fn $acc(
            input: &[i8],
            pixels: usize,
            k: usize,
            weight: &[i8],
            bias: &[i32],
            n: usize,
            out: &mut [i32],
        ) {
            assert!(
                crate::cpu::X86Features::get().$has,
                concat!($isa, " not available")
            );
            assert!(out.len() >= pixels * n);
            let g = gemm_i8_x86(
                input,
                pixels,
                k,
                weight,
                bias,
                &[],
                0,
                n,
                out.as_mut_ptr().cast(),
            );
            // SAFETY: as above (no requantization records are read by this epilogue).
            unsafe { x86::$gemm::<{ x86::EPI_I32 }>(&g) }
        }
    };
}
#[cfg(target_arch = "x86_64")]
x86_entry_points!(
    "AVX2",
    avx2,
    gemm_avx2,
    pointwise_i8_avx2,
    pointwise_i8_acc_avx2
);
#[cfg(target_arch = "x86_64")]
x86_entry_points!(
    "AVX-512 VNNI",
    avx512_vnni,
    gemm_vnni,
    pointwise_i8_avx512vnni,
    pointwise_i8_acc_avx512vnni
);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ops::testutil::*;
    use std::vec::Vec;

    /// Inputs, row-major weights, packed weights, bias, requantization, output zero point.
    pub(super) type Case = (Vec<i8>, Vec<i8>, Vec<i8>, Vec<i32>, Vec<Requant>, i32);

    pub(super) fn random_case(rng: &mut Rng, p: usize, k: usize, n: usize) -> Case {
        let byte = |rng: &mut Rng| rng.next_u64() as i8;
        let x: Vec<i8> = (0..p * k).map(|_| byte(rng)).collect();
        let w: Vec<i8> = (0..n * k).map(|_| byte(rng)).collect();
        let mut wp = std::vec![0i8; packed_len(n, k)];
        pack_c4(&w, n, k, &mut wp);
        let bias: Vec<i32> = (0..n).map(|_| (rng.next_u64() as i32) >> 12).collect();
        // Scales around 1/(64·sqrt(k)) keep most outputs unsaturated; some saturate.
        let rq: Vec<Requant> = (0..n)
            .map(|_| {
                let s = (0.5 + rng.f32().abs() as f64) / (64.0 * (k as f64).sqrt());
                Requant::from_scale(s).unwrap()
            })
            .collect();
        let zp = (rng.next_u64() % 256) as i32 - 128;
        (x, w, wp, bias, rq, zp)
    }

    #[test]
    fn matches_naive_integer_gemm() {
        let mut rng = Rng::new(70);
        for (p, k, n) in [(1, 1, 1), (3, 5, 7), (9, 40, 160), (2, 17, 9), (4, 320, 13)] {
            let (x, w, wp, bias, rq, zp) = random_case(&mut rng, p, k, n);
            let mut got = std::vec![0i8; p * n];
            pointwise_i8_scalar(&x, p, k, &wp, &bias, &rq, zp, n, &mut got);
            for pp in 0..p {
                for j in 0..n {
                    let dot: i64 = (0..k)
                        .map(|i| x[pp * k + i] as i64 * w[j * k + i] as i64)
                        .sum::<i64>()
                        + bias[j] as i64;
                    let want = (dot as f64 * rq[j].scale() + zp as f64).clamp(-128.0, 127.0);
                    let g = got[pp * n + j] as f64;
                    assert!(
                        (g - want).abs() <= 0.75,
                        "{p}x{k}x{n} [{pp}][{j}]: {g} vs {want}"
                    );
                }
            }
        }
    }
}

/// NEON (ARMv8.0): 4 pixels × 8 outputs per tile, per 4 inputs one `DUP` of the inputs and
/// 4 `SMULL` + 4 `SADALP` per pixel, outputs reduced with `ADDP`, vectorized requantization.
/// Bit-identical to [`pointwise_i8_scalar`].
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
pub fn pointwise_i8_neon(
    input: &[i8],
    pixels: usize,
    k: usize,
    weight: &[i8],
    bias: &[i32],
    rq: &[Requant],
    zero_point: i32,
    n: usize,
    out: &mut [i8],
) {
    assert!(out.len() >= pixels * n);
    let mut emit = requant_store(bias, rq, zero_point, n, out);
    gemm_i8(input, pixels, k, weight, n, smull(k), &mut emit)
}

/// NEON int32-output form of [`pointwise_i8_neon`]; bit-identical to
/// [`pointwise_i8_acc_scalar`].
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
pub fn pointwise_i8_acc_neon(
    input: &[i8],
    pixels: usize,
    k: usize,
    weight: &[i8],
    bias: &[i32],
    n: usize,
    out: &mut [i32],
) {
    assert!(out.len() >= pixels * n);
    let mut emit = acc_store(bias, n, out);
    gemm_i8(input, pixels, k, weight, n, smull(k), &mut emit)
}

/// NEON with `SDOT` (ARMv8.2 dotprod; cargo feature `dotprod`, nightly features on stable via
/// `RUSTC_BOOTSTRAP=1`): 4 pixels × 8 outputs, one `SDOT` per 16 multiply-adds, the bias as the
/// accumulators' initial value and the requantization done on the registers (one call per
/// panel: no per-tile calls, spills or reloads). Bit-identical to [`pointwise_i8_scalar`].
///
/// # Safety
/// The CPU must implement FEAT_DotProd.
#[cfg(all(target_arch = "aarch64", feature = "dotprod"))]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "dotprod")]
pub unsafe fn pointwise_i8_sdot(
    input: &[i8],
    pixels: usize,
    k: usize,
    weight: &[i8],
    bias: &[i32],
    rq: &[Requant],
    zero_point: i32,
    n: usize,
    out: &mut [i8],
) {
    assert!(out.len() >= pixels * n && bias.len() >= n && rq.len() >= n);
    let mut e = neon::RequantRows::new(rq, zero_point, out, n);
    // SAFETY: the caller guarantees dotprod.
    unsafe { neon::gemm_sdot(input, pixels, k, weight, bias, n, &mut e) }
}

/// NEON int32-output form with `SDOT` (bias as the initial accumulators, rows stored from the
/// registers); bit-identical to [`pointwise_i8_acc_scalar`].
///
/// # Safety
/// The CPU must implement FEAT_DotProd.
#[cfg(all(target_arch = "aarch64", feature = "dotprod"))]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "dotprod")]
pub unsafe fn pointwise_i8_acc_sdot(
    input: &[i8],
    pixels: usize,
    k: usize,
    weight: &[i8],
    bias: &[i32],
    n: usize,
    out: &mut [i32],
) {
    assert!(out.len() >= pixels * n && bias.len() >= n);
    let mut e = neon::StoreRows {
        out,
        n,
        panel: (0, 0),
    };
    // SAFETY: the caller guarantees dotprod.
    unsafe { neon::gemm_sdot(input, pixels, k, weight, bias, n, &mut e) }
}

/// The dotprod tile for rows of `k`.
///
/// # Safety
/// The returned closure may only run on a CPU with FEAT_DotProd.
#[cfg(all(target_arch = "aarch64", feature = "dotprod"))]
pub(crate) unsafe fn sdot(k: usize) -> impl FnMut(usize, &[i8], &[i8], &mut [[i32; NR]; 4]) {
    // SAFETY: forwarded to the caller.
    move |mr, x, w, acc| unsafe {
        match mr {
            4 => neon::tile_sdot::<4>(x, k, w, acc),
            2 => neon::tile_sdot::<2>(x, k, w, acc),
            _ => neon::tile_sdot::<1>(x, k, w, acc),
        }
    }
}

/// The int32 epilogue: bias added (wrapping), `lanes` of each row stored.
#[cfg(target_arch = "aarch64")]
pub(crate) fn acc_store<'o>(
    bias: &'o [i32],
    n: usize,
    out: &'o mut [i32],
) -> impl FnMut(usize, usize, usize, usize, &[[i32; NR]; 4]) + 'o {
    assert!(bias.len() >= n);
    move |p, mr, col, lanes, acc| {
        for (q, a) in acc.iter().enumerate().take(mr) {
            let o = &mut out[(p + q) * n + col..][..lanes];
            for ((d, &v), &b) in o.iter_mut().zip(a).zip(&bias[col..]) {
                *d = v.wrapping_add(b);
            }
        }
    }
}

/// The ARMv8.0 tile for rows of `k`.
#[cfg(target_arch = "aarch64")]
pub(crate) fn smull(k: usize) -> impl FnMut(usize, &[i8], &[i8], &mut [[i32; NR]; 4]) {
    move |mr, x, w, acc| match mr {
        4 => neon::tile_smull::<4>(x, k, w, acc),
        2 => neon::tile_smull::<2>(x, k, w, acc),
        _ => neon::tile_smull::<1>(x, k, w, acc),
    }
}

/// The requantizing epilogue: a tile's `mr` rows of 8 accumulators from column `col` →
/// bias added (wrapping) → int8, `lanes` of each stored. The panel's parameters are loaded
/// once per tile.
#[cfg(target_arch = "aarch64")]
fn requant_store<'o>(
    bias: &'o [i32],
    rq: &'o [Requant],
    zero_point: i32,
    n: usize,
    out: &'o mut [i8],
) -> impl FnMut(usize, usize, usize, usize, &[[i32; NR]; 4]) + 'o {
    use crate::ops::requant::neon::{narrow8, scale4, Requant4};
    use core::arch::aarch64::*;
    assert!(bias.len() >= n && rq.len() >= n);
    // SAFETY: register arithmetic only.
    let zpv = unsafe { vdupq_n_s16(zero_point.clamp(-128, 127) as i16) };
    // The panel's parameters, loaded when the column changes (once per panel: the driver
    // walks all pixels of a panel before the next).
    let mut cached: Option<(usize, [Requant4; 2], [int32x4_t; 2])> = None;
    move |p, mr, col, lanes, acc| {
        if !matches!(cached, Some((c, ..)) if c == col) {
            let mut r = [Requant::HALF; NR];
            r[..lanes].copy_from_slice(&rq[col..][..lanes]);
            let mut b = [0i32; NR];
            b[..lanes].copy_from_slice(&bias[col..][..lanes]);
            let r4 = [
                Requant4::load(&[r[0], r[1], r[2], r[3]]),
                Requant4::load(&[r[4], r[5], r[6], r[7]]),
            ];
            // SAFETY: 4-lane loads from an 8-element array.
            let b4 = unsafe { [vld1q_s32(b.as_ptr()), vld1q_s32(b.as_ptr().add(4))] };
            cached = Some((col, r4, b4));
        }
        let Some((_, r, b)) = cached else { return };
        for (q, a) in acc.iter().enumerate().take(mr) {
            // SAFETY: 4-lane loads from an 8-element array.
            let y = unsafe {
                let lo = scale4(vaddq_s32(b[0], vld1q_s32(a.as_ptr())), &r[0]);
                let hi = scale4(vaddq_s32(b[1], vld1q_s32(a.as_ptr().add(4))), &r[1]);
                narrow8(lo, hi, zpv)
            };
            let o = &mut out[(p + q) * n + col..][..lanes];
            if lanes == NR {
                // SAFETY: `o` is 8 bytes.
                unsafe { vst1_s8(o.as_mut_ptr(), y) };
            } else {
                let mut t = [0i8; NR];
                // SAFETY: an 8-byte store to `t`.
                unsafe { vst1_s8(t.as_mut_ptr(), y) };
                o.copy_from_slice(&t[..lanes]);
            }
        }
    }
}

/// The driver shared by the NEON kernels: tiles of up to 4 pixels × one panel; `tile` fills
/// each pixel's 8 int32 dot products and `emit(first pixel, pixels, column, lanes, acc)` adds
/// the bias and stores them.
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn gemm_i8(
    input: &[i8],
    pixels: usize,
    k: usize,
    weight: &[i8],
    n: usize,
    mut tile: impl FnMut(usize, &[i8], &[i8], &mut [[i32; NR]; 4]),
    emit: &mut impl FnMut(usize, usize, usize, usize, &[[i32; NR]; 4]),
) {
    assert!(input.len() >= pixels * k && weight.len() >= packed_len(n, k));
    let panel = k.div_ceil(KR) * GROUP;
    // Panel-major: a panel's weights (k·8 bytes) and output parameters serve every pixel.
    for j in 0..n.div_ceil(NR) {
        let lanes = NR.min(n - j * NR);
        let wj = &weight[j * panel..][..panel];
        let mut p = 0;
        while p < pixels {
            let mr = [4, 2, 1]
                .into_iter()
                .find(|&m| pixels - p >= m)
                .unwrap_or(1);
            let mut acc = [[0i32; NR]; 4];
            tile(mr, &input[p * k..][..mr * k], wj, &mut acc);
            emit(p, mr, j * NR, lanes, &acc);
            p += mr;
        }
    }
}

#[cfg(target_arch = "aarch64")]
pub(crate) mod neon {
    use super::{GROUP, KR, NR};
    use core::arch::aarch64::*;

    /// Group `g` (4 inputs) of each of the `MR` rows, as 32-bit lanes; a short last group is
    /// zero-filled (its weights are zero-padded too).
    #[inline(always)]
    fn group<const MR: usize>(x: &[i8], k: usize, g: usize) -> [i32; MR] {
        core::array::from_fn(|q| {
            let row = &x[q * k..][..k];
            if let Some(full) = row.get(g * KR..g * KR + KR) {
                // One 4-byte load.
                return i32::from_ne_bytes([
                    full[0] as u8,
                    full[1] as u8,
                    full[2] as u8,
                    full[3] as u8,
                ]);
            }
            let mut b = [0u8; KR];
            let have = KR.min(k - g * KR);
            for (d, &v) in b.iter_mut().zip(&row[g * KR..][..have]) {
                *d = v as u8;
            }
            i32::from_ne_bytes(b)
        })
    }

    /// `MR` rows × 8 outputs with `SMULL` + `SADALP`: accumulator `2i` holds outputs 4i, 4i+1
    /// (lanes 0–1, 2–3), `2i+1` outputs 4i+2, 4i+3; `ADDP` of the two gives outputs 4i..4i+4.
    #[inline(always)]
    pub(crate) fn tile_smull<const MR: usize>(
        x: &[i8],
        k: usize,
        w: &[i8],
        out: &mut [[i32; NR]; 4],
    ) {
        let groups = k.div_ceil(KR);
        assert!(x.len() >= MR * k && w.len() >= groups * GROUP && MR <= 4);
        // SAFETY: weight group g is 32 bytes at g·32 < groups·32 ≤ w.len(); 16-byte input
        // loads stay inside their row (16·b + 16 ≤ k), the tail goes through `group`; stores go
        // to `out`.
        unsafe {
            let mut acc = [[vdupq_n_s32(0); 4]; MR];
            let step = |acc: &mut [[int32x4_t; 4]; MR], a: [int8x8_t; MR], g: usize| {
                let wg = w.as_ptr().add(g * GROUP);
                let wv = [vld1q_s8(wg), vld1q_s8(wg.add(16))];
                for q in 0..MR {
                    for (h, wh) in wv.iter().enumerate() {
                        let p0 = vmull_s8(a[q], vget_low_s8(*wh));
                        let p1 = vmull_s8(a[q], vget_high_s8(*wh));
                        acc[q][2 * h] = vpadalq_s16(acc[q][2 * h], p0);
                        acc[q][2 * h + 1] = vpadalq_s16(acc[q][2 * h + 1], p1);
                    }
                }
            };
            // 16 inputs (4 groups) per row load; each group's 4 inputs duplicated into an
            // 8-byte operand (one per 2 outputs) with DUP (element).
            let blocks = k / 16;
            for b in 0..blocks {
                let a: [int32x4_t; MR] = core::array::from_fn(|q| {
                    vreinterpretq_s32_s8(vld1q_s8(x.as_ptr().add(q * k + 16 * b)))
                });
                macro_rules! lane {
                    ($l:literal) => {
                        step(
                            &mut acc,
                            a.map(|v| vreinterpret_s8_s32(vdup_laneq_s32::<$l>(v))),
                            4 * b + $l,
                        );
                    };
                }
                lane!(0);
                lane!(1);
                lane!(2);
                lane!(3);
            }
            for g in 4 * blocks..groups {
                let a = group::<MR>(x, k, g);
                step(&mut acc, a.map(|v| vreinterpret_s8_s32(vdup_n_s32(v))), g);
            }
            for q in 0..MR {
                vst1q_s32(out[q].as_mut_ptr(), vpaddq_s32(acc[q][0], acc[q][1]));
                vst1q_s32(out[q].as_mut_ptr().add(4), vpaddq_s32(acc[q][2], acc[q][3]));
            }
        }
    }

    #[cfg(feature = "dotprod")]
    /// What [`gemm_sdot`] does with each finished row of 8 accumulators (base NEON only, so
    /// it inlines into the dotprod loop).
    pub(crate) trait RowEpilogue {
        /// Called when the panel at column `col` (with `lanes` real outputs) starts.
        fn panel(&mut self, col: usize, lanes: usize);
        /// Row `p` of the current panel: outputs `col..col + lanes`.
        fn row(&mut self, p: usize, acc: [int32x4_t; 2]);
    }

    #[cfg(feature = "dotprod")]
    /// Requantize to int8 and store.
    pub(crate) struct RequantRows<'o> {
        pub rq: &'o [super::Requant],
        pub zp: int16x8_t,
        pub out: &'o mut [i8],
        pub n: usize,
        /// The current panel: column, real lanes, its channels' parameters.
        pub panel: (usize, usize, [crate::ops::requant::neon::Requant4; 2]),
    }

    #[cfg(feature = "dotprod")]
    impl<'o> RequantRows<'o> {
        pub(crate) fn new(rq: &'o [super::Requant], zp: i32, out: &'o mut [i8], n: usize) -> Self {
            use crate::ops::requant::neon::Requant4;
            let h = Requant4::load(&[super::Requant::HALF; 4]);
            // SAFETY: register arithmetic only.
            let zp = unsafe { vdupq_n_s16(zp.clamp(-128, 127) as i16) };
            RequantRows {
                rq,
                zp,
                out,
                n,
                panel: (0, 0, [h, h]),
            }
        }
    }

    #[cfg(feature = "dotprod")]
    impl RowEpilogue for RequantRows<'_> {
        #[inline(always)]
        fn panel(&mut self, col: usize, lanes: usize) {
            use crate::ops::requant::neon::Requant4;
            let mut r = [super::Requant::HALF; NR];
            r[..lanes].copy_from_slice(&self.rq[col..][..lanes]);
            let r4 = [
                Requant4::load(&[r[0], r[1], r[2], r[3]]),
                Requant4::load(&[r[4], r[5], r[6], r[7]]),
            ];
            self.panel = (col, lanes, r4);
        }
        #[inline(always)]
        fn row(&mut self, p: usize, acc: [int32x4_t; 2]) {
            use crate::ops::requant::neon::{narrow8, scale4};
            let (col, lanes, r) = &self.panel;
            let y = narrow8(scale4(acc[0], &r[0]), scale4(acc[1], &r[1]), self.zp);
            let o = &mut self.out[p * self.n + col..][..*lanes];
            // SAFETY: 8 bytes stored inside `o` (its length checked by the slice) or through
            // a temporary.
            unsafe {
                if *lanes == NR {
                    vst1_s8(o.as_mut_ptr(), y);
                } else {
                    let mut t = [0i8; NR];
                    vst1_s8(t.as_mut_ptr(), y);
                    o.copy_from_slice(&t[..*lanes]);
                }
            }
        }
    }

    #[cfg(feature = "dotprod")]
    /// Store the int32 accumulators.
    pub(crate) struct StoreRows<'o> {
        pub out: &'o mut [i32],
        pub n: usize,
        /// The current panel: column, real lanes.
        pub panel: (usize, usize),
    }

    #[cfg(feature = "dotprod")]
    impl RowEpilogue for StoreRows<'_> {
        #[inline(always)]
        fn panel(&mut self, col: usize, lanes: usize) {
            self.panel = (col, lanes);
        }
        #[inline(always)]
        fn row(&mut self, p: usize, acc: [int32x4_t; 2]) {
            let (col, lanes) = self.panel;
            let o = &mut self.out[p * self.n + col..][..lanes];
            // SAFETY: 8 lanes stored inside `o` (its length checked by the slice) or through
            // a temporary.
            unsafe {
                if lanes == NR {
                    vst1q_s32(o.as_mut_ptr(), acc[0]);
                    vst1q_s32(o.as_mut_ptr().add(4), acc[1]);
                } else {
                    let mut t = [0i32; NR];
                    vst1q_s32(t.as_mut_ptr(), acc[0]);
                    vst1q_s32(t.as_mut_ptr().add(4), acc[1]);
                    o.copy_from_slice(&t[..lanes]);
                }
            }
        }
    }

    /// `$mr` rows × 8 outputs with `SDOT`, added into `$acc: [[int32x4_t; 2]; $mr]`: lane i of
    /// accumulator h is output 4h + i. A macro so that it is inlined into both callers (a
    /// `#[target_feature]` function cannot be `#[inline(always)]` on Rust 1.96, and `#[inline]`
    /// was not inlined: +4 M instructions per Atto image). Must run in a dotprod function,
    /// inside `unsafe`: row q reads `$x[q·k ..][..k]`, the weights `$w[..ceil(k/4)·GROUP]`.
    #[cfg(feature = "dotprod")]
    macro_rules! sdot_rows {
        ($x:expr, $k:expr, $w:expr, $acc:ident, $mr:expr) => {{
            let (x, k, w): (&[i8], usize, &[i8]) = ($x, $k, $w);
            let groups = k.div_ceil(KR);
            assert!(x.len() >= $mr * k && w.len() >= groups * GROUP && $mr <= 4);
            // 16 inputs per row load; SDOT (element) takes each group's 4 from its lane.
            let blocks = k / 16;
            for b in 0..blocks {
                let a: [int8x16_t; $mr] =
                    core::array::from_fn(|q| vld1q_s8(x.as_ptr().add(q * k + 16 * b)));
                macro_rules! lane {
                    ($l:literal) => {
                        let wg = w.as_ptr().add((4 * b + $l) * GROUP);
                        let (w0, w1) = (vld1q_s8(wg), vld1q_s8(wg.add(16)));
                        for q in 0..$mr {
                            $acc[q][0] = vdotq_laneq_s32::<$l>($acc[q][0], w0, a[q]);
                            $acc[q][1] = vdotq_laneq_s32::<$l>($acc[q][1], w1, a[q]);
                        }
                    };
                }
                lane!(0);
                lane!(1);
                lane!(2);
                lane!(3);
            }
            for g in 4 * blocks..groups {
                let a = group::<{ $mr }>(x, k, g);
                let wg = w.as_ptr().add(g * GROUP);
                let (w0, w1) = (vld1q_s8(wg), vld1q_s8(wg.add(16)));
                for q in 0..$mr {
                    let av = vreinterpretq_s8_s32(vdupq_n_s32(a[q]));
                    $acc[q][0] = vdotq_s32($acc[q][0], w0, av);
                    $acc[q][1] = vdotq_s32($acc[q][1], w1, av);
                }
            }
        }};
    }

    /// The SDOT GEMM, panel by panel: for each 8 outputs, every pixel in tiles of 4 (then 2, 1)
    /// rows, accumulators starting at the bias, each finished row handed to the epilogue.
    ///
    /// # Safety
    /// The CPU must implement FEAT_DotProd.
    #[cfg(feature = "dotprod")]
    #[target_feature(enable = "dotprod")]
    pub(crate) unsafe fn gemm_sdot<E: RowEpilogue>(
        input: &[i8],
        pixels: usize,
        k: usize,
        weight: &[i8],
        bias: &[i32],
        n: usize,
        e: &mut E,
    ) {
        assert!(input.len() >= pixels * k && weight.len() >= super::packed_len(n, k));
        let groups = k.div_ceil(KR);
        let panel = groups * GROUP;
        for j in 0..n.div_ceil(NR) {
            let col = j * NR;
            let lanes = NR.min(n - col);
            let w = &weight[j * panel..][..panel];
            let mut b = [0i32; NR];
            b[..lanes].copy_from_slice(&bias[col..][..lanes]);
            // SAFETY: 4-lane loads from an 8-element array.
            let b4 = unsafe { [vld1q_s32(b.as_ptr()), vld1q_s32(b.as_ptr().add(4))] };
            e.panel(col, lanes);
            let mut p = 0;
            macro_rules! tile {
                ($mr:literal) => {{
                    let x = &input[p * k..][..$mr * k];
                    let mut acc = [b4; $mr];
                    // SAFETY: dotprod is guaranteed by the caller; loads as `sdot_rows` states.
                    unsafe { sdot_rows!(x, k, w, acc, $mr) };
                    for (q, a) in acc.into_iter().enumerate() {
                        e.row(p + q, a);
                    }
                    p += $mr;
                }};
            }
            while pixels - p >= 4 {
                tile!(4);
            }
            // At most one of each (a remainder of 3 = 2 + 1).
            while pixels - p >= 2 {
                tile!(2);
            }
            while pixels > p {
                tile!(1);
            }
        }
    }

    /// [`sdot_rows`] from zero, stored (the tile of [`super::gemm_i8`], for the patch conv).
    ///
    /// # Safety
    /// The CPU must implement FEAT_DotProd.
    #[cfg(feature = "dotprod")]
    #[target_feature(enable = "dotprod")]
    pub(crate) unsafe fn tile_sdot<const MR: usize>(
        x: &[i8],
        k: usize,
        w: &[i8],
        out: &mut [[i32; NR]; 4],
    ) {
        // SAFETY: dotprod is guaranteed by the caller; the loads as `sdot_rows` states; 4-lane
        // stores into 8-element rows.
        unsafe {
            let mut acc = [[vdupq_n_s32(0); 2]; MR];
            sdot_rows!(x, k, w, acc, MR);
            for q in 0..MR {
                vst1q_s32(out[q].as_mut_ptr(), acc[q][0]);
                vst1q_s32(out[q].as_mut_ptr().add(4), acc[q][1]);
            }
        }
    }
}

/// [`pointwise_i8_sdot`] in a build whose target has FEAT_DotProd (`-C target-feature=+dotprod`):
/// safe to call, every CPU the binary may run on implements it. Kernel-set slot.
#[cfg(all(
    target_arch = "aarch64",
    feature = "dotprod",
    target_feature = "dotprod"
))]
#[allow(clippy::too_many_arguments)]
pub fn pointwise_i8_sdot_static(
    input: &[i8],
    pixels: usize,
    k: usize,
    weight: &[i8],
    bias: &[i32],
    rq: &[Requant],
    zero_point: i32,
    n: usize,
    out: &mut [i8],
) {
    // SAFETY: `target_feature = "dotprod"` holds for the whole build (cfg above).
    unsafe { pointwise_i8_sdot(input, pixels, k, weight, bias, rq, zero_point, n, out) }
}

/// [`pointwise_i8_acc_sdot`] in a build whose target has FEAT_DotProd. Kernel-set slot.
#[cfg(all(
    target_arch = "aarch64",
    feature = "dotprod",
    target_feature = "dotprod"
))]
pub fn pointwise_i8_acc_sdot_static(
    input: &[i8],
    pixels: usize,
    k: usize,
    weight: &[i8],
    bias: &[i32],
    n: usize,
    out: &mut [i32],
) {
    // SAFETY: `target_feature = "dotprod"` holds for the whole build (cfg above).
    unsafe { pointwise_i8_acc_sdot(input, pixels, k, weight, bias, n, out) }
}

#[cfg(all(test, target_arch = "aarch64"))]
mod neon_tests {
    use super::tests::random_case;
    use super::*;
    use crate::ops::requant::neon::{scale4, Requant4};
    use crate::ops::testutil::*;
    use std::vec;

    #[test]
    fn neon_bit_identical_to_reference() {
        let mut rng = Rng::new(71);
        let mut shapes = vec![
            (1, 1, 1),
            (2, 8, 8),
            (9, 40, 160),
            (49, 1280, 320),
            (3, 17, 9),
        ];
        for _ in 0..40 {
            shapes.push((
                1 + rng.next_u64() as usize % 9,
                1 + rng.next_u64() as usize % 70,
                1 + rng.next_u64() as usize % 30,
            ));
        }
        #[cfg_attr(not(feature = "dotprod"), allow(unused_mut))]
        let mut sdot_checked = 0;
        for (p, k, n) in shapes {
            let (mut x, _, mut wp, bias, rq, zp) = random_case(&mut rng, p, k, n);
            // Extremes: -128 · -128 products in every lane of some rows.
            if p > 1 {
                x[..k].fill(-128);
                let real = packed_len(n.min(NR), k);
                wp[..real]
                    .iter_mut()
                    .filter(|v| **v != 0)
                    .for_each(|v| *v = -128);
            }
            let (mut want, mut got) = (vec![0i8; p * n], vec![0i8; p * n]);
            pointwise_i8_scalar(&x, p, k, &wp, &bias, &rq, zp, n, &mut want);
            pointwise_i8_neon(&x, p, k, &wp, &bias, &rq, zp, n, &mut got);
            assert_eq!(got, want, "smull {p}x{k}x{n}");
            let (mut acc_want, mut acc_got) = (vec![0i32; p * n], vec![0i32; p * n]);
            pointwise_i8_acc_scalar(&x, p, k, &wp, &bias, n, &mut acc_want);
            pointwise_i8_acc_neon(&x, p, k, &wp, &bias, n, &mut acc_got);
            assert_eq!(acc_got, acc_want, "acc {p}x{k}x{n}");
            #[cfg(feature = "dotprod")]
            if std::arch::is_aarch64_feature_detected!("dotprod") {
                let mut got = vec![0i8; p * n];
                // SAFETY: dotprod detected.
                unsafe { pointwise_i8_sdot(&x, p, k, &wp, &bias, &rq, zp, n, &mut got) };
                assert_eq!(got, want, "sdot {p}x{k}x{n}");
                let mut acc_got = vec![0i32; p * n];
                // SAFETY: dotprod detected.
                unsafe { pointwise_i8_acc_sdot(&x, p, k, &wp, &bias, n, &mut acc_got) };
                assert_eq!(acc_got, acc_want, "acc sdot {p}x{k}x{n}");
                sdot_checked += 1;
            }
        }
        std::println!("int8 GEMM: SMULL bit-identical on all shapes; SDOT on {sdot_checked}");
    }

    #[test]
    fn vector_requantization_equals_scalar() {
        let mut rng = Rng::new(72);
        for i in 0..5000 {
            let rq: [Requant; 4] = core::array::from_fn(|_| {
                Requant::from_scale(libm::pow(2.0, rng.f32() as f64 * 30.0 - 10.0)).unwrap()
            });
            let acc: [i32; 4] = core::array::from_fn(|l| match (i + l) % 9 {
                0 => i32::MIN,
                1 => i32::MAX,
                _ => (rng.next_u64() as i32) >> (rng.next_u64() % 31),
            });
            let mut got = [0i32; 4];
            // SAFETY: 4-lane loads/stores of 4-element arrays.
            unsafe {
                use core::arch::aarch64::*;
                let v = scale4(vld1q_s32(acc.as_ptr()), &Requant4::load(&rq));
                vst1q_s32(got.as_mut_ptr(), v);
            }
            for l in 0..4 {
                // Compare steps 1–3 through step 4 with a zero point of 0 and a wide clamp:
                // the narrowing is tested by the GEMM test; here the full i32 value must agree.
                let r = rq[l];
                let x = ((acc[l] as i64) << r.pre_shift).clamp(i32::MIN as i64, i32::MAX as i64);
                let x = (x * r.multiplier as i64 + (1 << 30)) >> 31;
                let x = if r.post_shift > 0 {
                    (x + (1i64 << (r.post_shift - 1))) >> r.post_shift
                } else {
                    x
                };
                assert_eq!(got[l] as i64, x, "acc {} {:?}", acc[l], r);
                assert_eq!(requantize_scalar(acc[l], r, 0), x.clamp(-128, 127) as i8);
            }
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod x86_tests {
    use super::tests::random_case;
    use super::*;
    use crate::cpu::X86Features;
    use crate::ops::testutil::*;
    use std::vec;

    type Pw = fn(&[i8], usize, usize, &[i8], &[i32], &[Requant], i32, usize, &mut [i8]);
    type Acc = fn(&[i8], usize, usize, &[i8], &[i32], usize, &mut [i32]);

    fn sets() -> std::vec::Vec<(&'static str, Pw, Acc)> {
        let f = X86Features::get();
        let mut v = std::vec::Vec::new();
        if f.avx2 {
            v.push((
                "avx2",
                pointwise_i8_avx2 as Pw,
                pointwise_i8_acc_avx2 as Acc,
            ));
        }
        if f.avx512_vnni {
            v.push((
                "avx512vnni",
                pointwise_i8_avx512vnni as Pw,
                pointwise_i8_acc_avx512vnni as Acc,
            ));
        }
        std::println!(
            "pointwise_i8 x86 sets run: {:?}",
            v.iter().map(|s| s.0).collect::<std::vec::Vec<_>>()
        );
        v
    }

    #[test]
    fn x86_bit_identical_to_reference() {
        let mut rng = Rng::new(141);
        let mut shapes = vec![
            (1, 1, 1),
            (3136, 40, 160),
            (49, 1280, 320),
            (1, 320, 1000),
            (9, 17, 23),
            (13, 6, 8),
        ];
        for _ in 0..40 {
            shapes.push((
                1 + rng.next_u64() as usize % 30,
                1 + rng.next_u64() as usize % 70,
                1 + rng.next_u64() as usize % 70,
            ));
        }
        for (name, pw, acc) in sets() {
            for &(p, k, n) in &shapes {
                let (mut x, w, mut wp, bias, mut rq, zp) = random_case(&mut rng, p, k, n);
                // Extremes: all −128 inputs against all −128 weights (the int16 pair sums'
                // worst case), and requantization records at the ends of their ranges.
                if p % 3 == 0 {
                    x.iter_mut().for_each(|v| *v = -128);
                    let w = vec![-128i8; n * k];
                    pack_c4(&w, n, k, &mut wp);
                }
                for (j, r) in rq.iter_mut().enumerate() {
                    *r = match j % 5 {
                        0 => Requant::from_scale(0.75 * (1u64 << 30) as f64).unwrap(), // pre 30
                        1 => Requant::from_scale(1.0 / (1u64 << 61) as f64).unwrap(),  // post 61
                        2 => Requant::from_scale(0.5).unwrap(),                        // no shifts
                        _ => *r,
                    };
                }
                let _ = w;
                let (mut want, mut got) = (vec![0i8; p * n + 1], vec![7i8; p * n + 1]);
                want[p * n] = 7;
                pointwise_i8_scalar(&x, p, k, &wp, &bias, &rq, zp, n, &mut want);
                pw(&x, p, k, &wp, &bias, &rq, zp, n, &mut got);
                assert_eq!(got, want, "{name} {p}x{k}x{n}");
                let (mut want, mut got) = (vec![0i32; p * n + 1], vec![7i32; p * n + 1]);
                want[p * n] = 7;
                pointwise_i8_acc_scalar(&x, p, k, &wp, &bias, n, &mut want);
                acc(&x, p, k, &wp, &bias, n, &mut got);
                assert_eq!(got, want, "{name} {p}x{k}x{n} int32");
            }
        }
    }
}
