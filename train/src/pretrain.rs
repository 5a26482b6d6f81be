//! `train pretrain` (FCMAE) and `train visualize`: the official pretraining recipe (AdamW betas
//! (0.9, 0.95), weight decay 0.05, lr = blr·batch/256, warmup + cosine, random resized crop
//! (0.2–1) + flip), with the same progress bar, CSV, plot, atomic checkpoints, exact resume and
//! NaN stop as fine-tuning, and reconstruction pictures every N epochs.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use image::{Rgb, RgbImage};
use serde_json::json;

use crate::checkpoint::{self, Checkpoint};
use crate::data::{self, Augment, Dataset, Split, MEAN, STD};
use crate::distributed::World;
use crate::fcmae::{self, Fcmae, FcmaeConfig, STRIDE};
use crate::finetune::{device, DeviceKind};
use crate::model::{Config, Size};
use crate::optim::{self, AdamW, AdamWConfig};
use crate::parallel;
use crate::rng::SplitMix64;
use crate::runlog::{self, MetricsCsv};
use crate::sparse::Encoder;
use crate::weights;

/// Columns of the pretraining `metrics.csv`.
pub const CSV_HEADER: &str = "epoch,step,train_loss,lr,img_per_s,skipped,seconds";

/// Everything `train pretrain` takes.
#[derive(Clone, Debug)]
pub struct Options {
    /// Encoder size.
    pub size: Size,
    /// Dataset root (labels are not used).
    pub data: PathBuf,
    /// Square input size (a multiple of 32).
    pub input_size: u32,
    /// Patch side (must be 32, the encoder's stride).
    pub patch: usize,
    /// Fraction of patches masked.
    pub mask_ratio: f64,
    /// Decoder width.
    pub decoder_dim: usize,
    /// Decoder blocks.
    pub decoder_depth: usize,
    /// Per-patch normalized targets.
    pub norm_pix: bool,
    /// Epochs.
    pub epochs: u64,
    /// Batch size.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate.
    pub min_lr: f64,
    /// Warmup epochs.
    pub warmup_epochs: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Seed.
    pub seed: u64,
    /// Run directory.
    pub out: PathBuf,
    /// Continue from `out/checkpoint.safetensors`.
    pub resume: bool,
    /// Compute device.
    pub device: DeviceKind,
    /// Use a seeded subset of this many training images.
    pub train_subset: Option<usize>,
    /// Write `recon_epochNNN.png` every this many epochs (0: never).
    pub vis_every: u64,
    /// No progress bar.
    pub quiet: bool,
    /// GRN in the encoder's and decoder's blocks (`false`: the ablation).
    pub grn: bool,
    /// Sparse (default) or masked-dense encoder: the same function, see [`crate::sparse`].
    pub encoder: Encoder,
}

impl Options {
    fn fcmae_config(&self) -> FcmaeConfig {
        FcmaeConfig {
            encoder: Config {
                size: self.size.clone(),
                num_classes: 1,
                drop_path: 0.0,
                grn: self.grn,
            },
            decoder_dim: self.decoder_dim,
            decoder_depth: self.decoder_depth,
            patch: self.patch,
        }
    }
}

/// The loss of one batch (host images `[n, 3, s, s]`), with the mask drawn from `rng`.
pub fn batch_loss(
    model: &Fcmae,
    images: Vec<f32>,
    n: usize,
    s: usize,
    o: &Options,
    rng: &mut SplitMix64,
    device: &Device,
) -> Tensor<1> {
    let l = (s / STRIDE) * (s / STRIDE);
    let mask = fcmae::random_mask(n, l, o.mask_ratio, rng);
    let target = fcmae::patchify(&images, n, s, s, o.patch, o.norm_pix);
    let x = Tensor::<4>::from_data(TensorData::new(images, [n, 3, s, s]), device);
    let pred = model.forward_with(x, &mask, Some(rng), o.encoder);
    fcmae::masked_mse(pred, &target, &mask)
}

