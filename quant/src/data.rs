//! Calibration and evaluation images: a folder of png/jpg files (searched recursively), or the
//! Fashion-MNIST IDX folder (Debian's `dataset-fashion-mnist`: `/usr/share/datasets/fashion-mnist`).
//! Every sample becomes u8 RGB HWC at the model's input size, ready for `edge::Input::HwcU8`.
//!
//! Splits never overlap: Fashion-MNIST calibrates on the train split and evaluates on the test
//! split (with labels); a folder is shuffled by the seed, its first `n` files calibrate and the
//! next ones evaluate. An image that cannot be read or decoded is skipped and counted.

use std::io::Read;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;

/// Why a source cannot be used.
#[derive(Debug)]
pub enum DataError {
    /// Reading failed.
    Io(PathBuf, std::io::Error),
    /// An IDX file is malformed.
    Idx(PathBuf, String),
    /// The folder holds no png/jpg file.
    Empty(PathBuf),
}

impl std::fmt::Display for DataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            DataError::Idx(p, m) => write!(f, "{}: not a valid IDX file: {m}", p.display()),
            DataError::Empty(p) => write!(
                f,
                "{}: no images found (.{})",
                p.display(),
                preprocess::EXTENSIONS.join(", .")
            ),
        }
    }
}

impl std::error::Error for DataError {}

/// One 28×28 (or any size) grayscale split with labels.
#[derive(Clone, Debug)]
pub struct IdxSplit {
    /// Images, row-major, `rows·cols` bytes each.
    pub images: Vec<Vec<u8>>,
    /// Class per image.
    pub labels: Vec<u8>,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
}

/// Where samples come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// Image files (sorted paths).
    Folder(Vec<PathBuf>),
    /// Fashion-MNIST: train and test splits.
    FashionMnist {
        /// 60 000 training images.
        train: IdxSplit,
        /// 10 000 test images.
        test: IdxSplit,
    },
}

/// A sample to run: RGB HWC at the model's size, and its label if known.
#[derive(Clone, Debug)]
pub struct Sample {
    /// What it is (file path or `split[index]`).
    pub name: String,
    /// u8 RGB, `h·w·3`.
    pub rgb: Vec<u8>,
    /// Class index, when the source has labels.
    pub label: Option<usize>,
}

fn read_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let f = std::fs::File::open(path).map_err(|e| DataError::Io(path.into(), e))?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(f)
        .read_to_end(&mut out)
        .map_err(|e| DataError::Io(path.into(), e))?;
    Ok(out)
}

fn be32(b: &[u8], at: usize) -> Option<usize> {
    b.get(at..at + 4)
        .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]) as usize)
}

/// Parses an IDX image file (magic 0x803) and its label file (0x801).
pub fn read_idx(images: &Path, labels: &Path) -> Result<IdxSplit, DataError> {
    let bad = |p: &Path, m: &str| DataError::Idx(p.into(), m.into());
    let ib = read_gz(images)?;
    let lb = read_gz(labels)?;
    if be32(&ib, 0) != Some(0x803) {
        return Err(bad(images, "magic is not 0x00000803 (u8 images, 3 dims)"));
    }
    if be32(&lb, 0) != Some(0x801) {
        return Err(bad(labels, "magic is not 0x00000801 (u8 labels)"));
    }
    let (n, rows, cols) = match (be32(&ib, 4), be32(&ib, 8), be32(&ib, 12)) {
        (Some(n), Some(r), Some(c)) if r > 0 && c > 0 && r <= 4096 && c <= 4096 => (n, r, c),
        _ => return Err(bad(images, "bad dimensions")),
    };
    let nl = be32(&lb, 4).ok_or_else(|| bad(labels, "truncated header"))?;
    if nl != n {
        return Err(bad(labels, &format!("{nl} labels for {n} images")));
    }
    let px = rows * cols;
    if ib.len() != 16 + n * px {
        return Err(bad(images, &format!("length {} ≠ 16 + {n}·{px}", ib.len())));
    }
    if lb.len() != 8 + n {
        return Err(bad(labels, &format!("length {} ≠ 8 + {n}", lb.len())));
    }
    Ok(IdxSplit {
        images: ib[16..].chunks_exact(px).map(<[u8]>::to_vec).collect(),
        labels: lb[8..].to_vec(),
        rows,
        cols,
    })
}

