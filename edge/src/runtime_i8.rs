//! Running an int8 model: composes the int8 operator kernels over the arena (see
//! `edge/FORMAT.md` for the scheme). No kernel code lives here.
//!
//! Per block, with `x` the int8 residual stream (scale `s_x`, zero `z_x`): depthwise 7×7 →
//! int32 (w2) → LayerNorm in f32 → int8 `t` → fc1 → int8 (w1) → GELU table in place → GRN in
//! fp16 → int8 (w2) → fc2 → int32 (w1) → residual add into `x` with explicit scales.

use crate::arch::{DOWN_PATCH, MLP_RATIO, STEM_PATCH};
use crate::kernels::KernelSetI8;
use crate::model::{Model, QParams};
use crate::ops::grn_f16::GrnF16Quant;
use crate::ops::layernorm_i8::{self, OutQuant};
use crate::ops::residual_i8::ResidualQuant;
use crate::ops::{input, layernorm, pool};
use crate::runtime::{BlockOp, Input, Observer, Tap};
use crate::Error;

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

fn out_quant(q: QParams) -> OutQuant {
    OutQuant {
        inv_scale: 1.0 / q.scale,
        zero: q.zero,
    }
}

impl Model<'_> {
    /// The int8 forward pass (inputs already checked by `run_with`).
    pub(crate) fn run_i8<O: Observer>(
        &self,
        image: Input<'_>,
        arena: &mut [u8],
        logits: &mut [f32],
        k: &KernelSetI8,
        obs: &mut O,
    ) -> Result<(), Error> {
        let a = *self.arch();
        let r = self.arena_plan().split_i8(arena)?;
        let (x, t, w1, w2, scratch) = (r.x, r.t, r.w1, r.w2, r.scratch);
        let (ih, iw, cin) = (a.input_h, a.input_w, a.in_chans);

        // Input → int8 HWC in w1.
        let stem = self.stem_i8();
        let img = codes(w1, ih * iw * cin)?;
        match image {
            Input::NchwF32(v) => (k.quantize_input)(v, ih * iw, cin, stem.input, img),
            Input::HwcU8(v) => {
                input::quantize_u8_hwc_i8_scalar(v, &input::u8_to_i8_table(stem.input), img)
            }
        }
        if O::ENABLED {
            obs.observe_i8(Tap::Input, ih, iw, cin, img, stem.input);
        }

        // Stem: conv 4×4/s4 → int32 (w2) → LN → x.
        let (mut h, mut w) = a.stage_hw(0);
        let c0 = a.dims[0];
        let acc = accs(w2, h * w * c0)?;
        (k.patch_conv)(
            img,
            ih,
            iw,
            cin,
            STEM_PATCH,
            stem.conv_w,
            stem.conv_b,
            c0,
            acc,
            t,
        );
        let xs = &mut x[..h * w * c0];
        (k.layernorm)(
            acc,
            h * w,
            c0,
            stem.deq,
            stem.norm_w,
            stem.norm_b,
            a.ln_eps,
            out_quant(stem.out),
            xs,
            scratch,
        );
        let mut xq = stem.out;
        if O::ENABLED {
            obs.observe_i8(Tap::Stem, h, w, c0, xs, xq);
        }

        for s in 0..a.num_stages {
            let c = a.dims[s];
            if s > 0 {
                // Downsample: LN of the stream (codes − z, scale s_x) → t → conv 2×2/s2 →
                // int32 (w1) → requantized into x.
                let d = self.downsample_i8(s);
                let prev = a.dims[s - 1];
                let p = h * w;
                let wide = accs(w2, p * prev)?;
                layernorm_i8::widen_i8_i32_scalar(&x[..p * prev], xq.zero, wide);
                let (deq, ln_scratch) = scratch.split_at_mut(prev);
                deq.fill(xq.scale);
                let tn = &mut t[..p * prev];
                (k.layernorm)(
                    wide,
                    p,
                    prev,
                    deq,
                    d.norm_w,
                    d.norm_b,
                    a.ln_eps,
                    out_quant(d.norm_q),
                    tn,
                    ln_scratch,
                );
                if O::ENABLED {
                    obs.observe_i8(Tap::DownsampleNorm(s), h, w, prev, tn, d.norm_q);
                }
                let (oh, ow) = a.stage_hw(s);
                let acc = accs(w1, oh * ow * c)?;
                (k.patch_conv)(tn, h, w, prev, DOWN_PATCH, d.conv_w, d.conv_b, c, acc, x);
                (h, w) = (oh, ow);
                (k.requant)(acc, h * w, c, d.rq, d.out.zero, &mut x[..h * w * c]);
                xq = d.out;
                if O::ENABLED {
                    obs.observe_i8(Tap::Downsample(s), h, w, c, &x[..h * w * c], xq);
                }
            }
            let p = h * w;
            let n = MLP_RATIO * c;
            for b in 0..a.depths[s] {
                let bl = self.block_i8(s, b);
                let tap = |op| Tap::Block {
                    stage: s,
                    block: b,
                    op,
                };
                let xs = &mut x[..p * c];
                let dw = accs(w2, p * c)?;
                (k.dwconv7x7)(xs, h, w, c, xq.zero, bl.dw_w, bl.dw_b, dw);
                let tn = &mut t[..p * c];
                (k.layernorm)(
                    dw,
                    p,
                    c,
                    bl.dw_deq,
                    bl.norm_w,
                    bl.norm_b,
                    a.ln_eps,
                    out_quant(bl.norm_q),
                    tn,
                    scratch,
                );
                let hid = codes(w1, p * n)?;
                (k.pointwise)(
                    tn,
                    p,
                    c,
                    bl.fc1_w,
                    bl.fc1_b,
                    bl.fc1_rq,
                    bl.fc1_q.zero,
                    n,
                    hid,
                );
                if O::ENABLED {
                    obs.observe_i8(tap(BlockOp::Norm), h, w, c, tn, bl.norm_q);
                    obs.observe_i8(tap(BlockOp::Fc1), h, w, n, hid, bl.fc1_q);
                }
                (k.gelu)(hid, bl.gelu_lut);
                if O::ENABLED {
                    obs.observe_i8(tap(BlockOp::Gelu), h, w, n, hid, bl.gelu_q);
                }
                let g = codes(w2, p * n)?;
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
                (k.grn)(hid, p, n, bl.grn_w, bl.grn_b, a.grn_eps, &gq, g, scratch);
                if O::ENABLED {
                    obs.observe_i8(tap(BlockOp::Grn), h, w, n, g, bl.grn_q);
                }
                let acc = accs(w1, p * c)?;
                (k.pointwise_acc)(g, p, n, bl.fc2_w, bl.fc2_b, c, acc);
                let (x_scale, acc_scale) = bl.res_rq.split_first().ok_or(Error::BadArch {
                    reason: "residual requantization missing",
                })?;
                let rq = ResidualQuant {
                    x_zero: xq.zero,
                    x_scale: *x_scale,
                    acc_scale,
                    out_zero: bl.out.zero,
                };
                (k.residual)(xs, acc, p, c, &rq);
                xq = bl.out;
                if O::ENABLED {
                    obs.observe_i8(tap(BlockOp::Out), h, w, c, xs, xq);
                }
            }
            if O::ENABLED {
                obs.observe_i8(Tap::Stage(s), h, w, c, &x[..p * c], xq);
            }
        }

        // Head: int8 mean over H, W → f32 LN → int8 → classifier (int32) → logits.
        let cl = a.last_dim();
        let hd = self.head_i8();
        let pooled = &mut scratch[..cl];
        pool::avgpool_i8_f32_scalar(x, h * w, cl, xq, pooled);
        layernorm::layernorm_f32_scalar(pooled, 1, cl, hd.norm_w, hd.norm_b, a.ln_eps);
        let pq = &mut t[..cl];
        input::quantize_f32_i8_scalar(pooled, hd.norm_q, pq);
        if O::ENABLED {
            obs.observe_i8(Tap::PreLogits, 1, 1, cl, pq, hd.norm_q);
        }
        let acc = accs(w1, a.num_classes)?;
        (k.pointwise_acc)(pq, 1, cl, hd.fc_w, hd.fc_b, a.num_classes, acc);
        for ((l, &v), &d) in logits.iter_mut().zip(acc.iter()).zip(hd.deq) {
            *l = v as f32 * d;
        }
        Ok(())
    }
}
