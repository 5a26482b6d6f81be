//! AdamW with the official ConvNeXt V2 parameter groups, its learning-rate schedule, and the EMA
//! of weights.
//!
//! Burn's `ModuleOptimizer` keys its state by `ParamId`, which a checkpoint written as timm-named
//! safetensors does not carry; here the state is keyed by the timm name, so a checkpoint is one
//! safetensors file that PyTorch tools can read and `--resume` restores bit for bit.
//!
//! Groups (official `optim_factory` + `LayerDecayValueAssigner`, type 'single'): a parameter's
//! learning rate is scaled by `layer_decay^(13 − layer_id)` (see [`layer_id`]); 1-D tensors and
//! biases (LayerNorm, GRN, biases) get no weight decay.

use std::collections::HashMap;

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};

use crate::weights::{map_keyed, visit_keyed, KeyedMap, KeyedParam};

/// Layers of the 'single' layer-decay assignment (the official code's `num_layers = 12`).
pub const NUM_LAYERS: usize = 12;

/// The official `get_layer_id_for_convnext` on timm names: stem 0; stages 0–1 → 1–2; stage 2 →
/// 3 + block/3; stage 3 → 12; downsample i → i + 1 (stage 3's: 12); head → 13.
pub fn layer_id(key: &str) -> usize {
    let parts: Vec<&str> = key.split('.').collect();
    match parts.as_slice() {
        ["stem", ..] => 0,
        ["stages", s, "downsample", ..] => match s.parse::<usize>().unwrap_or(0) {
            0 => 0,
            3 => NUM_LAYERS,
            s => s + 1,
        },
        ["stages", s, "blocks", b, ..] => {
            let (s, b) = (
                s.parse::<usize>().unwrap_or(0),
                b.parse::<usize>().unwrap_or(0),
            );
            match s {
                0 | 1 => s + 1,
                2 => (3 + b / 3).min(NUM_LAYERS - 1),
                _ => NUM_LAYERS,
            }
        }
        _ => NUM_LAYERS + 1,
    }
}

/// Whether a parameter is weight-decayed (not 1-D, not a bias).
pub fn decays(key: &str, rank: usize) -> bool {
    rank > 1 && !key.ends_with(".bias")
}

/// Hyperparameters.
#[derive(Clone, Debug)]
pub struct AdamWConfig {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε (the official recipe: 1e-8).
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Layer-wise learning-rate decay (1 = off).
    pub layer_decay: f64,
}

/// The optimizer: hyperparameters, step count and the two moments per parameter.
pub struct AdamW {
    /// Hyperparameters.
    pub config: AdamWConfig,
    /// Steps taken.
    pub step: u64,
    state: HashMap<String, (Tensor<1>, Tensor<1>)>,
}

impl AdamW {
    /// A fresh optimizer.
    pub fn new(config: AdamWConfig) -> Self {
        AdamW {
            config,
            step: 0,
            state: HashMap::new(),
        }
    }

    /// One update of every parameter that has a gradient, at base learning rate `lr`.
    pub fn update<M: Module>(&mut self, lr: f64, model: M, grads: GradientsParams) -> M {
        self.step += 1;
        let mut m = Mapper {
            opt: self,
            grads,
            lr,
        };
        map_keyed(model, &mut m)
    }

    /// The moments as (name, data) for a checkpoint: `adam.m.<key>`, `adam.v.<key>`.
    pub fn state_tensors(&self) -> Vec<(String, TensorData)> {
        let mut keys: Vec<&String> = self.state.keys().collect();
        keys.sort();
        let mut out = Vec::new();
        for k in keys {
            let (m, v) = &self.state[k];
            out.push((format!("adam.m.{k}"), m.to_data()));
            out.push((format!("adam.v.{k}"), v.to_data()));
        }
        out
    }

    /// Restores moments written by [`AdamW::state_tensors`].
    pub fn load_state(
        &mut self,
        step: u64,
        tensors: &HashMap<String, TensorData>,
        device: &burn::tensor::Device,
    ) {
        self.step = step;
        self.state.clear();
        for (name, m) in tensors {
            if let Some(key) = name.strip_prefix("adam.m.") {
                if let Some(v) = tensors.get(&format!("adam.v.{key}")) {
                    self.state.insert(
                        key.to_string(),
                        (
                            Tensor::from_data(m.clone(), device),
                            Tensor::from_data(v.clone(), device),
                        ),
                    );
                }
            }
        }
    }
}

struct Mapper<'a> {
    opt: &'a mut AdamW,
    grads: GradientsParams,
    lr: f64,
}

