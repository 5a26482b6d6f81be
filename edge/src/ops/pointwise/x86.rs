//! x86-64 f32 GEMM micro-kernels, shared by the pointwise convolutions (fc1 with GELU fused,
//! fc2 with the residual add fused), the head's classifier and the patch
//! convolutions (stem, downsampling).
//!
//! - AVX2+FMA: tiles of up to 6 pixels × 16 outputs (two 8-lane panels, one `ymm` each: 12
//!   accumulators, the classic 6×16 register block of 16 `ymm`).
//! - AVX-512: tiles of up to 8 pixels × 32 outputs; a `zmm` holds two packed 8-lane panels
//!   (`vinsertf32x8`), so the model file's 8-wide panels serve 16-lane registers unchanged.
//!
//! Inputs are broadcast one value at a time (`vbroadcastss`, folded into the FMA's memory
//! operand); results equal the scalar reference within f32 rounding (FMA, same order in `k`).

// Register blocks are indexed by row and panel together; index loops say that best.
#![allow(clippy::needless_range_loop)]

use crate::format::PANEL;
use core::arch::x86_64::*;

/// Epilogue: store.
pub(crate) const EPI_STORE: u8 = 0;
/// Epilogue: add to what `out` holds (residual).
pub(crate) const EPI_ACCUMULATE: u8 = 1;
/// Epilogue: GELU, store.
pub(crate) const EPI_GELU: u8 = 2;
/// Epilogue: GELU, store, and each output's square added to its lane of [`Gemm::sumsq`]
/// (`s = fma(y, y, s)`, rows in order: GRN's statistics, see `pointwise_gelu_sumsq_f32_avx2`).
pub(crate) const EPI_GELU_SUMSQ: u8 = 3;

/// One GEMM `out[r][j] = bias[j] + Σ_k A[r][k]·B[k][j]` over `rows × n`, described by pointers.
#[derive(Clone, Copy)]
pub(crate) struct Gemm {
    /// Row 0 of A; row r starts at `a + r·a_row`.
    pub a: *const f32,
    pub a_row: usize,
    /// Each A row is `segs` segments of `seg_len` values whose starts are `seg_stride` apart
    /// (1 segment for a pointwise conv; one per kernel row for a patch conv).
    pub seg_len: usize,
    pub segs: usize,
    pub seg_stride: usize,
    /// 8-lane panel j of B starts at `b + j·b_panel`; its row k at `+ k·b_row` (packed panels:
    /// `b_panel = K·8`, `b_row = 8`; HWIO weights: `b_panel = 8`, `b_row = n`).
    pub b: *const f32,
    pub b_panel: usize,
    pub b_row: usize,
    /// `n` values.
    pub bias: *const f32,
    /// Row r of the output at `out + r·out_row`.
    pub out: *mut f32,
    pub out_row: usize,
    pub rows: usize,
    /// Output columns. B's panels are readable for all `ceil(n/8)·8` lanes.
    pub n: usize,
    /// With [`EPI_GELU_SUMSQ`]: `n` floats of running sums of squares, one per output column
    /// (null otherwise).
    pub sumsq: *mut f32,
}

/// Lane indices 0..8, for masks of the first `valid` lanes (`valid > index`).
// SAFETY: a plain vector constant (no memory access).
const LANE_INDEX: __m256i = unsafe { core::mem::transmute([0i32, 1, 2, 3, 4, 5, 6, 7]) };

/// Copies the valid lanes `[0, lanes)` of `v` (8 floats) to `o`, adding to it with `ACC`.
#[inline(always)]
unsafe fn store_partial(o: *mut f32, v: &[f32; PANEL], lanes: usize, acc: bool) {
    for (l, &x) in v.iter().enumerate().take(lanes) {
        // SAFETY: the caller guarantees `lanes` writable floats at `o`.
        unsafe { *o.add(l) = if acc { *o.add(l) + x } else { x } };
    }
}

