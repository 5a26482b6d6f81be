//! Kernel sets: one function per operator, chosen once per `run`. The scalar set is the
//! reference; the NEON set replaces the slots that have a NEON kernel. Adding a kernel is one
//! line here plus its module; tests in each op module run every variant against the reference.

use crate::model::QParams;
use crate::ops::layernorm_i8::OutQuant;
use crate::ops::requant::Requant;
use crate::ops::residual_i8::ResidualQuant;
use crate::ops::RowsMut;
use crate::ops::{dwconv7x7, gelu, grn, layernorm, patch_conv, pointwise, pool};
use crate::ops::{dwconv7x7_i8, gelu_i8, grn_f16, layernorm_i8, patch_conv_i8, pointwise_i8};
use crate::ops::{grn_f16::GrnF16Quant, input, residual_i8};
use crate::{Error, Kernels};
use core::ops::Range;
use half::f16;

pub(crate) type DwFn = fn(&[f32], usize, usize, usize, &[f32], &[f32], Range<usize>, &mut [f32]);
pub(crate) type PwFn = fn(&[f32], usize, usize, &[f32], &[f32], usize, &mut [f32], bool);
pub(crate) type LnFn = fn(&mut [f32], usize, usize, &[f32], &[f32], f32);
pub(crate) type GeluFn = fn(&mut [f32]);
pub(crate) type PatchFn = patch_conv::PatchConvF32;
pub(crate) type PoolFn = fn(&[f32], usize, usize, &mut [f32]);
pub(crate) type DwLnFn = fn(
    &[f32],
    usize,
    usize,
    usize,
    &[f32],
    &[f32],
    (&[f32], &[f32], f32),
    Range<usize>,
    &mut [f32],
);
pub(crate) type PwGeluFn = fn(&[f32], usize, usize, &[f32], &[f32], usize, &mut [f32]);
pub(crate) type PwGeluSumsqFn =
    fn(&[f32], usize, usize, &[f32], &[f32], usize, RowsMut<'_, f32>, &mut [f32]);
pub(crate) type SumsqFn = fn(&[f32], usize, usize, Range<usize>, &mut [f32]);
pub(crate) type GrnScaleFn = fn(&mut [f32], usize, usize, &[f32], &[f32], &[f32]);

/// Every f32 set's [`KernelSet::col_tile`]: the arena plans the staging of any of them.
pub(crate) const F32_COL_TILES: [usize; 3] = [8, 16, 32];

/// One implementation per operator. The runtime cuts each call into tasks: the depthwise convs
/// by output rows (`Range` of rows, `out` holding those rows), everything else by pixel ranges
/// (GRN's sums of squares one partial per pixel task), and, in stages with few pixels, the
/// block's GEMMs also by output panels (a panel's weights, bias and outputs as a narrower
/// call's; see [`crate::parallel`]).
pub(crate) struct KernelSet {
    pub name: &'static str,
    /// The pixel grain of the operators whose pixels are computed independently (GRN's update,
    /// fc2 + residual): their tasks are multiples of it, whole rows of the pointwise GEMM's
    /// register tile (8 for NEON and AVX-512, 6 for AVX2).
    pub task_grain: usize,
    /// Columns of the pointwise GEMM's widest register tile (8 scalar and NEON, 16 AVX2, 32
    /// AVX-512, one of [`F32_COL_TILES`]): where a stage's GEMMs are cut by output panels,
    /// each panel is a multiple of it, so that no task ends in a narrower tile.
    pub col_tile: usize,
    pub dwconv7x7: DwFn,
    pub pointwise: PwFn,
    pub layernorm: LnFn,
    pub gelu: GeluFn,
    pub patch_conv: PatchFn,
    pub avgpool: PoolFn,
    /// Fused: depthwise 7×7 + the block's LayerNorm.
    pub dwconv7x7_ln: DwLnFn,
    /// Fused: fc1 + GELU.
    pub pointwise_gelu: PwGeluFn,
    /// Fused: fc1 + GELU + GRN's sums of squares over the call's pixels (one pixel task), bit
    /// for bit this set's `sumsq` over every channel when `n` is a multiple of 8.
    pub pointwise_gelu_sumsq: PwGeluSumsqFn,
    /// GRN's per-channel sums of squares over a channel range.
    pub sumsq: SumsqFn,
    /// GRN's per-pixel update given the normalized norms.
    pub grn_scale: GrnScaleFn,
}

pub(crate) const SCALAR: KernelSet = KernelSet {
    name: "scalar",
    task_grain: 8,
    col_tile: 8,
    dwconv7x7: dwconv7x7::dwconv7x7_rows_f32_scalar,
    pointwise: pointwise::pointwise_f32_scalar,
    layernorm: layernorm::layernorm_f32_scalar,
    gelu: gelu::gelu_f32_scalar,
    sumsq: grn::sumsq_channels_f32_scalar,
    patch_conv: patch_conv::patch_conv_f32_scalar,
    avgpool: pool::avgpool_f32_scalar,
    dwconv7x7_ln: dwconv7x7::dwconv7x7_ln_rows_f32_scalar,
    pointwise_gelu: pointwise::pointwise_gelu_f32_scalar,
    pointwise_gelu_sumsq: pointwise::pointwise_gelu_sumsq_f32_scalar,
    grn_scale: grn::grn_scale_f32_scalar,
};

/// NEON is part of the aarch64 base ISA (ARMv8-A), so this set runs on every aarch64 CPU.
/// Every slot has a NEON kernel; the head's classifier is the pointwise GEMM with one pixel.
#[cfg(target_arch = "aarch64")]
pub(crate) const NEON: KernelSet = KernelSet {
    name: "neon",
    task_grain: 8,
    col_tile: 8,
    dwconv7x7: dwconv7x7::dwconv7x7_rows_f32_neon,
    pointwise: pointwise::pointwise_f32_neon,
    layernorm: layernorm::layernorm_f32_neon,
    gelu: gelu::gelu_f32_neon,
    sumsq: grn::sumsq_channels_f32_neon,
    patch_conv: patch_conv::patch_conv_f32_neon,
    dwconv7x7_ln: dwconv7x7::dwconv7x7_ln_rows_f32_neon,
    pointwise_gelu: pointwise::pointwise_gelu_f32_neon,
    pointwise_gelu_sumsq: pointwise::pointwise_gelu_sumsq_f32_neon,
    grn_scale: grn::grn_scale_f32_neon,
    avgpool: pool::avgpool_f32_neon,
};

/// AVX2+FMA (x86-64-v3). The average pool (once per image) keeps the scalar reference.
#[cfg(target_arch = "x86_64")]
pub(crate) const AVX2: KernelSet = KernelSet {
    name: "avx2",
    task_grain: 6,
    col_tile: 16,
    dwconv7x7: dwconv7x7::dwconv7x7_rows_f32_avx2,
    pointwise: pointwise::pointwise_f32_avx2,
    layernorm: layernorm::layernorm_f32_avx2,
    gelu: gelu::gelu_f32_avx2,
    sumsq: grn::sumsq_channels_f32_avx2,
    patch_conv: patch_conv::patch_conv_f32_avx2,
    avgpool: pool::avgpool_f32_scalar,
    dwconv7x7_ln: dwconv7x7::dwconv7x7_ln_rows_f32_avx2,
    pointwise_gelu: pointwise::pointwise_gelu_f32_avx2,
    pointwise_gelu_sumsq: pointwise::pointwise_gelu_sumsq_f32_avx2,
    grn_scale: grn::grn_scale_f32_avx2,
};

/// AVX-512 F/BW/VL/DQ: 16-lane GEMMs (two packed 8-lane panels per register), depthwise and
/// GELU; LayerNorm and GRN share AVX2's kernels (a pixel's C ≤ 320 channels are a few vectors;
/// the reductions, not the lane count, bound them).
#[cfg(target_arch = "x86_64")]
pub(crate) const AVX512: KernelSet = KernelSet {
    name: "avx512",
    task_grain: 8,
    col_tile: 32,
    dwconv7x7: dwconv7x7::dwconv7x7_rows_f32_avx512,
    pointwise: pointwise::pointwise_f32_avx512,
    layernorm: layernorm::layernorm_f32_avx2,
    gelu: gelu::gelu_f32_avx512,
    sumsq: grn::sumsq_channels_f32_avx2,
    patch_conv: patch_conv::patch_conv_f32_avx512,
    avgpool: pool::avgpool_f32_scalar,
    dwconv7x7_ln: dwconv7x7::dwconv7x7_ln_rows_f32_avx512,
    pointwise_gelu: pointwise::pointwise_gelu_f32_avx512,
    pointwise_gelu_sumsq: pointwise::pointwise_gelu_sumsq_f32_avx512,
    grn_scale: grn::grn_scale_f32_avx2,
};

pub(crate) type PatchI8Fn =
    fn(&[i8], usize, usize, usize, usize, &[i8], &[i32], usize, &mut [i32], &mut [i8]);
pub(crate) type DwI8Fn =
    fn(&[i8], usize, usize, usize, i32, &[i8], &[i32], Range<usize>, &mut [i32]);
pub(crate) type LnI8Fn =
    fn(&[i32], usize, usize, &[f32], &[f32], &[f32], f32, OutQuant, &mut [i8], &mut [f32]);
pub(crate) type PwI8Fn = fn(&[i8], usize, usize, &[i8], &[i32], &[Requant], i32, usize, &mut [i8]);
pub(crate) type PwAccI8Fn = fn(&[i8], usize, usize, &[i8], &[i32], usize, &mut [i32]);
pub(crate) type GeluI8Fn = fn(&mut [i8], &[i8; 256]);
pub(crate) type GrnSumsqF16Fn = fn(&[i8], usize, usize, Range<usize>, &GrnF16Quant, &mut [f32]);
pub(crate) type GrnApplyF16Fn =
    fn(&[i8], usize, usize, &[f16], &[f16], &[f32], &GrnF16Quant, &mut [i8]);
pub(crate) type ResidualI8Fn = fn(&mut [i8], &[i32], usize, usize, &ResidualQuant);
pub(crate) type QuantizeInputFn = fn(&[f32], usize, usize, usize, QParams, &mut [i8]);

/// Which instruction paths an int8 kernel set runs, in words a benchmark report can print:
/// the GEMMs (pointwise and patch convolutions) and GRN's fp16 arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Int8Paths {
    /// e.g. "SDOT (FEAT_DotProd)", "ARMv8.0 SMULL/SADALP", "vpdpbusd (AVX-512 VNNI)".
    pub gemm: &'static str,
    /// e.g. "native fp16 (FEAT_FP16)", "fp16 emulated by FCVT conversions (ARMv8.0)".
    pub grn: &'static str,
}

