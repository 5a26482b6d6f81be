//! Per-operator latency: the runtime reports the end of every step of its fused schedule to an
//! [`Observer`] whose `TIMED` is true, and [`Profiler`] charges the time since the previous
//! step to it, read from a caller-supplied [`Clock`] (`std::time::Instant` on a host, a cycle
//! or generic-timer counter on bare metal). With the default [`crate::NoObserver`] the calls
//! compile away; a profiler leaves the fused kernels as they are (it sees no activations), so
//! what it times is what an unprofiled run executes, except that the input's conversion and
//! GRN's update are calls of their own (an unprofiled run fuses the first with the stem, and the
//! second with fc2 + residual where the stage is not cut by output panels): the same bits, one
//! call more per block.
//!
//! The steps ([`Op`]) are those ncnn's `NCNN_BENCHMARK` and TFLite's op profiling would list
//! for this network after fusion: input conversion, the stem, each downsample, four per block
//! (depthwise 7×7 + LayerNorm, fc1 + GELU, GRN, fc2 + residual), the pool and the head.

use core::fmt;

use crate::arch::{Arch, DOWN_PATCH, DW_KERNEL, MLP_RATIO, STEM_PATCH};
use crate::runtime::Observer;
use crate::{QParams, Tap};

/// A step inside a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockStep {
    /// Depthwise 7×7 with the block's LayerNorm (fused in f32; int8: int32 dwconv, then LN to
    /// int8).
    DwConvNorm,
    /// First pointwise (C → 4C) with GELU.
    Fc1Gelu,
    /// Global response normalization (sums of squares, norms, the update).
    Grn,
    /// Second pointwise (4C → C) with the residual add.
    Fc2Residual,
}

/// One step of the fused schedule, in execution order (see [`Op::schedule`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Input validation and conversion (NCHW or u8 HWC → the first layer's layout).
    Input,
    /// Stem: 4×4/s4 patch convolution and LayerNorm.
    Stem,
    /// Stage `s`'s downsample (s ≥ 1): LayerNorm and 2×2/s2 patch convolution.
    Downsample(usize),
    /// A step of block `block` of stage `stage`.
    Block {
        /// Stage index.
        stage: usize,
        /// Block index in the stage.
        block: usize,
        /// Which step.
        step: BlockStep,
    },
    /// Global average pool and the head's LayerNorm.
    Pool,
    /// The classifier (and, int8, the logits' dequantization).
    Head,
}

const STEPS: [BlockStep; 4] = [
    BlockStep::DwConvNorm,
    BlockStep::Fc1Gelu,
    BlockStep::Grn,
    BlockStep::Fc2Residual,
];

