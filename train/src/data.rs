//! Training data: ImageFolder trees (`root/<class>/*.{png,jpg}`) and the Fashion-MNIST IDX files
//! of Debian's `dataset-fashion-mnist` (parsed by `quant::data::read_idx`).
//!
//! Every image becomes f32 CHW at the model's input size, normalized with ImageNet's mean/std.
//! Training samples get random-resized-crop + horizontal flip drawn from a generator derived from
//! `(seed, epoch, index)`, so an epoch is the same whether or not the run was resumed. A file
//! that cannot be read or decoded is skipped and counted, never fatal.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;

use image::imageops::FilterType;
use image::RgbImage;
use rayon::prelude::*;

use crate::rng::SplitMix64;

/// ImageNet mean (timm's default normalization, what the edge runtime assumes too).
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet standard deviation.
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Why a dataset cannot be opened.
#[derive(Debug)]
pub enum DataError {
    /// Reading a folder or file failed.
    Io(PathBuf, std::io::Error),
    /// The IDX files are malformed.
    Idx(String),
    /// No class folder holds a usable image.
    Empty(PathBuf),
}

impl std::fmt::Display for DataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            DataError::Idx(m) => write!(f, "{m}"),
            DataError::Empty(p) => write!(
                f,
                "{}: no images found (expected root/<class>/*.png|jpg, or the Fashion-MNIST IDX folder)",
                p.display()
            ),
        }
    }
}

impl std::error::Error for DataError {}

/// Where one sample's pixels are.
#[derive(Clone, Debug)]
enum Pixels {
    /// A grayscale IDX image (shared storage, index).
    Gray(Arc<Vec<Vec<u8>>>, usize, u32, u32),
    /// An image file.
    File(PathBuf),
}

/// A labelled split.
#[derive(Clone, Debug)]
pub struct Split {
    items: Vec<(Pixels, usize)>,
}

impl Split {
    /// Samples in the split.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the split is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The first `n` samples in a seeded shuffle (a class-balanced-in-expectation subset).
    pub fn subset(&self, n: usize, seed: u64) -> Split {
        if n >= self.items.len() {
            return self.clone();
        }
        let perm = SplitMix64::new(seed).permutation(self.items.len());
        Split {
            items: perm[..n].iter().map(|&i| self.items[i].clone()).collect(),
        }
    }

    /// Image files with label 0 (for pictures and prediction).
    pub fn files(paths: Vec<PathBuf>) -> Split {
        Split {
            items: paths.into_iter().map(|p| (Pixels::File(p), 0)).collect(),
        }
    }

    /// Label of sample `i`.
    pub fn label(&self, i: usize) -> usize {
        self.items[i].1
    }
}

/// Train and test splits with class names.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Training split.
    pub train: Split,
    /// Evaluation split.
    pub test: Split,
    /// Class names, index = label.
    pub classes: Vec<String>,
}

/// Fashion-MNIST's class names, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

impl Dataset {
    /// Opens `root`: the Fashion-MNIST IDX folder (recognised by `train-images-idx3-ubyte.gz`),
    /// or an ImageFolder tree with `train/` and `val/` (or `test/`) subfolders, or a single tree
    /// of which `test_fraction` (seeded) is held out for evaluation.
    pub fn open(root: &Path, test_fraction: f64, seed: u64) -> Result<Dataset, DataError> {
        if root.join("train-images-idx3-ubyte.gz").is_file() {
            let split = |img: &str, lab: &str| -> Result<Split, DataError> {
                let s = quant::data::read_idx(&root.join(img), &root.join(lab))
                    .map_err(|e| DataError::Idx(e.to_string()))?;
                let (h, w) = (s.rows as u32, s.cols as u32);
                let images = Arc::new(s.images);
                Ok(Split {
                    items: s
                        .labels
                        .iter()
                        .enumerate()
                        .map(|(i, &l)| (Pixels::Gray(images.clone(), i, h, w), l as usize))
                        .collect(),
                })
            };
            return Ok(Dataset {
                train: split("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")?,
                test: split("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")?,
                classes: FASHION_MNIST_CLASSES
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            });
        }
        let val = ["val", "test"]
            .iter()
            .map(|v| root.join(v))
            .find(|p| p.is_dir());
        if let (true, Some(val)) = (root.join("train").is_dir(), val) {
            let classes = class_dirs(&root.join("train"))?;
            let train = folder_split(&root.join("train"), &classes)?;
            let test = folder_split(&val, &classes)?;
            if train.is_empty() {
                return Err(DataError::Empty(root.join("train")));
            }
            return Ok(Dataset {
                train,
                test,
                classes,
            });
        }
        let classes = class_dirs(root)?;
        let all = folder_split(root, &classes)?;
        if all.is_empty() {
            return Err(DataError::Empty(root.into()));
        }
        let perm = SplitMix64::new(seed).permutation(all.len());
        let n_test = ((all.len() as f64 * test_fraction).round() as usize).min(all.len() - 1);
        let pick = |r: &[usize]| Split {
            items: r.iter().map(|&i| all.items[i].clone()).collect(),
        };
        Ok(Dataset {
            test: pick(&perm[..n_test]),
            train: pick(&perm[n_test..]),
            classes,
        })
    }
}

