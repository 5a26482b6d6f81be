//! `train predict` and `train export`: weights in, logits or timm-named safetensors out.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};

use crate::checkpoint::Checkpoint;
use crate::model::{Config, ConvNeXtV2, Size};
use crate::weights;

/// Reads weights as a timm state dict: a training checkpoint (its `model` group, or `ema` with
/// [`quant::Entry::Ema`]), a PyTorch checkpoint (`model`, else `model_ema` with `--ema`, or any
/// named entry, saying so on stderr when it holds several), or safetensors and `train export`
/// files in any layout `quant` knows (official, FCMAE, Hugging Face names rewritten, f16/bf16
/// widened; an entry is an error there: they hold one set of weights).
pub fn read_weights(
    path: &Path,
    entry: &quant::Entry,
) -> Result<quant::convert::StateDict, String> {
    if !Checkpoint::is_checkpoint(path) {
        let (sd, note) =
            quant::load_state_dict_entry(path, entry.clone()).map_err(|e| e.to_string())?;
        note.print();
        return Ok(sd);
    }
    checkpoint_weights(
        &Checkpoint::load(path).map_err(|e| e.to_string())?,
        path,
        entry,
    )
}

/// A loaded training checkpoint's `model` (or `ema`) weights in timm names; an error naming
/// `path` when it holds none (an `--ema 0` run has no EMA weights) or when `entry` names another
/// group.
pub fn checkpoint_weights(
    ck: &Checkpoint,
    path: &Path,
    entry: &quant::Entry,
) -> Result<quant::convert::StateDict, String> {
    let group = match entry {
        quant::Entry::Default => "model",
        quant::Entry::Ema => "ema",
        quant::Entry::Named(n) if n == "model" || n == "ema" => n.as_str(),
        quant::Entry::Named(n) => {
            return Err(format!(
                "{}: --state {n}: a training checkpoint holds `model` and (with --ema > 0) `ema` weights",
                path.display()
            ))
        }
    };
    let sd = ck.timm_group(group);
    if sd.is_empty() {
        return Err(format!(
            "{}: this checkpoint holds no {} weights",
            path.display(),
            if group == "ema" { "EMA" } else { "model" }
        ));
    }
    Ok(sd)
}

