//! Key names: official facebookresearch/ConvNeXt-V2 → timm, and timm → [`TensorId`].

use edge::format::{Role, TensorId};

/// Rewrites an official-checkpoint key into timm's name; timm keys pass through unchanged.
pub fn to_timm(key: &str) -> String {
    let k = key.strip_prefix("module.").unwrap_or(key);
    let parts: Vec<&str> = k.split('.').collect();
    match parts.as_slice() {
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
        _ => k.to_string(),
    }
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
}
