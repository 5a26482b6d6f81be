//! Moving weights between the Burn model and timm-named state dicts.
//!
//! A module path (`stages.1.blocks.0.mlp.fc1.weight`) is a timm key after [`timm_key`]; only the
//! stem's and downsamplers' numbered children differ. Layouts differ for the pointwise layers
//! (timm `[out, in, 1, 1]`, classifier `[out, in]`; Burn `[in, out]`) and are transposed here.
//! Official-checkpoint names (`downsample_layers.*`, `pwconv1`, `grn.gamma`, ...) are rewritten to
//! timm's by `quant::convert::load_state_dict`, which also widens f16/bf16.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};
use quant::convert::{StateDict, Tensor as SdTensor};

use crate::model::ConvNeXtV2;

/// The timm key of a module path.
pub fn timm_key(path: &[String]) -> String {
    let p = path.join(".");
    let p = p
        .replace("stem.conv.", "stem.0.")
        .replace("stem.norm.", "stem.1.");
    p.replace(".downsample.norm.", ".downsample.0.")
        .replace(".downsample.conv.", ".downsample.1.")
}

/// Whether a timm key is stored transposed (`[in, out]`) in the Burn model.
fn transposed(key: &str) -> bool {
    key.ends_with("mlp.fc1.weight") || key.ends_with("mlp.fc2.weight") || key == "head.fc.weight"
}

/// Which parameters keep their initial values instead of loading from a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fresh {
    /// None: every tensor comes from the file.
    Nothing,
    /// The classifier (`head.fc.*`): another class count.
    Classifier,
    /// The whole head (`head.*`): FCMAE encoder exports have neither head norm nor classifier.
    Head,
}

impl Fresh {
    /// Whether `key` stays as initialized.
    pub fn keeps(self, key: &str) -> bool {
        match self {
            Fresh::Nothing => false,
            Fresh::Classifier => key.starts_with("head.fc."),
            Fresh::Head => key.starts_with("head."),
        }
    }
}

/// Why weights do not fit the model. Every problem is listed, none is fixed silently.
#[derive(Debug)]
pub enum WeightsError {
    /// Reading the state dict failed.
    Read(quant::convert::ConvertError),
    /// Tensors missing from the file, mis-shaped, or present but unused.
    Mismatch {
        /// Keys the model needs that the file lacks.
        missing: Vec<String>,
        /// (key, model shape, file shape).
        misshaped: Vec<(String, Vec<usize>, Vec<usize>)>,
        /// Keys in the file that the model does not use.
        unused: Vec<String>,
    },
    /// Tensors holding NaN or infinities (a diverged run): every one, by name.
    Values(quant::values::BadValues),
    /// Writing failed.
    Write(String),
}

impl fmt::Display for WeightsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightsError::Read(e) => write!(f, "{e}"),
            WeightsError::Mismatch {
                missing,
                misshaped,
                unused,
            } => {
                writeln!(
                    f,
                    "weights do not fit the model ({} missing, {} mis-shaped, {} unused):",
                    missing.len(),
                    misshaped.len(),
                    unused.len()
                )?;
                for m in missing.iter().take(20) {
                    writeln!(f, "  missing:    {m}")?;
                }
                for (k, want, got) in misshaped.iter().take(20) {
                    writeln!(f, "  mis-shaped: {k}: model {want:?}, file {got:?}")?;
                }
                for u in unused.iter().take(20) {
                    writeln!(f, "  unused:     {u}")?;
                }
                Ok(())
            }
            WeightsError::Values(v) => write!(f, "{v}"),
            WeightsError::Write(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for WeightsError {}

/// What to do with each float parameter of a model, given its timm key ([`visit_keyed`]).
pub trait KeyedParam {
    fn param<const D: usize>(&mut self, key: String, param: &Param<Tensor<D>>);
}

/// Walks `model`'s float parameters in module order, handing each to `f` with its timm key
/// (the module path tracked once, here, for every reader of parameters).
pub fn visit_keyed<M: Module>(model: &M, f: &mut impl KeyedParam) {
    struct Walk<'f, F> {
        path: Vec<String>,
        f: &'f mut F,
    }
    impl<F: KeyedParam> ModuleVisitor for Walk<'_, F> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.f.param(timm_key(&self.path), param);
        }
    }
    model.visit(&mut Walk {
        path: Vec::new(),
        f,
    });
}

