//! Every weight layout this project reads, mapped onto one set of canonical names: timm's
//! (`stem.0.weight`, `stages.N.blocks.M.conv_dw.weight`, `head.fc.weight`, …), which
//! [`tensor_id`] turns into the model file's [`TensorId`]. `quant` and `train` read weights only
//! through `convert::load_state_dict_entry`, which places safetensors and PyTorch keys here and
//! ONNX graphs by structure (`onnx`, which names the tensors it finds in timm's names directly).
//!
//! | layout | keys (examples) | tensors that change shape |
//! |---|---|---|
//! | timm | `stem.0.*`, `stages.N.downsample.{0,1}.*`, `stages.N.blocks.M.{conv_dw,norm,mlp.fc1,mlp.grn,mlp.fc2}.*`, `head.{norm,fc}.*` | — |
//! | official ConvNeXt-V2 (`convnextv2.py`) | `downsample_layers.I.J.*`, `stages.N.M.{dwconv,norm,pwconv1,grn.gamma,grn.beta,pwconv2}`, `norm.*`, `head.*` | GRN `[1,1,1,C]` → `[C]` |
//! | official FCMAE pretraining (`main_pretrain.py` `checkpoint-N.pth`, `model`) | `encoder.` + the official names, MinkowskiEngine modules: `.kernel`, `.ln.`, `.linear.` | `.kernel` `[k², in, out]` → `[out, in, k, k]`, depthwise `[k², C]` → `[C, 1, k, k]`, biases and GRN `[1, C]` → `[C]` |
//! | Hugging Face `transformers` (`ConvNextV2ForImageClassification`, or the bare `ConvNextV2Model` without `convnextv2.`) | `convnextv2.embeddings.{patch_embeddings,layernorm}.*`, `convnextv2.encoder.stages.N.{downsampling_layer.J,layers.M.{dwconv,layernorm,pwconv1,grn,pwconv2}}.*`, `convnextv2.layernorm.*`, `classifier.*` | GRN `[1,1,1,C]` → `[C]` |
//!
//! The FCMAE kernels are converted as the official fine-tuning script's `remap_checkpoint_keys`
//! (ConvNeXt-V2 `utils.py`) does: MinkowskiEngine stores a 2-D kernel offset (y, x) at index
//! `x·k + y`, so `weight[o][i][y][x] = kernel[x·k + y][i][o]`. The FCMAE decoder side (`proj`,
//! `mask_token`, `decoder.*`, `pred`) is not part of the encoder and is dropped by the loader.
//! Prefixes `module.` (DistributedDataParallel) are removed first.

use edge::format::{Role, TensorId};

/// A weight layout [`place`] recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layout {
    /// timm's names: the canonical ones.
    Timm,
    /// facebookresearch/ConvNeXt-V2 `convnextv2.py` (fine-tuned and released checkpoints).
    Official,
    /// facebookresearch/ConvNeXt-V2 FCMAE pretraining: the sparse encoder under `encoder.`.
    FcmaePretraining,
    /// Hugging Face `transformers` `ConvNextV2Model` / `ConvNextV2ForImageClassification`.
    HuggingFace,
}

impl Layout {
    /// Every layout, for messages.
    pub const ALL: [Layout; 4] = [
        Layout::Timm,
        Layout::Official,
        Layout::FcmaePretraining,
        Layout::HuggingFace,
    ];

    /// The layout's name and two of its keys, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Layout::Timm => "timm (stem.0.weight, stages.0.blocks.0.conv_dw.weight)",
            Layout::Official => {
                "official ConvNeXt-V2 (downsample_layers.0.0.weight, stages.0.0.dwconv.weight)"
            }
            Layout::FcmaePretraining => {
                "official FCMAE pretraining checkpoint (encoder.stages.0.0.dwconv.kernel, decoder.0.*)"
            }
            Layout::HuggingFace => {
                "Hugging Face transformers (convnextv2.embeddings.patch_embeddings.weight, convnextv2.encoder.stages.0.layers.0.dwconv.weight)"
            }
        }
    }
}

/// How a stored tensor's values become the canonical tensor's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relayout {
    /// Same values in the same order (a shape of 1s added or removed at most).
    Same,
    /// A MinkowskiEngine convolution kernel `[k², in, out]` → `[out, in, k, k]`.
    MinkowskiConv,
    /// A MinkowskiEngine depthwise kernel `[k², C]` → `[C, 1, k, k]`.
    MinkowskiDepthwise,
}