/// Runs the pretraining on the ranks of `world` (rank 0 writes; see [`crate::distributed`]).
/// Returns the last epoch's mean loss.
pub fn run(o: &Options, world: &World) -> Result<f64, String> {
    if o.patch != STRIDE {
        return Err(format!(
            "--patch-size {}: the encoder's total stride is {STRIDE}, so one patch is one position of its last stage; use 32",
            o.patch
        ));
    }
    if !(o.input_size as usize).is_multiple_of(STRIDE) || o.input_size < 64 {
        return Err(format!(
            "--input-size {}: must be a multiple of 32 and at least 64 (two patches a side)",
            o.input_size
        ));
    }
    let l = (o.input_size as usize / STRIDE).pow(2);
    if (l as f64 * (1.0 - o.mask_ratio)).floor() < 1.0 || o.mask_ratio <= 0.0 {
        return Err(format!(
            "--mask-ratio {}: with {l} patches it must keep at least one and mask at least one",
            o.mask_ratio
        ));
    }
    let base = device(o.device)?;
    let train_dev = base.clone().autodiff();
    std::fs::create_dir_all(&o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
    let ds = Dataset::open(&o.data, 0.0, o.seed).map_err(|e| e.to_string())?;
    let train = match o.train_subset {
        Some(n) => ds.train.subset(n, o.seed),
        None => ds.train.clone(),
    };
    if train.is_empty() {
        return Err(format!("{}: no training images", o.data.display()));
    }
    let ck_path = o.out.join(checkpoint::FILE);
    let mut model = Fcmae::new(&o.fcmae_config(), o.seed, &train_dev);
    let mut opt = AdamW::new(AdamWConfig {
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: o.weight_decay,
        layer_decay: 1.0,
    });
    let mut start_epoch = 0;
    let mut resumed_loss = f64::NAN;
    let resume = o.resume && ck_path.is_file();
    if resume {
        let ck = Checkpoint::load(&ck_path).map_err(|e| e.to_string())?;
        let st = &ck.state;
        if st["kind"] != "pretrain"
            || st["size"] != o.size.name
            || st["input_size"] != o.input_size
            || st["decoder_dim"] != o.decoder_dim
            || st["decoder_depth"] != o.decoder_depth
            || st["grn"].as_bool().unwrap_or(true) != o.grn
        {
            return Err(format!(
                "{}: checkpoint is {st}, not this pretraining run",
                ck_path.display()
            ));
        }
        model = runlog::load_burn_layout(model, &ck.group("model"))
            .map_err(|e| format!("{}: {e}", ck_path.display()))?;
        start_epoch = st["epoch"].as_u64().unwrap_or(0);
        // The loss reported when no epoch is left to run.
        resumed_loss = st["loss"].as_f64().unwrap_or(f64::NAN);
        opt.load_state(st["step"].as_u64().unwrap_or(0), &ck.tensors, &base);
        eprintln!("resuming {} after epoch {start_epoch}", ck_path.display());
    }
    let root = world.is_root();
    let open = |file: &str, header: &'static str| {
        root.then(|| MetricsCsv::open(o.out.join(file), header, resume.then_some(start_epoch)))
            .transpose()
    };
    let csv = open(crate::plot::METRICS_FILE, CSV_HEADER)?;
    let steps_csv = open(crate::plot::STEPS_FILE, crate::plot::STEPS_HEADER)?;
    let parts = world.parts(o.device.parts());
    let rank = world.rank();
    let mut steps_run = 0u64;
    let steps_per_epoch = train.len().div_ceil(o.batch) as u64;
    let total = steps_per_epoch * o.epochs;
    let warmup = (o.warmup_epochs * steps_per_epoch as f64).round() as u64;
    let augment = Augment {
        scale: (0.2, 1.0),
        ..Augment::FINETUNE
    };
    let s = o.input_size as usize;
    let mut last = resumed_loss;
    for epoch in start_epoch..o.epochs {
        let lr_of = |i: u64| optim::lr_at(i, total, warmup, o.lr, o.min_lr);
        let plan = runlog::Epoch {
            train: &train,
            batch: o.batch,
            input_size: o.input_size,
            augment,
            seed: o.seed,
            epoch,
            epochs: o.epochs,
            lr: &lr_of,
            checkpoint: &ck_path,
            quiet: o.quiet,
            world,
        };
        let stats = runlog::run_epoch(&plan, |k, lr, b| {
            let n = b.len();
            let px = 3 * s * s;
            // Every sample masks the same number of patches, so a slice's (and a rank's) share
            // of the masked-patch mean is its share of the samples (the weight `grads` and
            // `reduce_grads` give it).
            let (lv, grads) = if n == 0 {
                (0.0, None)
            } else {
                parallel::grads(&model, n, parts, |m, i, r| {
                    // Slices numbered across ranks: each draws its own masks.
                    let slice = (rank * parts) as u64 + i;
                    let mut rng = SplitMix64::derive(&[o.seed, epoch, k, 0x4d41_534b, slice]);
                    let images = b.images[r.start * px..r.end * px].to_vec();
                    batch_loss(m, images, r.len(), s, o, &mut rng, &train_dev)
                })
            };
            let (lv, total, grads) = world.reduce_grads(&model, lv, n, grads);
            if let Some(grads) = grads {
                model = opt.update(lr, model.clone(), grads);
            }
            steps_run += 1;
            (lv, total)
        })?;
        if world.size() > 1 {
            let sum = world.check_identical(&model, &format!("after epoch {}", epoch + 1))?;
            if root {
                eprintln!(
                    "parameters identical on {} ranks after epoch {} (checksum {sum:016x})",
                    world.size(),
                    epoch + 1
                );
            }
        }
        let (secs, ips, lr, skipped) = (stats.secs, stats.img_per_s(), stats.lr, stats.skipped);
        last = stats.loss;
        // Rank 0 alone (the only one holding the CSVs) reports and writes.
        let (Some(csv), Some(steps_csv)) = (&csv, &steps_csv) else {
            continue;
        };
        println!(
            "epoch {}/{}: pretrain loss {last:.4}, lr {lr:.3e}, {ips:.1} img/s",
            epoch + 1,
            o.epochs
        );
        csv.append(&format!(
            "{},{},{last:.6},{lr:.6e},{ips:.2},{skipped},{secs:.1}",
            epoch + 1,
            (epoch + 1) * steps_per_epoch
        ))?;
        steps_csv.append_steps(epoch, &stats)?;
        crate::plot::draw_run(&o.out)?;
        if o.vis_every > 0 && (epoch + 1).is_multiple_of(o.vis_every) {
            let strip = reconstruct(&model.valid(), &train, 0, o, o.seed, &base)?;
            let p = o.out.join(format!("recon_epoch{:03}.png", epoch + 1));
            strip
                .save(&p)
                .map_err(|e| format!("{}: {e}", p.display()))?;
        }
        let mut tensors = std::collections::HashMap::new();
        tensors.extend(checkpoint::prefixed("model", weights::burn_tensors(&model)));
        tensors.extend(opt.state_tensors());
        Checkpoint {
            tensors,
            state: json!({
                "kind": "pretrain",
                "epoch": epoch + 1,
                "step": opt.step,
                "size": o.size.name,
                "input_size": o.input_size,
                "grn": o.grn,
                "patch": o.patch,
                "mask_ratio": o.mask_ratio,
                "decoder_dim": o.decoder_dim,
                "decoder_depth": o.decoder_depth,
                "norm_pix": o.norm_pix,
                "seed": o.seed,
                "loss": last,
            }),
        }
        .save(&ck_path)
        .map_err(|e| e.to_string())?;
    }
    if root {
        if let Some(report) = world.communication_report(steps_run) {
            eprintln!("{report}");
        }
    }
    Ok(last)
}