/// AVX2 driver: all row tiles × panel pairs.
///
/// # Safety
/// The CPU has AVX2+FMA; every range described by `g` is valid (reads of A, B and `bias`,
/// writes of `out`).
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn gemm_avx2<const EPI: u8>(g: &Gemm) {
    let panels = g.n.div_ceil(PANEL);
    let mut r = 0;
    while r < g.rows {
        let mr = match g.rows - r {
            6.. => 6,
            4 | 5 => 4,
            m => m.min(2),
        };
        let mut j = 0;
        while j < panels {
            let np = (panels - j).min(2);
            // SAFETY: rows r..r+mr and panels j..j+np are inside `g` (the caller's contract).
            unsafe {
                match (mr, np) {
                    (6, 2) => tile_avx2::<6, 2, EPI>(g, r, j),
                    (6, _) => tile_avx2::<6, 1, EPI>(g, r, j),
                    (4, 2) => tile_avx2::<4, 2, EPI>(g, r, j),
                    (4, _) => tile_avx2::<4, 1, EPI>(g, r, j),
                    (2, 2) => tile_avx2::<2, 2, EPI>(g, r, j),
                    (2, _) => tile_avx2::<2, 1, EPI>(g, r, j),
                    (_, 2) => tile_avx2::<1, 2, EPI>(g, r, j),
                    _ => tile_avx2::<1, 1, EPI>(g, r, j),
                }
            }
            j += np;
        }
        r += mr;
    }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const MR: usize, const NP: usize, const EPI: u8>(
    g: &Gemm,
    r0: usize,
    j0: usize,
) {
    let lanes = (g.n - j0 * PANEL).min(NP * PANEL);
    let mut bias = [0f32; 2 * PANEL];
    // SAFETY: `bias` has `n ≥ j0·8 + lanes` values (contract); pointer ranges below are
    // inside the rows/panels the caller's `Gemm` describes.
    unsafe {
        core::ptr::copy_nonoverlapping(g.bias.add(j0 * PANEL), bias.as_mut_ptr(), lanes);
        let bv: [__m256; NP] = core::array::from_fn(|i| _mm256_loadu_ps(bias.as_ptr().add(8 * i)));
        let mut acc = [bv; MR];
        let b0 = g.b.add(j0 * g.b_panel);
        // Panel j0+1 only when NP = 2 (never read otherwise).
        let b1 = g.b.add((j0 + NP - 1) * g.b_panel);
        for s in 0..g.segs {
            let ap: [*const f32; MR] =
                core::array::from_fn(|r| g.a.add((r0 + r) * g.a_row + s * g.seg_stride));
            let mut wo = s * g.seg_len * g.b_row;
            for kk in 0..g.seg_len {
                let w0 = _mm256_loadu_ps(b0.add(wo));
                let w1 = if NP == 2 {
                    _mm256_loadu_ps(b1.add(wo))
                } else {
                    w0
                };
                for r in 0..MR {
                    let x = _mm256_broadcast_ss(&*ap[r].add(kk));
                    acc[r][0] = _mm256_fmadd_ps(x, w0, acc[r][0]);
                    if NP == 2 {
                        acc[r][1] = _mm256_fmadd_ps(x, w1, acc[r][1]);
                    }
                }
                wo += g.b_row;
            }
        }
        if EPI == EPI_GELU || EPI == EPI_GELU_SUMSQ {
            for row in acc.iter_mut() {
                for v in row.iter_mut() {
                    *v = crate::ops::gelu::x86::gelu8(*v);
                }
            }
        }
        if EPI == EPI_GELU_SUMSQ {
            // The valid lanes only (a ragged last panel's mask), as the stores below.
            let sp = g.sumsq.add(j0 * PANEL);
            for i in 0..NP {
                let valid = lanes.saturating_sub(i * PANEL).min(PANEL) as i32;
                let m = _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), LANE_INDEX);
                let mut s = _mm256_maskload_ps(sp.add(i * PANEL), m);
                for row in acc.iter() {
                    s = _mm256_fmadd_ps(row[i], row[i], s);
                }
                _mm256_maskstore_ps(sp.add(i * PANEL), m, s);
            }
        }
        for (r, row) in acc.iter().enumerate() {
            let o = g.out.add((r0 + r) * g.out_row + j0 * PANEL);
            for i in 0..NP {
                let valid = lanes.saturating_sub(i * PANEL).min(PANEL);
                let o = o.add(i * PANEL);
                if valid == PANEL {
                    let v = if EPI == EPI_ACCUMULATE {
                        _mm256_add_ps(_mm256_loadu_ps(o), row[i])
                    } else {
                        row[i]
                    };
                    _mm256_storeu_ps(o, v);
                } else {
                    let mut t = [0f32; PANEL];
                    _mm256_storeu_ps(t.as_mut_ptr(), row[i]);
                    store_partial(o, &t, valid, EPI == EPI_ACCUMULATE);
                }
            }
        }
    }
}

/// AVX-512 driver (see [`gemm_avx2`]; same contract with AVX-512 F/VL/DQ).
///
/// # Safety
/// As [`gemm_avx2`], on a CPU with AVX-512.
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
pub(crate) unsafe fn gemm_avx512<const EPI: u8>(g: &Gemm) {
    let panels = g.n.div_ceil(PANEL);
    let mut r = 0;
    while r < g.rows {
        let mr = match g.rows - r {
            8.. => 8,
            4..=7 => 4,
            m => m.min(2),
        };
        let mut j = 0;
        while j < panels {
            let np = (panels - j).min(4);
            // SAFETY: rows r..r+mr and panels j..j+np are inside `g` (the caller's contract).
            unsafe {
                match (mr, np) {
                    (8, 4) => tile_avx512::<8, 4, EPI>(g, r, j),
                    (8, 3) => tile_avx512::<8, 3, EPI>(g, r, j),
                    (8, 2) => tile_avx512::<8, 2, EPI>(g, r, j),
                    (8, _) => tile_avx512::<8, 1, EPI>(g, r, j),
                    (4, 4) => tile_avx512::<4, 4, EPI>(g, r, j),
                    (4, 3) => tile_avx512::<4, 3, EPI>(g, r, j),
                    (4, 2) => tile_avx512::<4, 2, EPI>(g, r, j),
                    (4, _) => tile_avx512::<4, 1, EPI>(g, r, j),
                    (2, 4) => tile_avx512::<2, 4, EPI>(g, r, j),
                    (2, 3) => tile_avx512::<2, 3, EPI>(g, r, j),
                    (2, 2) => tile_avx512::<2, 2, EPI>(g, r, j),
                    (2, _) => tile_avx512::<2, 1, EPI>(g, r, j),
                    (_, 4) => tile_avx512::<1, 4, EPI>(g, r, j),
                    (_, 3) => tile_avx512::<1, 3, EPI>(g, r, j),
                    (_, 2) => tile_avx512::<1, 2, EPI>(g, r, j),
                    _ => tile_avx512::<1, 1, EPI>(g, r, j),
                }
            }
            j += np;
        }
        r += mr;
    }
}