/// Where a stored key goes: its canonical (timm) name, the layout it was written in, and how
/// its values are rearranged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The canonical (timm) name.
    pub name: String,
    /// The layout the key was recognised in.
    pub layout: Layout,
    /// What [`relayout`] does to the values.
    pub relayout: Relayout,
}

/// The canonical place of a stored key, or `None` when no known layout has such a tensor (the
/// FCMAE decoder side included: see [`is_fcmae_decoder`]).
pub fn place(key: &str) -> Option<Placed> {
    let k = key.strip_prefix("module.").unwrap_or(key);
    let placed = |name: String, layout, relayout| {
        tensor_id(&name).is_some().then_some(Placed {
            name,
            layout,
            relayout,
        })
    };
    if let Some(hf) = hugging_face(k) {
        return placed(hf, Layout::HuggingFace, Relayout::Same);
    }
    if let Some(enc) = k.strip_prefix("encoder.") {
        // MinkowskiEngine modules wrap torch's: `.ln.weight` is a LayerNorm's, `.linear.` a
        // Linear's; a `.kernel` is a (depthwise) convolution's weight.
        let (official, relayout) = match enc.strip_suffix(".kernel") {
            Some(base) if base.ends_with(".dwconv") => {
                (format!("{base}.weight"), Relayout::MinkowskiDepthwise)
            }
            Some(base) => (format!("{base}.weight"), Relayout::MinkowskiConv),
            None => (
                enc.replace(".ln.", ".").replace(".linear.", "."),
                Relayout::Same,
            ),
        };
        return placed(
            official_to_timm(&official)?,
            Layout::FcmaePretraining,
            relayout,
        );
    }
    if tensor_id(k).is_some() {
        return placed(k.to_string(), Layout::Timm, Relayout::Same);
    }
    placed(official_to_timm(k)?, Layout::Official, Relayout::Same)
}

/// Keys of the FCMAE decoder side (`proj`, `mask_token`, `decoder.*`, `pred`: fcmae.py), which a
/// pretraining checkpoint holds beside the encoder.
pub fn is_fcmae_decoder(key: &str) -> bool {
    let k = key.strip_prefix("module.").unwrap_or(key);
    k == "mask_token"
        || ["decoder.", "proj.", "pred."]
            .iter()
            .any(|p| k.starts_with(p))
}

/// The canonical name of `key` when [`place`] knows it, else `key` without `module.`.
pub fn to_timm(key: &str) -> String {
    match place(key) {
        Some(p) => p.name,
        None => key.strip_prefix("module.").unwrap_or(key).to_string(),
    }
}

/// The canonical tensor from a stored one: shape and values after `relayout` (biases and GRN
/// parameters stored `[1, C]` or `[1,1,1,C]` become `[C]`).
///
/// Errors: a message when a MinkowskiEngine kernel has the wrong rank or a kernel volume that is
/// not a square (`k²`).
pub fn relayout(
    placed: &Placed,
    shape: &[usize],
    data: Vec<f32>,
) -> Result<(Vec<usize>, Vec<f32>), String> {
    let square = |kv: usize| {
        let k = kv.isqrt();
        (k * k == kv && k > 0)
            .then_some(k)
            .ok_or_else(|| format!("kernel volume {kv} is not a square k²"))
    };
    let volume = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if volume != Some(data.len()) {
        return Err(format!(
            "shape {shape:?} does not hold its {} values",
            data.len()
        ));
    }
    match (placed.relayout, shape) {
        (Relayout::Same, _) => {
            let vector = placed.name.ends_with(".bias") || placed.name.contains(".grn.");
            let shape =
                if vector && shape.len() > 1 && shape.iter().filter(|&&d| d != 1).count() <= 1 {
                    vec![data.len()]
                } else {
                    shape.to_vec()
                };
            Ok((shape, data))
        }
        (Relayout::MinkowskiConv, &[kv, cin, cout]) => {
            let k = square(kv)?;
            let mut w = vec![0f32; data.len()];
            for o in 0..cout {
                for i in 0..cin {
                    for y in 0..k {
                        for x in 0..k {
                            w[((o * cin + i) * k + y) * k + x] =
                                data[((x * k + y) * cin + i) * cout + o];
                        }
                    }
                }
            }
            Ok((vec![cout, cin, k, k], w))
        }
        (Relayout::MinkowskiDepthwise, &[kv, c]) => {
            let k = square(kv)?;
            let mut w = vec![0f32; data.len()];
            for ch in 0..c {
                for y in 0..k {
                    for x in 0..k {
                        w[(ch * k + y) * k + x] = data[(x * k + y) * c + ch];
                    }
                }
            }
            Ok((vec![c, 1, k, k], w))
        }
        (r, s) => Err(format!(
            "a MinkowskiEngine {} kernel must be {}, found {s:?}",
            if r == Relayout::MinkowskiDepthwise {
                "depthwise"
            } else {
                "convolution"
            },
            if r == Relayout::MinkowskiDepthwise {
                "[k², C]"
            } else {
                "[k², in, out]"
            }
        )),
    }
}

