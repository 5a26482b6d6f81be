//! x86-64 int8 GEMMs over the "c4"-packed weights (`[N/8][K/4][8 outputs][4 k]`, see the
//! module above), bit-identical to [`super::pointwise_i8_scalar`] and
//! [`super::pointwise_i8_acc_scalar`]: integer sums do not depend on order, and the
//! requantization below is the scalar one's exact vector form.
//!
//! - VNNI (`vpdpbusd`, AVX-512 VNNI on 256-bit registers): u8 × s8 → i32, four products per
//!   lane. The weights are shifted to u8 by flipping their sign bit (`w + 128`, once per group
//!   and panel, shared by a tile's 8 rows); the shift's contribution `128·Σ_k x[k]` is taken
//!   off each row's accumulators (one `vpsadbw` pass per row). One packed group of a panel (8
//!   outputs × 4 k, 32 bytes) is exactly one `ymm` operand; the inputs are broadcast straight
//!   from memory. Tiles: 8 pixels × 16 outputs.
//! - AVX2 (no VNNI): weights and inputs sign-extended to i16 and multiplied with `vpmaddwd`
//!   (pairs of i8·i8 products summed in i32: at most 2·128² = 32768, so nothing saturates,
//!   unlike `vpmaddubsw`); the two partial sums per output are added with `vphaddd` at the end.
//!   Tiles: 4 pixels × 8 outputs.

// Register blocks are indexed by row and panel together; index loops say that best.
#![allow(clippy::needless_range_loop)]

use super::{GROUP, KR, NR};
use crate::ops::requant::x86::{requant16, requant8, RequantLanes, RequantLanes16};
use crate::ops::requant::Requant;
use core::arch::x86_64::*;
use core::mem::MaybeUninit;

/// Epilogue: int32 accumulators out (fc2's, for the residual add).
pub(crate) const EPI_I32: u8 = 0;
/// Epilogue: requantize to int8.
pub(crate) const EPI_REQUANT: u8 = 1;

/// One int8 GEMM described by pointers (the safe wrappers check the lengths).
pub(crate) struct GemmI8 {
    /// `rows × k` inputs, row-major.
    pub a: *const i8,
    pub k: usize,
    /// Packed weights, `packed_len(n, k)` bytes.
    pub b: *const i8,
    pub bias: *const i32,
    pub rows: usize,
    pub n: usize,
    /// `EPI_I32`: `*mut i32`; `EPI_REQUANT`: `*mut i8`; `rows × n`.
    pub out: *mut u8,
    /// `n` records (`EPI_REQUANT`).
    pub rq: *const Requant,
    pub zero_point: i32,
}

/// Writes one row's 8 accumulators of panel `j` (`valid` lanes).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn emit<const EPI: u8>(
    g: &GemmI8,
    row: usize,
    j: usize,
    valid: usize,
    acc: __m256i,
    rq: &RequantLanes,
    zp: __m256i,
) {
    let at = row * g.n + j * NR;
    // SAFETY: row < rows, lanes j·8..j·8+valid ≤ n of the output (the caller's contract).
    unsafe {
        if EPI == EPI_I32 {
            let o = g.out.cast::<i32>().add(at);
            if valid == NR {
                _mm256_storeu_si256(o.cast(), acc);
            } else {
                let mut t = [0i32; NR];
                _mm256_storeu_si256(t.as_mut_ptr().cast(), acc);
                core::ptr::copy_nonoverlapping(t.as_ptr(), o, valid);
            }
        } else {
            let codes = requant8(acc, rq, zp);
            let o = g.out.cast::<i8>().add(at);
            if valid == NR {
                _mm_storel_epi64(o.cast(), codes);
            } else {
                let mut t = [0i8; 16];
                _mm_storeu_si128(t.as_mut_ptr().cast(), codes);
                core::ptr::copy_nonoverlapping(t.as_ptr(), o, valid);
            }
        }
    }
}

