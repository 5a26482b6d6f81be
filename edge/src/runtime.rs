//! Running a model: composes the operator kernels over the arena. No kernel code lives here.

use crate::arch::{DOWN_PATCH, MLP_RATIO, STEM_PATCH};
use crate::format::Precision;
use crate::model::{Model, QParams};
use crate::ops::input;
use crate::Error;

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

/// Sees intermediate activations (NHWC, `h × w × c`). With `ENABLED = false` (the default
/// [`NoObserver`]) every call and the unfused residual path compile away.
pub trait Observer {
    /// Whether `observe` does anything.
    const ENABLED: bool;
    /// Called with each tap's activations (f32 models).
    fn observe(&mut self, tap: Tap, h: usize, w: usize, c: usize, nhwc: &[f32]);
    /// Called with each tap's int8 codes and their quantization (int8 models; taps whose value
    /// is an int32 accumulator, `DwConv` and `Fc2`, are not seen). Ignores them by default.
    fn observe_i8(&mut self, tap: Tap, h: usize, w: usize, c: usize, q: &[i8], qp: QParams) {
        let _ = (tap, h, w, c, q, qp);
    }
}

/// The observer that observes nothing.
pub struct NoObserver;

impl Observer for NoObserver {
    const ENABLED: bool = false;
    #[inline(always)]
    fn observe(&mut self, _: Tap, _: usize, _: usize, _: usize, _: &[f32]) {}
}

impl Model<'_> {
    /// Runs one image and writes `num_classes` logits. Allocates nothing.
    pub fn run(&self, input: Input<'_>, arena: &mut [u8], logits: &mut [f32]) -> Result<(), Error> {
        self.run_with(input, arena, logits, Kernels::Auto, &mut NoObserver)
    }

    /// [`Model::run`] with an explicit kernel set and an observer of intermediate activations.
    pub fn run_with<O: Observer>(
        &self,
        image: Input<'_>,
        arena: &mut [u8],
        logits: &mut [f32],
        kernels: Kernels,
        obs: &mut O,
    ) -> Result<(), Error> {
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
        if let Input::NchwF32(x) = image {
            if let Some(index) = x.iter().position(|v| !v.is_finite()) {
                return Err(Error::NonFiniteInput { index });
            }
        }
        if logits.len() != a.num_classes {
            return Err(Error::OutputLength {
                expected: a.num_classes,
                got: logits.len(),
            });
        }
        if self.precision() == Precision::Int8 {
            return self.run_i8(image, arena, logits, kernels.set_i8()?, obs);
        }
        let r = self.arena_plan().split_f32(arena)?;
        let (mut cur, mut other, hidden, scratch) = (r.a, r.b, r.hidden, r.scratch);

        // Input → HWC f32 in the hidden region (free until the first block).
        let staged = &mut hidden[..in_len];
        match image {
            Input::NchwF32(x) => input::nchw_to_hwc_f32_scalar(x, ih * iw, a.in_chans, staged),
            Input::HwcU8(x) => input::normalize_u8_hwc_scalar(x, staged),
        }
        if O::ENABLED {
            obs.observe(Tap::Input, ih, iw, a.in_chans, staged);
        }

        // Stem: conv 4×4/s4 + LN.
        let [sw, sb, snw, snb] = self.stem();
        let (mut h, mut w) = a.stage_hw(0);
        let c0 = a.dims[0];
        (k.patch_conv)(staged, ih, iw, a.in_chans, STEM_PATCH, sw, sb, c0, cur);
        (k.layernorm)(cur, h * w, c0, snw, snb, a.ln_eps);
        if O::ENABLED {
            obs.observe(Tap::Stem, h, w, c0, &cur[..h * w * c0]);
        }

        for s in 0..a.num_stages {
            let c = a.dims[s];
            if s > 0 {
                let prev = a.dims[s - 1];
                let [nw, nb, cw, cb] = self.downsample(s);
                (k.layernorm)(cur, h * w, prev, nw, nb, a.ln_eps);
                if O::ENABLED {
                    obs.observe(Tap::DownsampleNorm(s), h, w, prev, &cur[..h * w * prev]);
                }
                (k.patch_conv)(cur, h, w, prev, DOWN_PATCH, cw, cb, c, other);
                core::mem::swap(&mut cur, &mut other);
                (h, w) = a.stage_hw(s);
                if O::ENABLED {
                    obs.observe(Tap::Downsample(s), h, w, c, &cur[..h * w * c]);
                }
            }
            let p = h * w;
            let n = MLP_RATIO * c;
            for b in 0..a.depths[s] {
                let [dw, db, nw, nb, f1w, f1b, gw, gb, f2w, f2b] = self.block(s, b);
                let tap = |op| Tap::Block {
                    stage: s,
                    block: b,
                    op,
                };
                let t = &mut other[..p * c];
                let hid = &mut hidden[..p * n];
                if O::ENABLED {
                    // Unfused, so that every operator's output can be seen.
                    (k.dwconv7x7)(cur, h, w, c, dw, db, t);
                    obs.observe(tap(BlockOp::DwConv), h, w, c, t);
                    (k.layernorm)(t, p, c, nw, nb, a.ln_eps);
                    obs.observe(tap(BlockOp::Norm), h, w, c, t);
                    (k.pointwise)(t, p, c, f1w, f1b, n, hid, false);
                    obs.observe(tap(BlockOp::Fc1), h, w, n, hid);
                    (k.gelu)(hid);
                    obs.observe(tap(BlockOp::Gelu), h, w, n, hid);
                    (k.grn)(hid, p, n, gw, gb, a.grn_eps, scratch);
                    obs.observe(tap(BlockOp::Grn), h, w, n, hid);
                    (k.pointwise)(hid, p, n, f2w, f2b, c, t, false);
                    obs.observe(tap(BlockOp::Fc2), h, w, c, t);
                    for (x, y) in cur[..p * c].iter_mut().zip(t.iter()) {
                        *x += *y;
                    }
                    obs.observe(tap(BlockOp::Out), h, w, c, &cur[..p * c]);
                } else {
                    // Fused: LN in the depthwise epilogue; GELU and GRN's sum of squares in
                    // fc1's; the residual add in fc2's.
                    (k.dwconv7x7_ln)(cur, h, w, c, dw, db, (nw, nb, a.ln_eps), t);
                    let sumsq = &mut scratch[..n];
                    sumsq.fill(0.0);
                    (k.pointwise_gelu_sumsq)(t, p, c, f1w, f1b, n, hid, sumsq);
                    (k.grn_apply)(hid, p, n, gw, gb, a.grn_eps, sumsq);
                    (k.pointwise)(hid, p, n, f2w, f2b, c, cur, true);
                }
            }
            if O::ENABLED {
                obs.observe(Tap::Stage(s), h, w, c, &cur[..h * w * c]);
            }
        }

        // Head: mean over H, W → LN → Linear.
        let cl = a.last_dim();
        let [hnw, hnb, fw, fb] = self.head();
        let pooled = &mut scratch[..cl];
        (k.avgpool)(cur, h * w, cl, pooled);
        (k.layernorm)(pooled, 1, cl, hnw, hnb, a.ln_eps);
        if O::ENABLED {
            obs.observe(Tap::PreLogits, 1, 1, cl, pooled);
        }
        (k.pointwise)(pooled, 1, cl, fw, fb, a.num_classes, logits, false);
        Ok(())
    }
}