/// Hugging Face `transformers` ConvNextV2 names → timm's (with or without the `convnextv2.`
/// prefix of `ConvNextV2ForImageClassification`); `None` for any other key.
fn hugging_face(key: &str) -> Option<String> {
    let (k, prefixed) = match key.strip_prefix("convnextv2.") {
        Some(k) => (k, true),
        None => (key, false),
    };
    let parts: Vec<&str> = k.split('.').collect();
    let name = match parts.as_slice() {
        ["embeddings", "patch_embeddings", p] => format!("stem.0.{p}"),
        ["embeddings", "layernorm", p] => format!("stem.1.{p}"),
        ["encoder", "stages", s, "downsampling_layer", j, p] => {
            format!("stages.{s}.downsample.{j}.{p}")
        }
        ["encoder", "stages", s, "layers", b, layer, p] => {
            let layer = match *layer {
                "dwconv" => "conv_dw",
                "layernorm" => "norm",
                "pwconv1" => "mlp.fc1",
                "grn" => "mlp.grn",
                "pwconv2" => "mlp.fc2",
                _ => return None,
            };
            format!("stages.{s}.blocks.{b}.{layer}.{p}")
        }
        ["layernorm", p] => format!("head.norm.{p}"),
        // The classifier sits beside `convnextv2.`, never under it.
        ["classifier", p] if !prefixed => format!("head.fc.{p}"),
        _ => return None,
    };
    Some(name)
}

/// Official facebookresearch/ConvNeXt-V2 names → timm's; `None` when the key is not one.
fn official_to_timm(k: &str) -> Option<String> {
    let parts: Vec<&str> = k.split('.').collect();
    let name = match parts.as_slice() {
        ["downsample_layers", "0", j, rest @ ..] => format!("stem.{j}.{}", rest.join(".")),
        ["downsample_layers", i, j, rest @ ..] => {
            format!("stages.{i}.downsample.{j}.{}", rest.join("."))
        }
        ["stages", s, b, layer, rest @ ..] if b.parse::<u32>().is_ok() => {
            let layer = match *layer {
                "dwconv" => "conv_dw".to_string(),
                "pwconv1" => "mlp.fc1".to_string(),
                "pwconv2" => "mlp.fc2".to_string(),
                "grn" => "mlp.grn".to_string(),
                other => other.to_string(),
            };
            let rest = match rest {
                ["gamma"] if layer == "mlp.grn" => "weight".to_string(),
                ["beta"] if layer == "mlp.grn" => "bias".to_string(),
                r => r.join("."),
            };
            format!("stages.{s}.blocks.{b}.{layer}.{rest}")
        }
        ["norm", p] => format!("head.norm.{p}"),
        ["head", p] if *p == "weight" || *p == "bias" => format!("head.fc.{p}"),
        _ => return None,
    };
    Some(name)
}

fn wb(p: &str, w: Role, b: Role) -> Option<Role> {
    match p {
        "weight" => Some(w),
        "bias" => Some(b),
        _ => None,
    }
}