/// The 4 inputs of group `gi` of row `row` as one i32 (zero past `k`).
#[inline(always)]
unsafe fn group_bytes(g: &GemmI8, row: usize, gi: usize) -> i32 {
    let base = row * g.k + gi * KR;
    // SAFETY: row < rows; a full group lies inside the row; a partial one is read bytewise.
    unsafe {
        if gi * KR + KR <= g.k {
            core::ptr::read_unaligned(g.a.add(base).cast::<i32>())
        } else {
            let mut b = [0i8; KR];
            for (i, v) in b.iter_mut().enumerate().take(g.k - gi * KR) {
                *v = *g.a.add(base + i);
            }
            i32::from_le_bytes(b.map(|v| v as u8))
        }
    }
}

/// A panel's `valid` biases as 8 lanes, zero past them.
///
/// # Safety
/// `bias` points at `valid` ≤ 8 values.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load_bias(bias: *const i32, valid: usize) -> __m256i {
    if valid == NR {
        // SAFETY: 8 values (the caller's contract).
        return unsafe { _mm256_loadu_si256(bias.cast()) };
    }
    let mut b = [0i32; NR];
    // SAFETY: `valid` values (the caller's contract) into 8.
    unsafe { core::ptr::copy_nonoverlapping(bias, b.as_mut_ptr(), valid) };
    // SAFETY: `b` holds 8 i32.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

/// Panels whose per-channel constants (bias, requantization lanes) are staged at once.
const CHUNK: usize = 32;

/// `128·Σ_k x[k]` of one row (wrapping): the correction of the weights' shift to u8. Bytes
/// flipped to u8 (`x + 128`) and summed by `vpsadbw`, 32 at a time.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn shifted_row_sum(x: *const i8, k: usize) -> i32 {
    let k32 = k / 32 * 32;
    let mut s = _mm256_setzero_si256();
    let flip = _mm256_set1_epi8(-128);
    let mut i = 0;
    while i < k32 {
        // SAFETY: bytes i..i+32 ≤ k of the row (the caller's contract).
        let v = unsafe { _mm256_loadu_si256(x.add(i).cast()) };
        s = _mm256_add_epi64(
            s,
            _mm256_sad_epu8(_mm256_xor_si256(v, flip), _mm256_setzero_si256()),
        );
        i += 32;
    }
    let mut l = [0i64; 4];
    // SAFETY: `l` holds 4 i64.
    unsafe { _mm256_storeu_si256(l.as_mut_ptr().cast(), s) };
    let mut sum = (l[0] + l[1] + l[2] + l[3]) as i32 - 128 * k32 as i32;
    for j in k32..k {
        // SAFETY: j < k.
        sum += unsafe { *x.add(j) } as i32;
    }
    sum.wrapping_mul(128)
}

