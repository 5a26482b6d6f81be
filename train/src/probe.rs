//! `train probe`: the linear-probe protocol for a frozen encoder (He et al., "Masked Autoencoders
//! Are Scalable Vision Learners", 2022, §A.2): the encoder's last-stage map is average-pooled to
//! one `C`-vector per image (no head LayerNorm: FCMAE exports have none), each feature is
//! standardized with the training split's mean and standard deviation (MAE's BatchNorm without
//! affine parameters, which at evaluation is exactly this), and a linear classifier alone is
//! trained on all labels with softmax cross-entropy. Top-1 on the test split measures how
//! linearly separable the frozen representation is.
//!
//! Differences from MAE's recipe, for a classifier that is small and trained on precomputed
//! features: AdamW instead of LARS (no large-batch regime to serve), no augmentation (features
//! are computed once, from the center crop every evaluation uses).

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use serde_json::json;

use crate::data::{self, Split};
use crate::finetune::{self, DeviceKind};
use crate::model::{Config, ConvNeXtV2, Pointwise, Size};
use crate::optim::{self, AdamW, AdamWConfig};
use crate::parallel;
use crate::rng::SplitMix64;

/// Everything `train probe` takes.
#[derive(Clone, Debug)]
pub struct Options {
    /// Model size of the encoder.
    pub size: Size,
    /// Encoder weights (any form `train finetune --init` reads: `train export` files, timm's
    /// `.fcmae` safetensors, checkpoints); `None` probes the random initialization (seeded).
    pub weights: Option<PathBuf>,
    /// Which weights of `weights` when it holds several.
    pub entry: quant::Entry,
    /// Dataset root (as `train finetune --data`).
    pub data: PathBuf,
    /// Square input size (center crop / resize as in evaluation).
    pub input_size: u32,
    /// Classifier epochs over the training features.
    pub fit: FitConfig,
    /// Seed of the random init, the subsets and the classifier.
    pub seed: u64,
    /// Probe on a seeded subset of this many training images.
    pub train_subset: Option<usize>,
    /// Test on a seeded subset of this many test images.
    pub test_subset: Option<usize>,
    /// Held-out fraction when the folder has no train/val split.
    pub test_fraction: f64,
    /// GRN in the blocks (`false`: an encoder trained with `--no-grn`).
    pub grn: bool,
    /// Compute device of the encoder.
    pub device: DeviceKind,
}

/// Hyperparameters of the linear classifier's training.
#[derive(Clone, Debug)]
pub struct FitConfig {
    /// Passes over the training features.
    pub epochs: u64,
    /// Mini-batch size.
    pub batch: usize,
    /// Peak learning rate (linear warmup over the first tenth of the steps, then cosine to 0).
    pub lr: f64,
    /// AdamW decoupled weight decay on the classifier's weight (not its bias).
    pub weight_decay: f64,
    /// Seed of the classifier's init and of the epoch orders.
    pub seed: u64,
}

/// What a probe reports.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Top-1 of the classifier on the test features (fraction in [0, 1]).
    pub top1: f64,
    /// Top-1 on the training features it was fitted on.
    pub train_top1: f64,
    /// Feature dimension `C` (the last stage's channels).
    pub dim: usize,
    /// Training and test images that yielded features.
    pub images: (usize, usize),
    /// Unreadable images skipped (each reported on stderr).
    pub skipped: usize,
    /// Seconds spent computing features, and fitting the classifier.
    pub secs: (f64, f64),
}

impl Summary {
    /// The summary as JSON (what `--json` writes).
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "top1": self.top1,
            "train_top1": self.train_top1,
            "dim": self.dim,
            "train_images": self.images.0,
            "test_images": self.images.1,
            "skipped": self.skipped,
            "feature_seconds": self.secs.0,
            "fit_seconds": self.secs.1,
        })
    }
}

/// Row-major features `[n, dim]` with their labels.
#[derive(Clone, Debug, Default)]
pub struct Features {
    /// `n · dim` values.
    pub values: Vec<f32>,
    /// One label per row.
    pub labels: Vec<usize>,
    /// Columns.
    pub dim: usize,
}

