//! f32 model + observed activation ranges → int8 model file (the scheme of `edge/FORMAT.md`).
//!
//! - Weights: int8 symmetric per output channel (`s_w[n] = max|W[n]| / 127`, codes in
//!   −127..=127), so no weight zero point ever enters an inner loop.
//! - Activations: int8 per tensor, **asymmetric** (scale and zero point): ConvNeXt's quantized
//!   tensors are one-sided (GELU output ≥ −0.17, GRN output shifted by β) or skewed (LayerNorm
//!   outputs with per-channel affine), and a symmetric grid would waste up to half of the 256
//!   codes on them. The zero point costs nothing at run time: the GEMMs and patch convs fold
//!   `−z_in·ΣW[n]` into their int32 bias; the depthwise conv subtracts it per tap so its zero
//!   padding stays exact.
//! - Accumulation in int32; requantization by a fixed-point multiplier and shifts, rounded half
//!   up, saturated to int8 (`edge::ops::requant`). Biases are `round(b / (s_in·s_w[n]))`.
//! - LayerNorm in f32 (dequantizing the int32 accumulators per channel); GELU as a 256-entry
//!   table of exact GELU; GRN in fp16 with γ, β stored as fp16 and the spatial sum of squares in
//!   f32; residual adds with two explicit scales (`edge::ops::residual_i8`); head: int8 pooled
//!   mean → f32 LayerNorm → int8 → classifier (int32) → logits dequantized per class.

use std::collections::HashMap;

use edge::arch::MLP_RATIO;
use edge::builder::{self, TensorData};
use edge::format::{self, Precision, Role, TensorId};
use edge::ops::gelu_i8::gelu_lut;
use edge::ops::requant::Requant;
use edge::{Arch, BlockOp, Model, Observer, QParams, Tap};
use half::f16;

use crate::calib::{asymmetric_at_least, symmetric_scales, Method, RangeStats, MIN_SCALE};

/// Why quantization failed.
#[derive(Debug)]
pub enum QuantError {
    /// The model given is not an f32 model.
    NotF32,
    /// A tensor could not be read back from the f32 file.
    Unreadable(String),
    /// No statistics were observed for a tap (no calibration image ran).
    NoStats(String),
    /// A requantization scale is outside what the fixed-point form represents.
    Scale { tensor: String, scale: f64 },
    /// Weights that the int8 model cannot store (GRN's γ, β beyond fp16), every one by name.
    Values(crate::values::BadValues),
    /// The written file failed its own validation (a bug; reported rather than written).
    SelfCheck(edge::Error),
}

impl std::fmt::Display for QuantError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuantError::NotF32 => write!(f, "calibration needs an f32 model file"),
            QuantError::Unreadable(t) => write!(f, "cannot read tensor {t} from the model"),
            QuantError::NoStats(t) => write!(f, "no activations observed at {t}"),
            QuantError::Scale { tensor, scale } => {
                write!(
                    f,
                    "{tensor}: scale {scale:e} is outside what the int8 model represents \
                     (an activation range far beyond the others: check the weights, or \
                     calibrate with images like the ones it will see)"
                )
            }
            QuantError::Values(v) => write!(f, "{v}"),
            QuantError::SelfCheck(e) => write!(f, "the int8 file failed validation: {e}"),
        }
    }
}

impl std::error::Error for QuantError {}

/// A readable name of a tap (timm-like).
pub fn tap_name(t: Tap) -> String {
    match t {
        Tap::Input => "input".into(),
        Tap::Stem => "stem".into(),
        Tap::DownsampleNorm(s) => format!("stages.{s}.downsample.0"),
        Tap::Downsample(s) => format!("stages.{s}.downsample.1"),
        Tap::Block { stage, block, op } => {
            let op = match op {
                BlockOp::DwConv => "conv_dw",
                BlockOp::Norm => "norm",
                BlockOp::Fc1 => "mlp.fc1",
                BlockOp::Gelu => "mlp.act",
                BlockOp::Grn => "mlp.grn",
                BlockOp::Fc2 => "mlp.fc2",
                BlockOp::Out => "out",
            };
            format!("stages.{stage}.blocks.{block}.{op}")
        }
        Tap::Stage(s) => format!("stages.{s}"),
        Tap::PreLogits => "head.norm".into(),
    }
}