/// What to do with each float parameter when mapping a model, given its timm key ([`map_keyed`]).
pub trait KeyedMap {
    fn map<const D: usize>(&mut self, key: String, param: Param<Tensor<D>>) -> Param<Tensor<D>>;
}

/// Maps `model`'s float parameters in module order through `f`, each with its timm key.
pub fn map_keyed<M: Module>(model: M, f: &mut impl KeyedMap) -> M {
    struct Walk<'f, F> {
        path: Vec<String>,
        f: &'f mut F,
    }
    impl<F: KeyedMap> ModuleMapper for Walk<'_, F> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            self.f.map(timm_key(&self.path), param)
        }
    }
    model.map(&mut Walk {
        path: Vec::new(),
        f,
    })
}

/// Every float parameter as (timm key, Burn-layout data), in module order.
pub fn burn_tensors<M: Module>(model: &M) -> Vec<(String, TensorData)> {
    struct Collect(Vec<(String, TensorData)>);
    impl KeyedParam for Collect {
        fn param<const D: usize>(&mut self, key: String, param: &Param<Tensor<D>>) {
            self.0.push((key, param.val().into_data()));
        }
    }
    let mut c = Collect(Vec::new());
    visit_keyed(model, &mut c);
    c.0
}

/// Every float parameter's (timm key, shape), without reading the values.
pub fn param_shapes<M: Module>(model: &M) -> Vec<(String, Vec<usize>)> {
    struct Shapes(Vec<(String, Vec<usize>)>);
    impl KeyedParam for Shapes {
        fn param<const D: usize>(&mut self, key: String, param: &Param<Tensor<D>>) {
            self.0.push((key, param.val().dims().to_vec()));
        }
    }
    let mut v = Shapes(Vec::new());
    visit_keyed(model, &mut v);
    v.0
}

/// Replaces parameters by key with Burn-layout data from `get`; keys `get` returns `None` for
/// stay as they are. Shapes must match exactly (checked by the caller's `get`).
pub fn replace_tensors<M: Module>(
    model: M,
    get: &mut dyn FnMut(&str, &[usize]) -> Option<TensorData>,
) -> M {
    struct Replace<'a> {
        get: &'a mut dyn FnMut(&str, &[usize]) -> Option<TensorData>,
    }
    impl KeyedMap for Replace<'_> {
        fn map<const D: usize>(
            &mut self,
            key: String,
            param: Param<Tensor<D>>,
        ) -> Param<Tensor<D>> {
            let (id, tensor, mapper) = param.consume();
            let shape = tensor.dims();
            let tensor = match (self.get)(&key, &shape) {
                Some(data) => {
                    let requires_grad = tensor.is_require_grad();
                    let t = Tensor::<D>::from_data(data, &tensor.device());
                    if requires_grad {
                        t.require_grad()
                    } else {
                        t
                    }
                }
                None => tensor,
            };
            Param::from_mapped_value(id, tensor, mapper)
        }
    }
    map_keyed(model, &mut Replace { get })
}

fn squeeze(shape: &[usize]) -> Vec<usize> {
    shape.iter().copied().filter(|&d| d != 1).collect()
}

