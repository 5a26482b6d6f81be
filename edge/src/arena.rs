//! Scratch memory planning. `run` needs two activation buffers (the residual stream and the
//! block's depthwise/LN output), the 4C-wide hidden buffer of one block (two for int8: GRN
//! and fc2 read one and write the other, and they double as the int32 accumulators), and a little
//! f32 scratch. Each region is sized for the largest stage; ConvNeXt halves P·C at each stage, so
//! this total equals the largest live set (f32 stage 0: 2·P·C + 4·P·C floats; int8: 2·P·C +
//! 2·4·P·C bytes).

use crate::arch::{Arch, MLP_RATIO, STEM_PATCH};
use crate::format::Precision;
use crate::kernels::F32_COL_TILES;
use crate::ops::{grn_f16, pointwise_i8};
use crate::parallel::worker_scratch_len;
use crate::Error;

/// Byte alignment `run` gives every region (NEON- and cache-friendly).
pub const ARENA_ALIGN: usize = 16;

/// Byte sizes of the arena's regions for one architecture, input size and precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArenaPlan {
    /// Which runtime the plan is for.
    pub precision: Precision,
    /// One activation buffer (two of these): max over stages of H·W·C elements (with several
    /// workers at least their staging blocks for fc2 and the int8 downsample and, int8, the
    /// stem's gathers).
    pub act: usize,
    /// One wide buffer: max over stages of H·W·4C elements (f32: one, also stages the input
    /// image; int8: two, that also hold int32 accumulators of H·W·C and the downsample's
    /// gathered patches, and with several workers their staging blocks for fc1 and tiles of
    /// GRN's output).
    pub wide: usize,
    /// Number of wide buffers (1 or 2).
    pub wide_count: usize,
    /// f32 scratch: GRN statistics, LayerNorm and head vectors (with several workers also
    /// GRN's partial sums per pixel task and int8's per-worker LayerNorm rows).
    pub scratch: usize,
    /// Bytes of the largest set live at one time (the lower bound any plan must meet).
    pub live_set: usize,
}

fn round16(n: usize) -> Option<usize> {
    n.checked_add(15).map(|v| v & !15)
}

/// What each worker of the int8 runtime needs for itself: a LayerNorm row (`ln_row` f32, the
/// widest stage; the runtime keeps one more row in front for the downsample's dequantization
/// scales), the 4 patches the stem's patch conv gathers (`gather` bytes; the downsamples
/// gather every patch into a wide buffer, then run the pointwise GEMM over them), and the
/// block of a plain run's fused input + stem, one output row at a time (`stem_row` bytes, in
/// the first wide buffer): [`StemRow`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Int8WorkerScratch {
    pub ln_row: usize,
    pub gather: usize,
    pub stem_row: StemRow,
}

/// The parts of a worker's block for one stem output row, in bytes from its start (16-aligned
/// in the arena): the LayerNorm's f32 row (`ln`), the conv's int32 row (`acc`: `ow·C0`), the
/// row's `4·iw·cin` input codes (`input`) and the conv's 4 gathered patches (`gather`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StemRow {
    pub ln: usize,
    pub acc: usize,
    pub input: usize,
    pub gather: usize,
}

impl StemRow {
    /// Bytes of the block, a multiple of 16.
    pub fn len(&self) -> Option<usize> {
        let parts = [self.ln, self.acc, self.input, self.gather];
        round16(parts.iter().try_fold(0usize, |s, &p| s.checked_add(p))?)
    }
}

impl Int8WorkerScratch {
    pub fn of(arch: &Arch) -> Option<Self> {
        let cmax = *arch.dims[..arch.num_stages].iter().max()?;
        let stem = STEM_PATCH
            .checked_mul(STEM_PATCH)?
            .checked_mul(arch.in_chans)?;
        let gather = stem.checked_mul(4)?;
        let c0 = *arch.dims.first()?;
        let ow = arch.input_w / STEM_PATCH;
        Some(Int8WorkerScratch {
            ln_row: cmax,
            gather,
            stem_row: StemRow {
                ln: cmax.checked_mul(4)?,
                acc: ow.checked_mul(c0)?.checked_mul(4)?,
                input: STEM_PATCH
                    .checked_mul(arch.input_w)?
                    .checked_mul(arch.in_chans)?,
                gather,
            },
        })
    }
}