/// `MR` rows × `NP` panels (1..=4): `zmm` z holds panels 2z (low half) and 2z+1 (high half).
#[inline]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
unsafe fn tile_avx512<const MR: usize, const NP: usize, const EPI: u8>(
    g: &Gemm,
    r0: usize,
    j0: usize,
) {
    let nz = NP.div_ceil(2);
    let lanes = (g.n - j0 * PANEL).min(NP * PANEL);
    let mut bias = [0f32; 4 * PANEL];
    // SAFETY: as in `tile_avx2`: every access is inside the ranges `g` describes.
    unsafe {
        core::ptr::copy_nonoverlapping(g.bias.add(j0 * PANEL), bias.as_mut_ptr(), lanes);
        let bv: [__m512; 2] = core::array::from_fn(|z| _mm512_loadu_ps(bias.as_ptr().add(16 * z)));
        let mut acc = [bv; MR];
        // Panel pointers past NP alias the last panel and are never read.
        let bp: [*const f32; 4] =
            core::array::from_fn(|i| g.b.add((j0 + i.min(NP - 1)) * g.b_panel));
        for s in 0..g.segs {
            let ap: [*const f32; MR] =
                core::array::from_fn(|r| g.a.add((r0 + r) * g.a_row + s * g.seg_stride));
            let mut wo = s * g.seg_len * g.b_row;
            for kk in 0..g.seg_len {
                // zmm 0: panels 0 | 1; zmm 1: panels 2 | 3 (zero weights past NP).
                let lo0 = _mm512_castps256_ps512(_mm256_loadu_ps(bp[0].add(wo)));
                let hi0 = if NP >= 2 {
                    _mm256_loadu_ps(bp[1].add(wo))
                } else {
                    _mm256_setzero_ps()
                };
                let w0 = _mm512_insertf32x8::<1>(lo0, hi0);
                let w1 = if NP >= 3 {
                    let lo1 = _mm512_castps256_ps512(_mm256_loadu_ps(bp[2].add(wo)));
                    let hi1 = if NP == 4 {
                        _mm256_loadu_ps(bp[3].add(wo))
                    } else {
                        _mm256_setzero_ps()
                    };
                    _mm512_insertf32x8::<1>(lo1, hi1)
                } else {
                    w0
                };
                for r in 0..MR {
                    let x = _mm512_set1_ps(*ap[r].add(kk));
                    acc[r][0] = _mm512_fmadd_ps(x, w0, acc[r][0]);
                    if NP >= 3 {
                        acc[r][1] = _mm512_fmadd_ps(x, w1, acc[r][1]);
                    }
                }
                wo += g.b_row;
            }
        }
        if EPI == EPI_GELU || EPI == EPI_GELU_SUMSQ {
            for row in acc.iter_mut() {
                for z in 0..nz {
                    row[z] = crate::ops::gelu::x86::gelu16(row[z]);
                }
            }
        }
        if EPI == EPI_GELU_SUMSQ {
            // The valid lanes only (the stores' mask below): never the next tile's panels.
            let sp = g.sumsq.add(j0 * PANEL);
            for z in 0..nz {
                let valid = lanes.saturating_sub(z * 16).min(16);
                let m: __mmask16 = ((1u32 << valid) - 1) as u16;
                let mut s = _mm512_maskz_loadu_ps(m, sp.add(16 * z));
                for row in acc.iter() {
                    s = _mm512_fmadd_ps(row[z], row[z], s);
                }
                _mm512_mask_storeu_ps(sp.add(16 * z), m, s);
            }
        }
        for (r, row) in acc.iter().enumerate() {
            let o = g.out.add((r0 + r) * g.out_row + j0 * PANEL);
            for z in 0..nz {
                let valid = lanes.saturating_sub(z * 16).min(16);
                let m: __mmask16 = ((1u32 << valid) - 1) as u16;
                let o = o.add(z * 16);
                let v = if EPI == EPI_ACCUMULATE {
                    _mm512_add_ps(_mm512_maskz_loadu_ps(m, o), row[z])
                } else {
                    row[z]
                };
                _mm512_mask_storeu_ps(o, m, v);
            }
        }
    }
}