impl Features {
    /// Rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Global average pool of the last stage: `[N, 3, H, W]` images → `[N, C]`, the vector the
/// classification head normalizes and classifies ([`ConvNeXtV2::forward`]).
pub fn pooled(model: &ConvNeXtV2, x: Tensor<4>) -> Tensor<2> {
    model
        .forward_features(x, None, None)
        .mean_dim(2)
        .mean_dim(3)
        .flatten::<2>(1, 3)
}

/// Pooled features of every image of `split` (in split order), batches of 64 over
/// [`parallel::PARTS`] threads, and the number of unreadable images skipped.
pub fn features(
    model: &ConvNeXtV2,
    split: &Split,
    size: u32,
    device: &Device,
) -> (Features, usize) {
    let idx: Vec<usize> = (0..split.len()).collect();
    let chunks: Vec<&[usize]> = idx.chunks(64).collect();
    let s = size as usize;
    // The pooled vector has the last stage's channels (the head's LayerNorm width).
    let mut out = Features {
        dim: model.head.norm.weight.dims()[0],
        ..Features::default()
    };
    let mut skipped = 0;
    for group in chunks.chunks(parallel::PARTS) {
        let parts = parallel::on_threads(group.iter(), |chunk| {
            let b = data::batch(split, chunk, size, None);
            for e in &b.skipped {
                eprintln!("skipped unreadable image: {e}");
            }
            if b.is_empty() {
                return (Vec::new(), b.labels, b.skipped.len());
            }
            let n = b.labels.len();
            let x = Tensor::<4>::from_data(TensorData::new(b.images, [n, 3, s, s]), device);
            let v = pooled(model, x)
                .into_data()
                .try_to_vec::<f32>()
                .expect("the model computes in f32");
            (v, b.labels, b.skipped.len())
        });
        for (v, labels, skip) in parts {
            out.values.extend(v);
            out.labels.extend(labels);
            skipped += skip;
        }
    }
    (out, skipped)
}

/// Per-column mean and standard deviation (population, in f64) of `f`; the deviation is
/// floored at 1e-6 so that a constant feature standardizes to 0 rather than to NaN.
pub fn moments(f: &Features) -> (Vec<f64>, Vec<f64>) {
    let (n, d) = (f.len().max(1) as f64, f.dim);
    let mut mean = vec![0.0; d];
    for row in f.values.chunks(d) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0.0; d];
    for row in f.values.chunks(d) {
        for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (v as f64 - m).powi(2);
        }
    }
    let std = var.iter().map(|s| (s / n).sqrt().max(1e-6)).collect();
    (mean, std)
}

/// `(x − mean) / std` column by column, in place.
pub fn standardize(f: &mut Features, mean: &[f64], std: &[f64]) {
    let d = f.dim;
    for row in f.values.chunks_mut(d) {
        for ((v, m), s) in row.iter_mut().zip(mean).zip(std) {
            *v = ((*v as f64 - m) / s) as f32;
        }
    }
}

/// The probe's classifier: one affine map `[C] → [classes]`.
#[derive(Module, Debug)]
pub struct LinearClassifier {
    /// Weight `[C, classes]`, bias `[classes]`.
    pub fc: Pointwise,
}

impl LinearClassifier {
    /// Trunc-normal(0.01) weight (MAE's probe head init), zero bias.
    pub fn new(dim: usize, classes: usize, seed: u64, device: &Device) -> Self {
        let mut rng = SplitMix64::derive(&[seed, 0x5052_4f42]);
        LinearClassifier {
            fc: Pointwise::new(dim, classes, 0.01, &mut rng, device),
        }
    }

    /// Logits `[N, classes]` of features `[N, C]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc.forward(x)
    }

    /// Predicted class of every row of `f`.
    pub fn predict(&self, f: &Features, device: &Device) -> Vec<usize> {
        let d = f.dim;
        let mut out = Vec::with_capacity(f.len());
        for rows in f.values.chunks(4096 * d) {
            let n = rows.len() / d;
            let x = Tensor::<2>::from_data(TensorData::new(rows.to_vec(), [n, d]), device);
            let p = self.forward(x).argmax(1).into_data().convert::<i64>();
            let p = p.try_to_vec::<i64>().expect("argmax gives integers");
            out.extend(p.into_iter().map(|c| c as usize));
        }
        out
    }
}

/// Fraction of rows of `f` that `clf` classifies as labelled.
pub fn accuracy(clf: &LinearClassifier, f: &Features, device: &Device) -> f64 {
    let right = clf
        .predict(f, device)
        .iter()
        .zip(&f.labels)
        .filter(|(p, l)| p == l)
        .count();
    right as f64 / f.len().max(1) as f64
}

