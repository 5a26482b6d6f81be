//! ConvNeXt V2 in Burn, computed exactly as timm's `convnextv2_*` (see `shared/oracle/README.md`):
//! stem conv 4×4/s4 → LayerNorm; stages of blocks `x + drop_path(fc2(GRN(GELU(fc1(LN(dw7×7(x)))))))`,
//! stages 1.. start with LayerNorm → conv 2×2/s2; head: spatial mean → LayerNorm → Linear.
//!
//! Parameters are plain [`Param`]s in timm's layouts except the two pointwise convolutions and the
//! classifier, which are stored `[in, out]` as Burn's `linear` wants them (transposed on import
//! and export, see [`crate::weights`]). Field names follow timm's keys so that a module path is a
//! timm name after [`crate::weights::timm_key`].

use burn::module::{Module, Param};
use burn::tensor::module::{conv2d, linear};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};

use crate::kernels::{self, gelu};
use crate::rng::SplitMix64;

/// LayerNorm and GRN epsilon (timm's).
pub const EPS: f64 = 1e-6;

/// Below this, GRN's spatial sum of squares is clamped before the square root: the gradient of
/// √s is infinite at s = 0 (a channel that is exactly zero everywhere, e.g. under an FCMAE mask).
/// PyTorch's `norm` backward returns 0 there; the clamp changes the forward value by at most 1e-15.
pub const GRN_SUMSQ_FLOOR: f32 = 1e-30;

/// A ConvNeXt V2 size: blocks and channels per stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Size {
    /// Name (`atto`, ...).
    pub name: &'static str,
    /// Blocks per stage.
    pub depths: [usize; 4],
    /// Channels per stage.
    pub dims: [usize; 4],
}

impl Size {
    /// A named size, from the same table as the edge runtime (`edge::arch::NAMED`).
    pub fn named(name: &str) -> Option<Size> {
        edge::arch::NAMED
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(n, d, c)| Size {
                name: n,
                depths: *d,
                dims: *c,
            })
    }

    /// The names [`Size::named`] knows.
    pub fn names() -> Vec<&'static str> {
        edge::arch::NAMED.iter().map(|n| n.0).collect()
    }
}

/// Everything that shapes a model.
#[derive(Clone, Debug)]
pub struct Config {
    /// Blocks and channels.
    pub size: Size,
    /// Classifier outputs.
    pub num_classes: usize,
    /// Largest stochastic-depth rate (the last block's; rates grow linearly from 0).
    pub drop_path: f64,
    /// GRN in every block. `false` is the ablation (`--no-grn`): the MLP is ConvNeXt V1's, and
    /// GRN's γ, β stay zero and untrained, so the exported weights describe the same function.
    pub grn: bool,
}

/// A bias-carrying 2-D convolution with timm's weight layout `[out, in/groups, k, k]`.
#[derive(Module, Debug)]
pub struct Conv {
    /// `[out, in/groups, k, k]`.
    pub weight: Param<Tensor<4>>,
    /// `[out]`.
    pub bias: Param<Tensor<1>>,
    stride: usize,
    padding: usize,
    groups: usize,
}

impl Conv {
    /// `[cin, cout, k]`: channels in and out, kernel side.
    fn new(
        [cin, cout, k]: [usize; 3],
        stride: usize,
        padding: usize,
        groups: usize,
        rng: &mut SplitMix64,
        device: &Device,
    ) -> Self {
        Conv {
            weight: param(trunc_normal(rng, [cout, cin / groups, k, k], 0.02), device),
            bias: param(TensorData::zeros::<f32, _>([cout]), device),
            stride,
            padding,
            groups,
        }
    }

