//! Running a model: composes the operator kernels over the arena. No kernel code lives here.

use crate::arch::{DOWN_PATCH, MLP_RATIO, STEM_PATCH};
use crate::format::Precision;
use crate::format::PANEL;
use crate::model::{Model, QParams};
use crate::ops::RowsMut;
use crate::ops::{grn, input};
use crate::parallel::{
    for_each_panel, for_each_part, for_each_rows, for_each_task_slot, worker_scratch_len, Executor,
    Serial, Split,
};
use crate::profile::{BlockStep, Op};
use crate::Error;
use core::ops::Range;

/// The image given to [`Model::run`].
#[derive(Clone, Copy, Debug)]
pub enum Input<'i> {
    /// Normalized f32 `[1, 3, H, W]` (what a PyTorch user holds).
    NchwF32(&'i [f32]),
    /// u8 RGB `[H, W, 3]`, normalized inside with ImageNet mean/std.
    HwcU8(&'i [u8]),
}

/// Which kernel implementations `run` uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kernels {
    /// The fastest set this CPU has: NEON on aarch64; on x86-64 AVX-512, else AVX2, else
    /// scalar (asked of the CPU with `cpuid`/`xgetbv`, see [`crate::cpu`]).
    #[default]
    Auto,
    /// The scalar reference kernels (the specification).
    Scalar,
    /// The NEON kernels (aarch64 only; elsewhere `run` returns `Error::KernelsUnavailable`).
    Neon,
    /// AVX2+FMA+F16C (x86-64-v3; int8 with AVX-VNNI where present). `Error::KernelsUnavailable`
    /// on a CPU or OS without them.
    Avx2,
    /// AVX-512 F/BW/VL/DQ (int8 with AVX-512 VNNI where present, else AVX2's int8 kernels).
    /// `Error::KernelsUnavailable` on a CPU or OS without them.
    Avx512,
}

/// Operators inside a block whose outputs an [`Observer`] can see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockOp {
    /// After the depthwise 7×7.
    DwConv,
    /// After the block's LayerNorm.
    Norm,
    /// After the first pointwise (C → 4C).
    Fc1,
    /// After GELU.
    Gelu,
    /// After GRN.
    Grn,
    /// After the second pointwise (4C → C), before the residual add.
    Fc2,
    /// The block's output (residual added).
    Out,
}

/// Points of the network whose activations an [`Observer`] can see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tap {
    /// The normalized input image (HWC).
    Input,
    /// After stem conv + LN.
    Stem,
    /// After the LayerNorm of stage `s`'s downsample (the downsample conv's input), s ≥ 1.
    DownsampleNorm(usize),
    /// After downsample of stage `s` (its first block's input), s ≥ 1.
    Downsample(usize),
    /// Inside block `block` of stage `stage`.
    Block {
        /// Stage index.
        stage: usize,
        /// Block index in the stage.
        block: usize,
        /// Which operator's output.
        op: BlockOp,
    },
    /// After the last block of stage `s`.
    Stage(usize),
    /// Pooled, head-normalized features (the classifier's input).
    PreLogits,
}

/// Sees intermediate activations (NHWC, `h × w × c`) and/or the end of each step of the fused
/// schedule. With `ENABLED = false` and `TIMED = false` (the default [`NoObserver`]) every call
/// and the unfused residual path compile away.
pub trait Observer {
    /// Whether `observe` does anything (the runtime then runs each block unfused, so that every
    /// operator's output can be seen).
    const ENABLED: bool;
    /// Whether [`Observer::run_start`] and [`Observer::op_done`] are called (profilers, see
    /// [`crate::profile`]); the fused kernels stay as they are.
    const TIMED: bool = false;
    /// Called with each tap's activations (f32 models).
    fn observe(&mut self, tap: Tap, h: usize, w: usize, c: usize, nhwc: &[f32]);
    /// Called with each tap's int8 codes and their quantization (int8 models; taps whose value
    /// is an int32 accumulator, `DwConv` and `Fc2`, are not seen). Ignores them by default.
    fn observe_i8(&mut self, tap: Tap, h: usize, w: usize, c: usize, q: &[i8], qp: QParams) {
        let _ = (tap, h, w, c, q, qp);
    }
    /// Called once as `run` starts, before the input is checked (`TIMED` only).
    fn run_start(&mut self) {}
    /// Called when step `op` ends, `index` its place in [`Op::schedule`] (`TIMED` only).
    fn op_done(&mut self, op: Op, index: usize) {
        let _ = (op, index);
    }
}

/// Reports the end of step `op` to a timed observer and advances the step index.
#[inline(always)]
pub(crate) fn op_done<O: Observer>(obs: &mut O, index: &mut usize, op: Op) {
    if O::TIMED {
        obs.op_done(op, *index);
        *index += 1;
    }
}

/// The observer that observes nothing.
pub struct NoObserver;