fn to_rgb(chw: &[f32], s: usize) -> RgbImage {
    RgbImage::from_fn(s as u32, s as u32, |x, y| {
        let i = y as usize * s + x as usize;
        let px = |c: usize| {
            ((chw[c * s * s + i] * STD[c] + MEAN[c]) * 255.0)
                .round()
                .clamp(0.0, 255.0) as u8
        };
        Rgb([px(0), px(1), px(2)])
    })
}

/// original | masked input | reconstruction | reconstruction with the visible patches pasted
/// back, side by side (the MAE figure). With norm-pix targets the prediction is mapped back with
/// each patch's own mean and standard deviation, as the MAE papers' figures do.
pub fn reconstruct(
    model: &Fcmae,
    split: &Split,
    index: usize,
    o: &Options,
    seed: u64,
    device: &Device,
) -> Result<RgbImage, String> {
    let s = o.input_size as usize;
    let img = data::load(split, index, o.input_size, None)?;
    let (p, g) = (o.patch, s / o.patch);
    let l = g * g;
    let mut rng = SplitMix64::derive(&[seed, 0x5649_535a]);
    let mask = fcmae::random_mask(1, l, o.mask_ratio, &mut rng);
    let x = Tensor::<4>::from_data(TensorData::new(img.clone(), [1, 3, s, s]), device);
    let pred: Vec<f32> = model
        .forward(x, &mask, None)
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| format!("{e:?}"))?;
    let raw = fcmae::patchify(&img, 1, s, s, p, false);
    let k = p * p * 3;
    let mut recon = vec![0f32; 3 * s * s];
    let mut pasted = img.clone();
    let mut masked = img.clone();
    for patch in 0..l {
        let (py, px) = (patch / g, patch % g);
        let src = &raw[patch * k..(patch + 1) * k];
        let (mean, sd) = if o.norm_pix {
            let m = src.iter().map(|&v| v as f64).sum::<f64>() / k as f64;
            let var = src.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / (k - 1) as f64;
            (m, (var + 1e-6).sqrt())
        } else {
            (0.0, 1.0)
        };
        for r in 0..p {
            for q in 0..p {
                for c in 0..3 {
                    let v = pred[patch * k + (r * p + q) * 3 + c] as f64 * sd + mean;
                    let at = (c * s + py * p + r) * s + px * p + q;
                    recon[at] = v as f32;
                    if mask[patch] > 0.5 {
                        pasted[at] = v as f32;
                        // Masked patches shown grey (ImageNet mean = 0 after normalization).
                        masked[at] = 0.0;
                    }
                }
            }
        }
    }
    let panels = [
        to_rgb(&img, s),
        to_rgb(&masked, s),
        to_rgb(&recon, s),
        to_rgb(&pasted, s),
    ];
    Ok(tile(&panels, false))
}