impl ArenaPlan {
    /// A plan of zero size.
    pub const EMPTY: ArenaPlan = ArenaPlan {
        precision: Precision::F32,
        act: 0,
        wide: 0,
        wide_count: 1,
        scratch: 0,
        live_set: 0,
    };

    /// The f32 plan for `arch` (see [`ArenaPlan::for_model`]).
    pub fn for_arch(arch: &Arch) -> Option<Self> {
        Self::for_model(arch, Precision::F32)
    }

    /// The plan for `arch` at precision `p`, or `None` if its sizes overflow `usize` here.
    pub fn for_model(arch: &Arch, p: Precision) -> Option<Self> {
        Self::for_model_workers(arch, p, 1)
    }

    /// The plan for `workers` workers ([`crate::parallel`]). int8: each worker needs its own
    /// LayerNorm row (`max C` floats, after `max C` kept for the downsample's scales) and its
    /// own 4 gathered patches for the stem's patch conv (in an activation buffer that is free
    /// then), and its tile of GRN's output (fused with fc2); regions grow only if those do not
    /// fit (never for 1 worker). Both precisions with
    /// several workers: scratch for one partial sum of squares (4C floats) per pixel task of
    /// GRN (one worker adds each task's part before the next: one part), and staging blocks
    /// for the GEMMs (and f32's downsample conv) of the stages cut by output panels (see
    /// `runtime::gemm_panels`).
    pub fn for_model_workers(arch: &Arch, p: Precision, workers: usize) -> Option<Self> {
        let mut plan = Self::for_model_one(arch, p)?;
        if workers > 1 {
            // GRN's partial sums of squares (f32 both precisions), one row of 4C per pixel
            // task, after the sums; int8: each worker's fc1 staging block, in the second wide
            // buffer (free while fc1 runs).
            for s in 0..arch.num_stages {
                let (h, w) = arch.stage_hw(s);
                let p_s = h.checked_mul(w)?;
                let tasks = crate::runtime::pixel_split(p_s).tasks();
                let c = arch.dims[s];
                let n = c.checked_mul(MLP_RATIO)?;
                // The column tiles the panels follow: any f32 kernel set's, int8's one.
                let tiles: &[usize] = match p {
                    Precision::F32 => &F32_COL_TILES,
                    Precision::Int8 => &[pointwise_i8::NR],
                };
                // The largest staging block of a GEMM with `cols` outputs over those tiles.
                let block = |cols: usize| {
                    let len = |&t| crate::runtime::panel_block_len(p_s, cols, t);
                    tiles.iter().map(len).max().unwrap_or(0)
                };
                let parts = n.checked_mul(tasks.checked_add(1)?)?;
                plan.scratch = plan.scratch.max(round16(parts.checked_mul(4)?)?);
                // f32's fc1 writes its blocks in place (no staging). int8's GRN update, fused
                // with fc2, writes each worker's tile of rows into the same buffer.
                if p == Precision::Int8 {
                    let tile = crate::runtime::tile_split(p_s, crate::runtime::PIXEL_ALIGN).grain;
                    let grn = tile.checked_mul(n)?;
                    let fc1 = worker_scratch_len::<i8>(block(n), workers)?;
                    let grn = worker_scratch_len::<i8>(grn, workers)?;
                    plan.wide = plan.wide.max(round16(fc1.max(grn))?);
                }
                // fc2's staging blocks (few pixels, cut by output panels), in the activation
                // buffer that held fc1's input: f32 the residual stream's block; int8 its
                // int32 accumulators and then the int8 block, packed in int32 words.
                let b = block(c);
                let words = match p {
                    Precision::F32 => b,
                    Precision::Int8 => b.checked_add(b.div_ceil(4))?,
                };
                // (f32 and i32 words alike: 4 bytes.)
                let bytes = worker_scratch_len::<f32>(words, workers)?.checked_mul(4)?;
                plan.act = plan.act.max(round16(bytes)?);
                // f32's downsample into a stage it cuts by output panels: each worker's block
                // of one output row in the hidden buffer (free until the stage's first fc1).
                if p == Precision::F32 && s > 0 {
                    let cut = |&t: &usize| match crate::runtime::panels_where_cut(p_s, c, t) {
                        1 => Some(0),
                        panels => w.checked_mul(c / panels),
                    };
                    let row = F32_COL_TILES
                        .iter()
                        .map(cut)
                        .try_fold(0, |m, b| Some(m.max(b?)))?;
                    let floats = worker_scratch_len::<f32>(row, workers)?;
                    plan.wide = plan.wide.max(round16(floats.checked_mul(4)?)?);
                }
            }
            // f32: a plain run's fused input + stem converts each output row's input rows
            // into the worker's own block of the hidden buffer (one worker: inside the
            // image's room there).
            if p == Precision::F32 {
                let band = STEM_PATCH
                    .checked_mul(arch.input_w)?
                    .checked_mul(arch.in_chans)?;
                let floats = worker_scratch_len::<f32>(band, workers)?;
                plan.wide = plan.wide.max(round16(floats.checked_mul(4)?)?);
            }
            plan.total()?.checked_add(ARENA_ALIGN)?;
        }
        if p == Precision::Int8 && workers > 1 {
            let Int8WorkerScratch {
                ln_row: cmax,
                gather,
                stem_row,
            } = Int8WorkerScratch::of(arch)?;
            let stem = worker_scratch_len::<u8>(stem_row.len()?, workers)?;
            plan.wide = plan.wide.max(round16(stem)?);
            plan.act = plan
                .act
                .max(round16(worker_scratch_len::<i8>(gather, workers)?)?);
            let ln = worker_scratch_len::<f32>(cmax, workers)?;
            let ln = ln.checked_add(cmax)?.checked_mul(4)?;
            plan.scratch = plan.scratch.max(round16(ln)?);
            plan.total()?.checked_add(ARENA_ALIGN)?;
        }
        Some(plan)
    }

