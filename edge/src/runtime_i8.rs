//! Running an int8 model: composes the int8 operator kernels over the arena (see
//! `edge/FORMAT.md` for the scheme). No kernel code lives here.
//!
//! Per block, with `x` the int8 residual stream (scale `s_x`, zero `z_x`): depthwise 7×7 →
//! int32 (w2) → LayerNorm in f32 → int8 `t` → fc1 → int8 (w1) → GELU table in place → GRN in
//! fp16 → int8 (w2) → fc2 → int32 (w1) → residual add into `x` with explicit scales.

use crate::arch::{DOWN_PATCH, MLP_RATIO, STEM_PATCH};
use crate::arena::Int8WorkerScratch;
use crate::kernels::KernelSetI8;
use crate::model::{Model, QParams};
use crate::ops::grn_f16::{self, GrnF16Quant};
use crate::ops::layernorm_i8::{self, OutQuant};
use crate::ops::pointwise_i8::{GROUP, KR, NR};
use crate::ops::residual_i8::ResidualQuant;
use crate::ops::{input, layernorm, patch_conv_i8, pool};
use crate::parallel::{
    for_each_panel, for_each_part, for_each_rows, worker_scratch_len, Executor, Split,
};
use crate::profile::{BlockStep, Op};
use crate::runtime::{
    gemm_panels, gemm_row_group, grn_partial_sums, op_done, panel_block_len, pixel_split,
    pixelwise_split, tile_split, BlockOp, Input, NonFiniteScan, Observer, Tap, PIXEL_ALIGN,
    PIXEL_TASKS,
};
use crate::Error;
use core::ops::Range;

/// The first `n` bytes of a wide region as int8 codes.
fn codes(region: &mut [u8], n: usize) -> Result<&mut [i8], Error> {
    let got = region.len();
    region
        .get_mut(..n)
        .map(bytemuck::cast_slice_mut)
        .ok_or(Error::ArenaTooSmall { needed: n, got })
}

/// The first `n` int32 of a wide region (16-aligned by the plan).
fn accs(region: &mut [u8], n: usize) -> Result<&mut [i32], Error> {
    let got = region.len();
    let too_small = Error::ArenaTooSmall {
        needed: n.saturating_mul(4),
        got,
    };
    let bytes = region.get_mut(..n.checked_mul(4).ok_or(too_small)?);
    bytes
        .and_then(|b| bytemuck::try_cast_slice_mut(b).ok())
        .ok_or(too_small)
}

/// An int8 LayerNorm's parameters: int32 inputs times `deq` per channel, then the affine
/// (`w`, `b`, epsilon `eps`), quantized to `q`.
struct Norm<'m> {
    deq: &'m [f32],
    w: &'m [f32],
    b: &'m [f32],
    eps: f32,
    q: QParams,
}

impl Norm<'_> {
    /// `out[..p·c]` ← the LayerNorm of `src[..p·c]` (`p` pixels of `c` channels) by pixel
    /// tasks, each worker with its `cmax`-float row of `rows`.
    #[allow(clippy::too_many_arguments)]
    fn by_pixels<E: Executor + ?Sized>(
        &self,
        exec: &E,
        k: &KernelSetI8,
        p: usize,
        c: usize,
        src: &[i32],
        out: &mut [i8],
        rows: &mut [f32],
        cmax: usize,
    ) {
        let (split, q) = (pixel_split(p), out_quant(self.q));
        let mut none = [0u8; 0];
        for_each_part(
            exec,
            split,
            &mut out[..p * c],
            c,
            &mut none,
            0,
            rows,
            cmax,
            {
                |_, r, out, _, row, _| {
                    let src = &src[r.start * c..r.end * c];
                    let (n, d) = (r.len(), self.deq);
                    (k.layernorm)(src, n, c, d, self.w, self.b, self.eps, q, out, row)
                }
            },
        );
    }
}

fn out_quant(q: QParams) -> OutQuant {
    OutQuant {
        inv_scale: 1.0 / q.scale,
        zero: q.zero,
    }
}