    /// NCHW in, NCHW out.
    ///
    /// The patchify convolutions (stem 4×4/s4, downsampling 2×2/s2: kernel = stride, no padding)
    /// are a reshape to patches and one matrix product, an exact rewrite of the same sum (tested
    /// against `conv2d`) whose gradients are plain matmuls, not the backends' general
    /// convolution backward. The blocks' depthwise 7×7 runs as [`kernels::dwconv7x7`] (direct
    /// loops with their own gradients on flex, `conv2d` elsewhere).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [cout, cin_per_group, k, _] = self.weight.dims();
        if self.groups == 1 && self.stride == k && self.padding == 0 {
            return self.forward_patchify(x);
        }
        let depthwise = cin_per_group == 1 && self.groups == cout;
        if depthwise
            && k == kernels::dwconv::K
            && self.stride == 1
            && self.padding == kernels::dwconv::PAD
        {
            return kernels::dwconv7x7(x, self.weight.val(), self.bias.val());
        }
        self.forward_conv2d(x)
    }

    /// Burn's `conv2d` (the reference for the patchify rewrite).
    pub fn forward_conv2d(&self, x: Tensor<4>) -> Tensor<4> {
        conv2d(
            x,
            self.weight.val(),
            Some(self.bias.val()),
            ConvOptions::new([self.stride; 2], [self.padding; 2], [1, 1], self.groups),
        )
    }

    fn forward_patchify(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, cin, h, w] = x.dims();
        let [cout, _, k, _] = self.weight.dims();
        let (oh, ow) = (h / k, w / k);
        // Windows beyond the last whole one are dropped, as conv2d does.
        let x = if oh * k != h || ow * k != w {
            x.slice([0..n, 0..cin, 0..oh * k, 0..ow * k])
        } else {
            x
        };
        let patches = x
            .reshape([n, cin, oh, k, ow, k])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([n * oh * ow, cin * k * k]);
        let wm = self.weight.val().reshape([cout, cin * k * k]).transpose();
        let y = patches.matmul(wm) + self.bias.val().reshape([1, cout]);
        y.reshape([n, oh, ow, cout]).permute([0, 3, 1, 2])
    }
}

/// LayerNorm over the last dimension (timm: `weight`, `bias`; eps 1e-6 inside the square root).
#[derive(Module, Debug)]
pub struct Norm {
    /// γ `[C]`.
    pub weight: Param<Tensor<1>>,
    /// β `[C]`.
    pub bias: Param<Tensor<1>>,
}

impl Norm {
    fn new(c: usize, device: &Device) -> Self {
        Norm {
            weight: param(TensorData::ones::<f32, _>([c]), device),
            bias: param(TensorData::zeros::<f32, _>([c]), device),
        }
    }

    /// Normalizes the last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        kernels::layer_norm(x, self.weight.val(), self.bias.val(), EPS)
    }

    /// Normalizes the channels of an NCHW tensor (timm's `LayerNorm2d`).
    pub fn forward_nchw(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward(x.permute([0, 2, 3, 1])).permute([0, 3, 1, 2])
    }
}

/// A pointwise (1×1) layer on channels-last data, weight stored `[in, out]` (timm: `[out, in, 1, 1]`).
#[derive(Module, Debug)]
pub struct Pointwise {
    /// `[in, out]`.
    pub weight: Param<Tensor<2>>,
    /// `[out]`.
    pub bias: Param<Tensor<1>>,
}

impl Pointwise {
    /// Trunc-normal(std) weight, zero bias.
    pub fn new(cin: usize, cout: usize, std: f64, rng: &mut SplitMix64, device: &Device) -> Self {
        Pointwise {
            weight: param(trunc_normal(rng, [cin, cout], std), device),
            bias: param(TensorData::zeros::<f32, _>([cout]), device),
        }
    }

    /// `x · W + b` over the last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        linear(x, self.weight.val(), Some(self.bias.val()))
    }
}

/// Global response normalization (timm `GlobalResponseNorm`, channels last):
/// `g = ‖x‖₂ over H,W` per sample and channel, `n = g / (mean_c g + 1e-6)`, `y = x + w·(x·n) + b`.
#[derive(Module, Debug)]
pub struct Grn {
    /// γ `[C]` (timm initializes it to zero: the block starts as a plain MLP).
    pub weight: Param<Tensor<1>>,
    /// β `[C]`.
    pub bias: Param<Tensor<1>>,
    /// `false`: the identity (the GRN ablation; γ = β = 0 is the same function).
    enabled: bool,
}

