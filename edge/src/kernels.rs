//! Kernel sets: one function per operator, chosen once per `run`. The scalar set is the
//! reference; the NEON set replaces the slots that have a NEON kernel. Adding a kernel is one
//! line here plus its module; tests in each op module run every variant against the reference.

use crate::model::QParams;
use crate::ops::layernorm_i8::OutQuant;
use crate::ops::requant::{self, Requant};
use crate::ops::residual_i8::ResidualQuant;
use crate::ops::{dwconv7x7, gelu, grn, layernorm, patch_conv, pointwise, pool};
use crate::ops::{dwconv7x7_i8, gelu_i8, grn_f16, layernorm_i8, patch_conv_i8, pointwise_i8};
use crate::ops::{grn_f16::GrnF16Quant, input, residual_i8};
use crate::{Error, Kernels};
use half::f16;

pub(crate) type DwFn = fn(&[f32], usize, usize, usize, &[f32], &[f32], &mut [f32]);
pub(crate) type PwFn = fn(&[f32], usize, usize, &[f32], &[f32], usize, &mut [f32], bool);
pub(crate) type LnFn = fn(&mut [f32], usize, usize, &[f32], &[f32], f32);
pub(crate) type GeluFn = fn(&mut [f32]);
pub(crate) type GrnFn = fn(&mut [f32], usize, usize, &[f32], &[f32], f32, &mut [f32]);
pub(crate) type PatchFn = fn(&[f32], usize, usize, usize, usize, &[f32], &[f32], usize, &mut [f32]);
pub(crate) type PoolFn = fn(&[f32], usize, usize, &mut [f32]);
pub(crate) type DwLnFn =
    fn(&[f32], usize, usize, usize, &[f32], &[f32], (&[f32], &[f32], f32), &mut [f32]);
pub(crate) type PwGeluSumsqFn =
    fn(&[f32], usize, usize, &[f32], &[f32], usize, &mut [f32], &mut [f32]);
pub(crate) type GrnApplyFn = fn(&mut [f32], usize, usize, &[f32], &[f32], f32, &mut [f32]);

/// One implementation per operator.
pub(crate) struct KernelSet {
    pub name: &'static str,
    pub dwconv7x7: DwFn,
    pub pointwise: PwFn,
    pub layernorm: LnFn,
    pub gelu: GeluFn,
    pub grn: GrnFn,
    pub patch_conv: PatchFn,
    pub avgpool: PoolFn,
    /// Fused: depthwise 7×7 + the block's LayerNorm.
    pub dwconv7x7_ln: DwLnFn,
    /// Fused: fc1 + GELU + GRN's sum of squares.
    pub pointwise_gelu_sumsq: PwGeluSumsqFn,
    /// GRN given the sums of squares.
    pub grn_apply: GrnApplyFn,
}

pub(crate) const SCALAR: KernelSet = KernelSet {
    name: "scalar",
    dwconv7x7: dwconv7x7::dwconv7x7_f32_scalar,
    pointwise: pointwise::pointwise_f32_scalar,
    layernorm: layernorm::layernorm_f32_scalar,
    gelu: gelu::gelu_f32_scalar,
    grn: grn::grn_f32_scalar,
    patch_conv: patch_conv::patch_conv_f32_scalar,
    avgpool: pool::avgpool_f32_scalar,
    dwconv7x7_ln: dwconv7x7::dwconv7x7_ln_f32_scalar,
    pointwise_gelu_sumsq: pointwise::pointwise_gelu_sumsq_f32_scalar,
    grn_apply: grn::grn_apply_f32_scalar,
};

/// NEON is part of the aarch64 base ISA (ARMv8-A), so this set runs on every aarch64 CPU.
/// Every slot has a NEON kernel; the head's classifier is the pointwise GEMM with one pixel.
#[cfg(target_arch = "aarch64")]
pub(crate) const NEON: KernelSet = KernelSet {
    name: "neon",
    dwconv7x7: dwconv7x7::dwconv7x7_f32_neon,
    pointwise: pointwise::pointwise_f32_neon,
    layernorm: layernorm::layernorm_f32_neon,
    gelu: gelu::gelu_f32_neon,
    grn: grn::grn_f32_neon,
    patch_conv: patch_conv::patch_conv_f32_neon,
    dwconv7x7_ln: dwconv7x7::dwconv7x7_ln_f32_neon,
    pointwise_gelu_sumsq: pointwise::pointwise_gelu_sumsq_f32_neon,
    grn_apply: grn::grn_apply_f32_neon,
    avgpool: pool::avgpool_f32_neon,
};

pub(crate) type PatchI8Fn =
    fn(&[i8], usize, usize, usize, usize, &[i8], &[i32], usize, &mut [i32], &mut [i8]);
pub(crate) type DwI8Fn = fn(&[i8], usize, usize, usize, i32, &[i8], &[i32], &mut [i32]);
pub(crate) type LnI8Fn =
    fn(&[i32], usize, usize, &[f32], &[f32], &[f32], f32, OutQuant, &mut [i8], &mut [f32]);