impl core::fmt::Display for Int8Paths {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "int8 GEMMs: {}; GRN: {}", self.gemm, self.grn)
    }
}

/// One implementation per operator of the int8 path.
pub(crate) struct KernelSetI8 {
    pub name: &'static str,
    /// What runs, on this CPU (a function: some sets pick a form at run time).
    pub paths: fn() -> Int8Paths,
    pub patch_conv: PatchI8Fn,
    pub dwconv7x7: DwI8Fn,
    pub layernorm: LnI8Fn,
    pub pointwise: PwI8Fn,
    pub pointwise_acc: PwAccI8Fn,
    pub gelu: GeluI8Fn,
    /// GRN's sums of squares over one pixel task's rows (fc1's task, while they are in
    /// cache)…
    pub grn_sumsq: GrnSumsqF16Fn,
    /// …then, from the norms of all tasks' sums, the update by pixel range.
    pub grn_apply: GrnApplyF16Fn,
    pub residual: ResidualI8Fn,
    /// Normalized f32 NCHW input → int8 HWC, by pixel ranges (planes `stride` apart).
    pub quantize_input: QuantizeInputFn,
}

pub(crate) const SCALAR_I8: KernelSetI8 = KernelSetI8 {
    name: "scalar",
    paths: || Int8Paths {
        gemm: "scalar reference (portable Rust)",
        grn: "scalar reference (fp16 rounding through `half`)",
    },
    patch_conv: patch_conv_i8::patch_conv_i8_scalar_slot,
    dwconv7x7: dwconv7x7_i8::dwconv7x7_rows_i8_scalar,
    layernorm: layernorm_i8::layernorm_i32_i8_scalar,
    pointwise: pointwise_i8::pointwise_i8_scalar,
    pointwise_acc: pointwise_i8::pointwise_i8_acc_scalar,
    gelu: gelu_i8::gelu_i8_scalar,
    grn_sumsq: grn_f16::grn_f16_sumsq_scalar,
    grn_apply: grn_f16::grn_f16_apply_scalar,
    residual: residual_i8::residual_add_i8_scalar,
    quantize_input: input::quantize_nchw_f32_i8_scalar,
};

