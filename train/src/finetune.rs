//! `train finetune`: supervised training with the official ConvNeXt V2 fine-tuning recipe
//! (AdamW, layer-wise lr decay, warmup + cosine per iteration, label smoothing, drop path, EMA),
//! top-1 on the test split every epoch, a metrics CSV and a PNG of the curves, an atomic
//! checkpoint every epoch, exact `--resume`, and a stop on a non-finite loss.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use serde_json::json;

use crate::checkpoint::{self, Checkpoint};
use crate::data::{self, Augment, Dataset, Split};
use crate::distributed::World;
use crate::model::{Config, ConvNeXtV2, Size};
use crate::optim::{self, AdamW, AdamWConfig};
use crate::parallel;
use crate::rng::SplitMix64;
use crate::runlog::{self, MetricsCsv};
use crate::weights;

/// Which compute device runs the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// Burn's flex CPU backend (pure Rust; the default): 4.2× burn-ndarray's training throughput
    /// here (Atto 64 px, batch 32: 24.7 vs 5.9 img/s) — burn-ndarray computes a depthwise
    /// convolution's gradients one channel group at a time.
    Cpu,
    /// burn-ndarray on the CPU (deprecated upstream in 0.22; kept selectable and tested).
    Ndarray,
    /// A Burn wgpu device (the `gpu` feature).
    Gpu,
}

impl DeviceKind {
    /// Slices a training batch is cut into ([`parallel`]): one on a GPU, which is parallel
    /// already.
    pub fn parts(self) -> usize {
        match self {
            DeviceKind::Gpu => 1,
            _ => parallel::PARTS,
        }
    }
}

/// The plain (no autodiff) device for a kind.
pub fn device(kind: DeviceKind) -> Result<Device, String> {
    match kind {
        DeviceKind::Cpu => Ok(Device::flex()),
        #[allow(deprecated)]
        DeviceKind::Ndarray => Ok(Device::ndarray()),
        #[cfg(feature = "gpu")]
        DeviceKind::Gpu => Ok(Device::wgpu(Default::default())),
        #[cfg(not(feature = "gpu"))]
        DeviceKind::Gpu => Err(
            "--device gpu needs a build with the GPU backend: cargo build --release -p train --features gpu"
                .into(),
        ),
    }
}

/// Everything `train finetune` takes.
#[derive(Clone, Debug)]
pub struct Options {
    /// Model size.
    pub size: Size,
    /// Dataset root.
    pub data: PathBuf,
    /// Initial weights (safetensors or PyTorch checkpoints in any layout `quant` reads, an
    /// exported model, or a training checkpoint).
    pub init: Option<PathBuf>,
    /// Which weights of `init` when it holds several (`--init-ema`, `--init-state NAME`).
    pub init_entry: quant::Entry,
    /// Square input size.
    pub input_size: u32,
    /// Epochs.
    pub epochs: u64,
    /// Batch size.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate of the cosine.
    pub min_lr: f64,
    /// Linear warmup length (epochs, fractional allowed).
    pub warmup_epochs: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Layer-wise lr decay.
    pub layer_decay: f64,
    /// Largest drop-path rate.
    pub drop_path: f64,
    /// Label smoothing ε.
    pub label_smoothing: f64,
    /// EMA decay (None: no EMA).
    pub ema: Option<f64>,
    /// Seed of every random draw.
    pub seed: u64,
    /// Run directory.
    pub out: PathBuf,
    /// Continue from `out/checkpoint.safetensors`.
    pub resume: bool,
    /// Compute device.
    pub device: DeviceKind,
    /// Use only this many training images (seeded subset).
    pub train_subset: Option<usize>,
    /// Evaluate on only this many test images (seeded subset).
    pub test_subset: Option<usize>,
    /// Random-resized-crop scale range.
    pub crop_scale: (f64, f64),
    /// Held-out fraction when the folder has no train/val split.
    pub test_fraction: f64,
    /// Evaluate after every this many epochs (0: only after the last one, which always is).
    pub eval_every: u64,
    /// No progress bar.
    pub quiet: bool,
    /// GRN in the blocks (`false`: the ablation, see [`Config::grn`]).
    pub grn: bool,
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Top-1 on the test split after the last epoch.
    pub top1: f64,
    /// Same for the EMA weights.
    pub ema_top1: Option<f64>,
    /// Training images per second over the last epoch.
    pub img_per_s: f64,
    /// Images skipped as unreadable over the run.
    pub skipped: usize,
}