fn transpose2(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// One Burn-layout tensor in timm's layout.
pub fn burn_to_timm(key: &str, data: &TensorData) -> SdTensor {
    let shape = data.shape().to_vec();
    let v: Vec<f32> = data.try_to_vec::<f32>().expect("parameters are f32");
    if transposed(key) && shape.len() == 2 {
        let (cin, cout) = (shape[0], shape[1]);
        let t = transpose2(&v, cin, cout);
        let shape = if key == "head.fc.weight" {
            vec![cout, cin]
        } else {
            vec![cout, cin, 1, 1]
        };
        SdTensor { shape, data: t }
    } else {
        SdTensor { shape, data: v }
    }
}

/// The model's parameters as a timm state dict (timm layouts; `[out, in, 1, 1]` pointwise).
pub fn to_timm<M: Module>(model: &M) -> StateDict {
    burn_tensors(model)
        .into_iter()
        .map(|(key, data)| {
            let t = burn_to_timm(&key, &data);
            (key, t)
        })
        .collect()
}

/// What [`load_timm`] did.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Tensors loaded.
    pub loaded: usize,
    /// Keys kept at their initial values because `keep_head` said so (classifier mismatch).
    pub kept: Vec<String>,
}

/// Loads a timm-named state dict (official names already rewritten) into `model`.
///
/// Every model tensor must be present with a matching shape (size-1 dimensions aside, so
/// official `[1,1,1,C]` GRN and `[out,in]` pointwise weights load too), and every file tensor must
/// be used. Parameters `fresh` names are not loaded (absent from the file, or another class
/// count) and stay as initialized.
pub fn load_timm(
    model: ConvNeXtV2,
    sd: &StateDict,
    fresh: Fresh,
) -> Result<(ConvNeXtV2, LoadReport), WeightsError> {
    let mut missing = Vec::new();
    let mut misshaped = Vec::new();
    let mut used = BTreeSet::new();
    let mut report = LoadReport::default();
    // Validate everything before changing anything.
    for (key, want) in param_shapes(&model) {
        if fresh.keeps(&key) {
            used.insert(key.clone());
            report.kept.push(key);
            continue;
        }
        let Some(t) = sd.get(&key) else {
            missing.push(key);
            continue;
        };
        used.insert(key.clone());
        let mut want_timm = want;
        if transposed(&key) {
            want_timm.reverse();
        }
        if squeeze(&t.shape) != squeeze(&want_timm) {
            misshaped.push((key, want_timm, t.shape.clone()));
        }
    }
    let unused: Vec<String> = sd
        .keys()
        .filter(|k| !(used.contains(*k) || fresh.keeps(k)))
        .cloned()
        .collect();
    if !missing.is_empty() || !misshaped.is_empty() || !unused.is_empty() {
        return Err(WeightsError::Mismatch {
            missing,
            misshaped,
            unused,
        });
    }
    // Training checkpoints do not pass through `load_state_dict`'s check: every tensor loaded
    // is checked here, so a diverged run is named before step 0, not as a NaN loss.
    quant::values::check_finite(
        sd.iter()
            .filter(|(k, _)| !fresh.keeps(k))
            .map(|(k, t)| (k.as_str(), &t.data[..])),
    )
    .map_err(WeightsError::Values)?;
    let model = replace_tensors(model, &mut |key, shape| {
        if fresh.keeps(key) {
            return None;
        }
        let t = &sd[key];
        report.loaded += 1;
        let v = if transposed(key) {
            transpose2(&t.data, shape[1], shape[0])
        } else {
            t.data.clone()
        };
        Some(TensorData::new(v, shape.to_vec()))
    });
    Ok((model, report))
}

/// Writes a state dict as f32 safetensors, atomically (temp file + rename), with metadata.
pub fn write_safetensors(
    path: &Path,
    sd: &StateDict,
    metadata: Option<BTreeMap<String, String>>,
) -> Result<(), WeightsError> {
    let bytes_per: Vec<(String, Vec<usize>, Vec<u8>)> = sd
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                t.shape.clone(),
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let mut views = Vec::with_capacity(bytes_per.len());
    for (k, shape, bytes) in &bytes_per {
        let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
            .map_err(|e| WeightsError::Write(format!("{k}: {e}")))?;
        views.push((k.clone(), v));
    }
    let meta = metadata.map(|m| m.into_iter().collect());
    let bytes = safetensors::serialize(views, meta)
        .map_err(|e| WeightsError::Write(format!("serializing safetensors: {e}")))?;
    quant::convert::write_atomic(path, &bytes)
        .map_err(|e| WeightsError::Write(format!("{}: {e}", path.display())))
}