/// Appends every image below `dir` (recursively; [`preprocess::EXTENSIONS`]) to `out`.
pub fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::Io(dir.into(), e))?;
    for e in rd {
        let p = e.map_err(|e| DataError::Io(dir.into(), e))?.path();
        if p.is_dir() {
            collect_images(&p, out)?;
        } else if preprocess::has_image_extension(&p) {
            out.push(p);
        }
    }
    Ok(())
}

impl Source {
    /// Opens a Fashion-MNIST IDX folder (recognised by its `train-images-idx3-ubyte.gz`) or a
    /// folder of images.
    pub fn open(path: &Path) -> Result<Source, DataError> {
        let idx = |n: &str| path.join(n);
        if idx("train-images-idx3-ubyte.gz").exists() {
            return Ok(Source::FashionMnist {
                train: read_idx(
                    &idx("train-images-idx3-ubyte.gz"),
                    &idx("train-labels-idx1-ubyte.gz"),
                )?,
                test: read_idx(
                    &idx("t10k-images-idx3-ubyte.gz"),
                    &idx("t10k-labels-idx1-ubyte.gz"),
                )?,
            });
        }
        let mut files = Vec::new();
        collect_images(path, &mut files)?;
        if files.is_empty() {
            return Err(DataError::Empty(path.into()));
        }
        files.sort();
        Ok(Source::Folder(files))
    }

    /// Number of label classes, when samples carry labels (Fashion-MNIST: 10).
    pub fn label_classes(&self) -> Option<usize> {
        match self {
            Source::FashionMnist { .. } => Some(10),
            Source::Folder(_) => None,
        }
    }

    /// The calibration draw: every calibration candidate in a seeded random order
    /// (Fashion-MNIST: its train split; a folder: all its files). The caller takes candidates
    /// in order until it has as many *readable* images as it wants, so unreadable files are
    /// replaced rather than subtracted; [`Source::held_out`] then continues after them.
    pub fn calibration_order(&self, seed: u64) -> Vec<Item> {
        let n = match self {
            Source::FashionMnist { train, .. } => train.images.len(),
            Source::Folder(files) => files.len(),
        };
        shuffled(n, seed)
            .into_iter()
            .map(|index| Item { eval: false, index })
            .collect()
    }

    /// Up to `n_eval` held-out items, disjoint from calibration: Fashion-MNIST's test split
    /// from its start; a folder's `rest`, the part of [`Source::calibration_order`] that
    /// calibration did not take.
    pub fn held_out(&self, rest: &[Item], n_eval: usize) -> Vec<Item> {
        match self {
            Source::FashionMnist { test, .. } => (0..test.images.len().min(n_eval))
                .map(|index| Item { eval: true, index })
                .collect(),
            Source::Folder(_) => rest.iter().take(n_eval).copied().collect(),
        }
    }

    /// Loads one item at `h × w`, or says why it cannot be used (the caller skips and counts).
    pub fn load(&self, item: Item, h: usize, w: usize) -> Result<Sample, String> {
        match self {
            Source::FashionMnist { train, test } => {
                let (split, name) = if item.eval {
                    (test, "test")
                } else {
                    (train, "train")
                };
                let px = split
                    .images
                    .get(item.index)
                    .ok_or_else(|| format!("{name}[{}]: no such image", item.index))?;
                let gray =
                    image::GrayImage::from_raw(split.cols as u32, split.rows as u32, px.clone())
                        .ok_or_else(|| format!("{name}[{}]: wrong size", item.index))?;
                let rgb = image::DynamicImage::ImageLuma8(gray).to_rgb8();
                let r = image::imageops::resize(&rgb, w as u32, h as u32, FilterType::Triangle);
                Ok(Sample {
                    name: format!("fashion-mnist {name}[{}]", item.index),
                    rgb: r.into_raw(),
                    label: split.labels.get(item.index).map(|&l| l as usize),
                })
            }
            Source::Folder(files) => {
                let path = files
                    .get(item.index)
                    .ok_or_else(|| format!("image {}: no such file", item.index))?;
                let rgb = load_center_crop(path, h, w, 0.875)?;
                Ok(Sample {
                    name: path.display().to_string(),
                    rgb,
                    label: None,
                })
            }
        }
    }
}