impl Observer for NoObserver {
    const ENABLED: bool = false;
    #[inline(always)]
    fn observe(&mut self, _: Tap, _: usize, _: usize, _: usize, _: &[f32]) {}
}

/// Pixel-range tasks per operator: at most about this many, each a multiple of [`PIXEL_ALIGN`]
/// pixels (whole register tiles). Fixed by the shape, never by the worker count.
pub(crate) const PIXEL_TASKS: usize = 32;
/// See [`PIXEL_TASKS`].
pub(crate) const PIXEL_ALIGN: usize = 8;
/// Tasks of the operators that compute every pixel on its own (GRN's update, fc2 + residual
/// and the int8 downsample's GEMM where not cut by output panels, see [`gemm_panels`]): at
/// most about this many,
/// each a multiple of the kernel set's task grain. Finer than
/// [`PIXEL_TASKS`], whose blocks also fix GRN's summation order (part of the format); these
/// splits change no bit, so they follow the kernels: Atto 224's 784 and 3,136 pixels are 49
/// and 56 tasks here for 8-pixel grains, against 25 and 31 of [`pixel_split`].
pub(crate) const TILE_TASKS: usize = 64;

/// Tasks of the operators that compute each pixel alone without a GEMM (the downsample's
/// gather and LayerNorm over `q` output pixels, GRN's update where fc2 is cut by panels):
/// about [`TILE_TASKS`] of whole pixels, no tile alignment (Atto 224's last stage: 49 tasks
/// of one pixel, where 8-pixel tiles would be 7 tasks for any number of workers).
pub(crate) fn pixelwise_split(q: usize) -> Split {
    Split::aligned(q, TILE_TASKS, 1)
}

/// [`TILE_TASKS`] tasks over `p` pixels, multiples of `grain` (fixed by the shape and the
/// kernel set, never by the worker count).
pub(crate) fn tile_split(p: usize, grain: usize) -> Split {
    Split::aligned(p, TILE_TASKS, grain)
}

/// Column panels of a pointwise GEMM (fc1, fc2, the downsample's conv — int8's a GEMM over
/// gathered patches, f32's cut by output row —: `p` pixels, `n` outputs, panels a multiple of
/// `col_tile` columns, the kernel set's widest register tile) run by `workers`.
/// Where [`pixel_split`]'s tasks are already at their minimum, [`PIXEL_ALIGN`] rows (≤ 256
/// pixels: Atto 224's last two stages, 196 and 49 pixels in 25 and 7 tasks), and fewer than
/// [`CUT_BELOW_TASKS_PER_WORKER`] per worker, each is cut into 4 (or 2) tasks by output
/// columns, so that every worker still gets the same work (and streams a part of the
/// weights). f32's fused fc1 writes each block in place (its kernels take rows a stride
/// apart, [`RowsMut`]); the other GEMMs compute their block into the worker's staging buffer,
/// which is then copied into place. Larger stages keep whole rows: their tasks are many, and a
/// row written by one core is then read by the same core (GRN, fc2). No bit depends on the
/// cut: every column is computed on its own, and GRN's partial sums stay one per pixel task.
/// 1 (no cut) for one worker, or unless `n` is a multiple of 2 tiles.
pub(crate) fn gemm_panels(p: usize, n: usize, col_tile: usize, workers: usize) -> usize {
    let few = pixel_split(p).tasks() < CUT_BELOW_TASKS_PER_WORKER.saturating_mul(workers);
    match workers > 1 && few {
        true => panels_where_cut(p, n, col_tile),
        false => 1,
    }
}

/// Pixel tasks per worker from which [`gemm_panels`] keeps whole rows. With this many, the
/// wait for the last task costs less than what a cut adds to every task (its weights
/// streamed once more per pixel task, the staging copies): at 2 workers Atto 224's stage 2
/// (25 tasks) uncut is about 3 % faster per image than cut in 4 (int8, AVX-512 VNNI, both
/// timed by `edge-bench --speedup`); at 4 its cut lowers the critical path (qemu cortex-a76,
/// `benches/qemu/threads.sh`).
pub(crate) const CUT_BELOW_TASKS_PER_WORKER: usize = 8;

/// [`gemm_panels`]'s count for a GEMM it cuts (whatever the worker count).
pub(crate) fn panels_where_cut(p: usize, n: usize, col_tile: usize) -> usize {
    if pixel_split(p).grain != PIXEL_ALIGN {
        return 1;
    }
    [4, 2]
        .into_iter()
        .find(|&panels| n.is_multiple_of(panels * col_tile))
        .unwrap_or(1)
}

/// Elements of one (pixel task, panel) block of a GEMM that [`gemm_panels`] cuts (for some
/// worker count; `p` pixels, `n` outputs): a pixel task's rows × one panel's columns, the size
/// of a worker's staging block; 0 if it is never cut.
pub(crate) fn panel_block_len(p: usize, n: usize, col_tile: usize) -> usize {
    match panels_where_cut(p, n, col_tile) {
        1 => 0,
        panels => pixel_split(p).grain * (n / panels),
    }
}