/// NEON int8 set: ARMv8.0 (`SMULL`/`SADALP` GEMMs, fp16 emulated by conversions) unless the
/// build targets FEAT_DotProd (with feature `dotprod`) and FEAT_FP16
/// (`-C target-feature=+dotprod,+fp16`, e.g. `-C target-cpu=cortex-a76`): then `SDOT` GEMMs and
/// native fp16 GRN. Every choice is bit-identical to the scalar set.
#[cfg(target_arch = "aarch64")]
pub(crate) const NEON_I8: KernelSetI8 = KernelSetI8 {
    name: NEON_I8_NAME,
    paths: || Int8Paths {
        gemm: if cfg!(all(feature = "dotprod", target_feature = "dotprod")) {
            "SDOT (FEAT_DotProd)"
        } else {
            "ARMv8.0 SMULL/SADALP (no SDOT in this build)"
        },
        grn: if cfg!(target_feature = "fp16") {
            "native fp16 (FEAT_FP16)"
        } else {
            "fp16 emulated by FCVTN/FCVTL conversions (ARMv8.0)"
        },
    },
    #[cfg(not(all(feature = "dotprod", target_feature = "dotprod")))]
    patch_conv: patch_conv_i8::patch_conv_i8_neon,
    #[cfg(all(feature = "dotprod", target_feature = "dotprod"))]
    patch_conv: patch_conv_i8::patch_conv_i8_sdot_static,
    dwconv7x7: dwconv7x7_i8::dwconv7x7_rows_i8_neon,
    layernorm: layernorm_i8::layernorm_i32_i8_neon,
    #[cfg(not(all(feature = "dotprod", target_feature = "dotprod")))]
    pointwise: pointwise_i8::pointwise_i8_neon,
    #[cfg(all(feature = "dotprod", target_feature = "dotprod"))]
    pointwise: pointwise_i8::pointwise_i8_sdot_static,
    #[cfg(not(all(feature = "dotprod", target_feature = "dotprod")))]
    pointwise_acc: pointwise_i8::pointwise_i8_acc_neon,
    #[cfg(all(feature = "dotprod", target_feature = "dotprod"))]
    pointwise_acc: pointwise_i8::pointwise_i8_acc_sdot_static,
    gelu: gelu_i8::gelu_i8_neon,
    #[cfg(not(target_feature = "fp16"))]
    grn_sumsq: grn_f16::grn_f16_sumsq_neon,
    #[cfg(target_feature = "fp16")]
    grn_sumsq: grn_f16::grn_f16_sumsq_fp16_static,
    #[cfg(not(target_feature = "fp16"))]
    grn_apply: grn_f16::grn_f16_apply_neon,
    #[cfg(target_feature = "fp16")]
    grn_apply: grn_f16::grn_f16_apply_fp16_static,
    residual: residual_i8::residual_add_i8_neon,
    quantize_input: input::quantize_nchw_f32_i8_neon,
};