fn class_dirs(root: &Path) -> Result<Vec<String>, DataError> {
    let rd = std::fs::read_dir(root).map_err(|e| DataError::Io(root.into(), e))?;
    let mut classes = Vec::new();
    for e in rd {
        let e = e.map_err(|e| DataError::Io(root.into(), e))?;
        if e.path().is_dir() {
            classes.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    classes.sort();
    if classes.is_empty() {
        return Err(DataError::Empty(root.into()));
    }
    Ok(classes)
}

fn folder_split(root: &Path, classes: &[String]) -> Result<Split, DataError> {
    let mut items = Vec::new();
    for (label, c) in classes.iter().enumerate() {
        let dir = root.join(c);
        if !dir.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        quant::data::collect_images(&dir, &mut files).map_err(|e| match e {
            quant::data::DataError::Io(p, e) => DataError::Io(p, e),
            other => DataError::Idx(other.to_string()),
        })?;
        files.sort();
        items.extend(files.into_iter().map(|p| (Pixels::File(p), label)));
    }
    Ok(Split { items })
}

/// Random-resized-crop parameters (torchvision's `RandomResizedCrop`).
#[derive(Clone, Copy, Debug)]
pub struct Augment {
    /// Area fraction range of the crop.
    pub scale: (f64, f64),
    /// Aspect ratio range (log-uniform).
    pub ratio: (f64, f64),
    /// Flip horizontally with probability 1/2.
    pub hflip: bool,
}

impl Augment {
    /// timm's fine-tuning default: scale (0.08, 1), ratio (3/4, 4/3), flip.
    pub const FINETUNE: Augment = Augment {
        scale: (0.08, 1.0),
        ratio: (3.0 / 4.0, 4.0 / 3.0),
        hflip: true,
    };
}

fn decode(p: &Pixels) -> Result<RgbImage, String> {
    match p {
        Pixels::Gray(imgs, i, h, w) => {
            let g = image::GrayImage::from_raw(*w, *h, imgs[*i].clone())
                .ok_or_else(|| "IDX image of the wrong size".to_string())?;
            Ok(image::DynamicImage::ImageLuma8(g).to_rgb8())
        }
        // Strict: a truncated or corrupt file is skipped and counted, not trained on.
        Pixels::File(path) => preprocess::open_rgb8(path).map_err(|e| e.to_string()),
    }
}

/// torchvision's RandomResizedCrop box: 10 tries at a random area and log-uniform ratio, then the
/// central crop clamped to the ratio range.
fn rrc_box(w: u32, h: u32, a: &Augment, rng: &mut SplitMix64) -> (u32, u32, u32, u32) {
    let area = (w * h) as f64;
    let (lr0, lr1) = (a.ratio.0.ln(), a.ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.uniform(a.scale.0, a.scale.1);
        let ar = rng.uniform(lr0, lr1).exp();
        let cw = (target * ar).sqrt().round() as u32;
        let ch = (target / ar).sqrt().round() as u32;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            let x = rng.below((w - cw + 1) as usize) as u32;
            let y = rng.below((h - ch + 1) as usize) as u32;
            return (x, y, cw, ch);
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (cw, ch) = if in_ratio < a.ratio.0 {
        (w, (w as f64 / a.ratio.0).round() as u32)
    } else if in_ratio > a.ratio.1 {
        ((h as f64 * a.ratio.1).round() as u32, h)
    } else {
        (w, h)
    };
    ((w - cw) / 2, (h - ch) / 2, cw, ch)
}

/// One sample as normalized f32 CHW at `size`×`size`. Training (`aug` given) crops at random
/// (bicubic resize) and may flip; evaluation resizes IDX images whole and centre-crops files
/// at timm's 0.875 crop fraction.
pub fn load(
    split: &Split,
    i: usize,
    size: u32,
    aug: Option<(&Augment, &mut SplitMix64)>,
) -> Result<Vec<f32>, String> {
    let (pixels, _) = &split.items[i];
    let img = decode(pixels)?;
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return Err("empty image".into());
    }
    let out = match aug {
        Some((a, rng)) => {
            let (x, y, cw, ch) = rrc_box(w, h, a, rng);
            let crop = image::imageops::crop_imm(&img, x, y, cw, ch).to_image();
            let mut r = image::imageops::resize(&crop, size, size, FilterType::CatmullRom);
            if a.hflip && rng.next_f64() < 0.5 {
                image::imageops::flip_horizontal_in_place(&mut r);
            }
            r
        }
        None => match pixels {
            Pixels::Gray(..) => image::imageops::resize(&img, size, size, FilterType::CatmullRom),
            Pixels::File(_) => {
                // timm's eval transform (refuses resizes beyond the decoding cap).
                let rgb = preprocess::center_crop(&img, size as usize, size as usize, 0.875)
                    .map_err(|e| e.to_string())?;
                RgbImage::from_raw(size, size, rgb).expect("center_crop returns size × size RGB")
            }
        },
    };
    Ok(normalize(&out))
}

/// u8 RGB HWC → normalized f32 CHW.
pub fn normalize(img: &RgbImage) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    let mut out = vec![0.0f32; 3 * plane];
    for (k, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + k] = (p[c] as f32 / 255.0 - MEAN[c]) / STD[c];
        }
    }
    out
}