    fn for_model_one(arch: &Arch, p: Precision) -> Option<Self> {
        let (mut pc_max, mut hid_max, mut live) = (0usize, 0usize, 0usize);
        let mut ch_scratch = 2 * arch.last_dim();
        for s in 0..arch.num_stages {
            let (h, w) = arch.stage_hw(s);
            let pc = h.checked_mul(w)?.checked_mul(arch.dims[s])?;
            let hid = pc.checked_mul(MLP_RATIO)?;
            pc_max = pc_max.max(pc);
            hid_max = hid_max.max(hid);
            let wide_c = arch.dims[s].checked_mul(MLP_RATIO)?;
            ch_scratch = ch_scratch.max(match p {
                Precision::F32 => wide_c,
                Precision::Int8 => wide_c.checked_mul(grn_f16::SCRATCH_PER_CHANNEL)?,
            });
            if s > 0 {
                ch_scratch = ch_scratch.max(arch.dims[s - 1].checked_mul(2)?);
            }
            live = live.max(match p {
                Precision::F32 => pc.checked_mul(2)?.checked_add(hid)?.checked_mul(4)?,
                Precision::Int8 => pc.checked_mul(2)?.checked_add(hid.checked_mul(2)?)?,
            });
        }
        let input = arch
            .input_h
            .checked_mul(arch.input_w)?
            .checked_mul(arch.in_chans)?;
        if p == Precision::F32 {
            // One worker: GRN's partial sum of squares of a pixel task (4C floats) lies in the
            // hidden buffer past the stage's activations, or else after the sums in scratch.
            let wide = hid_max.max(input);
            for s in 0..arch.num_stages {
                let (h, w) = arch.stage_hw(s);
                let wide_c = arch.dims[s].checked_mul(MLP_RATIO)?;
                let hid = h.checked_mul(w)?.checked_mul(wide_c)?;
                if hid.checked_add(wide_c)? > wide {
                    ch_scratch = ch_scratch.max(wide_c.checked_mul(2)?);
                }
            }
        }
        let plan = match p {
            Precision::F32 => ArenaPlan {
                precision: p,
                act: round16(pc_max.checked_mul(4)?)?,
                wide: round16(hid_max.max(input).checked_mul(4)?)?,
                wide_count: 1,
                scratch: round16(ch_scratch.checked_mul(4)?)?,
                live_set: live,
            },
            Precision::Int8 => {
                // The stem's patch conv gathers 4 patches of int8 into a free activation buffer;
                // a plain run's fused input + stem, one output row at a time, in the first
                // wide buffer.
                let Int8WorkerScratch {
                    gather, stem_row, ..
                } = Int8WorkerScratch::of(arch)?;
                let classes = arch.num_classes.checked_mul(4)?;
                ArenaPlan {
                    precision: p,
                    act: round16(pc_max.max(gather))?,
                    wide: round16(hid_max.max(input).max(classes).max(stem_row.len()?))?,
                    wide_count: 2,
                    scratch: round16(ch_scratch.checked_mul(4)?)?,
                    live_set: live,
                }
            }
        };
        plan.total()?.checked_add(ARENA_ALIGN)?;
        Some(plan)
    }