/// Trains a [`LinearClassifier`] on (standardized) features with softmax cross-entropy and AdamW
/// (β = 0.9, 0.999), the official per-iteration schedule ([`optim::lr_at`]). `device` is a plain
/// device; the classifier returned lives there.
pub fn fit(f: &Features, classes: usize, cfg: &FitConfig, device: &Device) -> LinearClassifier {
    let ad = device.clone().autodiff();
    let d = f.dim;
    let mut clf = LinearClassifier::new(d, classes, cfg.seed, &ad);
    let mut opt = AdamW::new(AdamWConfig {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: cfg.weight_decay,
        layer_decay: 1.0,
    });
    let per_epoch = f.len().div_ceil(cfg.batch.max(1)) as u64;
    let total = per_epoch * cfg.epochs;
    let warmup = total / 10;
    let mut step = 0;
    for epoch in 0..cfg.epochs {
        let order = SplitMix64::derive(&[cfg.seed, epoch, 0x4f52_4445]).permutation(f.len());
        for idx in order.chunks(cfg.batch.max(1)) {
            let mut rows = Vec::with_capacity(idx.len() * d);
            for &i in idx {
                rows.extend_from_slice(&f.values[i * d..(i + 1) * d]);
            }
            let labels: Vec<usize> = idx.iter().map(|&i| f.labels[i]).collect();
            let x = Tensor::<2>::from_data(TensorData::new(rows, [idx.len(), d]), &ad);
            let loss = finetune::smoothed_cross_entropy(clf.forward(x), &labels, 0.0);
            let grads = GradientsParams::from_grads(loss.backward(), &clf);
            let lr = optim::lr_at(step, total, warmup, cfg.lr, 0.0);
            clf = opt.update(lr, clf, grads);
            step += 1;
        }
    }
    clf.valid()
}