/// Images of equal size side by side (`vertical`: stacked), 4 white pixels apart.
fn tile(images: &[RgbImage], vertical: bool) -> RgbImage {
    let gap = 4u32;
    let (w, h) = images[0].dimensions();
    let k = images.len() as u32;
    let (tw, th) = if vertical {
        (w, k * (h + gap) - gap)
    } else {
        (k * (w + gap) - gap, h)
    };
    let mut out = RgbImage::from_pixel(tw, th, Rgb([255, 255, 255]));
    for (i, img) in images.iter().enumerate() {
        let at = |step: u32| (i as u32 * (step + gap)) as i64;
        let (x, y) = if vertical { (0, at(h)) } else { (at(w), 0) };
        image::imageops::replace(&mut out, img, x, y);
    }
    out
}

/// Rebuilds the pretraining options stored in a checkpoint (for `visualize` and `export`).
pub fn options_from_checkpoint(ck: &Checkpoint, path: &Path) -> Result<Options, String> {
    let st = &ck.state;
    if st["kind"] != "pretrain" {
        return Err(format!("{}: not a pretraining checkpoint", path.display()));
    }
    let size = st["size"]
        .as_str()
        .and_then(Size::named)
        .ok_or_else(|| format!("{}: checkpoint names no known size", path.display()))?;
    let num = |k: &str| st[k].as_u64().map(|v| v as usize);
    Ok(Options {
        size,
        data: PathBuf::new(),
        input_size: num("input_size").unwrap_or(224) as u32,
        patch: num("patch").unwrap_or(STRIDE),
        mask_ratio: st["mask_ratio"].as_f64().unwrap_or(0.6),
        decoder_dim: num("decoder_dim").unwrap_or(512),
        decoder_depth: num("decoder_depth").unwrap_or(1),
        norm_pix: st["norm_pix"].as_bool().unwrap_or(true),
        grn: st["grn"].as_bool().unwrap_or(true),
        epochs: 0,
        batch: 1,
        lr: 0.0,
        min_lr: 0.0,
        warmup_epochs: 0.0,
        weight_decay: 0.0,
        seed: st["seed"].as_u64().unwrap_or(0),
        out: PathBuf::new(),
        resume: false,
        device: DeviceKind::Cpu,
        train_subset: None,
        vis_every: 0,
        quiet: true,
        encoder: Encoder::default(),
    })
}