impl Grn {
    fn new(c: usize, enabled: bool, device: &Device) -> Self {
        Grn {
            weight: param(TensorData::zeros::<f32, _>([c]), device),
            bias: param(TensorData::zeros::<f32, _>([c]), device),
            enabled,
        }
    }

    /// Whether GRN is applied (see [`Config::grn`]).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `x`: `[N, H, W, C]`. With `mask` (`[N, H, W, 1]`, 1 = visible), the statistics come from
    /// visible positions only; `x` must already be zero at masked ones.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if !self.enabled {
            return x;
        }
        kernels::grn(
            x,
            self.weight.val(),
            self.bias.val(),
            GRN_SUMSQ_FLOOR,
            EPS,
            |x, w, b| {
                let c = x.dims()[3];
                let sumsq = x.clone().square().sum_dim(1).sum_dim(2);
                let g = sumsq.clamp_min(GRN_SUMSQ_FLOOR).sqrt();
                let n = g.clone() / (g.mean_dim(3) + EPS);
                let w = w.reshape([1, 1, 1, c]);
                let b = b.reshape([1, 1, 1, c]);
                x.clone() + (x * n) * w + b
            },
        )
    }
}

/// The block MLP: fc1 → GELU → GRN → fc2 (timm `GlobalResponseNormMlp`).
#[derive(Module, Debug)]
pub struct Mlp {
    /// C → 4C.
    pub fc1: Pointwise,
    /// Global response normalization of the 4C hidden channels.
    pub grn: Grn,
    /// 4C → C.
    pub fc2: Pointwise,
}

/// One ConvNeXt V2 block.
#[derive(Module, Debug)]
pub struct Block {
    /// Depthwise 7×7, pad 3.
    pub conv_dw: Conv,
    /// LayerNorm over channels.
    pub norm: Norm,
    /// Pointwise MLP with GRN.
    pub mlp: Mlp,
    pub(crate) drop_path: f64,
}

impl Block {
    /// A block of `c` channels with stochastic depth `drop_path`, with or without GRN.
    pub fn new(c: usize, drop_path: f64, grn: bool, rng: &mut SplitMix64, device: &Device) -> Self {
        Block {
            conv_dw: Conv::new([c, c, 7], 1, 3, c, rng, device),
            norm: Norm::new(c, device),
            mlp: Mlp {
                fc1: Pointwise::new(c, 4 * c, 0.02, rng, device),
                grn: Grn::new(4 * c, grn, device),
                fc2: Pointwise::new(4 * c, c, 0.02, rng, device),
            },
            drop_path,
        }
    }

    /// NCHW in and out. `mask` (`[N, 1, H, W]`, 1 = visible) makes the block exactly sparse:
    /// the depthwise conv sees zeros at masked positions and its output is masked again, so
    /// nothing from a masked position reaches a visible one. `train` draws drop-path decisions.
    pub fn forward(
        &self,
        x: Tensor<4>,
        mask: Option<&Tensor<4>>,
        train: Option<&mut SplitMix64>,
    ) -> Tensor<4> {
        let shortcut = x.clone();
        let x = match mask {
            Some(m) => x * m.clone(),
            None => x,
        };
        let mut y = self.conv_dw.forward(x);
        if let Some(m) = mask {
            y = y * m.clone();
        }
        let y = y.permute([0, 2, 3, 1]);
        let y = self.norm.forward(y);
        let y = gelu(self.mlp.fc1.forward(y));
        let y = match mask {
            // GRN statistics from visible positions only (zero the masked ones first).
            Some(m) => self.mlp.grn.forward(y * m.clone().permute([0, 2, 3, 1])),
            None => self.mlp.grn.forward(y),
        };
        let y = self.mlp.fc2.forward(y).permute([0, 3, 1, 2]);
        let y = match train {
            Some(rng) if self.drop_path > 0.0 => drop_path(y, self.drop_path, rng),
            _ => y,
        };
        shortcut + y
    }
}