/// The VNNI GEMM (see the module docs). `vpdpbusd` takes its unsigned operand from the weights,
/// flipped to u8 (`w + 128`) once per group and panel (shared by the tile's 8 rows), and the
/// inputs as signed bytes broadcast straight from memory; each row's accumulators start at
/// `bias − 128·Σ_k x` so that the shift cancels. Rows outer, panels inner, so each row's sum is
/// taken once per [`CHUNK`] panels.
///
/// # Safety
/// The CPU has AVX-512 F/VL and VNNI; the ranges `g` describes are valid.
#[target_feature(enable = "avx512f,avx512vl,avx512vnni,avx2")]
pub(crate) unsafe fn gemm_vnni<const EPI: u8>(g: &GemmI8) {
    let panels = g.n.div_ceil(NR);
    let zp = _mm256_set1_epi32(g.zero_point.clamp(-65536, 65536));
    let mut j0 = 0;
    while j0 < panels {
        let jn = (panels - j0).min(CHUNK);
        // Only the chunk's `jn` entries are written and read: filling all of both arrays
        // (5 KiB) cost a task of 8 rows more than its bias and records.
        let mut bias = [MaybeUninit::<__m256i>::uninit(); CHUNK];
        let mut rq = [MaybeUninit::<RequantLanes>::uninit(); CHUNK];
        // SAFETY: panels j0..j0+jn, all rows: inside `g` (the caller's contract).
        unsafe {
            let half = RequantLanes::load(&Requant::HALF, 0);
            for i in 0..jn {
                let valid = (g.n - (j0 + i) * NR).min(NR);
                bias[i].write(load_bias(g.bias.add((j0 + i) * NR), valid));
                // A full pair's tile loads its 16 records itself (`load16`).
                let pair = i & !1;
                let full_pair = pair + 1 < jn && g.n >= (j0 + pair + 2) * NR;
                rq[i].write(if EPI == EPI_REQUANT && !full_pair {
                    RequantLanes::load(g.rq.add((j0 + i) * NR), valid)
                } else {
                    half
                });
            }
            // SAFETY: entries 0..jn were written just above.
            let bias = core::slice::from_raw_parts(bias.as_ptr().cast::<__m256i>(), jn);
            let rq = core::slice::from_raw_parts(rq.as_ptr().cast::<RequantLanes>(), jn);
            let mut r = 0;
            while r < g.rows {
                let mr = match g.rows - r {
                    8.. => 8,
                    4..=7 => 4,
                    m => m.min(2),
                };
                let mut corr = [_mm256_setzero_si256(); 8];
                for (i, c) in corr.iter_mut().enumerate().take(mr) {
                    *c = _mm256_set1_epi32(shifted_row_sum(g.a.add((r + i) * g.k), g.k));
                }
                let mut j = 0;
                while j < jn {
                    let np = (jn - j).min(2);
                    let (b, q) = (&bias[j..j + np], &rq[j..j + np]);
                    let jj = j0 + j;
                    match (mr, np) {
                        (8, 2) => tile_vnni::<8, 2, EPI>(g, r, jj, b, q, &corr, zp),
                        (8, _) => tile_vnni::<8, 1, EPI>(g, r, jj, b, q, &corr, zp),
                        (4, 2) => tile_vnni::<4, 2, EPI>(g, r, jj, b, q, &corr, zp),
                        (4, _) => tile_vnni::<4, 1, EPI>(g, r, jj, b, q, &corr, zp),
                        (2, 2) => tile_vnni::<2, 2, EPI>(g, r, jj, b, q, &corr, zp),
                        (2, _) => tile_vnni::<2, 1, EPI>(g, r, jj, b, q, &corr, zp),
                        (_, 2) => tile_vnni::<1, 2, EPI>(g, r, jj, b, q, &corr, zp),
                        _ => tile_vnni::<1, 1, EPI>(g, r, jj, b, q, &corr, zp),
                    }
                    j += np;
                }
                r += mr;
            }
        }
        j0 += jn;
    }
}

#[inline]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512vl,avx512vnni,avx2")]
unsafe fn tile_vnni<const MR: usize, const NP: usize, const EPI: u8>(
    g: &GemmI8,
    r0: usize,
    j0: usize,
    bias: &[__m256i],
    rq: &[RequantLanes],
    corr: &[__m256i; 8],
    zp: __m256i,
) {
    let groups = g.k.div_ceil(KR);
    let full = g.k / KR;
    let flip = _mm256_set1_epi8(-128);
    let mut acc: [[__m256i; NP]; MR] =
        core::array::from_fn(|r| core::array::from_fn(|i| _mm256_sub_epi32(bias[i], corr[r])));
    // SAFETY: rows r0..r0+MR, panels j0..j0+NP are inside `g` (the caller's contract).
    unsafe {
        let pb: [*const i8; NP] = core::array::from_fn(|i| g.b.add((j0 + i) * groups * GROUP));
        let ar: [*const i8; MR] = core::array::from_fn(|r| g.a.add((r0 + r) * g.k));
        for gi in 0..full {
            let w: [__m256i; NP] = core::array::from_fn(|i| {
                _mm256_xor_si256(_mm256_loadu_si256(pb[i].add(gi * GROUP).cast()), flip)
            });
            for r in 0..MR {
                let x =
                    _mm256_set1_epi32(core::ptr::read_unaligned(ar[r].add(gi * KR).cast::<i32>()));
                for i in 0..NP {
                    acc[r][i] = _mm256_dpbusd_epi32(acc[r][i], w[i], x);
                }
            }
        }
        if full < groups {
            let w: [__m256i; NP] = core::array::from_fn(|i| {
                _mm256_xor_si256(_mm256_loadu_si256(pb[i].add(full * GROUP).cast()), flip)
            });
            for r in 0..MR {
                // Bytes past k are zero: they add nothing whatever the (shifted) weight.
                let x = _mm256_set1_epi32(group_bytes(g, r0 + r, full));
                for i in 0..NP {
                    acc[r][i] = _mm256_dpbusd_epi32(acc[r][i], w[i], x);
                }
            }
        }
        if EPI == EPI_REQUANT && NP == 2 && g.n >= (j0 + 2) * NR {
            // Both panels full: requantize 16 lanes at once.
            let rq16 = RequantLanes16::load16(g.rq.add(j0 * NR));
            let zp16 = _mm512_broadcast_i32x4(_mm256_castsi256_si128(zp));
            for (r, row) in acc.iter().enumerate() {
                let v = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(row[0]), row[1]);
                let o = g.out.cast::<i8>().add((r0 + r) * g.n + j0 * NR);
                _mm_storeu_si128(o.cast(), requant16(v, &rq16, zp16));
            }
            return;
        }
        for (r, row) in acc.iter().enumerate() {
            for i in 0..NP {
                let valid = (g.n - (j0 + i) * NR).min(NR);
                emit::<EPI>(g, r0 + r, j0 + i, valid, row[i], &rq[i], zp);
            }
        }
    }
}