/// Pixel tasks of `px` that one task of `workers` runs together where a GEMM is not cut by
/// output panels: 4 or 2 if [`pixel_split`]'s tasks are single register tiles
/// ([`PIXEL_ALIGN`] rows) and tasks of that many still share the rows out evenly, else 1. A
/// GEMM call of 8 rows costs about a tenth more per row than one of 32 (Atto 224's stage 2
/// fc1, 160 → 640, int8 VNNI), and at 2 workers Atto's stage 2 (196 pixels) splits as evenly
/// in 32-row tasks (6, and one of 4 rows) as in 8-row ones. "Evenly": the busiest worker,
/// taking whole tasks in turn and the short last one after a round that used every worker,
/// gets at most 5 % over an equal share. No bit depends on it (the sums stay per pixel task).
pub(crate) fn gemm_row_group(px: Split, workers: usize) -> usize {
    if workers <= 1 || px.grain != PIXEL_ALIGN {
        return 1;
    }
    let even = |g: usize| {
        let rows = g * px.grain;
        let (full, rest) = (px.n / rows, px.n % rows);
        let last = if full.is_multiple_of(workers) {
            rest
        } else {
            0
        };
        let busiest = full.div_ceil(workers) * rows + last;
        // busiest ≤ 1.05 · n / workers
        busiest.saturating_mul(workers).saturating_mul(20) <= px.n.saturating_mul(21)
    };
    [4, 2].into_iter().find(|&g| even(g)).unwrap_or(1)
}

/// GRN's sums of squares of one block into `sums[..n]`: `task(pixels, columns, out, part,
/// stage)` writes (or reads, if fc1 already wrote them) the block's `hid` values at those
/// pixels and columns through `out` and sets `part` to their sums of squares over each pixel
/// task (`cols` values per pixel task the range spans, in order); the parts are then added in
/// pixel-task order (from zero). One worker runs each pixel task over every column, in order,
/// on this thread with one part (`parts[..n]`). Several keep one part per pixel task
/// (`parts[..tasks·n]`, the plan's scratch for several workers) and run `group` pixel tasks
/// per task over every column (see [`gemm_row_group`]; the last task may span fewer), or,
/// with `panels` > 1, cut each pixel task into that many column panels: `out` is then the
/// task's block of the wider rows, and `stage` its worker's `per_stage` elements of `stage`
/// for kernels that write contiguous rows only (empty otherwise, and whenever `out` is
/// contiguous). All add the same per-column parts in the same order, and every kernel
/// computes each column independently of the others: the bits do not depend on the worker
/// count. Shared by the f32 and int8 runtimes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn grn_partial_sums<E: Executor + ?Sized, T: Send>(
    exec: &E,
    px: Split,
    panels: usize,
    group: usize,
    hid: &mut [T],
    sums: &mut [f32],
    parts: &mut [f32],
    stage: &mut [T],
    per_stage: usize,
    n: usize,
    task: impl Fn(Range<usize>, Range<usize>, RowsMut<'_, T>, &mut [f32], &mut [T]) + Sync,
) {
    let sums = &mut sums[..n];
    let whole_rows = |r: Range<usize>, out: &mut [T], part: &mut [f32]| {
        let rows = r.len();
        task(r, 0..n, RowsMut::new(out, rows, n, n), part, &mut [])
    };
    if exec.workers() == 1 {
        sums.fill(0.0);
        let part = &mut parts[..n];
        for t in 0..px.tasks() {
            let r = px.range(t);
            let (s, e) = (r.start * n, r.end * n);
            whole_rows(r, &mut hid[s..e], part);
            add_part(sums, part);
        }
        return;
    }
    let parts = &mut parts[..px.tasks() * n];
    if panels == 1 {
        let groups = Split::new(px.n, px.grain * group);
        for_each_task_slot(exec, groups, hid, n, parts, group * n, whole_rows);
    } else {
        for_each_panel(exec, px, panels, hid, n, parts, stage, per_stage, task);
    }
    add_parts_in_order(sums, parts);
}