impl Op {
    /// Every step `arch` runs, in order; the runtime reports step `i` of this list as index `i`.
    pub fn schedule(arch: &Arch) -> impl Iterator<Item = Op> + '_ {
        let stages = (0..arch.num_stages).flat_map(move |s| {
            let down = (s > 0).then_some(Op::Downsample(s));
            let blocks = (0..arch.depths[s]).flat_map(move |b| {
                STEPS.into_iter().map(move |step| Op::Block {
                    stage: s,
                    block: b,
                    step,
                })
            });
            down.into_iter().chain(blocks)
        });
        [Op::Input, Op::Stem]
            .into_iter()
            .chain(stages)
            .chain([Op::Pool, Op::Head])
    }

    /// Length of [`Op::schedule`]: `4 + (stages − 1) + 4 · blocks`.
    pub fn count(arch: &Arch) -> usize {
        4 + arch.num_stages.saturating_sub(1) + 4 * arch.depths().iter().sum::<usize>()
    }

    /// The operator kind, for grouping ("dwconv7x7+LN", "fc1+GELU", …).
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input => "input",
            Op::Stem => "stem conv4x4+LN",
            Op::Downsample(_) => "downsample LN+conv2x2",
            Op::Block { step, .. } => match step {
                BlockStep::DwConvNorm => "dwconv7x7+LN",
                BlockStep::Fc1Gelu => "fc1+GELU",
                BlockStep::Grn => "GRN",
                BlockStep::Fc2Residual => "fc2+residual",
            },
            Op::Pool => "pool+LN",
            Op::Head => "head",
        }
    }

    /// Multiply-accumulates of the step (0 for input, GRN and the pool), as [`Arch::macs`]
    /// counts them: the steps' sum is `arch.macs()`.
    pub fn macs(&self, a: &Arch) -> u64 {
        let px = |s: usize| {
            let (h, w) = a.stage_hw(s);
            (h * w) as u64
        };
        match *self {
            Op::Input | Op::Pool => 0,
            Op::Stem => px(0) * (a.dims[0] * a.in_chans * STEM_PATCH * STEM_PATCH) as u64,
            Op::Downsample(s) => {
                px(s) * (a.dims[s] * a.dims[s - 1] * DOWN_PATCH * DOWN_PATCH) as u64
            }
            Op::Block { stage, step, .. } => {
                let c = a.dims[stage] as u64;
                match step {
                    BlockStep::DwConvNorm => px(stage) * c * (DW_KERNEL * DW_KERNEL) as u64,
                    BlockStep::Fc1Gelu | BlockStep::Fc2Residual => {
                        px(stage) * c * c * MLP_RATIO as u64
                    }
                    BlockStep::Grn => 0,
                }
            }
            Op::Head => (a.last_dim() * a.num_classes) as u64,
        }
    }
}

/// timm-style names: `stem`, `stages.1.downsample`, `stages.2.blocks.3 fc1+GELU`, `head`.
impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Input => f.write_str("input"),
            Op::Stem => f.write_str("stem"),
            Op::Downsample(s) => write!(f, "stages.{s}.downsample"),
            Op::Block { stage, block, .. } => {
                write!(f, "stages.{stage}.blocks.{block} {}", self.kind())
            }
            Op::Pool => f.write_str("head.norm (pool+LN)"),
            Op::Head => f.write_str("head.fc"),
        }
    }
}

/// A monotonic counter in the caller's unit (nanoseconds, cycles, timer ticks).
pub trait Clock {
    /// The current count.
    fn now(&mut self) -> u64;
}

impl<F: FnMut() -> u64> Clock for F {
    fn now(&mut self) -> u64 {
        self()
    }
}

/// Adds each step's elapsed clock ticks to `ticks[i]` (i = the step's index in
/// [`Op::schedule`]); across several runs the slice accumulates. Allocation-free: the caller
/// owns `ticks` (at least [`Op::count`] long; steps past its end are not recorded).
pub struct Profiler<'t, C: Clock> {
    clock: C,
    last: u64,
    ticks: &'t mut [u64],
}

impl<'t, C: Clock> Profiler<'t, C> {
    /// A profiler charging into `ticks` (not cleared: runs accumulate).
    pub fn new(clock: C, ticks: &'t mut [u64]) -> Self {
        Profiler {
            clock,
            last: 0,
            ticks,
        }
    }

    /// The accumulated ticks per step.
    pub fn ticks(&self) -> &[u64] {
        self.ticks
    }
}

impl<C: Clock> Observer for Profiler<'_, C> {
    const ENABLED: bool = false;
    const TIMED: bool = true;
    fn observe(&mut self, _: Tap, _: usize, _: usize, _: usize, _: &[f32]) {}
    fn observe_i8(&mut self, _: Tap, _: usize, _: usize, _: usize, _: &[i8], _: QParams) {}
    #[inline]
    fn run_start(&mut self) {
        self.last = self.clock.now();
    }
    #[inline]
    fn op_done(&mut self, _op: Op, index: usize) {
        let t = self.clock.now();
        if let Some(s) = self.ticks.get_mut(index) {
            *s += t.wrapping_sub(self.last);
        }
        self.last = t;
    }
}
