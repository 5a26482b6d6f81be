//! Kernel sets: one function per operator, chosen once per `run`. The scalar set is the
//! reference; the NEON set replaces the slots that have a NEON kernel. Adding a kernel is one
//! line here plus its module; tests in each op module run every variant against the reference.

use crate::ops::{dwconv7x7, gelu, grn, layernorm, patch_conv, pointwise, pool};
use crate::{Error, Kernels};

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

impl Kernels {
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
}
