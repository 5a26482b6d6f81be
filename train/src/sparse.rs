//! The sparse FCMAE encoder: the paper's submanifold-sparse ConvNeXt V2 (Woo et al. 2023, §3.1)
//! without a sparse-convolution library. Activations live as rows `[visible, C]` of the visible
//! positions only, so every per-position operator — LayerNorm, both pointwise convolutions,
//! GELU, GRN (per sample, from visible positions: rows are grouped by sample and every sample
//! keeps the same number of patches), the downsampling convolutions (a 2×2 window never crosses
//! a 32-px patch, so it is all visible or all masked) and the residual adds — computes only what
//! the loss can see. The depthwise 7×7 alone sees the masked-dense map: the rows are scattered
//! into zeros, convolved by the same kernel as the dense model, and gathered back.
//!
//! The result equals the masked-dense encoder ([`ConvNeXtV2::forward_features`] with a mask) at
//! every visible position, value for value up to float reassociation; masked positions of its
//! output are zero (the dense encoder leaves values there that the decoder overwrites with the
//! mask token). Proofs in `tests/fcmae.rs`.

use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};

use crate::fcmae::STRIDE;
use crate::kernels::gelu;
use crate::model::{drop_path, Block, ConvNeXtV2};
use crate::rng::SplitMix64;

/// Which FCMAE encoder runs: the sparse one (the default) or the masked-dense one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encoder {
    /// Per-position operators on visible rows only ([`crate::sparse`]).
    #[default]
    Sparse,
    /// Every operator on the whole map, masked where it matters (the reference).
    Dense,
}

impl Encoder {
    /// `sparse` or `dense`.
    pub fn name(self) -> &'static str {
        match self {
            Encoder::Sparse => "sparse",
            Encoder::Dense => "dense",
        }
    }
}

/// The visible positions of one stage: `n` samples of an `h × w` grid, `per_sample` visible
/// each, their flat indices `b·h·w + y·w + x` in raster order (so rows are grouped by sample).
#[derive(Clone, Debug)]
pub struct Sites {
    /// Samples.
    pub n: usize,
    /// Grid rows.
    pub h: usize,
    /// Grid columns.
    pub w: usize,
    /// Visible positions per sample.
    pub per_sample: usize,
    idx: Tensor<1, Int>,
}

impl Sites {
    /// Rows `[n·per_sample, C]` → the NHWC map `[n, h, w, C]`, zero at masked positions.
    pub fn scatter(&self, rows: Tensor<2>) -> Tensor<4> {
        let c = rows.dims()[1];
        let zeros = Tensor::<2>::zeros([self.n * self.h * self.w, c], &rows.device());
        zeros
            .select_assign(0, self.idx.clone(), rows, IndexingUpdateOp::Add)
            .reshape([self.n, self.h, self.w, c])
    }

    /// The NHWC map `[n, h, w, C]` → its visible rows `[n·per_sample, C]`.
    pub fn gather(&self, map: Tensor<4>) -> Tensor<2> {
        let c = map.dims()[3];
        map.reshape([self.n * self.h * self.w, c])
            .select(0, self.idx.clone())
    }
}

/// The visible positions of an FCMAE patch mask at each of the four stages' resolutions
/// (H/4, H/8, H/16, H/32).
#[derive(Clone, Debug)]
pub struct Visible {
    /// Stage 0 (the stem's resolution) to stage 3 (one position per 32-px patch).
    pub stages: [Sites; 4],
}

impl Visible {
    /// From a patch mask `[n, ph·pw]` (1 = masked, row-major patches of [`STRIDE`] px). `None`
    /// when samples keep different numbers of patches (GRN's per-sample rows need equal counts;
    /// [`crate::fcmae::random_mask`] always keeps ⌊L·(1 − ratio)⌋).
    pub fn new(mask: &[f32], n: usize, ph: usize, pw: usize, device: &Device) -> Option<Visible> {
        let l = ph * pw;
        assert_eq!(mask.len(), n * l, "mask is [n, ph·pw]");
        let kept: Vec<usize> = mask
            .chunks(l)
            .map(|m| m.iter().filter(|&&v| v < 0.5).count())
            .collect();
        if kept.windows(2).any(|k| k[0] != k[1]) || kept.first().is_none_or(|&k| k == 0) {
            return None;
        }
        let kept = kept[0];
        let stage = |s: usize| {
            let cell = (STRIDE / 4) >> s;
            let (h, w) = (ph * cell, pw * cell);
            let mut idx = Vec::with_capacity(n * kept * cell * cell);
            for b in 0..n {
                for y in 0..h {
                    for x in 0..w {
                        if mask[b * l + (y / cell) * pw + x / cell] < 0.5 {
                            idx.push((b * h * w + y * w + x) as i64);
                        }
                    }
                }
            }
            let len = idx.len();
            Sites {
                n,
                h,
                w,
                per_sample: kept * cell * cell,
                idx: Tensor::<1, Int>::from_data(TensorData::new(idx, [len]), device),
            }
        };
        Some(Visible {
            stages: [stage(0), stage(1), stage(2), stage(3)],
        })
    }
}