/// The AVX2 GEMM without VNNI (see the module docs).
///
/// # Safety
/// The CPU has AVX2; the ranges `g` describes are valid.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn gemm_avx2<const EPI: u8>(g: &GemmI8) {
    let panels = g.n.div_ceil(NR);
    let groups = g.k.div_ceil(KR);
    let zp = _mm256_set1_epi32(g.zero_point.clamp(-65536, 65536));
    for j in 0..panels {
        let valid = (g.n - j * NR).min(NR);
        // SAFETY: panel j, all rows: inside `g` (the caller's contract).
        unsafe {
            let init = load_bias(g.bias.add(j * NR), valid);
            let rq = if EPI == EPI_REQUANT {
                RequantLanes::load(g.rq.add(j * NR), valid)
            } else {
                RequantLanes::load(&Requant::HALF, 0)
            };
            let pb = g.b.add(j * groups * GROUP);
            let mut r = 0;
            while r < g.rows {
                let mr = match g.rows - r {
                    4.. => 4,
                    m => m.min(2),
                };
                match mr {
                    4 => tile_avx2::<4, EPI>(g, r, j, pb, init, &rq, zp),
                    2 => tile_avx2::<2, EPI>(g, r, j, pb, init, &rq, zp),
                    _ => tile_avx2::<1, EPI>(g, r, j, pb, init, &rq, zp),
                }
                r += mr;
            }
        }
    }
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn tile_avx2<const MR: usize, const EPI: u8>(
    g: &GemmI8,
    r0: usize,
    j: usize,
    pb: *const i8,
    init: __m256i,
    rq: &RequantLanes,
    zp: __m256i,
) {
    let groups = g.k.div_ceil(KR);
    // Pair sums per output: lanes 2o, 2o+1 of `lo` (outputs 0..4) and `hi` (outputs 4..8).
    let mut lo = [_mm256_setzero_si256(); MR];
    let mut hi = [_mm256_setzero_si256(); MR];
    // SAFETY: rows r0..r0+MR and panel j are inside `g` (the caller's contract).
    unsafe {
        for gi in 0..groups {
            let w = _mm256_loadu_si256(pb.add(gi * GROUP).cast());
            let wl = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(w));
            let wh = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(w));
            for r in 0..MR {
                // [x0 x1 x2 x3] repeated, as i16.
                let x = _mm256_cvtepi8_epi16(_mm_set1_epi32(group_bytes(g, r0 + r, gi)));
                lo[r] = _mm256_add_epi32(lo[r], _mm256_madd_epi16(wl, x));
                hi[r] = _mm256_add_epi32(hi[r], _mm256_madd_epi16(wh, x));
            }
        }
        let order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
        let valid = (g.n - j * NR).min(NR);
        for r in 0..MR {
            // hadd: [o0 o1 o4 o5 | o2 o3 o6 o7] → permuted to o0..o7.
            let s = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(lo[r], hi[r]), order);
            emit::<EPI>(g, r0 + r, j, valid, _mm256_add_epi32(init, s), rq, zp);
        }
    }
}