/// Label-smoothed cross-entropy, mean over the batch: targets ε/C everywhere plus 1 − ε on the
/// label (timm's `LabelSmoothingCrossEntropy`).
pub fn smoothed_cross_entropy(logits: Tensor<2>, labels: &[usize], eps: f64) -> Tensor<1> {
    let [n, c] = logits.dims();
    let mut t = vec![(eps / c as f64) as f32; n * c];
    for (i, &y) in labels.iter().enumerate() {
        t[i * c + y] += (1.0 - eps) as f32;
    }
    let t = Tensor::<2>::from_data(TensorData::new(t, [n, c]), &logits.device());
    (log_softmax(logits, 1) * t).sum_dim(1).mean().neg()
}

/// Top-1 accuracy of `model` (no autodiff) on `split`, in batches of 64 spread over
/// [`parallel::PARTS`] threads, and the unreadable images skipped (each reported on stderr).
pub fn evaluate(model: &ConvNeXtV2, split: &Split, size: u32, device: &Device) -> (f64, usize) {
    evaluate_on(&World::single(), model, split, size, device)
}

/// [`evaluate`] sharded over `world`'s ranks (batch `j` on rank `j mod size`, the counts summed
/// over ranks): the same accuracy on every rank.
pub fn evaluate_on(
    world: &World,
    model: &ConvNeXtV2,
    split: &Split,
    size: u32,
    device: &Device,
) -> (f64, usize) {
    let idx: Vec<usize> = (0..split.len()).collect();
    let chunks: Vec<&[usize]> = idx
        .chunks(64)
        .skip(world.rank())
        .step_by(world.size())
        .collect();
    let threads = world.parts(parallel::PARTS).min(chunks.len()).max(1);
    let counts = parallel::on_threads(0..threads, |t| {
        chunks
            .iter()
            .skip(t)
            .step_by(threads)
            .map(|c| evaluate_batch(model, split, c, size, device))
            .fold([0; 3], add3)
    });
    let [right, seen, skipped] = counts.into_iter().fold([0; 3], add3);
    let mut all = [right as f64, seen as f64, skipped as f64];
    world.sum_f64(&mut all);
    (all[0] / all[1].max(1.0), all[2] as usize)
}