impl KeyedMap for Mapper<'_> {
    fn map<const D: usize>(&mut self, key: String, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let c = &self.opt.config;
        let shape = tensor.dims();
        let scale = c.layer_decay.powi((NUM_LAYERS + 1 - layer_id(&key)) as i32);
        let lr = self.lr * scale;
        let wd = if decays(&key, D) { c.weight_decay } else { 0.0 };
        let t = self.opt.step as i32;
        let p = tensor.inner().flatten::<1>(0, D - 1);
        let g = grad.flatten::<1>(0, D - 1);
        let (m, v) = match self.opt.state.remove(&key) {
            Some(s) => s,
            None => (g.zeros_like(), g.zeros_like()),
        };
        let m = m.mul_scalar(c.beta1) + g.clone().mul_scalar(1.0 - c.beta1);
        let v = v.mul_scalar(c.beta2) + g.square().mul_scalar(1.0 - c.beta2);
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        // PyTorch's AdamW: p ← p·(1 − lr·wd) − lr · (m/bc1) / (√(v/bc2) + ε).
        let denom = v.clone().div_scalar(bc2).sqrt().add_scalar(c.eps);
        let p = p.mul_scalar(1.0 - lr * wd) - m.clone().div_scalar(bc1).div(denom).mul_scalar(lr);
        self.opt.state.insert(key, (m, v));
        let p: Tensor<D> = p.reshape(shape);
        Param::from_mapped_value(id, Tensor::from_inner(p).require_grad(), mapper)
    }
}

/// The official per-iteration schedule: linear warmup from 0, then cosine to `min_lr`.
pub fn lr_at(iter: u64, total_iters: u64, warmup_iters: u64, base: f64, min_lr: f64) -> f64 {
    if iter < warmup_iters {
        return base * iter as f64 / warmup_iters as f64;
    }
    let span = total_iters.saturating_sub(warmup_iters).max(1);
    let i = (iter - warmup_iters).min(span) as f64;
    min_lr + 0.5 * (base - min_lr) * (1.0 + (std::f64::consts::PI * i / span as f64).cos())
}

/// All float parameters of a model, flattened, by timm key (inner tensors, no autodiff).
pub fn flat_params<M: Module>(model: &M) -> HashMap<String, Tensor<1>> {
    struct Flat(HashMap<String, Tensor<1>>);
    impl KeyedParam for Flat {
        fn param<const D: usize>(&mut self, key: String, param: &Param<Tensor<D>>) {
            let t = param.val();
            let t = if t.is_autodiff() { t.inner() } else { t };
            self.0.insert(key, t.flatten::<1>(0, D - 1));
        }
    }
    let mut v = Flat(HashMap::new());
    visit_keyed(model, &mut v);
    v.0
}

/// `ema ← decay·ema + (1 − decay)·model`, parameter by parameter (the EMA model has no autodiff).
pub fn ema_update<M: Module>(ema: M, model: &impl Module, decay: f64) -> M {
    struct E {
        src: HashMap<String, Tensor<1>>,
        decay: f64,
    }
    impl KeyedMap for E {
        fn map<const D: usize>(
            &mut self,
            key: String,
            param: Param<Tensor<D>>,
        ) -> Param<Tensor<D>> {
            let (id, tensor, mapper) = param.consume();
            let tensor = match self.src.remove(&key) {
                Some(src) => {
                    let shape = tensor.dims();
                    let src: Tensor<D> = src.reshape(shape);
                    tensor.mul_scalar(self.decay) + src.mul_scalar(1.0 - self.decay)
                }
                None => tensor,
            };
            Param::from_mapped_value(id, tensor, mapper)
        }
    }
    map_keyed(
        ema,
        &mut E {
            src: flat_params(model),
            decay,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_ids_follow_the_official_assignment() {
        assert_eq!(layer_id("stem.0.weight"), 0);
        assert_eq!(layer_id("stages.0.blocks.1.conv_dw.weight"), 1);
        assert_eq!(layer_id("stages.1.downsample.1.weight"), 2);
        assert_eq!(layer_id("stages.1.blocks.0.mlp.fc1.weight"), 2);
        assert_eq!(layer_id("stages.2.downsample.0.bias"), 3);
        assert_eq!(layer_id("stages.2.blocks.5.mlp.grn.weight"), 4);
        assert_eq!(layer_id("stages.2.blocks.26.norm.weight"), 11);
        assert_eq!(layer_id("stages.3.downsample.1.weight"), 12);
        assert_eq!(layer_id("stages.3.blocks.1.mlp.fc2.bias"), 12);
        assert_eq!(layer_id("head.fc.weight"), 13);
        assert!(decays("stages.0.blocks.0.mlp.fc1.weight", 2));
        assert!(!decays("stages.0.blocks.0.mlp.fc1.bias", 1));
        assert!(!decays("stages.0.blocks.0.mlp.grn.weight", 1));
    }

    #[test]
    fn schedule_warms_up_then_follows_the_cosine() {
        assert_eq!(lr_at(0, 100, 10, 1.0, 0.0), 0.0);
        assert!((lr_at(5, 100, 10, 1.0, 0.0) - 0.5).abs() < 1e-12);
        assert!((lr_at(10, 100, 10, 1.0, 0.1) - 1.0).abs() < 1e-12);
        assert!((lr_at(55, 100, 10, 1.0, 0.0) - 0.5).abs() < 1e-12);
        assert!((lr_at(100, 100, 10, 1.0, 0.1) - 0.1).abs() < 1e-12);
    }
}