    fn total(&self) -> Option<usize> {
        self.act
            .checked_mul(2)?
            .checked_add(self.wide.checked_mul(self.wide_count)?)?
            .checked_add(self.scratch)
    }

    /// Bytes the caller must pass: the regions plus slack to align a buffer of any alignment.
    pub fn arena_len(&self) -> usize {
        self.total().unwrap_or(0) + ARENA_ALIGN - 1
    }

    /// Bytes of the largest live set (report: how close the plan is to the lower bound).
    pub fn live_set_bytes(&self) -> usize {
        self.live_set
    }

    /// The aligned part of a caller's buffer that holds the regions.
    fn region<'b>(&self, arena: &'b mut [u8]) -> Result<&'b mut [u8], Error> {
        let needed = self.arena_len();
        let got = arena.len();
        let skip = arena.as_ptr().align_offset(ARENA_ALIGN);
        let end = self
            .total()
            .and_then(|t| skip.checked_add(t))
            .ok_or(Error::ArenaTooSmall { needed, got })?;
        arena
            .get_mut(skip..end)
            .ok_or(Error::ArenaTooSmall { needed, got })
    }

    /// Splits a caller's buffer into the f32 regions.
    pub(crate) fn split_f32<'b>(&self, arena: &'b mut [u8]) -> Result<RegionsF32<'b>, Error> {
        let (needed, got) = (self.arena_len(), arena.len());
        let all: &mut [f32] = bytemuck::try_cast_slice_mut(self.region(arena)?)
            .map_err(|_| Error::ArenaTooSmall { needed, got })?;
        let (a, rest) = all.split_at_mut(self.act / 4);
        let (b, rest) = rest.split_at_mut(self.act / 4);
        let (hidden, scratch) = rest.split_at_mut(self.wide / 4);
        Ok(RegionsF32 {
            a,
            b,
            hidden,
            scratch,
        })
    }

    /// Splits a caller's buffer into the int8 regions.
    pub(crate) fn split_i8<'b>(&self, arena: &'b mut [u8]) -> Result<RegionsI8<'b>, Error> {
        let (needed, got) = (self.arena_len(), arena.len());
        let all = self.region(arena)?;
        if self.wide_count != 2 {
            return Err(Error::ArenaTooSmall { needed, got });
        }
        let (x, rest) = all.split_at_mut(self.act);
        let (t, rest) = rest.split_at_mut(self.act);
        let (w1, rest) = rest.split_at_mut(self.wide);
        let (w2, scratch) = rest.split_at_mut(self.wide);
        let scratch: &mut [f32] = bytemuck::try_cast_slice_mut(scratch)
            .map_err(|_| Error::ArenaTooSmall { needed, got })?;
        Ok(RegionsI8 {
            x: bytemuck::cast_slice_mut(x),
            t: bytemuck::cast_slice_mut(t),
            w1,
            w2,
            scratch,
        })
    }
}

/// The arena cut into the f32 runtime's regions.
pub(crate) struct RegionsF32<'b> {
    pub a: &'b mut [f32],
    pub b: &'b mut [f32],
    pub hidden: &'b mut [f32],
    pub scratch: &'b mut [f32],
}