/// The tensor a timm key names, or `None` if it is not part of the inference model.
pub fn tensor_id(timm: &str) -> Option<TensorId> {
    use Role::*;
    let parts: Vec<&str> = timm.split('.').collect();
    let id = |role, stage: &str, block: &str| -> Option<TensorId> {
        Some(TensorId {
            role,
            stage: stage.parse().ok()?,
            block: block.parse().ok()?,
        })
    };
    match parts.as_slice() {
        ["stem", "0", p] => id(wb(p, StemConvW, StemConvB)?, "0", "0"),
        ["stem", "1", p] => id(wb(p, StemNormW, StemNormB)?, "0", "0"),
        ["stages", s, "downsample", "0", p] => id(wb(p, DownNormW, DownNormB)?, s, "0"),
        ["stages", s, "downsample", "1", p] => id(wb(p, DownConvW, DownConvB)?, s, "0"),
        ["stages", s, "blocks", b, "conv_dw", p] => id(wb(p, DwConvW, DwConvB)?, s, b),
        ["stages", s, "blocks", b, "norm", p] => id(wb(p, NormW, NormB)?, s, b),
        ["stages", s, "blocks", b, "mlp", "fc1", p] => id(wb(p, Fc1W, Fc1B)?, s, b),
        ["stages", s, "blocks", b, "mlp", "grn", p] => id(wb(p, GrnW, GrnB)?, s, b),
        ["stages", s, "blocks", b, "mlp", "fc2", p] => id(wb(p, Fc2W, Fc2B)?, s, b),
        // The head's stage index is filled in by the caller (last stage).
        ["head", "norm", p] => id(wb(p, HeadNormW, HeadNormB)?, "0", "0"),
        ["head", "fc", p] => id(wb(p, HeadFcW, HeadFcB)?, "0", "0"),
        _ => None,
    }
}