/// An image of a [`Source`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Item {
    /// Fashion-MNIST: from the test split.
    pub eval: bool,
    /// Index in its split or file list.
    pub index: usize,
}

/// `0..n` in a seeded random order (Fisher–Yates over a xorshift64*).
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        let j = (s.wrapping_mul(0x2545_F491_4F6C_DD1D) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

/// timm's evaluation transform on a strictly decoded file ([`preprocess::load_center_crop`]):
/// RGB u8 HWC `h × w`; a truncated, corrupt or oversized image is an error naming the file.
pub fn load_center_crop(path: &Path, h: usize, w: usize, crop_pct: f64) -> Result<Vec<u8>, String> {
    preprocess::load_center_crop(path, h, w, crop_pct).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gz(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn idx_files_parse_and_malformed_ones_are_typed_errors() {
        let dir = std::env::temp_dir().join(format!("quant-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut img = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3];
        img.extend(0..12u8);
        let lab = [0u8, 0, 8, 1, 0, 0, 0, 2, 7, 9];
        let (ip, lp) = (dir.join("i.gz"), dir.join("l.gz"));
        std::fs::write(&ip, gz(&img)).unwrap();
        std::fs::write(&lp, gz(&lab)).unwrap();
        let s = read_idx(&ip, &lp).unwrap();
        assert_eq!((s.rows, s.cols, s.labels.clone()), (2, 3, vec![7, 9]));
        assert_eq!(s.images[1], vec![6, 7, 8, 9, 10, 11]);
        // One byte short, wrong magic, label count mismatch, not gzip: all typed errors.
        std::fs::write(&ip, gz(&img[..img.len() - 1])).unwrap();
        assert!(matches!(read_idx(&ip, &lp), Err(DataError::Idx(..))));
        let mut bad = img.clone();
        bad[3] = 1;
        std::fs::write(&ip, gz(&bad)).unwrap();
        assert!(matches!(read_idx(&ip, &lp), Err(DataError::Idx(..))));
        std::fs::write(&ip, gz(&img)).unwrap();
        std::fs::write(&lp, gz(&lab[..9])).unwrap();
        assert!(matches!(read_idx(&ip, &lp), Err(DataError::Idx(..))));
        std::fs::write(&lp, b"plain").unwrap();
        assert!(matches!(read_idx(&ip, &lp), Err(DataError::Io(..))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn folder_splits_are_disjoint_and_bad_images_are_reported() {
        let dir = std::env::temp_dir().join(format!("quant-folder-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for i in 0..5 {
            let img = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8, y as u8, i]));
            img.save(dir.join("sub").join(format!("{i}.png"))).unwrap();
        }
        std::fs::write(dir.join("broken.jpg"), b"not a jpeg").unwrap();
        std::fs::write(dir.join("notes.txt"), b"ignored").unwrap();
        let src = Source::open(&dir).unwrap();
        let Source::Folder(files) = &src else {
            panic!("expected a folder")
        };
        assert_eq!(files.len(), 6);
        let order = src.calibration_order(1);
        assert_eq!(order.len(), 6);
        let (c, e) = (&order[..4], src.held_out(&order[4..], 10));
        assert_eq!((c.len(), e.len()), (4, 2));
        assert!(c.iter().all(|i| !e.contains(i)));
        let (mut ok, mut bad) = (0, 0);
        for it in c.iter().chain(&e) {
            match src.load(*it, 16, 16) {
                Ok(s) => {
                    assert_eq!(s.rgb.len(), 16 * 16 * 3);
                    ok += 1
                }
                Err(m) => {
                    assert!(m.contains("broken.jpg"), "{m}");
                    bad += 1
                }
            }
        }
        assert_eq!((ok, bad), (5, 1));
        assert!(matches!(
            Source::open(&dir.join("sub").join("0.png")),
            Err(DataError::Io(..))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