/// AVX2 int8 set (x86-64-v3): GEMMs with `vpmaddwd` on sign-extended int16 (no saturation),
/// fp16 GRN with F16C, vector requantization and input quantization. The GELU table lookup
/// keeps the scalar reference (AVX2 has no byte table lookup wider than 16 entries).
/// Bit-identical to the scalar set.
#[cfg(target_arch = "x86_64")]
pub(crate) const AVX2_I8: KernelSetI8 = KernelSetI8 {
    name: "avx2",
    paths: || Int8Paths {
        gemm: "vpmaddwd on int16 (AVX2, no VNNI)",
        grn: "fp16 rounding by F16C vcvtps2ph/vcvtph2ps",
    },
    patch_conv: patch_conv_i8::patch_conv_i8_avx2,
    dwconv7x7: dwconv7x7_i8::dwconv7x7_rows_i8_avx2,
    layernorm: layernorm_i8::layernorm_i32_i8_avx2,
    pointwise: pointwise_i8::pointwise_i8_avx2,
    pointwise_acc: pointwise_i8::pointwise_i8_acc_avx2,
    gelu: gelu_i8::gelu_i8_scalar,
    grn_sumsq: grn_f16::grn_f16_sumsq_avx2,
    grn_apply: grn_f16::grn_f16_apply_avx2,
    residual: residual_i8::residual_add_i8_avx2,
    quantize_input: input::quantize_nchw_f32_i8_avx2,
};