pub(crate) type PwI8Fn = fn(&[i8], usize, usize, &[i8], &[i32], &[Requant], i32, usize, &mut [i8]);
pub(crate) type PwAccI8Fn = fn(&[i8], usize, usize, &[i8], &[i32], usize, &mut [i32]);
pub(crate) type GeluI8Fn = fn(&mut [i8], &[i8; 256]);
pub(crate) type GrnF16Fn =
    fn(&[i8], usize, usize, &[f16], &[f16], f32, &GrnF16Quant, &mut [i8], &mut [f32]);
pub(crate) type ResidualI8Fn = fn(&mut [i8], &[i32], usize, usize, &ResidualQuant);
pub(crate) type RequantFn = fn(&[i32], usize, usize, &[Requant], i32, &mut [i8]);
pub(crate) type QuantizeInputFn = fn(&[f32], usize, usize, QParams, &mut [i8]);

/// One implementation per operator of the int8 path.
pub(crate) struct KernelSetI8 {
    pub name: &'static str,
    pub patch_conv: PatchI8Fn,
    pub dwconv7x7: DwI8Fn,
    pub layernorm: LnI8Fn,
    pub pointwise: PwI8Fn,
    pub pointwise_acc: PwAccI8Fn,
    pub gelu: GeluI8Fn,
    pub grn: GrnF16Fn,
    pub residual: ResidualI8Fn,
    /// Per-channel requantization of a whole tensor (the downsample's output).
    pub requant: RequantFn,
    /// Normalized f32 NCHW input → int8 HWC.
    pub quantize_input: QuantizeInputFn,
}

pub(crate) const SCALAR_I8: KernelSetI8 = KernelSetI8 {
    name: "scalar",
    patch_conv: patch_conv_i8::patch_conv_i8_scalar_slot,
    dwconv7x7: dwconv7x7_i8::dwconv7x7_i8_scalar,
    layernorm: layernorm_i8::layernorm_i32_i8_scalar,
    pointwise: pointwise_i8::pointwise_i8_scalar,
    pointwise_acc: pointwise_i8::pointwise_i8_acc_scalar,
    gelu: gelu_i8::gelu_i8_scalar,
    grn: grn_f16::grn_f16_scalar,
    residual: residual_i8::residual_add_i8_scalar,
    requant: requant::requantize_channels_scalar,
    quantize_input: input::quantize_nchw_f32_i8_scalar,
};

/// NEON int8 set: ARMv8.0 (`SMULL`/`SADALP` GEMMs, fp16 emulated by conversions) unless the
/// build targets FEAT_DotProd (with feature `dotprod`) and FEAT_FP16
/// (`-C target-feature=+dotprod,+fp16`, e.g. `-C target-cpu=cortex-a76`): then `SDOT` GEMMs and
/// native fp16 GRN. Every choice is bit-identical to the scalar set.
#[cfg(target_arch = "aarch64")]
pub(crate) const NEON_I8: KernelSetI8 = KernelSetI8 {
    name: NEON_I8_NAME,
    #[cfg(not(all(feature = "dotprod", target_feature = "dotprod")))]
    patch_conv: patch_conv_i8::patch_conv_i8_neon,
    #[cfg(all(feature = "dotprod", target_feature = "dotprod"))]
    patch_conv: patch_conv_i8::patch_conv_i8_sdot_static,
    dwconv7x7: dwconv7x7_i8::dwconv7x7_i8_neon,
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
    grn: grn_f16::grn_f16_neon,
    #[cfg(target_feature = "fp16")]
    grn: grn_f16::grn_f16_fp16_static,
    residual: residual_i8::residual_add_i8_neon,
    requant: requant::requantize_channels_neon,
    quantize_input: input::quantize_nchw_f32_i8_neon,
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
    pub(crate) fn set_i8(self) -> Result<&'static KernelSetI8, Error> {
        match self {
            Kernels::Scalar => Ok(&SCALAR_I8),
            #[cfg(target_arch = "aarch64")]
            Kernels::Auto | Kernels::Neon => Ok(&NEON_I8),
            #[cfg(not(target_arch = "aarch64"))]
            Kernels::Auto => Ok(&SCALAR_I8),
            #[cfg(not(target_arch = "aarch64"))]
            Kernels::Neon => Err(Error::KernelsUnavailable { kernels: "neon" }),
        }
    }

    pub(crate) fn set(self) -> Result<&'static KernelSet, Error> {
        match self {
            Kernels::Scalar => Ok(&SCALAR),
            #[cfg(target_arch = "aarch64")]
            Kernels::Auto | Kernels::Neon => Ok(&NEON),
            #[cfg(not(target_arch = "aarch64"))]
            Kernels::Auto => Ok(&SCALAR),
            #[cfg(not(target_arch = "aarch64"))]
            Kernels::Neon => Err(Error::KernelsUnavailable { kernels: "neon" }),
        }
    }

    /// The name of the set that actually runs for this request on this target ("scalar",
    /// "neon"), or `None` if it is unavailable here.
    pub fn resolved_name(self) -> Option<&'static str> {
        self.set().ok().map(|k| k.name)
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