/// Zeroes whole samples of the residual branch with probability `p`, scaling the rest by 1/(1−p).
pub(crate) fn drop_path(y: Tensor<4>, p: f64, rng: &mut SplitMix64) -> Tensor<4> {
    let n = y.dims()[0];
    let keep = 1.0 - p;
    let scale: Vec<f32> = (0..n)
        .map(|_| {
            if rng.next_f64() < keep {
                (1.0 / keep) as f32
            } else {
                0.0
            }
        })
        .collect();
    let s = Tensor::<4>::from_data(TensorData::new(scale, [n, 1, 1, 1]), &y.device());
    y * s
}

/// LayerNorm over channels, then a 2×2/s2 convolution (timm `stages.i.downsample.{0,1}`).
#[derive(Module, Debug)]
pub struct Downsample {
    /// LayerNorm over the incoming channels.
    pub norm: Norm,
    /// 2×2 stride 2.
    pub conv: Conv,
}

/// Optional downsampling, then blocks.
#[derive(Module, Debug)]
pub struct Stage {
    /// Absent in stage 0 (the stem downsamples).
    pub downsample: Option<Downsample>,
    /// The stage's blocks.
    pub blocks: Vec<Block>,
}

/// Conv 4×4/s4 then LayerNorm (timm `stem.0`, `stem.1`).
#[derive(Module, Debug)]
pub struct Stem {
    /// Patchify convolution.
    pub conv: Conv,
    /// LayerNorm over channels.
    pub norm: Norm,
}

/// Pool → LayerNorm → classifier (timm `head.norm`, `head.fc`).
#[derive(Module, Debug)]
pub struct Head {
    /// LayerNorm over pooled channels.
    pub norm: Norm,
    /// Classifier, weight `[C, classes]`.
    pub fc: Pointwise,
}

/// The whole network.
#[derive(Module, Debug)]
pub struct ConvNeXtV2 {
    /// Patchify stem.
    pub stem: Stem,
    /// Four stages.
    pub stages: Vec<Stage>,
    /// Classification head.
    pub head: Head,
}

impl ConvNeXtV2 {
    /// A freshly initialized model (timm's init: trunc-normal(0.02) weights, zero biases, LN
    /// γ=1 β=0, GRN γ=β=0), reproducible from `seed`.
    pub fn new(config: &Config, seed: u64, device: &Device) -> Self {
        let mut rng = SplitMix64::new(seed);
        let Size { depths, dims, .. } = config.size;
        let total: usize = depths.iter().sum();
        let mut k = 0;
        let stages = (0..4)
            .map(|i| {
                let downsample = (i > 0).then(|| Downsample {
                    norm: Norm::new(dims[i - 1], device),
                    conv: Conv::new([dims[i - 1], dims[i], 2], 2, 0, 1, &mut rng, device),
                });
                let blocks = (0..depths[i])
                    .map(|_| {
                        let rate = if total > 1 {
                            config.drop_path * k as f64 / (total - 1) as f64
                        } else {
                            0.0
                        };
                        k += 1;
                        Block::new(dims[i], rate, config.grn, &mut rng, device)
                    })
                    .collect();
                Stage { downsample, blocks }
            })
            .collect();
        ConvNeXtV2 {
            stem: Stem {
                conv: Conv::new([3, dims[0], 4], 4, 0, 1, &mut rng, device),
                norm: Norm::new(dims[0], device),
            },
            stages,
            head: Head {
                norm: Norm::new(dims[3], device),
                fc: Pointwise::new(dims[3], config.num_classes, 0.02, &mut rng, device),
            },
        }
    }