fn add3(a: [usize; 3], b: [usize; 3]) -> [usize; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

/// `[right, seen, skipped]` on the test images `chunk`.
fn evaluate_batch(
    model: &ConvNeXtV2,
    split: &Split,
    chunk: &[usize],
    size: u32,
    device: &Device,
) -> [usize; 3] {
    let b = data::batch(split, chunk, size, None);
    for e in &b.skipped {
        eprintln!("skipped unreadable test image: {e}");
    }
    if b.is_empty() {
        return [0, 0, b.skipped.len()];
    }
    let s = size as usize;
    let x = Tensor::<4>::from_data(TensorData::new(b.images, [b.labels.len(), 3, s, s]), device);
    let pred = model.forward(x, None).argmax(1).into_data();
    let pred: Vec<i64> = pred
        .convert::<i64>()
        .try_to_vec::<i64>()
        .expect("argmax gives integers");
    let right = pred
        .iter()
        .zip(&b.labels)
        .filter(|(p, l)| **p as usize == **l)
        .count();
    [right, b.labels.len(), b.skipped.len()]
}

/// Loads initial weights: a checkpoint (its `model.` tensors), or timm/official safetensors.
/// The classifier is kept from the file only when its class count matches; otherwise (or when
/// absent, as in FCMAE encoder exports) it is initialized the official fine-tuning way.
pub fn load_init(
    model: ConvNeXtV2,
    path: &Path,
    entry: &quant::Entry,
    seed: u64,
) -> Result<(ConvNeXtV2, String), String> {
    let sd = crate::predict::read_weights(path, entry)?;
    let classes = model.num_classes();
    let file_classes = sd.get("head.fc.bias").map(|t| t.data.len());
    let fresh = if !sd.contains_key("head.norm.weight") {
        weights::Fresh::Head
    } else if file_classes != Some(classes) {
        weights::Fresh::Classifier
    } else {
        weights::Fresh::Nothing
    };
    let (model, report) = weights::load_timm(model, &sd, fresh).map_err(|e| e.to_string())?;
    // Without GRN the model ignores GRN's γ, β: zero them so that an export is this function.
    let grn_off = model
        .stages
        .iter()
        .flat_map(|s| &s.blocks)
        .any(|b| !b.mlp.grn.enabled());
    let model = if grn_off {
        weights::replace_tensors(model, &mut |k, shape| {
            k.contains(".mlp.grn.")
                .then(|| TensorData::zeros::<f32, _>(shape.to_vec()))
        })
    } else {
        model
    };
    let model = if fresh == weights::Fresh::Nothing {
        model
    } else {
        model.reset_head(classes, seed, 0.001)
    };
    let mut note = match fresh {
        weights::Fresh::Nothing => {
            format!("{} tensors loaded from {}", report.loaded, path.display())
        }
        _ => format!(
            "{} tensors loaded from {}; {} initialized fresh ({} classes; file: {})",
            report.loaded,
            path.display(),
            if fresh == weights::Fresh::Head {
                "head norm and classifier"
            } else {
                "classifier"
            },
            classes,
            file_classes.map_or("none".to_string(), |c| c.to_string())
        ),
    };
    if grn_off {
        note.push_str("; GRN off: its γ, β set to zero");
    }
    Ok((model, note))
}

/// Opens `data` ([`Dataset::open`]) and draws the seeded subsets of both splits that `finetune`
/// and `probe` use (`seed` for training, `seed ^ 1` for test); an error when either is empty.
pub fn open_splits(
    data: &Path,
    test_fraction: f64,
    seed: u64,
    train_subset: Option<usize>,
    test_subset: Option<usize>,
) -> Result<(Dataset, Split, Split), String> {
    let ds = Dataset::open(data, test_fraction, seed).map_err(|e| e.to_string())?;
    let train = match train_subset {
        Some(n) => ds.train.subset(n, seed),
        None => ds.train.clone(),
    };
    let test = match test_subset {
        Some(n) => ds.test.subset(n, seed ^ 1),
        None => ds.test.clone(),
    };
    if train.is_empty() || test.is_empty() {
        return Err(format!(
            "{}: {} training and {} test images: need at least one of each",
            data.display(),
            train.len(),
            test.len()
        ));
    }
    Ok((ds, train, test))
}

/// Columns of `metrics.csv`.
pub const CSV_HEADER: &str =
    "epoch,step,train_loss,lr,img_per_s,test_top1,ema_top1,skipped,seconds";

/// Runs the fine-tuning on the ranks of `world` (rank 0 writes the checkpoint, metrics and
/// plots; see [`crate::distributed`]). Errors are messages for the user; the last good checkpoint
/// survives.
pub fn run(o: &Options, world: &World) -> Result<Summary, String> {
    let base = device(o.device)?;
    let train_dev = base.clone().autodiff();
    std::fs::create_dir_all(&o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
    let (ds, train, test) = open_splits(
        &o.data,
        o.test_fraction,
        o.seed,
        o.train_subset,
        o.test_subset,
    )?;
    let classes = ds.classes.len();
    let config = Config {
        size: o.size.clone(),
        num_classes: classes,
        drop_path: o.drop_path,
        grn: o.grn,
    };
    let ck_path = o.out.join(checkpoint::FILE);
    let csv_path = o.out.join(crate::plot::METRICS_FILE);
    let mut model = ConvNeXtV2::new(&config, o.seed, &train_dev);
    let mut opt = AdamW::new(AdamWConfig {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: o.weight_decay,
        layer_decay: o.layer_decay,
    });
    let mut start_epoch = 0u64;
    let mut ema = o.ema.map(|_| model.valid());
    let resume = o.resume && ck_path.is_file();
    if resume {
        let ck = Checkpoint::load(&ck_path).map_err(|e| e.to_string())?;
        let st = &ck.state;
        if st["kind"] != "finetune"
            || st["size"] != o.size.name
            || st["num_classes"] != classes
            || st["input_size"] != o.input_size
            || st["grn"].as_bool().unwrap_or(true) != o.grn
        {
            return Err(format!(
                "{}: checkpoint is {st} (kind/size/classes/input/grn), this run is finetune {} {classes} classes {} px grn {}",
                ck_path.display(),
                o.size.name,
                o.input_size,
                o.grn
            ));
        }
        let bad = |e: weights::WeightsError| format!("{}: {e}", ck_path.display());
        model = runlog::load_burn_layout(model, &ck.group("model")).map_err(bad)?;
        ema = match ema {
            Some(e) if !ck.group("ema").is_empty() => {
                Some(runlog::load_burn_layout(e, &ck.group("ema")).map_err(bad)?)
            }
            _ => ema.map(|_| model.valid()),
        };
        start_epoch = st["epoch"].as_u64().unwrap_or(0);
        opt.load_state(st["step"].as_u64().unwrap_or(0), &ck.tensors, &base);
        eprintln!("resuming {} after epoch {start_epoch}", ck_path.display());
    } else if let Some(init) = &o.init {
        let (m, note) = load_init(model, init, &o.init_entry, o.seed)?;
        model = m;
        ema = o.ema.map(|_| model.valid());
        eprintln!("{note}");
    }
    let root = world.is_root();
    let csv = root
        .then(|| MetricsCsv::open(csv_path, CSV_HEADER, resume.then_some(start_epoch)))
        .transpose()?;
    let steps_csv = root
        .then(|| {
            MetricsCsv::open(
                o.out.join(crate::plot::STEPS_FILE),
                crate::plot::STEPS_HEADER,
                resume.then_some(start_epoch),
            )
        })
        .transpose()?;
    let parts = world.parts(o.device.parts());
    let rank = world.rank();
    let mut steps_run = 0u64;

    let steps_per_epoch = train.len().div_ceil(o.batch) as u64;
    let total = steps_per_epoch * o.epochs;
    let warmup = (o.warmup_epochs * steps_per_epoch as f64).round() as u64;
    let augment = Augment {
        scale: o.crop_scale,
        ..Augment::FINETUNE
    };
    let s = o.input_size as usize;
    let mut summary = Summary {
        top1: f64::NAN,
        ema_top1: None,
        img_per_s: 0.0,
        skipped: 0,
    };
    // Test top-1 of the model and of its EMA, and the test images skipped as unreadable.
    let evaluate_now = |model: &ConvNeXtV2, ema: &Option<ConvNeXtV2>| {
        let (top1, skipped) = evaluate_on(world, &model.valid(), &test, o.input_size, &base);
        let ema_top1 = ema
            .as_ref()
            .map(|e| evaluate_on(world, e, &test, o.input_size, &base).0);
        (top1, ema_top1, skipped)
    };
    let started = Instant::now();
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
            let (lv, grads) = if n == 0 {
                (0.0, None)
            } else {
                parallel::grads(&model, n, parts, |m, i, r| {
                    let x = TensorData::new(
                        b.images[r.start * px..r.end * px].to_vec(),
                        [r.len(), 3, s, s],
                    );
                    let x = Tensor::<4>::from_data(x, &train_dev);
                    // Slices numbered across ranks: each draws its own drop-path masks.
                    let slice = (rank * parts) as u64 + i;
                    let mut rng = SplitMix64::derive(&[o.seed, epoch, k, 0x4450, slice]);
                    let logits = m.forward(x, Some(&mut rng));
                    smoothed_cross_entropy(logits, &b.labels[r], o.label_smoothing)
                })
            };
            let (lv, total, grads) = world.reduce_grads(&model, lv, n, grads);
            if let Some(grads) = grads {
                model = opt.update(lr, model.clone(), grads);
                if let (Some(e), Some(d)) = (ema.take(), o.ema) {
                    ema = Some(optim::ema_update(e, &model, d));
                }
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
        let done = epoch + 1;
        let due = done == o.epochs || (o.eval_every > 0 && done.is_multiple_of(o.eval_every));
        let mut skipped = skipped;
        if due {
            let test_skipped;
            (summary.top1, summary.ema_top1, test_skipped) = evaluate_now(&model, &ema);
            skipped += test_skipped;
        }
        summary.img_per_s = ips;
        summary.skipped += skipped;
        let (top1, ema_top1) = (summary.top1, summary.ema_top1);
        let step = done * steps_per_epoch;
        // Rank 0 alone (the only one holding the CSVs) reports and writes.
        let (Some(csv), Some(steps_csv)) = (&csv, &steps_csv) else {
            continue;
        };
        let train_loss = stats.loss;
        // An epoch without evaluation reports none (its CSV cells stay empty).
        let report = if due {
            format!(
                ", test top-1 {:.2}%{}",
                100.0 * top1,
                ema_top1.map_or(String::new(), |a| format!(", EMA top-1 {:.2}%", 100.0 * a))
            )
        } else {
            String::new()
        };
        println!(
            "epoch {done}/{}: train loss {train_loss:.4}, lr {lr:.3e}, {ips:.1} img/s{report}{}",
            o.epochs,
            if skipped > 0 {
                format!(", {skipped} unreadable images skipped")
            } else {
                String::new()
            }
        );
        let cell = |v: Option<f64>| {
            v.filter(|_| due)
                .map_or(String::new(), |a| format!("{a:.6}"))
        };
        csv.append(&format!(
            "{done},{step},{train_loss:.6},{lr:.6e},{ips:.2},{},{},{skipped},{secs:.1}",
            cell(Some(top1)),
            cell(ema_top1)
        ))?;
        steps_csv.append_steps(epoch, &stats)?;
        crate::plot::draw_run(&o.out)?;
        // Checkpoint last: a crash before this line replays the epoch from the previous one.
        let mut tensors = std::collections::HashMap::new();
        tensors.extend(checkpoint::prefixed("model", weights::burn_tensors(&model)));
        if let Some(e) = &ema {
            tensors.extend(checkpoint::prefixed("ema", weights::burn_tensors(e)));
        }
        tensors.extend(opt.state_tensors());
        Checkpoint {
            tensors,
            state: json!({
                "kind": "finetune",
                "epoch": epoch + 1,
                "step": opt.step,
                "size": o.size.name,
                "num_classes": classes,
                "classes": ds.classes,
                "input_size": o.input_size,
                "grn": o.grn,
                "seed": o.seed,
                // Only an evaluated epoch's accuracy (`--eval-every`): null otherwise.
                "top1": due.then_some(top1),
                "ema_top1": ema_top1.filter(|_| due),
            }),
        }
        .save(&ck_path)
        .map_err(|e| e.to_string())?;
    }
    if start_epoch >= o.epochs {
        eprintln!("nothing to do: the checkpoint already has {start_epoch} epochs");
        let ck = Checkpoint::load(&ck_path).map_err(|e| e.to_string())?;
        if let Some(top1) = ck.state["top1"].as_f64() {
            summary.top1 = top1;
            summary.ema_top1 = ck.state["ema_top1"].as_f64();
        } else {
            // Its last epoch was not evaluated (`--eval-every`, then fewer `--epochs`): now.
            (summary.top1, summary.ema_top1, _) = evaluate_now(&model, &ema);
        }
    }
    if root {
        if let Some(report) = world.communication_report(steps_run) {
            eprintln!("{report}");
        }
        eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(summary)
}
