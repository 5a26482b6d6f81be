//! Pointwise (1×1) convolution as a GEMM over NHWC pixels: `out[p][n] = bias[n] + Σ_k in[p][k]·W[n][k]`.
//! Also the classifier (one pixel). Weights are pre-packed in panels of [`PANEL`] outputs,
//! `[ceil(N/8)][K][8]`, zero-padded: a micro-kernel streams one panel with unit stride while
//! broadcasting inputs, and the scalar loop below vectorises over the 8 lanes.

use crate::format::PANEL;
use crate::ops::RowsMut;

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

/// fc1 with GELU fused: the composition of references [`pointwise_f32_scalar`] and
/// [`crate::ops::gelu::gelu_f32_scalar`]. GRN's sums of squares are not fused here (see
/// [`pointwise_gelu_sumsq_f32_scalar`] for the form that sums them per pixel task).
#[allow(clippy::too_many_arguments)]
pub fn pointwise_gelu_f32_scalar(
    input: &[f32],
    pixels: usize,
    k: usize,
    weight: &[f32],
    bias: &[f32],
    n: usize,
    out: &mut [f32],
) {
    pointwise_f32_scalar(input, pixels, k, weight, bias, n, out, false);
    crate::ops::gelu::gelu_f32_scalar(&mut out[..pixels * n]);
}