impl ConvNeXtV2 {
    /// Stage-3 features (NCHW `[N, C, H/32, W/32]`) computed on the visible positions of `vis`
    /// only; zero at masked positions. `train` draws drop-path decisions in the same order as
    /// [`ConvNeXtV2::forward_features`].
    pub fn forward_features_sparse(
        &self,
        x: Tensor<4>,
        vis: &Visible,
        mut train: Option<&mut SplitMix64>,
    ) -> Tensor<4> {
        // The stem on the whole image (3 input channels: cheap), then its visible rows.
        let stem = self.stem.conv.forward(x).permute([0, 2, 3, 1]);
        let mut rows = self.stem.norm.forward(vis.stages[0].gather(stem));
        for (s, stage) in self.stages.iter().enumerate() {
            let sites = &vis.stages[s];
            if let Some(d) = &stage.downsample {
                // LayerNorm per row; the 2×2/s2 convolution as space-to-depth + matmul on the
                // next stage's visible windows only (the weight in `forward_patchify`'s order).
                let prev = &vis.stages[s - 1];
                let normed = prev.scatter(d.norm.forward(rows));
                let c = normed.dims()[3];
                let windows = normed
                    .reshape([prev.n, sites.h, 2, sites.w, 2, c])
                    .permute([0, 1, 3, 5, 2, 4])
                    .reshape([prev.n, sites.h, sites.w, c * 4]);
                let [cout, ..] = d.conv.weight.dims();
                let wm = d.conv.weight.val().reshape([cout, c * 4]).transpose();
                rows = sites.gather(windows).matmul(wm) + d.conv.bias.val().reshape([1, cout]);
            }
            for b in &stage.blocks {
                rows = b.forward_rows(rows, sites, train.as_deref_mut());
            }
        }
        vis.stages[3].scatter(rows).permute([0, 3, 1, 2])
    }
}

impl Block {
    /// The block on visible rows `[n·per_sample, C]` of `sites` (see [`Block::forward`]).
    pub fn forward_rows(
        &self,
        rows: Tensor<2>,
        sites: &Sites,
        train: Option<&mut SplitMix64>,
    ) -> Tensor<2> {
        let dense = sites.scatter(rows.clone()).permute([0, 3, 1, 2]);
        let c = rows.dims()[1];
        // `[n, 1, per_sample, C]`: the rows of one sample as its "H·W" positions, for GRN's
        // per-sample statistics. (Not `[n, per_sample, 1, C]`: Burn's matmul takes that as
        // n·per_sample batched 1-row products, and fc2's backward got 15× slower.)
        let y = sites
            .gather(self.conv_dw.forward(dense).permute([0, 2, 3, 1]))
            .reshape([sites.n, 1, sites.per_sample, c]);
        let y = gelu(self.mlp.fc1.forward(self.norm.forward(y)));
        let y = self.mlp.grn.forward(y);
        let y = self.mlp.fc2.forward(y);
        let y = match train {
            Some(rng) if self.drop_path > 0.0 => drop_path(y, self.drop_path, rng),
            _ => y,
        };
        rows + y.reshape([sites.n * sites.per_sample, c])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu() -> Device {
        crate::finetune::device(crate::finetune::DeviceKind::Cpu).unwrap()
    }

    /// A 2×2-patch mask keeping patches 1 and 2 of sample 0 and 0 and 3 of sample 1: the visible
    /// cells of each stage by hand, and scatter ∘ gather is the identity on them.
    #[test]
    fn visible_sites_follow_the_patch_mask_at_every_stage() {
        let dev = cpu();
        let mask = [1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0];
        let vis = Visible::new(&mask, 2, 2, 2, &dev).unwrap();
        let idx = |s: usize| {
            vis.stages[s]
                .idx
                .clone()
                .into_data()
                .convert::<i64>()
                .try_to_vec::<i64>()
                .unwrap()
        };
        // Stage 3: one cell per patch, 2 × 2 grid.
        assert_eq!(idx(3), vec![1, 2, 4, 7]);
        assert_eq!(vis.stages[3].per_sample, 2);
        // Stage 2: 2×2 cells per patch on a 4×4 grid; sample 0 patch 1 = rows 0–1, columns 2–3.
        assert_eq!(&idx(2)[..4], &[2, 3, 6, 7]);
        assert_eq!(vis.stages[2].per_sample, 8);
        for s in 0..4 {
            let cell = 8 >> s;
            let st = &vis.stages[s];
            assert_eq!((st.h, st.w), (2 * cell, 2 * cell));
            assert_eq!(idx(s).len(), 2 * 2 * cell * cell);
            let rows: Vec<f32> = (0..idx(s).len() * 3).map(|v| v as f32 + 1.0).collect();
            let r = Tensor::<2>::from_data(TensorData::new(rows.clone(), [idx(s).len(), 3]), &dev);
            let map = st.scatter(r);
            let total: f32 = map.clone().sum().into_scalar::<f32>();
            assert_eq!(total, rows.iter().sum::<f32>());
            let back = st.gather(map).into_data().try_to_vec::<f32>().unwrap();
            assert_eq!(back, rows);
        }
        // Unequal patch counts, or none kept: no sparse form.
        assert!(Visible::new(&[0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0], 2, 2, 2, &dev).is_none());
        assert!(Visible::new(&[1.0; 8], 2, 2, 2, &dev).is_none());
    }
}