/// AVX-512 VNNI int8 set: GEMMs with `vpdpbusd` (u8 × s8: weights shifted by 128, the
/// weights' shift taken off with the rows' sums), 16-lane depthwise, GRN in native fp16 where
/// the CPU has AVX512-FP16 (else emulated on 16 lanes), the GELU table by `vpermi2b` where it
/// has VBMI; the other slots are AVX2's. Bit-identical to the scalar set.
#[cfg(target_arch = "x86_64")]
pub(crate) const AVX512_VNNI_I8: KernelSetI8 = KernelSetI8 {
    name: "avx512+vnni",
    paths: || Int8Paths {
        gemm: "vpdpbusd (AVX-512 VNNI)",
        grn: if crate::cpu::X86Features::get().avx512_fp16 {
            "native fp16 (AVX512-FP16)"
        } else {
            "fp16 emulated on 16 lanes (F16C conversions)"
        },
    },
    patch_conv: patch_conv_i8::patch_conv_i8_avx512vnni,
    grn_apply: grn_f16::grn_f16_apply_avx512_best,
    dwconv7x7: dwconv7x7_i8::dwconv7x7_rows_i8_avx512,
    gelu: gelu_i8::gelu_i8_avx512,
    pointwise: pointwise_i8::pointwise_i8_avx512vnni,
    pointwise_acc: pointwise_i8::pointwise_i8_acc_avx512vnni,
    ..AVX2_I8
};

#[cfg(target_arch = "aarch64")]
const NEON_I8_NAME: &str = match (
    cfg!(all(feature = "dotprod", target_feature = "dotprod")),
    cfg!(target_feature = "fp16"),
) {
    (true, true) => "neon+dotprod+fp16",
    (true, false) => "neon+dotprod",
    (false, true) => "neon+fp16",
    (false, false) => "neon",
};