    /// Re-initializes the classifier for fine-tuning as the official recipe does: trunc-normal
    /// std 2e-5, weight and bias scaled by `head_init_scale` (0.001).
    pub fn reset_head(mut self, num_classes: usize, seed: u64, head_init_scale: f64) -> Self {
        let device = self.head.norm.weight.val().device();
        let c = self.head.norm.weight.val().dims()[0];
        let mut rng = SplitMix64::new(seed ^ 0x4845_4144);
        self.head.fc = Pointwise::new(c, num_classes, 2e-5 * head_init_scale, &mut rng, &device);
        self
    }

    /// Classifier outputs.
    pub fn num_classes(&self) -> usize {
        self.head.fc.bias.val().dims()[0]
    }

    /// Stage-3 features (NCHW). `mask` (`[N, 1, H/4, W/4]` at the stem's resolution, 1 = visible)
    /// runs the masked (sparse-equivalent) encoder; it is pooled by 2 at each downsampling.
    pub fn forward_features(
        &self,
        x: Tensor<4>,
        mask: Option<Tensor<4>>,
        mut train: Option<&mut SplitMix64>,
    ) -> Tensor<4> {
        let mut x = self.stem.norm.forward_nchw(self.stem.conv.forward(x));
        let mut mask = mask;
        if let Some(m) = &mask {
            x = x * m.clone();
        }
        for stage in &self.stages {
            if let Some(d) = &stage.downsample {
                x = d.conv.forward(d.norm.forward_nchw(x));
                mask = mask.map(|m| {
                    burn::tensor::module::max_pool2d(
                        m,
                        MaxPoolOptions::new([2, 2]).with_stride([2, 2]),
                    )
                });
                if let Some(m) = &mask {
                    x = x * m.clone();
                }
            }
            for b in &stage.blocks {
                x = b.forward(x, mask.as_ref(), train.as_deref_mut());
            }
        }
        x
    }

    /// Logits `[N, classes]` from an NCHW image batch (already normalized).
    pub fn forward(&self, x: Tensor<4>, train: Option<&mut SplitMix64>) -> Tensor<2> {
        let f = self.forward_features(x, None, train);
        let pooled = f.mean_dim(2).mean_dim(3).flatten::<2>(1, 3);
        self.head.fc.forward(self.head.norm.forward(pooled))
    }
}

/// A trainable parameter from host data.
pub fn param<const D: usize>(data: TensorData, device: &Device) -> Param<Tensor<D>> {
    Param::from_tensor(Tensor::from_data(data, device))
}

/// Normal(0, std) truncated to [−2, 2] (timm's `trunc_normal_(std=...)`: absolute bounds).
pub fn trunc_normal<const D: usize>(
    rng: &mut SplitMix64,
    shape: [usize; D],
    std: f64,
) -> TensorData {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| loop {
            let z = rng.next_normal() * std;
            if (-2.0..=2.0).contains(&z) {
                break z as f32;
            }
        })
        .collect();
    TensorData::new(v, shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu() -> Device {
        crate::finetune::device(crate::finetune::DeviceKind::Cpu).unwrap()
    }

    fn max_abs(a: Tensor<4>, b: Tensor<4>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    #[test]
    fn patchify_rewrite_equals_conv2d() {
        let dev = cpu();
        let mut rng = SplitMix64::new(11);
        for &(n, cin, cout, k, h, w) in
            &[(2, 3, 8, 4, 16, 12), (1, 5, 7, 2, 6, 9), (2, 4, 3, 2, 5, 5)]
        {
            let mut conv = Conv::new([cin, cout, k], k, 0, 1, &mut rng, &dev);
            conv.bias = param(trunc_normal(&mut rng, [cout], 1.0), &dev);
            let x = Tensor::<4>::from_data(trunc_normal(&mut rng, [n, cin, h, w], 1.0), &dev);
            let e = max_abs(conv.forward(x.clone()), conv.forward_conv2d(x));
            assert!(e < 1e-5, "patchify {cin}->{cout} k{k} {h}x{w}: {e}");
        }
    }
}
