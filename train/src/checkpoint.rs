//! Training checkpoints: one safetensors file per run directory, written atomically (temp file +
//! rename), holding the model (`model.<timm key>`), the EMA (`ema.<key>`), AdamW's moments
//! (`adam.m.<key>`, `adam.v.<key>`), all in the Burn layouts, and the run state as JSON in the
//! safetensors metadata (`train_state`). Random draws derive from (seed, epoch, step), so the RNG
//! needs no state of its own.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::tensor::TensorData;
use safetensors::SafeTensors;

/// File name inside the run directory.
pub const FILE: &str = "checkpoint.safetensors";

/// Why a checkpoint could not be read or written.
#[derive(Debug)]
pub struct CheckpointError(pub String);

impl std::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CheckpointError {}

/// A checkpoint in memory.
pub struct Checkpoint {
    /// Tensors by full name (`model.…`, `ema.…`, `adam.m.…`, `adam.v.…`).
    pub tensors: HashMap<String, TensorData>,
    /// The run state (epoch, step, configuration, ...).
    pub state: serde_json::Value,
}

impl Checkpoint {
    /// Tensors under `prefix.` with the prefix removed.
    pub fn group(&self, prefix: &str) -> HashMap<String, TensorData> {
        let p = format!("{prefix}.");
        self.tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(&p).map(|k| (k.to_string(), v.clone())))
            .collect()
    }

    /// Writes atomically.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let mut names: Vec<&String> = self.tensors.keys().collect();
        names.sort();
        let mut bytes = Vec::with_capacity(names.len());
        for n in &names {
            let t = &self.tensors[*n];
            let v: Vec<f32> = t
                .try_to_vec::<f32>()
                .map_err(|e| CheckpointError(format!("tensor {n}: {e:?}")))?;
            bytes.push(v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
        }
        let mut views = Vec::with_capacity(names.len());
        for (n, b) in names.iter().zip(&bytes) {
            let v = safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                self.tensors[*n].shape().to_vec(),
                b,
            )
            .map_err(|e| CheckpointError(format!("tensor {n}: {e}")))?;
            views.push((n.to_string(), v));
        }
        let meta: std::collections::HashMap<String, String> =
            [("train_state".to_string(), self.state.to_string())].into();
        let data = safetensors::serialize(views, Some(meta))
            .map_err(|e| CheckpointError(format!("serializing checkpoint: {e}")))?;
        quant::convert::write_atomic(path, &data)
            .map_err(|e| CheckpointError(format!("writing checkpoint: {e}")))
    }

    /// Reads a checkpoint written by [`Checkpoint::save`].
    pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
        let bytes =
            std::fs::read(path).map_err(|e| CheckpointError(format!("{}: {e}", path.display())))?;
        let bad = |m: String| CheckpointError(format!("{}: not a checkpoint: {m}", path.display()));
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let state = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("train_state"))
            .ok_or_else(|| bad("no train_state metadata".into()))?;
        let state: serde_json::Value =
            serde_json::from_str(state).map_err(|e| bad(e.to_string()))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(bad(format!("tensor {name} is {:?}, not f32", view.dtype())));
            }
            let v: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            tensors.insert(name, TensorData::new(v, view.shape().to_vec()));
        }
        Ok(Checkpoint { tensors, state })
    }

    /// Whether a safetensors file is a training checkpoint (has `train_state` metadata). Reads
    /// only the header, not the tensors.
    pub fn is_checkpoint(path: &Path) -> bool {
        use std::io::Read;
        let header = || -> Option<serde_json::Value> {
            let mut f = std::fs::File::open(path).ok()?;
            let mut len = [0u8; 8];
            f.read_exact(&mut len).ok()?;
            let n = usize::try_from(u64::from_le_bytes(len)).ok()?;
            // safetensors caps its header at 100 MB.
            if n > 100_000_000 {
                return None;
            }
            let mut h = vec![0u8; n];
            f.read_exact(&mut h).ok()?;
            serde_json::from_slice(&h).ok()
        };
        header().is_some_and(|h| h["__metadata__"]["train_state"].is_string())
    }

    /// The tensors of group `model` or `ema` as a timm state dict (timm layouts).
    pub fn timm_group(&self, prefix: &str) -> quant::convert::StateDict {
        self.group(prefix)
            .iter()
            .map(|(k, v)| (k.clone(), crate::weights::burn_to_timm(k, v)))
            .collect()
    }
}

/// Burn-layout tensors under a prefix, for [`Checkpoint::tensors`].
pub fn prefixed(prefix: &str, t: Vec<(String, TensorData)>) -> BTreeMap<String, TensorData> {
    t.into_iter()
        .map(|(k, v)| (format!("{prefix}.{k}"), v))
        .collect()
}