/// The FCMAE model of a loaded pretraining checkpoint, and its options.
pub fn from_checkpoint(
    ck: &Checkpoint,
    path: &Path,
    device: &Device,
) -> Result<(Fcmae, Options), String> {
    let o = options_from_checkpoint(ck, path)?;
    let model =
        runlog::load_burn_layout(Fcmae::new(&o.fcmae_config(), 0, device), &ck.group("model"))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((model, o))
}

/// Loads the FCMAE model of a pretraining checkpoint file.
pub fn load_checkpoint(path: &Path, device: &Device) -> Result<(Fcmae, Options), String> {
    let ck = Checkpoint::load(path).map_err(|e| e.to_string())?;
    from_checkpoint(&ck, path, device)
}

/// `train visualize`: one four-panel strip per image (original | masked | reconstruction |
/// reconstruction with the visible patches pasted back), stacked into one PNG at `out`. Row `i`
/// masks with `seed + i`. A dataset's test split is held out from `pretrain` for Fashion-MNIST and
/// for trees with `train/` and `val/`; a single tree's pretraining saw every image.
///
/// # Errors
/// An unreadable checkpoint, dataset or image, an empty test split, an unwritable `out`.
pub fn visualize(
    checkpoint: &Path,
    images: &VisualizeImages,
    out: &Path,
    seed: u64,
) -> Result<(), String> {
    let dev = device(DeviceKind::Cpu)?;
    let (model, o) = load_checkpoint(checkpoint, &dev)?;
    let (split, rows) = match images {
        VisualizeImages::File(path) => (Split::files(vec![path.clone()]), 1),
        VisualizeImages::TestSplit { data, rows } => {
            let ds = Dataset::open(data, 0.1, o.seed).map_err(|e| e.to_string())?;
            let rows = (*rows).min(ds.test.len());
            if rows == 0 {
                return Err(format!("{}: the test split is empty", data.display()));
            }
            (ds.test, rows)
        }
    };
    let strips = (0..rows)
        .map(|i| reconstruct(&model, &split, i, &o, seed.wrapping_add(i as u64), &dev))
        .collect::<Result<Vec<_>, _>>()?;
    tile(&strips, true)
        .save(out)
        .map_err(|e| format!("{}: {e}", out.display()))
}

/// What `visualize` reconstructs.
#[derive(Clone, Debug)]
pub enum VisualizeImages {
    /// One image file.
    File(PathBuf),
    /// The first `rows` images of a dataset's test split (held out from pretraining).
    TestSplit {
        /// Dataset root, as `finetune --data`.
        data: PathBuf,
        /// Rows of the grid.
        rows: usize,
    },
}
