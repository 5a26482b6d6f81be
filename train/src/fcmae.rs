//! FCMAE (Woo et al. 2023): a fully convolutional masked autoencoder, computed densely with masks
//! so that it is exactly the submanifold-sparse encoder of the paper (see `ConvNeXtV2::
//! forward_features` and `Block::forward`: inputs of every depthwise conv are zero at masked
//! positions, its outputs are masked again, GRN's statistics come from visible positions only).
//!
//! GRN statistics are per sample, as in the dense model. The official sparse GRN pools over all
//! active points of the whole batch (facebookresearch/ConvNeXt-V2 issues #85/#86); per sample is
//! the definition the fine-tuned dense model uses, so pretraining and fine-tuning agree.
//!
//! Decoder (official `FCMAE`): 1×1 projection to `decoder_dim`, a learned mask token at masked
//! positions, `decoder_depth` ConvNeXt V2 blocks, 1×1 prediction of patch²·3 values per patch.
//! Loss: MSE per patch against the (optionally per-patch normalized) pixels, averaged over
//! masked patches only.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};

use crate::model::{param, trunc_normal, Block, Config, ConvNeXtV2, Pointwise};
use crate::rng::SplitMix64;
use crate::sparse::{Encoder, Visible};

/// The encoder's total stride: one patch of 32 px is one position of the last stage.
pub const STRIDE: usize = 32;

/// Masked autoencoder: encoder, projection, mask token, decoder blocks, prediction.
#[derive(Module, Debug)]
pub struct Fcmae {
    /// The ConvNeXt V2 encoder (its classifier head is not used and not exported).
    pub encoder: ConvNeXtV2,
    /// Encoder channels → decoder channels.
    pub proj: Pointwise,
    /// Fills masked positions before decoding, `[decoder_dim]`.
    pub mask_token: Param<Tensor<1>>,
    /// Decoder blocks.
    pub decoder: Vec<Block>,
    /// Decoder channels → patch²·3 pixel values.
    pub pred: Pointwise,
}

/// The FCMAE shape parameters.
#[derive(Clone, Debug)]
pub struct FcmaeConfig {
    /// Encoder size.
    pub encoder: Config,
    /// Decoder width (official: 512).
    pub decoder_dim: usize,
    /// Decoder blocks (official: 1).
    pub decoder_depth: usize,
    /// Patch side in pixels (must be the encoder's stride, 32).
    pub patch: usize,
}

impl Fcmae {
    /// A fresh model (timm init; mask token normal(0, 0.02)).
    pub fn new(c: &FcmaeConfig, seed: u64, device: &Device) -> Self {
        let encoder = ConvNeXtV2::new(&c.encoder, seed, device);
        let mut rng = SplitMix64::new(seed ^ 0x4445_434f);
        let c3 = c.encoder.size.dims[3];
        Fcmae {
            encoder,
            proj: Pointwise::new(c3, c.decoder_dim, 0.02, &mut rng, device),
            mask_token: param(trunc_normal(&mut rng, [c.decoder_dim], 0.02), device),
            decoder: (0..c.decoder_depth)
                .map(|_| Block::new(c.decoder_dim, 0.0, c.encoder.grn, &mut rng, device))
                .collect(),
            pred: Pointwise::new(c.decoder_dim, c.patch * c.patch * 3, 0.02, &mut rng, device),
        }
    }

    /// Predictions `[N, L, patch²·3]` for images `[N, 3, H, W]` and a patch mask `[N, L]`
    /// (1 = masked), L = (H/32)·(W/32) in row-major patch order.
    /// The encoder is the sparse one ([`crate::sparse`]); see [`Fcmae::forward_with`].
    pub fn forward(&self, x: Tensor<4>, mask: &[f32], train: Option<&mut SplitMix64>) -> Tensor<3> {
        self.forward_with(x, mask, train, Encoder::default())
    }