/// The arena cut into the int8 runtime's regions: the residual stream `x`, the block's
/// LayerNorm output `t`, two wide byte buffers (16-aligned, viewed as i8 or i32), f32 scratch.
pub(crate) struct RegionsI8<'b> {
    pub x: &'b mut [i8],
    pub t: &'b mut [i8],
    pub w1: &'b mut [u8],
    pub w2: &'b mut [u8],
    pub scratch: &'b mut [f32],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atto_plan_equals_live_set() {
        let a = Arch::named("atto", 1000, 224, 224).unwrap();
        let p = ArenaPlan::for_arch(&a).unwrap();
        assert_eq!(p.act, 56 * 56 * 40 * 4);
        assert_eq!(p.wide, 56 * 56 * 160 * 4);
        assert_eq!(p.live_set, 6 * 56 * 56 * 40 * 4);
        // Only the 4C GRN scratch (1280 floats) and alignment slack above the live set.
        assert_eq!(p.arena_len(), p.live_set_bytes() + 1280 * 4 + 15);
        let q = ArenaPlan::for_model(&a, Precision::Int8).unwrap();
        assert_eq!(q.live_set, 10 * 56 * 56 * 40);
        // int8: the 2·4C f32 GRN scratch (sums, one task's part) above the live set; 2.3×
        // smaller than f32.
        assert_eq!(q.arena_len(), q.live_set_bytes() + 2 * 1280 * 4 + 15);
        assert!(q.arena_len() * 23 / 10 < p.arena_len());
    }

    #[test]
    fn split_handles_any_alignment_and_short_buffers() {
        let a = Arch::new([1, 1, 1, 1], [8, 16, 24, 32], 3, 32, 32);
        for prec in [Precision::F32, Precision::Int8] {
            let p = ArenaPlan::for_model(&a, prec).unwrap();
            let mut buf = [0u8; 32768];
            for off in 0..16 {
                let len = p.arena_len();
                let split = |b: &mut [u8]| match prec {
                    Precision::F32 => p.split_f32(b).map(|_| ()),
                    Precision::Int8 => p.split_i8(b).map(|_| ()),
                };
                assert!(split(&mut buf[off..off + len]).is_ok());
                let short = split(&mut buf[off..off + len - 16 - 1]);
                assert!(matches!(short, Err(Error::ArenaTooSmall { needed, .. }) if needed == len));
                // A plan of the other precision is refused, not misread.
                if prec == Precision::F32 {
                    assert!(p.split_i8(&mut buf[off..off + len]).is_err());
                }
            }
        }
    }

    /// f32's downsample into a stage cut by output panels stages one output row per worker
    /// (`ow · c/panels` floats) in the wide (hidden) buffer: with a wide stage 2 behind a
    /// 32-px input and 200 workers, that block is what sizes the buffer (larger than the
    /// one-worker plan's and the stem's per-worker bands), and the plan holds it.
    #[test]
    fn f32_plan_holds_the_downsample_staging_where_it_dominates() {
        let a = Arch::new([1, 1, 1, 1], [8, 16, 1024, 32], 10, 32, 32);
        let workers = 200;
        let (_, ow) = a.stage_hw(2);
        let p2 = ow * ow;
        let base = ArenaPlan::for_arch(&a).unwrap().wide;
        let stem = worker_scratch_len::<f32>(STEM_PATCH * 32 * 3, workers).unwrap() * 4;
        let plan = ArenaPlan::for_model_workers(&a, Precision::F32, workers).unwrap();
        let mut checked = 0;
        for &tile in &F32_COL_TILES {
            let panels = crate::runtime::panels_where_cut(p2, 1024, tile);
            if panels == 1 {
                continue;
            }
            let need = worker_scratch_len::<f32>(ow * (1024 / panels), workers).unwrap() * 4;
            assert!(
                need > base && need > stem,
                "the case does not test the staging term"
            );
            assert!(plan.wide >= need, "tile {tile}: {} < {need}", plan.wide);
            checked += 1;
        }
        assert!(checked > 0, "no kernel set cuts this stage");
    }
}