impl Kernels {
    /// The concrete set this request means on this CPU: `Auto` becomes the best one the CPU
    /// has; an explicit set the CPU lacks is `Error::KernelsUnavailable`.
    fn resolve(self) -> Result<Kernels, Error> {
        #[cfg(target_arch = "x86_64")]
        let f = crate::cpu::X86Features::get();
        let ok = match self {
            Kernels::Auto => {
                #[cfg(target_arch = "aarch64")]
                return Ok(Kernels::Neon);
                #[cfg(target_arch = "x86_64")]
                return Ok(if f.avx512 {
                    Kernels::Avx512
                } else if f.avx2 {
                    Kernels::Avx2
                } else {
                    Kernels::Scalar
                });
                #[cfg(not(any(target_arch = "aarch64", target_arch = "x86_64")))]
                return Ok(Kernels::Scalar);
            }
            Kernels::Scalar => true,
            Kernels::Neon => cfg!(target_arch = "aarch64"),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2 => f.avx2,
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx512 => f.avx512,
            #[cfg(not(target_arch = "x86_64"))]
            Kernels::Avx2 | Kernels::Avx512 => false,
        };
        if ok {
            Ok(self)
        } else {
            Err(Error::KernelsUnavailable {
                kernels: self.name(),
            })
        }
    }

    /// Every explicit set, reference first (`Auto` resolves to one of them).
    pub const ALL: [Kernels; 4] = [
        Kernels::Scalar,
        Kernels::Neon,
        Kernels::Avx2,
        Kernels::Avx512,
    ];

    /// Whether this CPU (and OS) can run the set.
    pub fn is_available(self) -> bool {
        self.resolve().is_ok()
    }

    /// The sets this CPU can run, reference first: what tests and benchmarks iterate over.
    pub fn available() -> impl Iterator<Item = Kernels> {
        Kernels::ALL.into_iter().filter(|k| k.is_available())
    }

    /// The set's name as `edge-bench --kernels` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Auto => "auto",
            Kernels::Scalar => "scalar",
            Kernels::Neon => "neon",
            Kernels::Avx2 => "avx2",
            Kernels::Avx512 => "avx512",
        }
    }

    pub(crate) fn set_i8(self) -> Result<&'static KernelSetI8, Error> {
        match self.resolve()? {
            #[cfg(target_arch = "aarch64")]
            Kernels::Neon => Ok(&NEON_I8),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2 => Ok(&AVX2_I8),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx512 => Ok(if crate::cpu::X86Features::get().avx512_vnni {
                &AVX512_VNNI_I8
            } else {
                &AVX2_I8
            }),
            _ => Ok(&SCALAR_I8),
        }
    }

    pub(crate) fn set(self) -> Result<&'static KernelSet, Error> {
        match self.resolve()? {
            #[cfg(target_arch = "aarch64")]
            Kernels::Neon => Ok(&NEON),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2 => Ok(&AVX2),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx512 => Ok(&AVX512),
            _ => Ok(&SCALAR),
        }
    }

    /// The name of the set that actually runs for this request on this CPU ("scalar", "neon",
    /// "avx2", "avx512"), or `None` if it is unavailable here.
    pub fn resolved_name(self) -> Option<&'static str> {
        self.set().ok().map(|k| k.name)
    }

    /// The int8 instruction paths that run for this request on this CPU (what an int8
    /// benchmark measured), or `None` if the set is unavailable here.
    pub fn int8_paths(self) -> Option<Int8Paths> {
        self.set_i8().ok().map(|k| (k.paths)())
    }

    /// [`Kernels::resolved_name`] for models of precision `p` (int8 NEON names the ISA
    /// extensions the build uses, e.g. "neon+dotprod+fp16").
    pub fn resolved_name_for(self, p: crate::format::Precision) -> Option<&'static str> {
        match p {
            crate::format::Precision::F32 => self.resolved_name(),
            crate::format::Precision::Int8 => self.set_i8().ok().map(|k| k.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The arena plans staging for the column tiles of [`F32_COL_TILES`]: every set's is one.
    #[test]
    fn every_f32_set_col_tile_is_planned() {
        for k in Kernels::available() {
            let set = k.set().unwrap();
            assert!(F32_COL_TILES.contains(&set.col_tile), "{}", set.name);
            assert!(set.col_tile.is_multiple_of(crate::format::PANEL));
        }
    }
}