/// Whether an f32 tap is one the int8 model quantizes.
pub fn is_quantized_tap(t: Tap) -> bool {
    !matches!(
        t,
        Tap::Stage(_)
            | Tap::Block {
                op: BlockOp::DwConv | BlockOp::Fc2,
                ..
            }
    )
}

/// Collects range statistics of every quantized tap over f32 runs.
#[derive(Default)]
pub struct StatsObserver {
    /// Statistics per tap.
    pub stats: HashMap<Tap, RangeStats>,
}

impl Observer for StatsObserver {
    const ENABLED: bool = true;
    fn observe(&mut self, tap: Tap, _h: usize, _w: usize, _c: usize, nhwc: &[f32]) {
        if is_quantized_tap(tap) {
            self.stats.entry(tap).or_default().observe(nhwc);
        }
    }
}

/// The f32 model's tensors in their logical (PyTorch) layouts.
pub fn f32_weights(model: &Model) -> Result<HashMap<TensorId, Vec<f32>>, QuantError> {
    if model.precision() != Precision::F32 {
        return Err(QuantError::NotF32);
    }
    let arch = *model.arch();
    let mut out = HashMap::new();
    for (i, id) in format::tensor_ids(&arch, Precision::F32).enumerate() {
        let name = || crate::names::timm_name(id);
        let packed = model
            .tensor_f32(i)
            .ok_or_else(|| QuantError::Unreadable(name()))?;
        let logical =
            builder::unpack(&arch, id, packed).ok_or_else(|| QuantError::Unreadable(name()))?;
        out.insert(id, logical);
    }
    Ok(out)
}

/// Activation quantization of every tap from its statistics.
pub fn activation_params(
    stats: &HashMap<Tap, RangeStats>,
    method: Method,
) -> Result<HashMap<Tap, QParams>, QuantError> {
    stats
        .iter()
        .map(|(&tap, st)| {
            let (lo, hi) = st
                .range(method)
                .ok_or_else(|| QuantError::NoStats(tap_name(tap)))?;
            // GRN runs in fp16: its input scale (GELU's output) and the inverse of its output
            // scale must be normal fp16 values (edge's `GrnF16Quant`). A block whose GELU or GRN
            // outputs are all ~0 gets the smallest such scale (its range only widens); a range
            // too wide for fp16 is an error naming the tap.
            let (min, max) = match tap {
                Tap::Block {
                    op: BlockOp::Gelu, ..
                } => (F16_MIN_NORMAL, f16::MAX.to_f32()),
                Tap::Block {
                    op: BlockOp::Grn, ..
                } => (1.0 / f16::MAX.to_f32(), 1.0 / F16_MIN_NORMAL),
                _ => (MIN_SCALE, f32::MAX),
            };
            let (scale, zero) = asymmetric_at_least(lo, hi, min);
            if scale.is_nan() || scale > max {
                return Err(QuantError::Scale {
                    tensor: tap_name(tap),
                    scale: scale as f64,
                });
            }
            Ok((tap, QParams { scale, zero }))
        })
        .collect()
}

/// fp16's smallest normal value, 2^−14.
const F16_MIN_NORMAL: f32 = 6.103_515_6e-5;

/// Largest |bias| in int32 units: the accumulated products (≤ 127·255·k, < 2^30 for every
/// named size) must still fit beside it.
const BIAS_I32_MAX: f64 = (1u64 << 30) as f64;