/// fc1 with GELU and GRN's statistics fused: [`pointwise_gelu_f32_scalar`], then
/// `sumsq[j] = Σ_pixels out[p][j]²` for every output channel `j < n` exactly as
/// [`crate::ops::grn::sumsq_channels_f32_scalar`] computes it over `0..n` (f64 accumulation,
/// pixels in order). `sumsq` holds at least `n` floats; its contents are overwritten.
///
/// The runtime calls it once per pixel task (any worker count; with several, per output
/// panel of it in the stages cut by panels, `out` then a block of the wider hidden rows) and
/// adds the tasks' sums in task order; an observer's unfused run gets the same sums from the
/// separate kernel. `out`: `pixels × n`.
#[allow(clippy::too_many_arguments)]
pub fn pointwise_gelu_sumsq_f32_scalar(
    input: &[f32],
    pixels: usize,
    k: usize,
    weight: &[f32],
    bias: &[f32],
    n: usize,
    mut out: RowsMut<'_, f32>,
    sumsq: &mut [f32],
) {
    assert!(out.rows() == pixels && out.cols() == n && input.len() >= pixels * k);
    for p in 0..pixels {
        let row = out.row(p);
        pointwise_gelu_f32_scalar(&input[p * k..][..k], 1, k, weight, bias, n, row);
    }
    // `sumsq_channels_f32_scalar`'s order: per channel, f64, pixels in order.
    const CH: usize = 64;
    let mut acc = [0f64; CH];
    for c0 in (0..n).step_by(CH) {
        let cw = CH.min(n - c0);
        acc[..cw].fill(0.0);
        for p in 0..pixels {
            for (a, &v) in acc[..cw].iter_mut().zip(&out.row_ref(p)[c0..c0 + cw]) {
                *a += v as f64 * v as f64;
            }
        }
        for (o, a) in sumsq[c0..c0 + cw].iter_mut().zip(&acc[..cw]) {
            *o = *a as f32;
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

/// The [`x86::Gemm`] of a pointwise conv over packed panels, after checking every slice covers
/// what the tiles read and write.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn packed_gemm(
    input: &[f32],
    pixels: usize,
    k: usize,
    weight: &[f32],
    bias: &[f32],
    n: usize,
    mut out: RowsMut<'_, f32>,
) -> x86::Gemm {
    assert!(
        input.len() >= pixels * k
            && weight.len() >= packed_len(n, k)
            && bias.len() >= n
            && out.rows() >= pixels
            && out.cols() >= n
    );
    x86::Gemm {
        a: input.as_ptr(),
        a_row: k,
        seg_len: k,
        segs: 1,
        seg_stride: 0,
        b: weight.as_ptr(),
        b_panel: k * PANEL,
        b_row: PANEL,
        bias: bias.as_ptr(),
        out: out.as_mut_ptr(),
        out_row: out.stride(),
        rows: pixels,
        n,
        sumsq: core::ptr::null_mut(),
    }
}

/// Defines the safe x86 entry points of one ISA: plain/accumulating GEMM and fc1 with GELU.
#[cfg(target_arch = "x86_64")]
macro_rules! x86_pointwise {
    ($isa:literal, $has:ident, $gemm:ident, $pw:ident, $gelu:ident, $sumsq:ident) => {
        #[doc = concat!("[`pointwise_f32_scalar`] on ", $isa, " (see [`x86`]); within f32 rounding (FMA) of it.")]
        #[doc = concat!("Panics if the CPU lacks ", $isa, " or a slice is too short.")]
        #[allow(clippy::too_many_arguments)]
        pub fn $pw(
            input: &[f32],
            pixels: usize,
            k: usize,
            weight: &[f32],
            bias: &[f32],
            n: usize,
            out: &mut [f32],
            accumulate: bool,
        ) {
            assert!(crate::cpu::X86Features::get().$has, concat!($isa, " not available"));
            let g = packed_gemm(input, pixels, k, weight, bias, n, RowsMut::new(out, pixels, n, n));
            // SAFETY: the CPU has the ISA (asserted); `packed_gemm` checked every range.
            unsafe {
                if accumulate {
                    x86::$gemm::<{ x86::EPI_ACCUMULATE }>(&g)
                } else {
                    x86::$gemm::<{ x86::EPI_STORE }>(&g)
                }
            }
        }

        #[doc = concat!("[`pointwise_gelu_f32_scalar`] on ", $isa, ": GELU in the GEMM's epilogue.")]
        #[allow(clippy::too_many_arguments)]
        pub fn $gelu(
            input: &[f32],
            pixels: usize,
            k: usize,
            weight: &[f32],
            bias: &[f32],
            n: usize,
            out: &mut [f32],
        ) {
            assert!(crate::cpu::X86Features::get().$has, concat!($isa, " not available"));
            let g = packed_gemm(input, pixels, k, weight, bias, n, RowsMut::new(out, pixels, n, n));
            // SAFETY: the CPU has the ISA (asserted); `packed_gemm` checked every range.
            unsafe { x86::$gemm::<{ x86::EPI_GELU }>(&g) }
        }

        #[doc = concat!("[`pointwise_gelu_sumsq_f32_scalar`] on ", $isa, ": GELU and GRN's sums of squares in the GEMM's")]
        #[doc = "epilogue (`s = fma(y, y, s)` per lane, pixels in order: bit for bit"]
        #[doc = "[`crate::ops::grn::sumsq_channels_f32_avx2`] over `0..n` when `n` is a multiple of 8)."]
        #[allow(clippy::too_many_arguments)]
        pub fn $sumsq(
            input: &[f32],
            pixels: usize,
            k: usize,
            weight: &[f32],
            bias: &[f32],
            n: usize,
            out: RowsMut<'_, f32>,
            sumsq: &mut [f32],
        ) {
            assert!(crate::cpu::X86Features::get().$has, concat!($isa, " not available"));
            assert!(sumsq.len() >= n);
            sumsq[..n].fill(0.0);
            let mut g = packed_gemm(input, pixels, k, weight, bias, n, out);
            g.sumsq = sumsq.as_mut_ptr();
            // SAFETY: the CPU has the ISA (asserted); `packed_gemm` checked every range, and
            // `sumsq` covers every output column (asserted; the tiles touch no other lane).
            unsafe { x86::$gemm::<{ x86::EPI_GELU_SUMSQ }>(&g) }
        }
    };
}
#[cfg(target_arch = "x86_64")]
x86_pointwise!(
    "AVX2+FMA",
    avx2,
    gemm_avx2,
    pointwise_f32_avx2,
    pointwise_gelu_f32_avx2,
    pointwise_gelu_sumsq_f32_avx2
);
#[cfg(target_arch = "x86_64")]
x86_pointwise!(
    "AVX-512",
    avx512,
    gemm_avx512,
    pointwise_f32_avx512,
    pointwise_gelu_f32_avx512,
    pointwise_gelu_sumsq_f32_avx512
);

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

/// NEON GEMM: a register-blocked micro-kernel of up to 8 pixels × 8 outputs (16 accumulators),
/// streaming one packed panel per tile and broadcasting inputs with `vfmaq_laneq_f32`.
/// Same contract as [`pointwise_f32_scalar`]; results equal it within f32 rounding (FMA). The
/// residual add (`accumulate`) is fused into the store.
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
pub fn pointwise_f32_neon(
    input: &[f32],
    pixels: usize,
    k: usize,
    weight: &[f32],
    bias: &[f32],
    n: usize,
    out: &mut [f32],
    accumulate: bool,
) {
    let rows = RowsMut::new(out, pixels, n, n);
    if accumulate {
        gemm_neon::<{ neon::EPI_ACCUMULATE }>(input, pixels, k, weight, bias, n, rows, &mut [])
    } else {
        gemm_neon::<{ neon::EPI_STORE }>(input, pixels, k, weight, bias, n, rows, &mut [])
    }
}

/// [`pointwise_gelu_f32_scalar`] on NEON: GELU in the GEMM's epilogue.
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
pub fn pointwise_gelu_f32_neon(
    input: &[f32],
    pixels: usize,
    k: usize,
    weight: &[f32],
    bias: &[f32],
    n: usize,
    out: &mut [f32],
) {
    let rows = RowsMut::new(out, pixels, n, n);
    gemm_neon::<{ neon::EPI_GELU }>(input, pixels, k, weight, bias, n, rows, &mut [])
}

/// [`pointwise_gelu_sumsq_f32_scalar`] on NEON: GELU and GRN's sums of squares in the GEMM's
/// epilogue (`s = fma(y, y, s)` per lane on the tile's registers, pixels in order: bit for bit
/// [`crate::ops::grn::sumsq_channels_f32_neon`] over `0..n` when `n` is a multiple of 4).
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
pub fn pointwise_gelu_sumsq_f32_neon(
    input: &[f32],
    pixels: usize,
    k: usize,
    weight: &[f32],
    bias: &[f32],
    n: usize,
    out: RowsMut<'_, f32>,
    sumsq: &mut [f32],
) {
    gemm_neon::<{ neon::EPI_GELU_SUMSQ }>(input, pixels, k, weight, bias, n, out, sumsq)
}

#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
fn gemm_neon<const EPI: u8>(
    input: &[f32],
    pixels: usize,
    k: usize,
    weight: &[f32],
    bias: &[f32],
    n: usize,
    mut out: RowsMut<'_, f32>,
    sumsq: &mut [f32],
) {
    // Preconditions the unsafe tiles rely on.
    assert!(
        input.len() >= pixels * k
            && weight.len() >= packed_len(n, k)
            && bias.len() >= n
            && out.rows() >= pixels
            && out.cols() >= n
    );
    let (out_row, base) = (out.stride(), out.as_mut_ptr());
    let panels = n.div_ceil(PANEL);
    // Sums of squares: 8 lanes per panel (the padded lanes of a ragged last panel in a local).
    let mut pad = [0f32; PANEL];
    if EPI == neon::EPI_GELU_SUMSQ {
        assert!(sumsq.len() >= n);
        sumsq[..n].fill(0.0);
    }
    let mut p = 0;
    while p < pixels {
        let mr = if pixels - p >= 8 {
            8
        } else if pixels - p >= 4 {
            4
        } else {
            1
        };
        // The same rows serve every panel.
        let x = input[p * k..].as_ptr();
        let a = neon::ATile {
            // Rows past `mr` are never read.
            rows: core::array::from_fn(|r| x.wrapping_add(r * k)),
            seg_len: k,
            segs: 1,
            seg_skip: 0,
        };
        for j in 0..panels {
            let lanes = PANEL.min(n - j * PANEL);
            let mut b = [0f32; PANEL];
            b[..lanes].copy_from_slice(&bias[j * PANEL..j * PANEL + lanes]);
            let w = weight[j * k * PANEL..].as_ptr();
            // In the view: row p, columns from j·8 (its invariant covers rows × cols).
            let o = base.wrapping_add(p * out_row + j * PANEL);
            let s = if EPI != neon::EPI_GELU_SUMSQ {
                core::ptr::null_mut()
            } else if lanes == PANEL {
                sumsq[j * PANEL..].as_mut_ptr()
            } else {
                pad[..lanes].copy_from_slice(&sumsq[j * PANEL..n]);
                pad.as_mut_ptr()
            };
            // SAFETY: rows p..p+mr of `input` (k each) and panel j of `weight` (k·8) are in
            // bounds by the assertion above, and so are rows p..p+mr of `out` (`out_row`
            // apart, `lanes` from column j·8 < n ≤ its columns: the view's own elements); `s`
            // has 8 floats (a full panel of `sumsq`, or `pad`) with EPI_GELU_SUMSQ.
            unsafe {
                match mr {
                    8 => neon::tile::<8, EPI>(&a, w, PANEL, &b, o, out_row, lanes, s),
                    4 => neon::tile::<4, EPI>(&a, w, PANEL, &b, o, out_row, lanes, s),
                    _ => neon::tile::<1, EPI>(&a, w, PANEL, &b, o, out_row, lanes, s),
                }
            }
            if EPI == neon::EPI_GELU_SUMSQ && lanes < PANEL {
                sumsq[j * PANEL..n].copy_from_slice(&pad[..lanes]);
            }
        }
        p += mr;
    }
}

#[cfg(target_arch = "aarch64")]
pub(crate) mod neon {
    use super::PANEL;
    use core::arch::aarch64::*;

    /// Epilogue: store.
    pub(crate) const EPI_STORE: u8 = 0;
    /// Epilogue: add to what `out` holds (residual).
    pub(crate) const EPI_ACCUMULATE: u8 = 1;
    /// Epilogue: GELU, store.
    pub(crate) const EPI_GELU: u8 = 2;
    /// Epilogue: GELU, store, and each output's square added to its lane of `sumsq`.
    pub(crate) const EPI_GELU_SUMSQ: u8 = 3;

    /// Loads 4 floats from each of 8 rows and advances each row pointer by 4. Written out
    /// because LLVM otherwise rebuilds the row addresses from one base with seven adds per step.
    #[inline(always)]
    unsafe fn load8_post(r: &mut [*const f32; 8], x: &mut [float32x4_t; 8]) {
        // SAFETY: the caller guarantees 4 readable floats at each row pointer.
        unsafe {
            core::arch::asm!(
                "ldr {x0:q}, [{r0}], #16",
                "ldr {x1:q}, [{r1}], #16",
                "ldr {x2:q}, [{r2}], #16",
                "ldr {x3:q}, [{r3}], #16",
                "ldr {x4:q}, [{r4}], #16",
                "ldr {x5:q}, [{r5}], #16",
                "ldr {x6:q}, [{r6}], #16",
                "ldr {x7:q}, [{r7}], #16",
                x0 = out(vreg) x[0],
                x1 = out(vreg) x[1],
                x2 = out(vreg) x[2],
                x3 = out(vreg) x[3],
                x4 = out(vreg) x[4],
                x5 = out(vreg) x[5],
                x6 = out(vreg) x[6],
                x7 = out(vreg) x[7],
                r0 = inout(reg) r[0],
                r1 = inout(reg) r[1],
                r2 = inout(reg) r[2],
                r3 = inout(reg) r[3],
                r4 = inout(reg) r[4],
                r5 = inout(reg) r[5],
                r6 = inout(reg) r[6],
                r7 = inout(reg) r[7],
                options(nostack, readonly, preserves_flags),
            );
        }
    }

    /// The A operand of a tile: the first `MR` of `rows`, each read as `segs` contiguous
    /// segments of `seg_len` values with `seg_skip` values skipped between them (1 segment for
    /// a pointwise conv; one per kernel row for a patch conv).
    pub(crate) struct ATile {
        pub rows: [*const f32; 8],
        pub seg_len: usize,
        pub segs: usize,
        pub seg_skip: usize,
    }

    /// `MR` rows × 8 output channels: `out[p][l] = bias[l] + Σ_k a[p][k]·w[k·ws + l]` (`ws` = 8
    /// for packed panels, the output width for HWIO weights), with the epilogue `EPI`; with
    /// [`EPI_GELU_SUMSQ`], `sumsq[l] = fma(y[p][l], y[p][l], sumsq[l])` for rows p in order
    /// (`sumsq`: 8 floats; unused otherwise). The caller guarantees every pointer range (see
    /// the wrappers).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn tile<const MR: usize, const EPI: u8>(
        a: &ATile,
        w: *const f32,
        ws: usize,
        bias: &[f32; PANEL],
        out: *mut f32,
        n: usize,
        lanes: usize,
        sumsq: *mut f32,
    ) {
        let accumulate = EPI == EPI_ACCUMULATE;
        // SAFETY: all loads/stores stay inside the ranges the caller guarantees.
        unsafe {
            let b0 = vld1q_f32(bias.as_ptr());
            let b1 = vld1q_f32(bias.as_ptr().add(4));
            let mut a0 = [b0; MR];
            let mut a1 = [b1; MR];
            // One pointer per row, post-incremented: no per-step address arithmetic.
            let mut xr: [*const f32; MR] = core::array::from_fn(|p| a.rows[p]);
            let mut wr = w;
            for _ in 0..a.segs {
                let mut kk = 0;
                // Four k at a time: one 4-value load per row, 8 lanes × 4 k of weights.
                macro_rules! k4 {
                    () => {
                        let mut xv = [vdupq_n_f32(0.0); MR];
                        let full = <&mut [*const f32; 8]>::try_from(&mut xr[..])
                            .ok()
                            .zip(<&mut [float32x4_t; 8]>::try_from(&mut xv[..]).ok());
                        if let Some((r8, x8)) = full {
                            load8_post(r8, x8);
                        } else {
                            for p in 0..MR {
                                xv[p] = vld1q_f32(xr[p]);
                                xr[p] = xr[p].add(4);
                            }
                        }
                        macro_rules! step {
                            ($j:literal) => {
                                let w0 = vld1q_f32(wr.add($j * ws));
                                let w1 = vld1q_f32(wr.add($j * ws + 4));
                                for p in 0..MR {
                                    a0[p] = vfmaq_laneq_f32::<$j>(a0[p], w0, xv[p]);
                                    a1[p] = vfmaq_laneq_f32::<$j>(a1[p], w1, xv[p]);
                                }
                            };
                        }
                        step!(0);
                        step!(1);
                        step!(2);
                        step!(3);
                        wr = wr.add(4 * ws);
                    };
                }
                // Two k4 steps per iteration halve the loop's bookkeeping.
                while kk + 8 <= a.seg_len {
                    k4!();
                    k4!();
                    kk += 8;
                }
                if kk + 4 <= a.seg_len {
                    k4!();
                    kk += 4;
                }
                while kk < a.seg_len {
                    let w0 = vld1q_f32(wr);
                    let w1 = vld1q_f32(wr.add(4));
                    for p in 0..MR {
                        let xs = *xr[p];
                        xr[p] = xr[p].add(1);
                        a0[p] = vfmaq_n_f32(a0[p], w0, xs);
                        a1[p] = vfmaq_n_f32(a1[p], w1, xs);
                    }
                    wr = wr.add(ws);
                    kk += 1;
                }
                for r in xr.iter_mut() {
                    *r = r.wrapping_add(a.seg_skip);
                }
            }
            if EPI == EPI_GELU || EPI == EPI_GELU_SUMSQ {
                for p in 0..MR {
                    a0[p] = crate::ops::gelu::neon::gelu4(a0[p]);
                    a1[p] = crate::ops::gelu::neon::gelu4(a1[p]);
                }
            }
            if EPI == EPI_GELU_SUMSQ {
                let (mut s0, mut s1) = (vld1q_f32(sumsq), vld1q_f32(sumsq.add(4)));
                for p in 0..MR {
                    s0 = vfmaq_f32(s0, a0[p], a0[p]);
                    s1 = vfmaq_f32(s1, a1[p], a1[p]);
                }
                vst1q_f32(sumsq, s0);
                vst1q_f32(sumsq.add(4), s1);
            }
            for p in 0..MR {
                let o = out.add(p * n);
                if lanes == PANEL {
                    if accumulate {
                        a0[p] = vaddq_f32(vld1q_f32(o), a0[p]);
                        a1[p] = vaddq_f32(vld1q_f32(o.add(4)), a1[p]);
                    }
                    vst1q_f32(o, a0[p]);
                    vst1q_f32(o.add(4), a1[p]);
                } else {
                    let mut t = [0f32; PANEL];
                    vst1q_f32(t.as_mut_ptr(), a0[p]);
                    vst1q_f32(t.as_mut_ptr().add(4), a1[p]);
                    for (l, &v) in t.iter().enumerate().take(lanes) {
                        *o.add(l) = if accumulate { *o.add(l) + v } else { v };
                    }
                }
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
    fn fused_gelu_matches_reference() {
        let mut rng = Rng::new(46);
        for (p, k, n) in [
            (1, 1, 1),
            (9, 40, 160),
            (49, 320, 1280),
            (13, 7, 21),
            (3136, 40, 160),
        ] {
            let x = rng.vec(p * k, 1.0);
            let w = rng.vec(n * k, 0.5);
            let b = rng.vec(n, 0.5);
            let mut wp = vec![0.0; packed_len(n, k)];
            pack_panels8(&w, n, k, &mut wp);
            let (mut want, mut got) = (vec![0.0; p * n], vec![0.0; p * n]);
            pointwise_gelu_f32_scalar(&x, p, k, &wp, &b, n, &mut want);
            pointwise_gelu_f32_neon(&x, p, k, &wp, &b, n, &mut got);
            let scale = (k as f32).sqrt().max(1.0);
            assert!(
                max_rel_err(&got, &want) <= 2e-6 * scale,
                "{p}x{k}x{n}: {}",
                max_rel_err(&got, &want)
            );
        }
    }

    #[test]
    fn neon_matches_reference_on_random_shapes() {
        let mut rng = Rng::new(40);
        let mut shapes = vec![
            (1, 1, 1),
            (7, 3, 5),
            (8, 40, 160),
            (49, 1280, 320),
            (13, 160, 40),
            (1, 320, 1000),
            (3136, 40, 160),
        ];
        for _ in 0..30 {
            shapes.push((
                1 + rng.next_u64() as usize % 40,
                1 + rng.next_u64() as usize % 70,
                1 + rng.next_u64() as usize % 50,
            ));
        }
        for (p, k, n) in shapes {
            let x = rng.vec(p * k, 1.0);
            let w = rng.vec(n * k, 1.0);
            let b = rng.vec(n, 1.0);
            let mut wp = vec![0.0; packed_len(n, k)];
            pack_panels8(&w, n, k, &mut wp);
            let prev = rng.vec(p * n, 1.0);
            for accumulate in [false, true] {
                let (mut want, mut got) = (prev.clone(), prev.clone());
                pointwise_f32_scalar(&x, p, k, &wp, &b, n, &mut want, accumulate);
                pointwise_f32_neon(&x, p, k, &wp, &b, n, &mut got, accumulate);
                // Relative to the magnitude of the dot product's terms (sqrt(k) for unit data).
                let scale = (k as f32).sqrt().max(1.0);
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs() / scale)
                    .fold(0.0, f32::max);
                assert!(err <= 1e-6, "{p}x{k}x{n} acc={accumulate}: {err}");
            }
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod x86_tests {
    use super::*;
    use crate::cpu::X86Features;
    use crate::ops::testutil::*;
    use std::vec;

    type Pw = fn(&[f32], usize, usize, &[f32], &[f32], usize, &mut [f32], bool);
    type Gelu = fn(&[f32], usize, usize, &[f32], &[f32], usize, &mut [f32]);

    /// Every x86 set this CPU has, by name.
    fn sets() -> std::vec::Vec<(&'static str, Pw, Gelu)> {
        let f = X86Features::get();
        let mut v = std::vec::Vec::new();
        if f.avx2 {
            v.push((
                "avx2",
                pointwise_f32_avx2 as Pw,
                pointwise_gelu_f32_avx2 as Gelu,
            ));
        }
        if f.avx512 {
            v.push((
                "avx512",
                pointwise_f32_avx512 as Pw,
                pointwise_gelu_f32_avx512 as Gelu,
            ));
        }
        std::println!(
            "pointwise x86 sets run: {:?}",
            v.iter().map(|s| s.0).collect::<std::vec::Vec<_>>()
        );
        v
    }

    fn shapes(rng: &mut Rng) -> std::vec::Vec<(usize, usize, usize)> {
        let mut shapes = vec![
            (1, 1, 1),
            (7, 3, 5),
            (8, 40, 160),
            (49, 1280, 320),
            (13, 160, 40),
            (1, 320, 1000),
            (3136, 40, 160),
            (9, 17, 24),
            (11, 5, 40),
        ];
        for _ in 0..40 {
            shapes.push((
                1 + rng.next_u64() as usize % 40,
                1 + rng.next_u64() as usize % 70,
                1 + rng.next_u64() as usize % 70,
            ));
        }
        shapes
    }

    #[test]
    fn x86_matches_reference_on_random_shapes() {
        let mut rng = Rng::new(140);
        for (name, pw, gelu) in sets() {
            for (p, k, n) in shapes(&mut rng) {
                let x = rng.vec(p * k, 1.0);
                let w = rng.vec(n * k, 1.0);
                let b = rng.vec(n, 1.0);
                let mut wp = vec![0.0; packed_len(n, k)];
                pack_panels8(&w, n, k, &mut wp);
                let prev = rng.vec(p * n + 3, 1.0);
                // Relative to the magnitude of the dot product's terms (sqrt(k) for unit data).
                let scale = (k as f32).sqrt().max(1.0);
                for accumulate in [false, true] {
                    let (mut want, mut got) = (prev.clone(), prev.clone());
                    pointwise_f32_scalar(&x, p, k, &wp, &b, n, &mut want, accumulate);
                    pw(&x, p, k, &wp, &b, n, &mut got, accumulate);
                    let err = got
                        .iter()
                        .zip(&want)
                        .map(|(a, b)| (a - b).abs() / scale)
                        .fold(0.0, f32::max);
                    assert!(err <= 1e-6, "{name} {p}x{k}x{n} acc={accumulate}: {err}");
                    // Nothing written past the output.
                    assert_eq!(got[p * n..], prev[p * n..], "{name} {p}x{k}x{n}");
                }
                let (mut want, mut got) = (vec![0.0; p * n + 1], vec![0.5; p * n + 1]);
                want[p * n] = 0.5;
                pointwise_gelu_f32_scalar(&x, p, k, &wp, &b, n, &mut want);
                gelu(&x, p, k, &wp, &b, n, &mut got);
                assert!(
                    max_rel_err(&got, &want) <= 2e-6 * scale,
                    "{name} {p}x{k}x{n} fused"
                );
            }
        }
    }
}

/// GRN's statistics fused into fc1 (the one-worker path) against the separate pass the split
/// runs use, for every kernel set this target has: the same outputs and the same sums, bit for
/// bit, when `n` is a multiple of 8; otherwise within rounding of an f64 reference.
#[cfg(test)]
mod fused_sumsq_tests {
    use super::*;
    use crate::ops::testutil::*;
    use crate::Kernels;
    use std::vec;
    use std::vec::Vec;

    /// Written as two column panels into rows `n + 8` apart (the runtime's blocks of a wider
    /// matrix), every kernel set gives the contiguous call's outputs and sums bit for bit and
    /// leaves the elements between the rows alone.
    #[test]
    fn fused_kernel_writes_column_panels_into_strided_rows() {
        let mut rng = Rng::new(78);
        for kernels in Kernels::available() {
            let set = kernels.set().unwrap();
            for (p, k, n) in [(9, 40, 160), (49, 320, 64), (8, 16, 32)] {
                let x = rng.vec(p * k, 1.0);
                let w = rng.vec(n * k, 0.5);
                let b = rng.vec(n, 0.5);
                let mut wp = vec![0.0; packed_len(n, k)];
                pack_panels8(&w, n, k, &mut wp);
                let (mut want, mut want_s) = (vec![0.0; p * n], vec![0.0; n]);
                let out = RowsMut::new(&mut want, p, n, n);
                (set.pointwise_gelu_sumsq)(&x, p, k, &wp, &b, n, out, &mut want_s);
                let stride = n + 8;
                let (mut got, mut got_s) = (vec![-3.0f32; p * stride], vec![0.0; n]);
                let half = n / 2;
                for j in [0..half, half..n] {
                    let out = RowsMut::new(&mut got[j.start..], p, half, stride);
                    let (wj, bj) = (&wp[j.start * k..], &b[j.clone()]);
                    (set.pointwise_gelu_sumsq)(&x, p, k, wj, bj, half, out, &mut got_s[j]);
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                let rows: Vec<f32> = got.chunks(stride).flat_map(|r| r[..n].to_vec()).collect();
                let at = std::format!("{} {p}x{k}x{n}", set.name);
                assert_eq!(bits(&rows), bits(&want), "{at}: outputs");
                assert_eq!(bits(&got_s), bits(&want_s), "{at}: sums");
                assert!(
                    got.chunks(stride)
                        .all(|r| r[n..].iter().all(|&v| v == -3.0)),
                    "{at}"
                );
            }
        }
    }

    #[test]
    fn fused_sums_of_squares_equal_the_separate_pass() {
        let mut rng = Rng::new(77);
        let mut checked = Vec::new();
        for kernels in Kernels::available() {
            let set = kernels.set().unwrap();
            let shapes = [
                (1, 1, 8),
                (9, 40, 160),
                (49, 320, 1280),
                (196, 160, 640),
                (3136, 40, 160),
                (13, 7, 24),
                (6, 5, 12),
                (5, 9, 17),
            ];
            for (p, k, n) in shapes {
                let x = rng.vec(p * k, 1.0);
                let w = rng.vec(n * k, 0.5);
                let b = rng.vec(n, 0.5);
                let mut wp = vec![0.0; packed_len(n, k)];
                pack_panels8(&w, n, k, &mut wp);
                let mut want = vec![0.0; p * n];
                (set.pointwise_gelu)(&x, p, k, &wp, &b, n, &mut want);
                // The split runs' pass: channel ranges of 32.
                let mut want_s = vec![0.0; n];
                for c0 in (0..n).step_by(32) {
                    let r = c0..(c0 + 32).min(n);
                    (set.sumsq)(&want, p, n, r.clone(), &mut want_s[r]);
                }
                // One guard value past the `n` sums: never touched.
                let (mut got, mut got_s) = (vec![0.0; p * n], vec![7.0; n + 1]);
                let out = RowsMut::new(&mut got, p, n, n);
                (set.pointwise_gelu_sumsq)(&x, p, k, &wp, &b, n, out, &mut got_s[..n]);
                assert_eq!(got_s[n], 7.0, "{} {p}x{k}x{n}: past the sums", set.name);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{} {p}x{k}x{n}: outputs", set.name);
                if n.is_multiple_of(PANEL) {
                    assert_eq!(
                        bits(&got_s[..n]),
                        bits(&want_s),
                        "{} {p}x{k}x{n}: sums",
                        set.name
                    );
                } else {
                    let exact: Vec<f32> = (0..n)
                        .map(|j| {
                            (0..p)
                                .map(|q| (want[q * n + j] as f64).powi(2))
                                .sum::<f64>() as f32
                        })
                        .collect();
                    assert!(
                        max_rel_err(&got_s[..n], &exact) < 1e-5,
                        "{} {p}x{k}x{n}",
                        set.name
                    );
                }
            }
            checked.push(set.name);
        }
        std::println!("fused GRN sums of squares = separate pass, bit for bit: {checked:?}");
        assert!(!checked.is_empty());
    }
}