    /// [`Fcmae::forward`] with the encoder chosen: both give the same predictions (up to float
    /// reassociation) and gradients. A mask whose samples keep different numbers of patches (or
    /// none) runs the dense encoder whatever `encoder` says.
    pub fn forward_with(
        &self,
        x: Tensor<4>,
        mask: &[f32],
        train: Option<&mut SplitMix64>,
        encoder: Encoder,
    ) -> Tensor<3> {
        let [n, _, h, w] = x.dims();
        let (ph, pw) = (h / STRIDE, w / STRIDE);
        let device = x.device();
        let sparse = match encoder {
            Encoder::Sparse => Visible::new(mask, n, ph, pw, &device),
            Encoder::Dense => None,
        };
        let f = match sparse {
            Some(vis) => self.encoder.forward_features_sparse(x, &vis, train),
            None => {
                let visible = Tensor::<4>::from_data(stem_visibility(mask, n, ph, pw), &device);
                self.encoder.forward_features(x, Some(visible), train)
            }
        };
        let y = self.proj.forward(f.permute([0, 2, 3, 1])); // [N, ph, pw, D]
        let d = y.dims()[3];
        let m = Tensor::<4>::from_data(TensorData::new(mask.to_vec(), [n, ph, pw, 1]), &device);
        let token = self.mask_token.val().reshape([1, 1, 1, d]);
        let y = y * (m.clone().neg().add_scalar(1.0)) + token * m;
        let mut y = y.permute([0, 3, 1, 2]);
        for b in &self.decoder {
            y = b.forward(y, None, None);
        }
        let p = self.pred.forward(y.permute([0, 2, 3, 1])); // [N, ph, pw, K]
        let k = p.dims()[3];
        p.reshape([n, ph * pw, k])
    }
}

/// The patch mask upsampled to the stem's resolution (H/4 × W/4), 1 = visible: `[N, 1, H/4, W/4]`.
pub fn stem_visibility(mask: &[f32], n: usize, ph: usize, pw: usize) -> TensorData {
    let s = STRIDE / 4;
    let (hh, ww) = (ph * s, pw * s);
    let mut v = vec![0f32; n * hh * ww];
    for b in 0..n {
        for y in 0..hh {
            for x in 0..ww {
                v[(b * hh + y) * ww + x] = 1.0 - mask[(b * ph + y / s) * pw + x / s];
            }
        }
    }
    TensorData::new(v, [n, 1, hh, ww])
}

/// The official `gen_random_mask`: per sample, the ⌊L·(1 − ratio)⌋ patches with the smallest
/// noise are kept (0), the rest masked (1).
pub fn random_mask(n: usize, l: usize, ratio: f64, rng: &mut SplitMix64) -> Vec<f32> {
    let keep = (l as f64 * (1.0 - ratio)).floor() as usize;
    let mut out = vec![1f32; n * l];
    for b in 0..n {
        let noise: Vec<f64> = (0..l).map(|_| rng.next_f64()).collect();
        let mut order: Vec<usize> = (0..l).collect();
        order.sort_by(|&i, &j| noise[i].total_cmp(&noise[j]));
        for &i in &order[..keep] {
            out[b * l + i] = 0.0;
        }
    }
    out
}

/// Images `[N, 3, H, W]` (host data) → patches `[N, L, p·p·3]` in the official order
/// (`nchpwq → nhwpqc`), normalized per patch to zero mean and unit variance (unbiased, as
/// `torch.var`; eps 1e-6) when `norm_pix`.
pub fn patchify(
    images: &[f32],
    n: usize,
    h: usize,
    w: usize,
    p: usize,
    norm_pix: bool,
) -> Vec<f32> {
    let (ph, pw) = (h / p, w / p);
    let k = p * p * 3;
    let mut out = vec![0f32; n * ph * pw * k];
    for b in 0..n {
        for py in 0..ph {
            for px in 0..pw {
                let base = ((b * ph + py) * pw + px) * k;
                for r in 0..p {
                    for q in 0..p {
                        for c in 0..3 {
                            out[base + (r * p + q) * 3 + c] =
                                images[((b * 3 + c) * h + py * p + r) * w + px * p + q];
                        }
                    }
                }
                if norm_pix {
                    let v = &mut out[base..base + k];
                    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / k as f64;
                    let var =
                        v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (k - 1) as f64;
                    let sd = (var + 1e-6).sqrt();
                    for x in v.iter_mut() {
                        *x = ((*x as f64 - mean) / sd) as f32;
                    }
                }
            }
        }
    }
    out
}

/// MSE per patch, averaged over masked patches: `Σ_l mask·mean_k (pred − target)² / Σ mask`.
pub fn masked_mse(pred: Tensor<3>, target: &[f32], mask: &[f32]) -> Tensor<1> {
    let [n, l, k] = pred.dims();
    let device = pred.device();
    let t = Tensor::<3>::from_data(TensorData::new(target.to_vec(), [n, l, k]), &device);
    let m = Tensor::<3>::from_data(TensorData::new(mask.to_vec(), [n, l, 1]), &device);
    let per_patch = (pred - t).square().mean_dim(2);
    let masked: f32 = mask.iter().sum();
    (per_patch * m).sum().div_scalar(masked.max(1.0))
}