/// [`grn_partial_sums`] over the f32 hidden buffer (whose fused fc1 writes its panel blocks in
/// place: no staging): the sums in `scratch[..n]`; one worker's part in `hidden` past the
/// stage's activations when it fits there, else after the sums; several workers' parts after
/// the sums.
fn grn_partial_sums_f32<E: Executor + ?Sized>(
    exec: &E,
    px: Split,
    panels: usize,
    hidden: &mut [f32],
    scratch: &mut [f32],
    n: usize,
    task: impl Fn(Range<usize>, Range<usize>, RowsMut<'_, f32>, &mut [f32]) + Sync,
) {
    let (hid, tail) = hidden.split_at_mut(px.n * n);
    let (sums, rest) = scratch.split_at_mut(n);
    let parts = match exec.workers() {
        1 if tail.len() >= n => tail,
        1 => &mut rest[..n],
        _ => &mut rest[..px.tasks() * n],
    };
    let task = |r, j, out: RowsMut<'_, f32>, part: &mut [f32], _: &mut [f32]| task(r, j, out, part);
    grn_partial_sums(exec, px, panels, 1, hid, sums, parts, &mut [], 0, n, task)
}

/// `sums` (zeroed first) plus each of `parts`' rows of `sums.len()` values, in order.
fn add_parts_in_order(sums: &mut [f32], parts: &[f32]) {
    sums.fill(0.0);
    for part in parts.chunks_exact(sums.len()) {
        add_part(sums, part);
    }
}

/// `sums[j] += part[j]`.
fn add_part(sums: &mut [f32], part: &[f32]) {
    for (s, v) in sums.iter_mut().zip(part) {
        *s += *v;
    }
}

/// The pixel partition of an operator over `p` pixels.
pub(crate) fn pixel_split(p: usize) -> Split {
    Split::aligned(p, PIXEL_TASKS, PIXEL_ALIGN)
}

/// A plain run's check of an f32 image for NaN and ±inf, split with its input conversion: each
/// task checks the pixels it converts while they are in cache, the calling thread the rows
/// below the stem's last output row (`H mod 4`, which no task converts), and the smallest
/// index found is the error ([`Error::NonFiniteInput`], the index into the `[C][H·W]` image,
/// as [`NonFiniteScan::whole`] reports it for observed and profiled runs). A serial scan
/// before any worker starts cost 40–50 µs per Atto-224 image on the x86-64 host (600 KB read
/// from outside the core's caches). Nothing reads the stem's output before
/// [`NonFiniteScan::finish`], and logits are written last. Every run kind reports it at the
/// same point: after the length, worker and arena checks.
pub(crate) struct NonFiniteScan(core::sync::atomic::AtomicUsize);

impl NonFiniteScan {
    /// The whole image at once (observed and profiled runs, before their input step).
    pub fn whole(image: Input<'_>) -> Result<(), Error> {
        match image {
            Input::NchwF32(x) => match input::first_non_finite(x) {
                Some(index) => Err(Error::NonFiniteInput { index }),
                None => Ok(()),
            },
            Input::HwcU8(_) => Ok(()),
        }
    }

    pub fn new() -> Self {
        NonFiniteScan(core::sync::atomic::AtomicUsize::new(usize::MAX))
    }

    /// Checks pixels `r` of every plane of `image` (`[C][H·W]`, planes `plane` values long).
    pub fn check(&self, image: Input<'_>, plane: usize, r: Range<usize>) {
        let Input::NchwF32(x) = image else { return };
        for start in (0..x.len()).step_by(plane.max(1)) {
            let pixels = &x[start + r.start..start + r.end];
            if let Some(i) = input::first_non_finite(pixels) {
                // The first plane with one holds the range's smallest index.
                let index = start + r.start + i;
                self.0
                    .fetch_min(index, core::sync::atomic::Ordering::Relaxed);
                return;
            }
        }
    }

    /// Checks the pixels `converted..plane` that no task converted (the rows below the stem's
    /// last output row), then the error for the smallest index found, after every task (the
    /// executor's `run` has returned, so every task's update is visible).
    pub fn finish(self, image: Input<'_>, plane: usize, converted: usize) -> Result<(), Error> {
        self.check(image, plane, converted..plane);
        match self.0.into_inner() {
            usize::MAX => Ok(()),
            index => Err(Error::NonFiniteInput { index }),
        }
    }
}

impl Model<'_> {
    /// `workers` blocks of `len` floats at the start of `buf` ([`worker_scratch_len`]: a
    /// cache line apart), or [`Error::ArenaTooSmall`] with the size the plan states for
    /// `workers` (computed only then; unreachable with that size, which plans these blocks).
    fn worker_blocks<'b>(
        &self,
        buf: &'b mut [f32],
        len: usize,
        workers: usize,
        got: usize,
    ) -> Result<&'b mut [f32], Error> {
        worker_scratch_len::<f32>(len, workers)
            .and_then(|n| buf.get_mut(..n))
            .ok_or_else(|| Error::ArenaTooSmall {
                needed: self.arena_len_for(workers),
                got,
            })
    }

    /// Runs one image and writes `num_classes` logits. Allocates nothing.
    pub fn run(&self, input: Input<'_>, arena: &mut [u8], logits: &mut [f32]) -> Result<(), Error> {
        self.run_with(input, arena, logits, Kernels::Auto, &mut NoObserver)
    }

    /// [`Model::run`] with an explicit kernel set and an observer of intermediate activations,
    /// on the calling thread ([`Serial`]).
    pub fn run_with<O: Observer>(
        &self,
        image: Input<'_>,
        arena: &mut [u8],
        logits: &mut [f32],
        kernels: Kernels,
        obs: &mut O,
    ) -> Result<(), Error> {
        self.run_with_executor(image, arena, logits, kernels, obs, &Serial)
    }

    /// [`Model::run`] with the image split across the workers of `exec` (see
    /// [`crate::parallel`]); `arena` must hold [`Model::arena_len_for`]`(exec.workers())` bytes.
    /// The logits are bit-identical for any number of workers.
    pub fn run_parallel<E: Executor + ?Sized>(
        &self,
        image: Input<'_>,
        arena: &mut [u8],
        logits: &mut [f32],
        kernels: Kernels,
        exec: &E,
    ) -> Result<(), Error> {
        self.run_with_executor(image, arena, logits, kernels, &mut NoObserver, exec)
    }

    /// The general form: kernel set, observer (called on this thread between operators) and
    /// executor. Every tap and the logits are bit-identical for any number of workers.
    pub fn run_with_executor<O: Observer, E: Executor + ?Sized>(
        &self,
        image: Input<'_>,
        arena: &mut [u8],
        logits: &mut [f32],
        kernels: Kernels,
        obs: &mut O,
        exec: &E,
    ) -> Result<(), Error> {
        if O::TIMED {
            obs.run_start();
        }
        let k = kernels.set()?;
        let a = *self.arch();
        let (ih, iw) = (a.input_h, a.input_w);
        let in_len = ih * iw * a.in_chans;
        let given = match image {
            Input::NchwF32(x) => x.len(),
            Input::HwcU8(x) => x.len(),
        };
        if given != in_len {
            return Err(Error::InputLength {
                expected: in_len,
                got: given,
            });
        }
        if logits.len() != a.num_classes {
            return Err(Error::OutputLength {
                expected: a.num_classes,
                got: logits.len(),
            });
        }
        let workers = exec.workers();
        if workers == 0 {
            return Err(Error::NoWorkers);
        }
        if self.precision() == Precision::Int8 {
            return self.run_i8(image, arena, logits, kernels.set_i8()?, obs, exec);
        }
        let mut step = 0;
        // Several workers keep GRN's partial sums per task in a larger scratch.
        let got = arena.len();
        let r = self.run_plan(exec.workers(), got)?.split_f32(arena)?;
        if O::ENABLED || O::TIMED {
            NonFiniteScan::whole(image)?;
        }
        let (mut cur, mut other, hidden, scratch) = (r.a, r.b, r.hidden, r.scratch);
        let cin = a.in_chans;

        // Input pixels `r` (flat over H·W) → HWC f32.
        let convert = |r: Range<usize>, out: &mut [f32]| match image {
            Input::NchwF32(x) => input::nchw_to_hwc_rows_f32_scalar(x, ih * iw, cin, r, out),
            Input::HwcU8(x) => input::normalize_u8_hwc_scalar(&x[r.start * cin..r.end * cin], out),
        };
        let [sw, sb, snw, snb] = self.stem();
        let (mut h, mut w) = a.stage_hw(0);
        let c0 = a.dims[0];
        let band = STEM_PATCH * iw * cin;
        // Stem output rows `rows` from their input rows `inp`: conv 4×4/s4 + LN.
        let stem = |rows: usize, inp: &[f32], out: &mut [f32]| {
            let k4 = STEM_PATCH;
            (k.patch_conv)(inp, rows * k4, iw, cin, k4, sw, sb, c0, 0..c0, out);
            (k.layernorm)(out, rows * w, c0, snw, snb, a.ln_eps);
        };
        if !O::ENABLED && !O::TIMED {
            // Input and stem by output rows, one call: each row's 4 input rows converted into
            // the worker's own block of the hidden region (free until the first block), then
            // conv + LN on them while they are in cache (no image-sized pass between).
            let scan = NonFiniteScan::new();
            let blocks = self.worker_blocks(hidden, band, workers, got)?;
            for_each_part(
                exec,
                Split::new(h, 1),
                &mut cur[..h * w * c0],
                w * c0,
                &mut [0f32; 0],
                0,
                blocks,
                band,
                |_, r, out, _, rows, _| {
                    for (oy, out) in r.zip(out.chunks_exact_mut(w * c0)) {
                        let first = oy * STEM_PATCH * iw;
                        let pixels = first..first + STEM_PATCH * iw;
                        scan.check(image, ih * iw, pixels.clone());
                        convert(pixels, rows);
                        stem(1, rows, out);
                    }
                },
            );
            scan.finish(image, ih * iw, STEM_PATCH * h * iw)?;
        } else {
            // Input → HWC f32 in the hidden region (free until the first block).
            let staged = &mut hidden[..in_len];
            for_each_rows(exec, pixel_split(ih * iw), staged, cin, |r, out| {
                convert(r, out)
            });
            let staged = &hidden[..in_len];
            if O::ENABLED {
                obs.observe(Tap::Input, ih, iw, cin, staged);
            }
            op_done(obs, &mut step, Op::Input);
            // Stem: conv 4×4/s4 + LN, by output rows.
            for_each_rows(
                exec,
                Split::new(h, 1),
                &mut cur[..h * w * c0],
                w * c0,
                |r, out| stem(r.len(), &staged[r.start * band..r.end * band], out),
            );
        }
        if O::ENABLED {
            obs.observe(Tap::Stem, h, w, c0, &cur[..h * w * c0]);
        }
        op_done(obs, &mut step, Op::Stem);

        for s in 0..a.num_stages {
            let c = a.dims[s];
            if s > 0 {
                let prev = a.dims[s - 1];
                let [nw, nb, cw, cb] = self.downsample(s);
                let (oh, ow) = a.stage_hw(s);
                let band = DOWN_PATCH * w * prev;
                // Output rows `r` (their `2·w` input rows `inp`), output channels `cols`.
                let conv = |r: Range<usize>, inp: &[f32], cols: Range<usize>, out: &mut [f32]| {
                    let rows = r.len() * DOWN_PATCH;
                    (k.patch_conv)(inp, rows, w, prev, DOWN_PATCH, cw, cb, c, cols, out)
                };
                let layernorm =
                    |x: &mut [f32], pixels: usize| (k.layernorm)(x, pixels, prev, nw, nb, a.ln_eps);
                let panels = gemm_panels(oh * ow, c, k.col_tile, exec.workers());
                if O::ENABLED || panels > 1 {
                    let ln = &mut cur[..h * w * prev];
                    for_each_rows(exec, pixel_split(h * w), ln, prev, |r, x| {
                        layernorm(x, r.len())
                    });
                    if O::ENABLED {
                        obs.observe(Tap::DownsampleNorm(s), h, w, prev, &cur[..h * w * prev]);
                    }
                    let src = &cur[..h * w * prev];
                    let out = &mut other[..oh * ow * c];
                    if panels == 1 {
                        for_each_rows(exec, Split::new(oh, 1), out, ow * c, |r, out| {
                            conv(r.clone(), &src[r.start * band..r.end * band], 0..c, out)
                        });
                    } else {
                        // Few output rows (Atto 224's last downsample: 7) and several workers:
                        // by (output row, output panel), each block computed into the worker's
                        // staging rows (in `hidden`, free until the stage's first fc1) and
                        // copied into place: every worker gets the same work, and each task
                        // streams its panel's columns of the weights only.
                        let per_worker = ow * (c / panels);
                        let stage = self.worker_blocks(hidden, per_worker, workers, got)?;
                        for_each_panel(
                            exec,
                            Split::new(oh * ow, ow),
                            panels,
                            out,
                            c,
                            &mut [0f32; 0],
                            stage,
                            per_worker,
                            |q, j, mut block, _, stage| {
                                let r = q.start / ow..q.end / ow;
                                let o = &mut stage[..q.len() * j.len()];
                                conv(r.clone(), &src[r.start * band..r.end * band], j, o);
                                block.copy_from(o);
                            },
                        );
                    }
                } else {
                    // One call by output rows: each task normalizes its own `2·w` input pixels
                    // in place (no other task reads them: the patches do not overlap), then
                    // convolves them while they are in cache.
                    let mut none = [0f32; 0];
                    for_each_part(
                        exec,
                        Split::new(oh, 1),
                        &mut cur[..h * w * prev],
                        band,
                        &mut other[..oh * ow * c],
                        ow * c,
                        &mut none,
                        0,
                        |_, r, inp, out, _, _| {
                            layernorm(inp, r.len() * DOWN_PATCH * w);
                            conv(r, inp, 0..c, out)
                        },
                    );
                }
                core::mem::swap(&mut cur, &mut other);
                (h, w) = (oh, ow);
                if O::ENABLED {
                    obs.observe(Tap::Downsample(s), h, w, c, &cur[..h * w * c]);
                }
                op_done(obs, &mut step, Op::Downsample(s));
            }
            let p = h * w;
            let n = MLP_RATIO * c;
            let px = pixel_split(p);
            let tiles = tile_split(p, k.task_grain);
            let rows = Split::new(h, 1);
            // GRN's sums of squares: each pixel task of `px` (fixed by the shape) sums its own
            // pixels in order, in fc1's epilogue when the width allows the fused kernel (whose
            // sums are the separate kernel's bits, see `pointwise_gelu_sumsq_*`), and the
            // partial sums are added in task order: the same bits for any worker count.
            let fused_sums = n.is_multiple_of(PANEL);
            for b in 0..a.depths[s] {
                let [dw, db, nw, nb, f1w, f1b, gw, gb, f2w, f2b] = self.block(s, b);
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
                let src = &cur[..p * c];
                if O::ENABLED {
                    // Unfused, so that every operator's output can be seen.
                    for_each_rows(exec, rows, &mut other[..p * c], w * c, |r, out| {
                        (k.dwconv7x7)(src, h, w, c, dw, db, r, out)
                    });
                    obs.observe(tap(BlockOp::DwConv), h, w, c, &other[..p * c]);
                    for_each_rows(exec, px, &mut other[..p * c], c, |r, x| {
                        (k.layernorm)(x, r.len(), c, nw, nb, a.ln_eps)
                    });
                    obs.observe(tap(BlockOp::Norm), h, w, c, &other[..p * c]);
                    op_done(obs, &mut step, done(BlockStep::DwConvNorm));
                    let t = &other[..p * c];
                    for_each_rows(exec, px, &mut hidden[..p * n], n, |r, out| {
                        (k.pointwise)(
                            &t[r.start * c..r.end * c],
                            r.len(),
                            c,
                            f1w,
                            f1b,
                            n,
                            out,
                            false,
                        )
                    });
                    obs.observe(tap(BlockOp::Fc1), h, w, n, &hidden[..p * n]);
                    for_each_rows(exec, px, &mut hidden[..p * n], n, |_, x| (k.gelu)(x));
                    obs.observe(tap(BlockOp::Gelu), h, w, n, &hidden[..p * n]);
                    // GRN's sums as the fused path gets them: the same partials from the
                    // kernel that fc1's epilogue matches.
                    grn_partial_sums_f32(
                        exec,
                        px,
                        1,
                        &mut hidden[..],
                        scratch,
                        n,
                        |r, _, out, part| (k.sumsq)(out.contiguous(), r.len(), n, 0..n, part),
                    );
                    op_done(obs, &mut step, done(BlockStep::Fc1Gelu));
                } else {
                    // Fused: LN in the depthwise epilogue, GELU in fc1's.
                    for_each_rows(exec, rows, &mut other[..p * c], w * c, |r, out| {
                        (k.dwconv7x7_ln)(src, h, w, c, dw, db, (nw, nb, a.ln_eps), r, out)
                    });
                    op_done(obs, &mut step, done(BlockStep::DwConvNorm));
                    let t = &other[..p * c];
                    let panels = gemm_panels(p, n, k.col_tile, exec.workers());
                    grn_partial_sums_f32(
                        exec,
                        px,
                        panels,
                        &mut hidden[..],
                        scratch,
                        n,
                        |r, j, out, part| {
                            let rows = &t[r.start * c..r.end * c];
                            // Output j of the packed weights starts at j·c (whole panels of 8).
                            let (w, b, nj) = (&f1w[j.start * c..], &f1b[j.clone()], j.len());
                            if fused_sums {
                                (k.pointwise_gelu_sumsq)(rows, r.len(), c, w, b, nj, out, part)
                            } else {
                                // Never cut by panels (n is not a multiple of 8).
                                let out = out.contiguous();
                                (k.pointwise_gelu)(rows, r.len(), c, w, b, nj, out);
                                (k.sumsq)(out, r.len(), nj, 0..nj, part)
                            }
                        },
                    );
                    op_done(obs, &mut step, done(BlockStep::Fc1Gelu));
                }
                // GRN: the norms once (from the sums in scratch[..n]), the update by pixels.
                let sumsq = &mut scratch[..n];
                grn::normalized_norms(sumsq, a.grn_eps);
                let nx = &scratch[..n];
                let grn = |rows: usize, x: &mut [f32]| (k.grn_scale)(x, rows, n, gw, gb, nx);
                // fc2 (with the residual add fused when `residual`).
                let fc2 = |g: &[f32], rows: usize, out: &mut [f32], residual: bool| {
                    (k.pointwise)(g, rows, n, f2w, f2b, c, out, residual)
                };
                // Few pixels and several workers: fc2 + the residual add by (pixels, output
                // panel) tasks, each on a staged copy of its block of the residual stream (in
                // `other`, free since fc1 read it), once GRN's update is done by pixels.
                let panels = gemm_panels(p, c, k.col_tile, exec.workers());
                let fc2_panels = |g: &[f32], cur: &mut [f32], other: &mut [f32]| {
                    for_each_panel(
                        exec,
                        px,
                        panels,
                        &mut cur[..p * c],
                        c,
                        &mut [0f32; 0],
                        other,
                        panel_block_len(p, c, k.col_tile),
                        |r, j, mut block, _, stage| {
                            let out = &mut stage[..r.len() * j.len()];
                            block.copy_to(out);
                            // Output j of the packed weights starts at j·n (whole panels).
                            let rows = &g[r.start * n..r.end * n];
                            let (w, b) = (&f2w[j.start * n..], &f2b[j.clone()]);
                            (k.pointwise)(rows, r.len(), n, w, b, j.len(), out, true);
                            block.copy_from(out);
                        },
                    )
                };
                if O::ENABLED || O::TIMED || panels > 1 {
                    let by_pixels = pixelwise_split(p);
                    for_each_rows(exec, by_pixels, &mut hidden[..p * n], n, |r, x| {
                        grn(r.len(), x)
                    });
                    let g = &hidden[..p * n];
                    if O::ENABLED {
                        obs.observe(tap(BlockOp::Grn), h, w, n, g);
                    }
                    op_done(obs, &mut step, done(BlockStep::Grn));
                    if O::ENABLED {
                        for_each_rows(exec, tiles, &mut other[..p * c], c, |r, out| {
                            fc2(&g[r.start * n..r.end * n], r.len(), out, false)
                        });
                        obs.observe(tap(BlockOp::Fc2), h, w, c, &other[..p * c]);
                        let t = &other[..p * c];
                        for_each_rows(exec, tiles, &mut cur[..p * c], c, |r, x| {
                            for (v, d) in x.iter_mut().zip(&t[r.start * c..r.end * c]) {
                                *v += *d;
                            }
                        });
                        obs.observe(tap(BlockOp::Out), h, w, c, &cur[..p * c]);
                    } else if panels > 1 {
                        fc2_panels(g, cur, other);
                    } else {
                        for_each_rows(exec, tiles, &mut cur[..p * c], c, |r, out| {
                            fc2(&g[r.start * n..r.end * n], r.len(), out, true)
                        });
                    }
                } else {
                    // GRN's update on the task's own rows, then fc2 and the residual add on
                    // them while they are in cache: one call fewer to wait for.
                    let mut none = [0u8; 0];
                    for_each_part(
                        exec,
                        tiles,
                        &mut hidden[..p * n],
                        n,
                        &mut cur[..p * c],
                        c,
                        &mut none,
                        0,
                        |_, r, x, out, _, _| {
                            grn(r.len(), x);
                            fc2(x, r.len(), out, true)
                        },
                    );
                }
                op_done(obs, &mut step, done(BlockStep::Fc2Residual));
            }
            if O::ENABLED {
                obs.observe(Tap::Stage(s), h, w, c, &cur[..h * w * c]);
            }
        }

        // Head: mean over H, W → LN → Linear (by output panels).
        let cl = a.last_dim();
        let [hnw, hnb, fw, fb] = self.head();
        let pooled = &mut scratch[..cl];
        (k.avgpool)(cur, h * w, cl, pooled);
        (k.layernorm)(pooled, 1, cl, hnw, hnb, a.ln_eps);
        if O::ENABLED {
            obs.observe(Tap::PreLogits, 1, 1, cl, pooled);
        }
        op_done(obs, &mut step, Op::Pool);
        let pooled = &scratch[..cl];
        let classes = Split::aligned(a.num_classes, PIXEL_TASKS, PANEL);
        for_each_rows(exec, classes, logits, 1, |r, out| {
            // Panel j of the packed weights starts at j·8·cl: output r.start (a multiple of 8)
            // at r.start·cl.
            (k.pointwise)(
                pooled,
                1,
                cl,
                &fw[r.start * cl..],
                &fb[r.clone()],
                r.len(),
                out,
                false,
            )
        });
        op_done(obs, &mut step, Op::Head);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cuts Atto's shapes get: stage 2 (196 pixels, 25 tasks of 8) is cut by panels from
    /// 4 workers and run in 32-row tasks by 2 and 3; stage 3 (49) is cut from 2; 96-pixel
    /// inputs' 144-pixel stage (18 tasks) takes 16-row tasks at 3 workers only; stages whose
    /// pixel tasks are already wider than one tile are neither.
    #[test]
    fn panels_and_row_groups_follow_the_worker_count() {
        let (px196, px49, px144) = (pixel_split(196), pixel_split(49), pixel_split(144));
        assert_eq!((px196.tasks(), px49.tasks(), px144.tasks()), (25, 7, 18));
        assert_eq!(gemm_panels(196, 640, 8, 1), 1);
        assert_eq!(gemm_panels(196, 640, 8, 2), 1);
        assert_eq!(gemm_panels(196, 640, 8, 4), 4);
        assert_eq!(gemm_panels(49, 320, 8, 2), 4);
        assert_eq!(gemm_panels(49, 320, 32, 2), 2);
        assert_eq!(gemm_panels(3136, 160, 8, 7), 1);
        let groups = |px, workers: &[usize]| -> std::vec::Vec<usize> {
            workers.iter().map(|&w| gemm_row_group(px, w)).collect()
        };
        assert_eq!(groups(px196, &[1, 2, 3]), [1, 4, 4]);
        assert_eq!(groups(px144, &[2, 3]), [1, 2]);
        assert_eq!(groups(pixel_split(3136), &[2, 3]), [1, 1]);
        assert_eq!(groups(pixel_split(784), &[2, 3]), [1, 1]);
    }
}