/// A batch ready for the model.
#[derive(Debug)]
pub struct Batch {
    /// Normalized f32, `[n, 3, size, size]`.
    pub images: Vec<f32>,
    /// Labels, one per image.
    pub labels: Vec<usize>,
    /// Images that could not be read (skipped).
    pub skipped: Vec<String>,
}

impl Batch {
    /// Images in the batch.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether no image survived.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Decodes `indices` in parallel (rayon). With `aug`, sample `indices[k]` of epoch `epoch`
/// draws its crop from `SplitMix64::derive(&[seed, epoch, index])`.
pub fn batch(
    split: &Split,
    indices: &[usize],
    size: u32,
    aug: Option<(&Augment, u64, u64)>,
) -> Batch {
    let loaded: Vec<(usize, Result<Vec<f32>, String>)> = indices
        .par_iter()
        .map(|&i| {
            let r = match aug {
                Some((a, seed, epoch)) => {
                    let mut rng = SplitMix64::derive(&[seed, epoch, i as u64]);
                    load(split, i, size, Some((a, &mut rng)))
                }
                None => load(split, i, size, None),
            };
            (i, r)
        })
        .collect();
    let mut b = Batch {
        images: Vec::with_capacity(indices.len() * 3 * (size * size) as usize),
        labels: Vec::with_capacity(indices.len()),
        skipped: Vec::new(),
    };
    for (i, r) in loaded {
        match r {
            Ok(px) => {
                b.images.extend_from_slice(&px);
                b.labels.push(split.label(i));
            }
            Err(e) => b.skipped.push(e),
        }
    }
    b
}

/// Batches of an epoch decoded on a background thread, two ahead of the consumer, so that the
/// optimizer step does not wait for JPEG decoding.
pub fn prefetch(
    split: Split,
    order: Vec<Vec<usize>>,
    size: u32,
    aug: Option<(Augment, u64, u64)>,
) -> mpsc::Receiver<Batch> {
    let (tx, rx) = mpsc::sync_channel(2);
    std::thread::spawn(move || {
        for idx in order {
            let b = batch(
                &split,
                &idx,
                size,
                aug.as_ref().map(|(a, s, e)| (a, *s, *e)),
            );
            if tx.send(b).is_err() {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrc_box_stays_inside_and_respects_scale() {
        let mut rng = SplitMix64::new(3);
        for _ in 0..2000 {
            let (w, h) = (1 + rng.below(300) as u32, 1 + rng.below(300) as u32);
            let (x, y, cw, ch) = rrc_box(w, h, &Augment::FINETUNE, &mut rng);
            assert!(
                cw >= 1 && ch >= 1 && x + cw <= w && y + ch <= h,
                "{w}x{h}: {x},{y},{cw},{ch}"
            );
        }
    }

    #[test]
    fn normalize_matches_the_formula() {
        let img = RgbImage::from_raw(1, 1, vec![0, 128, 255]).unwrap();
        let v = normalize(&img);
        assert!((v[0] - (0.0 - 0.485) / 0.229).abs() < 1e-6);
        assert!((v[1] - (128.0 / 255.0 - 0.456) / 0.224).abs() < 1e-6);
        assert!((v[2] - (1.0 - 0.406) / 0.225).abs() < 1e-6);
    }
}