/// Runs the probe: loads the encoder (or initializes it), computes the pooled features of both
/// splits, standardizes them with the training split's moments, fits the classifier and
/// evaluates it. Errors are messages for the user: bad weights (named by file and tensor), an
/// empty split, features that are not finite (an encoder that diverged).
pub fn run(o: &Options) -> Result<Summary, String> {
    let dev = finetune::device(o.device)?;
    let (ds, train, test) = finetune::open_splits(
        &o.data,
        o.test_fraction,
        o.seed,
        o.train_subset,
        o.test_subset,
    )?;
    let config = Config {
        size: o.size.clone(),
        num_classes: ds.classes.len(),
        drop_path: 0.0,
        grn: o.grn,
    };
    let model = ConvNeXtV2::new(&config, o.seed, &dev);
    let (model, source) = match &o.weights {
        Some(w) => {
            let (m, note) = finetune::load_init(model, w, &o.entry, o.seed)?;
            eprintln!("{note}");
            (m, w.display().to_string())
        }
        None => {
            eprintln!("random init (seed {}): no --weights given", o.seed);
            (model, format!("the random init (seed {})", o.seed))
        }
    };
    let t = Instant::now();
    let (mut ftrain, skip_train) = features(&model, &train, o.input_size, &dev);
    let (mut ftest, skip_test) = features(&model, &test, o.input_size, &dev);
    let feature_secs = t.elapsed().as_secs_f64();
    if ftrain.is_empty() || ftest.is_empty() {
        return Err(format!(
            "{}: no readable image in the {} split",
            o.data.display(),
            if ftrain.is_empty() {
                "training"
            } else {
                "test"
            }
        ));
    }
    for (name, f) in [("training", &ftrain), ("test", &ftest)] {
        if let Some(i) = f.values.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "the features of {name} image {} computed by {source} are not finite ({}): the encoder's weights produce overflow; probe another checkpoint",
                i / f.dim,
                f.values[i]
            ));
        }
    }
    let (mean, std) = moments(&ftrain);
    standardize(&mut ftrain, &mean, &std);
    standardize(&mut ftest, &mean, &std);
    let t = Instant::now();
    let clf = fit(&ftrain, ds.classes.len(), &o.fit, &dev);
    let fit_secs = t.elapsed().as_secs_f64();
    Ok(Summary {
        top1: accuracy(&clf, &ftest, &dev),
        train_top1: accuracy(&clf, &ftrain, &dev),
        dim: ftrain.dim,
        images: (ftrain.len(), ftest.len()),
        skipped: skip_train + skip_test,
        secs: (feature_secs, fit_secs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Size;

    fn cpu() -> Device {
        finetune::device(DeviceKind::Cpu).unwrap()
    }

    /// Standard normal CDF Φ(1), from erf(1/√2) = 0.682689492… (Abramowitz & Stegun 7.1).
    const PHI_1: f64 = 0.841_344_746;

    /// Two classes in 8 dimensions, means ∓1 along the first axis, identity covariance: the
    /// Bayes rule is sign(x₀) with accuracy Φ(1). The other axes are noise scaled 1..7 so that
    /// standardization matters; the fitted probe must reach the Bayes rule's empirical accuracy.
    #[test]
    fn probe_reaches_the_bayes_accuracy_of_two_gaussians() {
        let d = 8;
        let draw = |n: usize, seed: u64| {
            let mut rng = SplitMix64::new(seed);
            let mut f = Features {
                dim: d,
                ..Features::default()
            };
            for i in 0..n {
                let y = i % 2;
                for k in 0..d {
                    let z = rng.next_normal();
                    let v = if k == 0 {
                        z + if y == 1 { 1.0 } else { -1.0 }
                    } else {
                        3.0 + k as f64 * z
                    };
                    f.values.push(v as f32);
                }
                f.labels.push(y);
            }
            f
        };
        let (mut train, mut test) = (draw(4000, 1), draw(4000, 2));
        let bayes = test
            .values
            .chunks(d)
            .zip(&test.labels)
            .filter(|(r, &y)| (r[0] > 0.0) == (y == 1))
            .count() as f64
            / test.len() as f64;
        // The sample itself is Φ(1) within 3 binomial standard errors.
        let se = (PHI_1 * (1.0 - PHI_1) / test.len() as f64).sqrt();
        assert!((bayes - PHI_1).abs() < 3.0 * se, "{bayes} vs {PHI_1}");
        let (mean, std) = moments(&train);
        standardize(&mut train, &mean, &std);
        standardize(&mut test, &mean, &std);
        let cfg = FitConfig {
            epochs: 10,
            batch: 128,
            lr: 1e-2,
            weight_decay: 0.0,
            seed: 0,
        };
        let dev = cpu();
        let clf = fit(&train, 2, &cfg, &dev);
        let acc = accuracy(&clf, &test, &dev);
        assert!(
            (acc - bayes).abs() <= 0.01,
            "probe {acc} vs Bayes rule {bayes}"
        );
    }

    #[test]
    fn moments_and_standardize_follow_their_definitions() {
        // Column 0: 1, 2, 3, 6 → mean 3, population variance (4 + 1 + 0 + 9)/4 = 3.5.
        // Column 1 is constant: std floored, standardized to 0.
        let mut f = Features {
            values: vec![1.0, 5.0, 2.0, 5.0, 3.0, 5.0, 6.0, 5.0],
            labels: vec![0; 4],
            dim: 2,
        };
        let (mean, std) = moments(&f);
        assert_eq!(mean, vec![3.0, 5.0]);
        assert!((std[0] - 3.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(std[1], 1e-6);
        standardize(&mut f, &mean, &std);
        let want = [-2.0, -1.0, 0.0, 3.0].map(|v| (v / 3.5f64.sqrt()) as f32);
        for (i, w) in want.iter().enumerate() {
            assert!((f.values[2 * i] - w).abs() < 1e-6);
            assert_eq!(f.values[2 * i + 1], 0.0);
        }
    }

    /// The probed vector is the one the classification head sees: head(pooled(x)) = forward(x).
    #[test]
    fn pooled_features_are_the_heads_input() {
        let dev = cpu();
        let config = Config {
            size: Size::named("atto").unwrap(),
            num_classes: 10,
            drop_path: 0.0,
            grn: true,
        };
        let model = ConvNeXtV2::new(&config, 3, &dev);
        let mut rng = SplitMix64::new(9);
        let x: Vec<f32> = (0..2 * 3 * 32 * 32)
            .map(|_| rng.next_normal() as f32)
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(x, [2, 3, 32, 32]), &dev);
        let f = pooled(&model, x.clone());
        assert_eq!(f.dims(), [2, 320]);
        let via_head = model.head.fc.forward(model.head.norm.forward(f));
        let direct = model.forward(x, None);
        assert_eq!(
            via_head.into_data().try_to_vec::<f32>().unwrap(),
            direct.into_data().try_to_vec::<f32>().unwrap()
        );
    }
}