impl Model<'_> {
    /// The int8 forward pass (input and output lengths checked by `run_with_executor`; an f32
    /// image's values here, see [`NonFiniteScan`]).
    pub(crate) fn run_i8<O: Observer, E: Executor + ?Sized>(
        &self,
        image: Input<'_>,
        arena: &mut [u8],
        logits: &mut [f32],
        k: &KernelSetI8,
        obs: &mut O,
        exec: &E,
    ) -> Result<(), Error> {
        let a = *self.arch();
        let mut step = 0;
        let workers = exec.workers();
        let got = arena.len();
        let r = self.run_plan(workers, got)?.split_i8(arena)?;
        if O::ENABLED || O::TIMED {
            NonFiniteScan::whole(image)?;
        }
        let (x, t, w1, w2, scratch) = (r.x, r.t, r.w1, r.w2, r.scratch);
        let (ih, iw, cin) = (a.input_h, a.input_w, a.in_chans);
        // Per-worker scratch: the LayerNorm's f32 row (after `cmax` floats kept for the
        // downsample's dequantization scales) and the stem's 4 gathered patches.
        let Int8WorkerScratch {
            ln_row: cmax,
            gather,
            stem_row,
        } = Int8WorkerScratch::of(&a).ok_or(Error::BadArch {
            reason: "no stages",
        })?;
        let ln_need = worker_scratch_len::<f32>(cmax, workers).and_then(|l| l.checked_add(cmax));
        let gather_need = worker_scratch_len::<i8>(gather, workers);
        let fits = |need: Option<usize>, got: usize| need.is_some_and(|n| n <= got);
        if !fits(ln_need, scratch.len()) || !fits(gather_need, t.len()) {
            // Unreachable with the plan's sizes; kept so that no slice below can be short.
            return Err(Error::ArenaTooSmall {
                needed: self.arena_len_for(workers),
                got,
            });
        }
        // Bytes of int8 scratch holding every worker's block of `len` (a cache line apart).
        let staged = |len: usize| worker_scratch_len::<i8>(len, workers).unwrap_or(usize::MAX);

        let stem = self.stem_i8();
        let (mut h, mut w) = a.stage_hw(0);
        let c0 = a.dims[0];
        let table = match image {
            Input::HwcU8(_) => input::u8_to_i8_table(stem.input),
            Input::NchwF32(_) => [[0; 256]; 3],
        };
        // Input pixels `r` (flat over H·W) → int8 HWC codes.
        let quantize = |r: Range<usize>, out: &mut [i8]| match image {
            Input::NchwF32(v) => {
                let plane = ih * iw;
                (k.quantize_input)(&v[r.start..], plane, r.len(), cin, stem.input, out)
            }
            Input::HwcU8(v) => {
                input::quantize_u8_hwc_i8_scalar(&v[r.start * cin..r.end * cin], &table, out)
            }
        };
        let band = STEM_PATCH * iw * cin;
        if !O::ENABLED && !O::TIMED {
            // Input, stem conv and its LayerNorm by output rows, one call: each row's 4 input
            // rows quantized into the worker's own block (`StemRow`, in w1), then the conv and
            // the LayerNorm on them while they are in cache (no image-sized passes between).
            let row = stem_row.len().ok_or(Error::BadArch {
                reason: "stem row too large",
            })?;
            let scan = NonFiniteScan::new();
            let blocks = codes(
                w1,
                worker_scratch_len::<u8>(row, workers).unwrap_or(usize::MAX),
            )?;
            let blocks: &mut [u8] = bytemuck::cast_slice_mut(blocks);
            for_each_part(
                exec,
                Split::new(h, 1),
                &mut x[..h * w * c0],
                w * c0,
                &mut [0u8; 0],
                0,
                blocks,
                row,
                |_, r, xs, _, block, _| {
                    let (ln, rest) = block.split_at_mut(stem_row.ln);
                    let (acc, rest) = rest.split_at_mut(stem_row.acc);
                    let (codes, rest) = rest.split_at_mut(stem_row.input);
                    let gathered: &mut [i8] = bytemuck::cast_slice_mut(&mut rest[..gather]);
                    let (ln, acc): (&mut [f32], &mut [i32]) =
                        (bytemuck::cast_slice_mut(ln), bytemuck::cast_slice_mut(acc));
                    let codes: &mut [i8] = bytemuck::cast_slice_mut(codes);
                    for (oy, out) in r.zip(xs.chunks_exact_mut(w * c0)) {
                        let first = oy * STEM_PATCH * iw;
                        let pixels = first..first + STEM_PATCH * iw;
                        scan.check(image, ih * iw, pixels.clone());
                        quantize(pixels, codes);
                        let (wt, b) = (stem.conv_w, stem.conv_b);
                        (k.patch_conv)(
                            codes, STEM_PATCH, iw, cin, STEM_PATCH, wt, b, c0, acc, gathered,
                        );
                        let (nw, nb, q) = (stem.norm_w, stem.norm_b, out_quant(stem.out));
                        (k.layernorm)(acc, w, c0, stem.deq, nw, nb, a.ln_eps, q, out, ln)
                    }
                },
            );
            scan.finish(image, ih * iw, STEM_PATCH * h * iw)?;
        } else {
            // Input → int8 HWC in w1.
            let img = codes(w1, ih * iw * cin)?;
            for_each_rows(exec, pixel_split(ih * iw), img, cin, |r, out| {
                quantize(r, out)
            });
            let img: &[i8] = img;
            if O::ENABLED {
                obs.observe_i8(Tap::Input, ih, iw, cin, img, stem.input);
            }
            op_done(obs, &mut step, Op::Input);
            // Stem: conv 4×4/s4 → int32 (w2) → LN → x, by output rows / pixels.
            let acc = accs(w2, h * w * c0)?;
            for_each_part(
                exec,
                Split::new(h, 1),
                acc,
                w * c0,
                &mut [0u8; 0],
                0,
                &mut t[..],
                gather,
                |_, r, out, _, g, _| {
                    let inp = &img[r.start * band..r.end * band];
                    (k.patch_conv)(
                        inp,
                        r.len() * STEM_PATCH,
                        iw,
                        cin,
                        STEM_PATCH,
                        stem.conv_w,
                        stem.conv_b,
                        c0,
                        out,
                        g,
                    )
                },
            );
            let (_, ln_scratch) = scratch.split_at_mut(cmax);
            let norm = Norm {
                deq: stem.deq,
                w: stem.norm_w,
                b: stem.norm_b,
                eps: a.ln_eps,
                q: stem.out,
            };
            norm.by_pixels(exec, k, h * w, c0, acc, &mut x[..], ln_scratch, cmax);
        }
        let mut xq = stem.out;
        if O::ENABLED {
            obs.observe_i8(Tap::Stem, h, w, c0, &x[..h * w * c0], xq);
        }
        op_done(obs, &mut step, Op::Stem);

        for s in 0..a.num_stages {
            let c = a.dims[s];
            if s > 0 {
                // Downsample: LN of the stream (codes − z, scale s_x), its 2×2 patches
                // gathered (w2), then the requantizing GEMM into x. The conv as a GEMM: the
                // requantizing pointwise kernels over the patches by 8-pixel tiles (the rows of
                // the last stages are 7 and 14 pixels, which a split by rows would leave to
                // partial register tiles and too few tasks).
                let d = self.downsample_i8(s);
                let prev = a.dims[s - 1];
                let p = h * w;
                let (oh, ow) = a.stage_hw(s);
                let kk = DOWN_PATCH * DOWN_PATCH * prev;
                let (deq, ln_scratch) = scratch.split_at_mut(cmax);
                let deq = &mut deq[..prev];
                deq.fill(xq.scale);
                let norm = Norm {
                    deq,
                    w: d.norm_w,
                    b: d.norm_b,
                    eps: a.ln_eps,
                    q: d.norm_q,
                };
                let xs: &[i8] = &x[..p * prev];
                let patches = if O::ENABLED {
                    // Observed: the LayerNorm's output in pixel order (its tap) in `t`, then
                    // gathered.
                    let px = pixel_split(p);
                    let wide = accs(w2, p * prev)?;
                    for_each_rows(exec, px, wide, prev, |r, out| {
                        layernorm_i8::widen_i8_i32_scalar(
                            &xs[r.start * prev..r.end * prev],
                            xq.zero,
                            out,
                        )
                    });
                    let wide: &[i32] = wide;
                    norm.by_pixels(exec, k, p, prev, wide, &mut t[..], ln_scratch, cmax);
                    obs.observe_i8(Tap::DownsampleNorm(s), h, w, prev, &t[..p * prev], d.norm_q);
                    let patches = codes(w2, oh * ow * kk)?;
                    let tn: &[i8] = &t[..p * prev];
                    for_each_rows(exec, pixelwise_split(oh * ow), patches, kk, |r, out| {
                        patch_conv_i8::gather_patches(tn, w, prev, DOWN_PATCH, r, out)
                    });
                    patches
                } else {
                    // One call: each task gathers its output pixels' patches of raw codes
                    // (w2), widens them (its rows of w1) and runs the LayerNorm from there
                    // back over them (a patch row is 4 whole pixels, and LN computes each
                    // pixel alone: the same bits as LN first, without the image-sized passes).
                    let patches = codes(w2, oh * ow * kk)?;
                    let wide = accs(w1, oh * ow * kk)?;
                    let q = out_quant(norm.q);
                    for_each_part(
                        exec,
                        pixelwise_split(oh * ow),
                        patches,
                        kk,
                        wide,
                        kk,
                        ln_scratch,
                        cmax,
                        |_, r, out, wide, row, _| {
                            patch_conv_i8::gather_patches(xs, w, prev, DOWN_PATCH, r.clone(), out);
                            layernorm_i8::widen_i8_i32_scalar(out, xq.zero, wide);
                            let (n, nd) = (DOWN_PATCH * DOWN_PATCH * r.len(), norm.deq);
                            (k.layernorm)(wide, n, prev, nd, norm.w, norm.b, norm.eps, q, out, row)
                        },
                    );
                    patches
                };
                (h, w) = (oh, ow);
                let patches: &[i8] = patches;
                let q = d.out;
                let (p, panels) = (h * w, gemm_panels(h * w, c, NR, exec.workers()));
                if panels > 1 {
                    // Few pixels (Atto 224's stage 3): by (pixel task, output panel) as fc2,
                    // each block staged in `t` (free: no later step of the downsample reads it)
                    // and copied into place.
                    let block = panel_block_len(p, c, NR);
                    let stage = codes(bytemuck::cast_slice_mut(&mut t[..]), staged(block))?;
                    let group_bytes = kk.div_ceil(KR) * GROUP;
                    for_each_panel(
                        exec,
                        pixel_split(p),
                        panels,
                        &mut x[..p * c],
                        c,
                        &mut [0u8; 0],
                        stage,
                        block,
                        |r, j, mut out, _, stage| {
                            let o = &mut stage[..r.len() * j.len()];
                            (k.pointwise)(
                                &patches[r.start * kk..r.end * kk],
                                r.len(),
                                kk,
                                &d.conv_w[j.start / NR * group_bytes..],
                                &d.conv_b[j.clone()],
                                &d.rq[j.clone()],
                                q.zero,
                                j.len(),
                                o,
                            );
                            out.copy_from(o);
                        },
                    );
                } else {
                    for_each_rows(
                        exec,
                        tile_split(p, PIXEL_ALIGN),
                        &mut x[..p * c],
                        c,
                        |r, out| {
                            let rows = &patches[r.start * kk..r.end * kk];
                            (k.pointwise)(
                                rows,
                                r.len(),
                                kk,
                                d.conv_w,
                                d.conv_b,
                                d.rq,
                                q.zero,
                                c,
                                out,
                            )
                        },
                    );
                }
                xq = d.out;
                if O::ENABLED {
                    obs.observe_i8(Tap::Downsample(s), h, w, c, &x[..h * w * c], xq);
                }
                op_done(obs, &mut step, Op::Downsample(s));
            }
            let p = h * w;
            let n = MLP_RATIO * c;
            let px = pixel_split(p);
            // 8-pixel grains for every int8 set, the 4-row NEON and AVX2 GEMMs too: under
            // qemu-aarch64 (cortex-a76, `benches/qemu/threads.sh`) 4-pixel tasks cut fc2's
            // imbalance at 4 workers (1.095 → 1.055) but added as much work per task (all
            // threads 108.2 M → 109.0 M) and left the critical path at 30.2 M.
            let tiles = tile_split(p, PIXEL_ALIGN);
            for b in 0..a.depths[s] {
                let bl = self.block_i8(s, b);
                let tap = |op| Tap::Block {
                    stage: s,
                    block: b,
                    op,
                };
                let done = |step| Op::Block {
                    stage: s,
                    block: b,
                    step,
                };
                let dw = accs(w2, p * c)?;
                let xs: &[i8] = &x[..p * c];
                let (_, ln_scratch) = scratch.split_at_mut(cmax);
                let dwconv = |r: Range<usize>, out: &mut [i32]| {
                    (k.dwconv7x7)(xs, h, w, c, xq.zero, bl.dw_w, bl.dw_b, r, out)
                };
                let layernorm = |src: &[i32], pixels: usize, tn: &mut [i8], sc: &mut [f32]| {
                    (k.layernorm)(
                        src,
                        pixels,
                        c,
                        bl.dw_deq,
                        bl.norm_w,
                        bl.norm_b,
                        a.ln_eps,
                        out_quant(bl.norm_q),
                        tn,
                        sc,
                    )
                };
                // LN on the task's own output rows while they are in cache (one step: there is no
                // int8 tap between them; every pixel's LN is the same code whatever the split).
                for_each_part(
                    exec,
                    Split::new(h, 1),
                    dw,
                    w * c,
                    &mut t[..p * c],
                    w * c,
                    ln_scratch,
                    cmax,
                    |_, r, dwr, tn, sc, _| {
                        let pixels = r.len() * w;
                        dwconv(r, dwr);
                        layernorm(dwr, pixels, tn, sc)
                    },
                );
                op_done(obs, &mut step, done(BlockStep::DwConvNorm));
                let tn: &[i8] = &t[..p * c];
                let hid = codes(w1, p * n)?;
                // Checked at parse (`check_grn_scales`).
                let gq = GrnF16Quant::new(
                    bl.gelu_q.scale,
                    bl.gelu_q.zero,
                    bl.grn_q.scale,
                    bl.grn_q.zero,
                )
                .ok_or(Error::BadArch {
                    reason: "GRN quantization scales outside fp16's normal range",
                })?;
                // Outputs `cols` (whole panels of 8: the c4-packed panel j starts at
                // j·⌈c/4⌉·32 bytes) of the pixels `r`.
                let group_bytes = c.div_ceil(KR) * GROUP;
                let fc1 = |r: Range<usize>, cols: Range<usize>, out: &mut [i8]| {
                    (k.pointwise)(
                        &tn[r.start * c..r.end * c],
                        r.len(),
                        c,
                        &bl.fc1_w[cols.start / NR * group_bytes..],
                        &bl.fc1_b[cols.clone()],
                        &bl.fc1_rq[cols.clone()],
                        bl.fc1_q.zero,
                        cols.len(),
                        out,
                    )
                };
                // GRN's sums of squares per pixel task, the parts added in task order
                // (`grn_f16`'s specification, with the runtime's pixel tasks as blocks).
                let (sums, parts) = scratch.split_at_mut(n);
                // The sums of rows `r` (whole pixel tasks, `out` their values) per pixel task,
                // each into its `cols` values of `parts`.
                let sumsq_per_task =
                    |r: Range<usize>, cols: usize, out: &mut [i8], parts: &mut [f32]| {
                        let rows = px.grain * cols;
                        // One part per pixel task the range spans (`grn_partial_sums`' slots).
                        assert_eq!(parts.len(), r.len().div_ceil(px.grain) * cols);
                        let tasks = out[..r.len() * cols].chunks_mut(rows);
                        for (x, part) in tasks.zip(parts.chunks_mut(cols)) {
                            let pixels = x.len() / cols;
                            (k.grn_sumsq)(x, pixels, cols, 0..cols, &gq, part)
                        }
                    };
                if O::ENABLED || exec.workers() == 1 {
                    // Observed, or one worker: fc1, GELU, then the sums, each an operator of its
                    // own (one worker: fc1 and GELU one call each over the stage, the kernels'
                    // own loops: 2.4 M instructions per Atto-224 image fewer than a call per
                    // pixel task, qemu cortex-a76 SDOT); the sums per pixel task.
                    for_each_rows(exec, px, hid, n, |r, out| fc1(r, 0..n, out));
                    if O::ENABLED {
                        obs.observe_i8(tap(BlockOp::Norm), h, w, c, tn, bl.norm_q);
                        obs.observe_i8(tap(BlockOp::Fc1), h, w, n, hid, bl.fc1_q);
                    }
                    for_each_rows(exec, px, hid, n, |_, x| (k.gelu)(x, bl.gelu_lut));
                    if O::ENABLED {
                        obs.observe_i8(tap(BlockOp::Gelu), h, w, n, hid, bl.gelu_q);
                    }
                    grn_partial_sums(
                        exec,
                        px,
                        1,
                        1,
                        hid,
                        sums,
                        parts,
                        &mut [],
                        0,
                        n,
                        |r, _, out, part, _| sumsq_per_task(r, n, out.contiguous(), part),
                    );
                } else {
                    // Several workers: fc1, GELU and the sums on the task's own rows (and
                    // columns, where cut) while they are in cache; the staging blocks in `w2`,
                    // free until GRN writes it. Uncut, a task may run several pixel tasks in
                    // one GEMM call (`gemm_row_group`).
                    let panels = gemm_panels(p, n, NR, exec.workers());
                    let group = match panels {
                        1 => gemm_row_group(px, exec.workers()),
                        _ => 1,
                    };
                    let per_stage = panel_block_len(p, n, NR);
                    let stage = codes(w2, staged(per_stage))?;
                    grn_partial_sums(
                        exec,
                        px,
                        panels,
                        group,
                        hid,
                        sums,
                        parts,
                        stage,
                        per_stage,
                        n,
                        |r, cols, mut out, part, stage| {
                            let (nc, len) = (cols.len(), r.len() * cols.len());
                            let body = |o: &mut [i8]| {
                                fc1(r.clone(), cols, o);
                                (k.gelu)(o, bl.gelu_lut);
                                sumsq_per_task(r, nc, o, part)
                            };
                            // Whole rows in place; a panel block through the staging buffer.
                            if stage.is_empty() {
                                body(out.contiguous_mut());
                            } else {
                                let o = &mut stage[..len];
                                body(o);
                                out.copy_from(o);
                            }
                        },
                    );
                }
                op_done(obs, &mut step, done(BlockStep::Fc1Gelu));
                let nx = &mut scratch[..n];
                grn_f16::grn_f16_stats(nx, a.grn_eps);
                let nx: &[f32] = nx;
                let grn = |rows: &[i8], pixels: usize, out: &mut [i8]| {
                    (k.grn_apply)(rows, pixels, n, bl.grn_w, bl.grn_b, nx, &gq, out)
                };
                let (x_scale, acc_scale) = bl.res_rq.split_first().ok_or(Error::BadArch {
                    reason: "residual requantization missing",
                })?;
                let rq = ResidualQuant {
                    x_zero: xq.zero,
                    x_scale: *x_scale,
                    acc_scale,
                    out_zero: bl.out.zero,
                };
                let fc2 = |g: &[i8], rows: usize, out: &mut [i32]| {
                    (k.pointwise_acc)(g, rows, n, bl.fc2_w, bl.fc2_b, c, out)
                };
                let panels = gemm_panels(p, c, NR, exec.workers());
                if !O::ENABLED && !O::TIMED && panels == 1 {
                    // GRN's update, fc2 and the residual add on the task's own rows, while
                    // they are in cache: one call fewer to wait for. GRN writes the worker's
                    // block of `w2` (one worker: all of it, one call over the stage), and fc2
                    // its int32 accumulators over the task's fc1 rows just read: `n = 4c`
                    // codes per row are the bytes of `c` int32.
                    let per_worker = match exec.workers() {
                        1 => p * n,
                        _ => tiles.grain * n,
                    };
                    let gs = codes(w2, staged(per_worker))?;
                    for_each_part(
                        exec,
                        tiles,
                        &mut hid[..p * n],
                        n,
                        &mut x[..p * c],
                        c,
                        gs,
                        per_worker,
                        |_, r, hid, xs, g, _| {
                            let (rows, g) = (r.len(), &mut g[..r.len() * n]);
                            grn(hid, rows, g);
                            let acc: &mut [i32] = bytemuck::cast_slice_mut(hid);
                            fc2(g, rows, acc);
                            (k.residual)(xs, acc, rows, c, &rq)
                        },
                    );
                    // (No tap to take: the block's end below is for observed runs.)
                    xq = bl.out;
                    op_done(obs, &mut step, done(BlockStep::Fc2Residual));
                    continue;
                }
                let hs: &[i8] = hid;
                let g = codes(w2, p * n)?;
                for_each_rows(exec, pixelwise_split(p), &mut g[..p * n], n, |r, out| {
                    grn(&hs[r.start * n..r.end * n], r.len(), out)
                });
                if O::ENABLED {
                    obs.observe_i8(tap(BlockOp::Grn), h, w, n, g, bl.grn_q);
                }
                op_done(obs, &mut step, done(BlockStep::Grn));
                let g: &[i8] = g;
                let acc = accs(w1, p * c)?;
                if panels > 1 {
                    // Few pixels: fc2 + the residual add by (pixels, output panel) tasks, each
                    // on staged copies of its accumulators and its block of the residual
                    // stream (in `t`, free since fc1 read it).
                    let block_len = panel_block_len(p, c, NR);
                    let per_stage = block_len + block_len.div_ceil(4);
                    let stage = accs(
                        bytemuck::cast_slice_mut(&mut t[..]),
                        worker_scratch_len::<i32>(per_stage, workers).unwrap_or(usize::MAX),
                    )?;
                    let group_bytes = n.div_ceil(KR) * GROUP;
                    for_each_panel(
                        exec,
                        px,
                        panels,
                        &mut x[..p * c],
                        c,
                        &mut [0u8; 0],
                        stage,
                        per_stage,
                        |r, j, mut block, _, stage| {
                            let len = r.len() * j.len();
                            let (acc, xs) = stage.split_at_mut(block_len);
                            let (acc, xs) =
                                (&mut acc[..len], &mut bytemuck::cast_slice_mut(xs)[..len]);
                            block.copy_to(xs);
                            (k.pointwise_acc)(
                                &g[r.start * n..r.end * n],
                                r.len(),
                                n,
                                &bl.fc2_w[j.start / NR * group_bytes..],
                                &bl.fc2_b[j.clone()],
                                j.len(),
                                acc,
                            );
                            let rq = ResidualQuant {
                                acc_scale: &rq.acc_scale[j.clone()],
                                ..rq
                            };
                            (k.residual)(xs, acc, r.len(), j.len(), &rq);
                            block.copy_from(xs);
                        },
                    );
                } else {
                    // The residual add on the task's own accumulators (one step, no tap
                    // between them).
                    let mut none = [0u8; 0];
                    for_each_part(
                        exec,
                        tiles,
                        acc,
                        c,
                        &mut x[..p * c],
                        c,
                        &mut none,
                        0,
                        |_, r, accr, xs, _, _| {
                            let pixels = r.len();
                            fc2(&g[r.start * n..r.end * n], pixels, accr);
                            (k.residual)(xs, accr, pixels, c, &rq)
                        },
                    );
                }
                xq = bl.out;
                if O::ENABLED {
                    obs.observe_i8(tap(BlockOp::Out), h, w, c, &x[..p * c], xq);
                }
                op_done(obs, &mut step, done(BlockStep::Fc2Residual));
            }
            if O::ENABLED {
                obs.observe_i8(Tap::Stage(s), h, w, c, &x[..p * c], xq);
            }
        }

        // Head: int8 mean over H, W → f32 LN → int8 → classifier (int32, by output panels) →
        // logits.
        let cl = a.last_dim();
        let hd = self.head_i8();
        let pooled = &mut scratch[..cl];
        pool::avgpool_i8_f32_scalar(x, h * w, cl, xq, pooled);
        layernorm::layernorm_f32_scalar(pooled, 1, cl, hd.norm_w, hd.norm_b, a.ln_eps);
        let pq = &mut t[..cl];
        input::quantize_f32_i8_scalar(pooled, hd.norm_q, pq);
        let pq: &[i8] = pq;
        if O::ENABLED {
            obs.observe_i8(Tap::PreLogits, 1, 1, cl, pq, hd.norm_q);
        }
        op_done(obs, &mut step, Op::Pool);
        let acc = accs(w1, a.num_classes)?;
        let group_bytes = cl.div_ceil(KR) * GROUP;
        let classes = Split::aligned(a.num_classes, PIXEL_TASKS, NR);
        for_each_rows(exec, classes, acc, 1, |r, out| {
            // Panel j of the c4-packed weights starts at j·⌈cl/4⌉·32 bytes.
            let wp = &hd.fc_w[r.start / NR * group_bytes..];
            (k.pointwise_acc)(pq, 1, cl, wp, &hd.fc_b[r.clone()], r.len(), out)
        });
        for ((l, &v), &d) in logits.iter_mut().zip(acc.iter()).zip(hd.deq) {
            *l = v as f32 * d;
        }
        op_done(obs, &mut step, Op::Head);
        Ok(())
    }
}