/// timm key of a tensor (for messages).
pub fn timm_name(id: TensorId) -> String {
    id.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_names_map_to_timm() {
        let cases = [
            ("downsample_layers.0.0.weight", "stem.0.weight"),
            ("downsample_layers.0.1.bias", "stem.1.bias"),
            (
                "downsample_layers.2.1.weight",
                "stages.2.downsample.1.weight",
            ),
            (
                "stages.1.0.dwconv.weight",
                "stages.1.blocks.0.conv_dw.weight",
            ),
            ("stages.3.1.pwconv2.bias", "stages.3.blocks.1.mlp.fc2.bias"),
            ("stages.0.1.grn.gamma", "stages.0.blocks.1.mlp.grn.weight"),
            ("stages.0.1.grn.beta", "stages.0.blocks.1.mlp.grn.bias"),
            ("norm.weight", "head.norm.weight"),
            ("head.bias", "head.fc.bias"),
            (
                "stages.1.blocks.0.mlp.fc1.weight",
                "stages.1.blocks.0.mlp.fc1.weight",
            ),
            ("head.fc.weight", "head.fc.weight"),
        ];
        for (a, b) in cases {
            assert_eq!(to_timm(a), b, "{a}");
            assert!(tensor_id(b).is_some(), "{b}");
        }
        assert_eq!(tensor_id("decoder.0.weight"), None);
        assert_eq!(tensor_id("stages.x.blocks.0.norm.weight"), None);
        let id = tensor_id("stages.2.blocks.5.mlp.grn.bias").unwrap();
        assert_eq!((id.role, id.stage, id.block), (Role::GrnB, 2, 5));
        assert_eq!(timm_name(id), "stages.2.blocks.5.mlp.grn.bias");
    }

    #[test]
    fn hugging_face_names_map_to_timm() {
        let cases = [
            (
                "convnextv2.embeddings.patch_embeddings.weight",
                "stem.0.weight",
            ),
            ("convnextv2.embeddings.layernorm.bias", "stem.1.bias"),
            (
                "convnextv2.encoder.stages.2.downsampling_layer.1.weight",
                "stages.2.downsample.1.weight",
            ),
            (
                "convnextv2.encoder.stages.1.layers.0.layernorm.weight",
                "stages.1.blocks.0.norm.weight",
            ),
            (
                "convnextv2.encoder.stages.3.layers.1.grn.weight",
                "stages.3.blocks.1.mlp.grn.weight",
            ),
            (
                "convnextv2.encoder.stages.0.layers.1.pwconv2.bias",
                "stages.0.blocks.1.mlp.fc2.bias",
            ),
            ("convnextv2.layernorm.weight", "head.norm.weight"),
            ("classifier.bias", "head.fc.bias"),
            // The bare ConvNextV2Model: no prefix.
            (
                "encoder.stages.0.layers.0.dwconv.weight",
                "stages.0.blocks.0.conv_dw.weight",
            ),
            ("layernorm.bias", "head.norm.bias"),
        ];
        for (a, b) in cases {
            let p = place(a).unwrap_or_else(|| panic!("{a}"));
            assert_eq!((p.name.as_str(), p.layout), (b, Layout::HuggingFace), "{a}");
        }
        assert_eq!(place("convnextv2.classifier.weight"), None);
        assert_eq!(
            place("convnextv2.encoder.stages.0.layers.0.act.weight"),
            None
        );
    }

    #[test]
    fn fcmae_names_map_to_timm_and_the_decoder_side_is_recognised() {
        let cases = [
            (
                "encoder.downsample_layers.0.0.weight",
                "stem.0.weight",
                Relayout::Same,
            ),
            (
                "encoder.downsample_layers.0.1.bias",
                "stem.1.bias",
                Relayout::Same,
            ),
            (
                "encoder.downsample_layers.2.0.ln.weight",
                "stages.2.downsample.0.weight",
                Relayout::Same,
            ),
            (
                "encoder.downsample_layers.2.1.kernel",
                "stages.2.downsample.1.weight",
                Relayout::MinkowskiConv,
            ),
            (
                "encoder.stages.1.0.dwconv.kernel",
                "stages.1.blocks.0.conv_dw.weight",
                Relayout::MinkowskiDepthwise,
            ),
            (
                "encoder.stages.1.0.norm.ln.bias",
                "stages.1.blocks.0.norm.bias",
                Relayout::Same,
            ),
            (
                "encoder.stages.3.1.pwconv1.linear.weight",
                "stages.3.blocks.1.mlp.fc1.weight",
                Relayout::Same,
            ),
            (
                "encoder.stages.0.1.grn.gamma",
                "stages.0.blocks.1.mlp.grn.weight",
                Relayout::Same,
            ),
        ];
        for (a, b, r) in cases {
            let p = place(a).unwrap_or_else(|| panic!("{a}"));
            assert_eq!(
                (p.name.as_str(), p.layout, p.relayout),
                (b, Layout::FcmaePretraining, r),
                "{a}"
            );
        }
        for k in [
            "decoder.0.dwconv.weight",
            "proj.bias",
            "pred.weight",
            "mask_token",
        ] {
            assert!(is_fcmae_decoder(k) && place(k).is_none(), "{k}");
        }
        assert!(!is_fcmae_decoder("encoder.stages.0.0.dwconv.kernel"));
    }

    #[test]
    fn minkowski_kernels_relayout_as_remap_checkpoint_keys() {
        // weight[o][i][y][x] = kernel[x·k + y][i][o] (ConvNeXt-V2 utils.py: permute(2, 1, 0),
        // reshape(out, in, k, k), transpose(3, 2)); kernel values encode their own index.
        let (k, cin, cout) = (2, 3, 5);
        let kernel: Vec<f32> = (0..k * k * cin * cout).map(|v| v as f32).collect();
        let conv = place("encoder.downsample_layers.1.1.kernel").unwrap();
        let (shape, w) = relayout(&conv, &[k * k, cin, cout], kernel).unwrap();
        assert_eq!(shape, [cout, cin, k, k]);
        for (o, i, y, x) in [(0, 0, 0, 1), (4, 2, 1, 0), (3, 1, 1, 1)] {
            let want = ((x * k + y) * cin + i) * cout + o;
            assert_eq!(w[((o * cin + i) * k + y) * k + x], want as f32);
        }
        let dw = place("encoder.stages.0.0.dwconv.kernel").unwrap();
        let (shape, w) = relayout(&dw, &[49, 4], (0..196).map(|v| v as f32).collect()).unwrap();
        assert_eq!(shape, [4, 1, 7, 7]);
        assert_eq!(w[(3 * 7 + 2) * 7 + 5], ((5 * 7 + 2) * 4 + 3) as f32);
        let bias = place("encoder.stages.0.0.dwconv.bias").unwrap();
        assert_eq!(relayout(&bias, &[1, 4], vec![0.0; 4]).unwrap().0, [4]);
        assert!(relayout(&dw, &[48, 4], vec![0.0; 192])
            .unwrap_err()
            .contains("square"));
        assert!(relayout(&conv, &[4, 3], vec![0.0; 12])
            .unwrap_err()
            .contains("[k², in, out]"));
    }
}