/// Loads a model for inference from [`read_weights`]. Size comes from the caller; classes from
/// the file.
pub fn load_model(
    path: &Path,
    size: &Size,
    entry: &quant::Entry,
    device: &Device,
) -> Result<ConvNeXtV2, String> {
    model_from_timm(&read_weights(path, entry)?, size, device)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A model of `size` holding a timm state dict (classes from its classifier).
pub fn model_from_timm(
    sd: &quant::convert::StateDict,
    size: &Size,
    device: &Device,
) -> Result<ConvNeXtV2, String> {
    let classes = sd
        .get("head.fc.bias")
        .map(|t| t.data.len())
        .ok_or_else(|| quant::ConvertError::NoClassifier.to_string())?;
    let config = Config {
        size: size.clone(),
        num_classes: classes,
        drop_path: 0.0,
        grn: true,
    };
    let model = ConvNeXtV2::new(&config, 0, device);
    weights::load_timm(model, sd, weights::Fresh::Nothing)
        .map(|(m, _)| m)
        .map_err(|e| e.to_string())
}

/// Reads an input: a raw little-endian f32 NCHW file `[1, 3, s, s]` (already normalized), or an
/// image (resized so the short side is s/0.875, centre-cropped to s, ImageNet-normalized).
pub fn read_input(path: &Path, size: u32) -> Result<(Vec<f32>, usize), String> {
    let is_bin = path.extension().is_some_and(|e| e == "bin");
    if is_bin {
        let b = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if b.len() % 12 != 0 {
            return Err(format!(
                "{}: {} bytes is not 3 planes of f32",
                path.display(),
                b.len()
            ));
        }
        let n = b.len() / 12;
        let s = (n as f64).sqrt().round() as usize;
        if s * s != n || s < 32 {
            return Err(format!(
                "{}: {} values per channel is not a square image of at least 32×32",
                path.display(),
                n
            ));
        }
        let v: Vec<f32> = b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if v.iter().any(|x| !x.is_finite()) {
            return Err(format!("{}: input holds NaN or infinity", path.display()));
        }
        return Ok((v, s));
    }
    let rgb = quant::data::load_center_crop(path, size as usize, size as usize, 0.875)?;
    let img =
        image::RgbImage::from_raw(size, size, rgb).ok_or("decoded image has the wrong size")?;
    Ok((crate::data::normalize(&img), size as usize))
}

/// Logits `[classes]` of one input `[1, 3, s, s]` (normalized, NCHW).
///
/// Errors when a logit is NaN or infinite (finite weights and input whose activations overflow
/// f32): a prediction is never made from them.
pub fn predict(
    model: &ConvNeXtV2,
    input: Vec<f32>,
    s: usize,
    device: &Device,
) -> Result<Vec<f32>, String> {
    let x = Tensor::<4>::from_data(TensorData::new(input, [1, 3, s, s]), device);
    let logits = model
        .forward(x, None)
        .into_data()
        .try_to_vec::<f32>()
        .expect("logits are f32");
    match logits.iter().position(|v| !v.is_finite()) {
        None => Ok(logits),
        Some(i) => Err(format!(
            "logit {i} is {} ({} of {} logits are not finite): the weights are finite, but \
             the activations overflow f32 — the weights are far from any trained model",
            logits[i],
            logits.iter().filter(|v| !v.is_finite()).count(),
            logits.len()
        )),
    }
}

/// Writes timm-named safetensors and a JSON description beside it (`<out>.json`);
/// `encoder_only` leaves out the head.
pub fn export(
    model: &ConvNeXtV2,
    size: &Size,
    input_size: u32,
    classes: Option<Vec<String>>,
    out: &Path,
    encoder_only: bool,
) -> Result<(), String> {
    let mut sd = weights::to_timm(model);
    if encoder_only {
        // An FCMAE encoder never trains its head (norm or classifier): timm's `.fcmae` layout.
        sd.retain(|k, _| !k.starts_with("head."));
    }
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    meta.insert(
        "architecture".to_string(),
        format!("convnextv2_{}", size.name),
    );
    weights::write_safetensors(out, &sd, Some(meta)).map_err(|e| e.to_string())?;
    let desc = serde_json::json!({
        "architecture": format!("convnextv2_{}", size.name),
        "size": size.name,
        "depths": size.depths,
        "dims": size.dims,
        "num_classes": if encoder_only { 0 } else { model.num_classes() },
        "classes": classes,
        "input_size": [3, input_size, input_size],
        "mean": crate::data::MEAN,
        "std": crate::data::STD,
        "interpolation": "bicubic",
        "crop_pct": 0.875,
        "key_names": "timm",
    });
    let json_path = out.with_extension("json");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&desc).expect("json"),
    )
    .map_err(|e| format!("{}: {e}", json_path.display()))
}

#[cfg(test)]
mod tests {
    use super::read_weights;
    use quant::Entry;
    use std::path::PathBuf;

    fn fixture(rel: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures")
            .join(rel)
    }

    #[test]
    fn ema_picks_model_ema_of_a_pytorch_checkpoint_and_is_an_error_where_there_is_none() {
        // tools/make_pth_ema_fixture.py: model_ema = model with head.bias + 0.5.
        let w = fixture("extra/custom_official_ema.pth");
        let model = read_weights(&w, &Entry::Default).unwrap();
        let ema = read_weights(&w, &Entry::Ema).unwrap();
        let named = read_weights(&w, &Entry::Named("model_ema".into())).unwrap();
        assert_eq!(named["head.fc.bias"].data, ema["head.fc.bias"].data);
        let e = read_weights(&w, &Entry::Named("nope".into())).unwrap_err();
        assert!(e.contains("no `nope`") && e.contains("`model_ema`"), "{e}");
        let (m, e) = (&model["head.fc.bias"].data, &ema["head.fc.bias"].data);
        assert!(m.iter().zip(e).all(|(a, b)| (b - a - 0.5).abs() < 1e-6));
        assert_eq!(model["stem.0.weight"].data, ema["stem.0.weight"].data);
        let e = read_weights(
            &fixture("extra/custom_official_f32.safetensors"),
            &Entry::Ema,
        )
        .unwrap_err();
        assert!(e.contains("single state dict"), "{e}");
    }
}