/// Symmetric per-row int8 codes and scales of a row-major `[n][k]` matrix whose int32 bias is
/// `bias / (s_in · s_w)`: a row whose weights are ~0 but whose bias is not (a dead channel)
/// gets its scale raised until the bias fits in ±2^30, instead of a saturated bias; its
/// weights then quantize to (nearly) 0, which is what they are next to that bias.
fn weights_i8(w: &[f32], n: usize, k: usize, bias: &[f32], s_in: f32) -> (Vec<i8>, Vec<f32>) {
    let s: Vec<f32> = symmetric_scales(w, n, k)
        .into_iter()
        .zip(bias)
        .map(|(sj, &b)| {
            let need = (b.abs() as f64 / (s_in as f64 * BIAS_I32_MAX)) as f32;
            // f32 rounding of `need` may land just below: one ulp up keeps |bias| ≤ 2^30.
            sj.max(need.next_up())
        })
        .collect();
    let q = w
        .iter()
        .enumerate()
        .map(|(i, &v)| (v / s[i / k]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, s)
}

/// `round(b / (s_in·s_w[n])) − z_in·Σ_k q[n][k]`, saturated to i32 (the zero point folded in).
fn bias_i32(b: &[f32], s_in: f32, s_w: &[f32], z_in: i32, q: &[i8], k: usize) -> Vec<i32> {
    b.iter()
        .enumerate()
        .map(|(j, &bj)| {
            let sum_w: i64 = q[j * k..][..k].iter().map(|&v| v as i64).sum();
            let v =
                (bj as f64 / (s_in as f64 * s_w[j] as f64)).round() - z_in as f64 * sum_w as f64;
            v.clamp(i32::MIN as f64, i32::MAX as f64) as i32
        })
        .collect()
}

/// OIHW `[n][cin][k][k]` → `[n][(ky, kx, ci)]` (the int8 patch conv's K order).
fn oihw_to_rows(w: &[f32], n: usize, cin: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    for o in 0..n {
        for ci in 0..cin {
            for ky in 0..k {
                for kx in 0..k {
                    out[o * k * k * cin + (ky * k + kx) * cin + ci] =
                        w[((o * cin + ci) * k + ky) * k + kx];
                }
            }
        }
    }
    out
}

fn pairs(qs: &[QParams]) -> TensorData {
    TensorData::F32(qs.iter().flat_map(|q| [q.scale, q.zero as f32]).collect())
}

/// GRN's γ and β are stored in fp16 in int8 models: every value beyond ±65504, in every block,
/// at once ([`QuantError::Values`]). [`quantize`] calls it; `calibrate` calls it first, before
/// spending a calibration pass on weights that cannot be stored.
pub fn check_fp16_params(
    arch: &Arch,
    weights: &HashMap<TensorId, Vec<f32>>,
) -> Result<(), QuantError> {
    let mut beyond_f16 = Vec::new();
    for s in 0..arch.num_stages {
        for bi in 0..arch.depths[s] {
            for role in [Role::GrnW, Role::GrnB] {
                let id = TensorId {
                    role,
                    stage: s as u16,
                    block: bi as u32,
                };
                let v = weights
                    .get(&id)
                    .ok_or_else(|| QuantError::Unreadable(crate::names::timm_name(id)))?;
                beyond_f16.extend(crate::values::first_bad(
                    &crate::names::timm_name(id),
                    v.iter().map(|&x| x as f64),
                    crate::values::f16_problem,
                ));
            }
        }
    }
    crate::values::collect(beyond_f16).map_err(QuantError::Values)
}

/// The int8 model file of `arch` with `weights` (logical layouts) and activation quantization
/// `act` (one entry per quantized tap).
pub fn quantize(
    arch: &Arch,
    weights: &HashMap<TensorId, Vec<f32>>,
    act: &HashMap<Tap, QParams>,
) -> Result<Vec<u8>, QuantError> {
    let get_act = |t: Tap| act.get(&t).copied().ok_or(QuantError::NoStats(tap_name(t)));
    let mut tensors: HashMap<TensorId, TensorData> = HashMap::new();
    let w = |role: Role, stage: usize, block: usize| -> Result<&Vec<f32>, QuantError> {
        let id = TensorId {
            role,
            stage: stage as u16,
            block: block as u32,
        };
        weights
            .get(&id)
            .ok_or_else(|| QuantError::Unreadable(crate::names::timm_name(id)))
    };
    let rq = |scale: f64, what: &str| {
        Requant::from_scale(scale).map_err(|_| QuantError::Scale {
            tensor: what.to_string(),
            scale,
        })
    };
    let mut put = |role: Role, stage: usize, block: usize, d: TensorData| {
        tensors.insert(
            TensorId {
                role,
                stage: stage as u16,
                block: block as u32,
            },
            d,
        );
    };
    use Role::*;
    let name = |role: Role, stage: usize, block: usize| {
        crate::names::timm_name(TensorId {
            role,
            stage: stage as u16,
            block: block as u32,
        })
    };
    check_fp16_params(arch, weights)?;

    // Stem.
    let q_in = get_act(Tap::Input)?;
    let q_stem = get_act(Tap::Stem)?;
    let (c0, cin) = (arch.dims[0], arch.in_chans);
    let kk = edge::arch::STEM_PATCH;
    let rows = oihw_to_rows(w(StemConvW, 0, 0)?, c0, cin, kk);
    let (qw, sw) = weights_i8(&rows, c0, kk * kk * cin, w(StemConvB, 0, 0)?, q_in.scale);
    let b = bias_i32(
        w(StemConvB, 0, 0)?,
        q_in.scale,
        &sw,
        q_in.zero,
        &qw,
        kk * kk * cin,
    );
    put(StemAct, 0, 0, pairs(&[q_in, q_stem]));
    put(StemConvW, 0, 0, TensorData::I8(qw));
    put(StemConvB, 0, 0, TensorData::I32(b));
    put(
        StemDeq,
        0,
        0,
        TensorData::F32(sw.iter().map(|s| q_in.scale * s).collect()),
    );
    put(
        StemNormW,
        0,
        0,
        TensorData::F32(w(StemNormW, 0, 0)?.clone()),
    );
    put(
        StemNormB,
        0,
        0,
        TensorData::F32(w(StemNormB, 0, 0)?.clone()),
    );
    let mut q_x = q_stem;

    for s in 0..arch.num_stages {
        let c = arch.dims[s];
        if s > 0 {
            let prev = arch.dims[s - 1];
            let kd = edge::arch::DOWN_PATCH;
            let q_n = get_act(Tap::DownsampleNorm(s))?;
            let q_o = get_act(Tap::Downsample(s))?;
            let rows = oihw_to_rows(w(DownConvW, s, 0)?, c, prev, kd);
            let k = kd * kd * prev;
            let (qw, sw) = weights_i8(&rows, c, k, w(DownConvB, s, 0)?, q_n.scale);
            let b = bias_i32(w(DownConvB, s, 0)?, q_n.scale, &sw, q_n.zero, &qw, k);
            let r = sw
                .iter()
                .map(|&sj| {
                    rq(
                        q_n.scale as f64 * sj as f64 / q_o.scale as f64,
                        &name(DownRq, s, 0),
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            put(DownAct, s, 0, pairs(&[q_n, q_o]));
            put(
                DownNormW,
                s,
                0,
                TensorData::F32(w(DownNormW, s, 0)?.clone()),
            );
            put(
                DownNormB,
                s,
                0,
                TensorData::F32(w(DownNormB, s, 0)?.clone()),
            );
            put(DownConvW, s, 0, TensorData::I8(qw));
            put(DownConvB, s, 0, TensorData::I32(b));
            put(DownRq, s, 0, TensorData::Requant(r));
            q_x = q_o;
        }
        let n = MLP_RATIO * c;
        for bi in 0..arch.depths[s] {
            let tap = |op| Tap::Block {
                stage: s,
                block: bi,
                op,
            };
            let q_norm = get_act(tap(BlockOp::Norm))?;
            let q_fc1 = get_act(tap(BlockOp::Fc1))?;
            let q_gelu = get_act(tap(BlockOp::Gelu))?;
            let q_grn = get_act(tap(BlockOp::Grn))?;
            let q_out = get_act(tap(BlockOp::Out))?;
            // Depthwise: per-channel symmetric over its 49 taps; bias without zero-point fold.
            let (qdw, sdw) = weights_i8(w(DwConvW, s, bi)?, c, 49, w(DwConvB, s, bi)?, q_x.scale);
            let bdw = w(DwConvB, s, bi)?
                .iter()
                .zip(&sdw)
                .map(|(&b, &sj)| {
                    (b as f64 / (q_x.scale as f64 * sj as f64))
                        .round()
                        .clamp(i32::MIN as f64, i32::MAX as f64) as i32
                })
                .collect();
            let (q1, s1) = weights_i8(w(Fc1W, s, bi)?, n, c, w(Fc1B, s, bi)?, q_norm.scale);
            let b1 = bias_i32(w(Fc1B, s, bi)?, q_norm.scale, &s1, q_norm.zero, &q1, c);
            let r1 = s1
                .iter()
                .map(|&sj| {
                    rq(
                        q_norm.scale as f64 * sj as f64 / q_fc1.scale as f64,
                        &name(Fc1Rq, s, bi),
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            let (q2, s2) = weights_i8(w(Fc2W, s, bi)?, c, n, w(Fc2B, s, bi)?, q_grn.scale);
            let b2 = bias_i32(w(Fc2B, s, bi)?, q_grn.scale, &s2, q_grn.zero, &q2, n);
            let frac = (1u32 << edge::ops::residual_i8::FRAC_BITS) as f64;
            let mut res = vec![rq(
                q_x.scale as f64 / q_out.scale as f64 * frac,
                &name(ResRq, s, bi),
            )?];
            for &sj in &s2 {
                res.push(rq(
                    q_grn.scale as f64 * sj as f64 / q_out.scale as f64 * frac,
                    &name(ResRq, s, bi),
                )?);
            }
            let half =
                |v: &Vec<f32>| TensorData::F16(v.iter().map(|&x| f16::from_f32(x)).collect());
            put(
                BlockAct,
                s,
                bi,
                pairs(&[q_norm, q_fc1, q_gelu, q_grn, q_out]),
            );
            put(DwConvW, s, bi, TensorData::I8(qdw));
            put(DwConvB, s, bi, TensorData::I32(bdw));
            put(
                DwDeq,
                s,
                bi,
                TensorData::F32(sdw.iter().map(|sj| q_x.scale * sj).collect()),
            );
            put(NormW, s, bi, TensorData::F32(w(NormW, s, bi)?.clone()));
            put(NormB, s, bi, TensorData::F32(w(NormB, s, bi)?.clone()));
            put(Fc1W, s, bi, TensorData::I8(q1));
            put(Fc1B, s, bi, TensorData::I32(b1));
            put(Fc1Rq, s, bi, TensorData::Requant(r1));
            let lut = gelu_lut(q_fc1.scale, q_fc1.zero, q_gelu.scale, q_gelu.zero);
            put(GeluLut, s, bi, TensorData::I8(lut.to_vec()));
            put(GrnW, s, bi, half(w(GrnW, s, bi)?));
            put(GrnB, s, bi, half(w(GrnB, s, bi)?));
            put(Fc2W, s, bi, TensorData::I8(q2));
            put(Fc2B, s, bi, TensorData::I32(b2));
            put(ResRq, s, bi, TensorData::Requant(res));
            q_x = q_out;
        }
    }

    // Head.
    let last = arch.num_stages - 1;
    let (cl, nc) = (arch.last_dim(), arch.num_classes);
    let q_pl = get_act(Tap::PreLogits)?;
    let (qh, sh) = weights_i8(
        w(HeadFcW, last, 0)?,
        nc,
        cl,
        w(HeadFcB, last, 0)?,
        q_pl.scale,
    );
    let bh = bias_i32(w(HeadFcB, last, 0)?, q_pl.scale, &sh, q_pl.zero, &qh, cl);
    put(HeadAct, last, 0, pairs(&[q_pl]));
    put(
        HeadNormW,
        last,
        0,
        TensorData::F32(w(HeadNormW, last, 0)?.clone()),
    );
    put(
        HeadNormB,
        last,
        0,
        TensorData::F32(w(HeadNormB, last, 0)?.clone()),
    );
    put(HeadFcW, last, 0, TensorData::I8(qh));
    put(HeadFcB, last, 0, TensorData::I32(bh));
    put(
        HeadDeq,
        last,
        0,
        TensorData::F32(sh.iter().map(|s| q_pl.scale * s).collect()),
    );

    let file = builder::build_int8(arch, |id| {
        tensors.remove(&id).unwrap_or(TensorData::F32(Vec::new()))
    })
    .map_err(QuantError::SelfCheck)?;
    Model::parse(builder::AlignedBytes::from_slice(&file).as_slice())
        .map_err(QuantError::SelfCheck)?;
    Ok(file)
}

/// Calibrates an f32 model on inputs already in edge's input forms and returns the int8 file
/// (library use and tests; `quant calibrate` does the same from image files).
pub fn quantize_with_inputs<'i>(
    model: &Model,
    inputs: impl IntoIterator<Item = edge::Input<'i>>,
    method: Method,
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let a = *model.arch();
    let mut stats = StatsObserver::default();
    let mut arena = vec![0u8; model.arena_len()];
    let mut logits = vec![0f32; a.num_classes];
    for x in inputs {
        model.run_with(x, &mut arena, &mut logits, edge::Kernels::Auto, &mut stats)?;
    }
    let act = activation_params(&stats.stats, method)?;
    Ok(quantize(&a, &f32_weights(model)?, &act)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dead channel (weights all 0) with a bias: the int32 bias must carry the bias, not
    /// saturate (with the floor scale 1e-8 the bias 5.0 would need 2.5e10 > i32::MAX units).
    #[test]
    fn a_dead_channels_bias_survives_quantization() {
        let (n, k, s_in, z_in) = (2, 8, 0.02f32, -3);
        let mut w = vec![0f32; n * k];
        for (i, v) in w[k..].iter_mut().enumerate() {
            *v = 0.1 * i as f32 - 0.3;
        }
        let bias = [5.0f32, 0.25];
        let (q, s) = weights_i8(&w, n, k, &bias, s_in);
        let b = bias_i32(&bias, s_in, &s, z_in, &q, k);
        for j in 0..n {
            let sum_q: i64 = q[j * k..][..k].iter().map(|&v| v as i64).sum();
            // Undo the zero-point fold; what is left is the bias in units of s_in · s_w.
            let units = b[j] as i64 + z_in as i64 * sum_q;
            let real = units as f64 * s_in as f64 * s[j] as f64;
            assert!(
                (real - bias[j] as f64).abs() <= 1e-6 * bias[j] as f64 + 0.5 * (s_in * s[j]) as f64,
                "channel {j}: bias {real} for {}",
                bias[j]
            );
            assert!(units.unsigned_abs() <= 1 << 30);
        }
        // The dead row quantizes to zeros; the live row keeps its absmax scale.
        assert!(q[..k].iter().all(|&v| v == 0));
        assert!((s[1] - 0.4 / 127.0).abs() < 1e-6 * s[1], "{}", s[1]);
    }
}
