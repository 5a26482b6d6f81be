//! `train`: ConvNeXt V2 fine-tuning, prediction and export on Burn (CPU by default).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use train::checkpoint::Checkpoint;
use train::finetune::{self, DeviceKind};
use train::model::Size;
use train::{predict, pretrain, probe};

#[derive(Parser)]
#[command(
    name = "train",
    version,
    about = "ConvNeXt V2 training on Burn (burn-ndarray CPU by default)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Dev {
    /// Burn's flex CPU backend (the fastest CPU backend here).
    Cpu,
    /// burn-ndarray (CPU).
    Ndarray,
    /// Burn's wgpu backend (build with `--features gpu`).
    Gpu,
}

/// `--encoder` of `pretrain` and `bench-step`.
#[derive(Clone, Copy, ValueEnum)]
enum EncoderArg {
    /// Per-position operators on the visible positions only (the paper's sparse encoder).
    Sparse,
    /// Every operator on the whole masked map (the reference; same function).
    Dense,
}

impl From<EncoderArg> for train::sparse::Encoder {
    fn from(e: EncoderArg) -> Self {
        match e {
            EncoderArg::Sparse => train::sparse::Encoder::Sparse,
            EncoderArg::Dense => train::sparse::Encoder::Dense,
        }
    }
}

impl From<Dev> for DeviceKind {
    fn from(d: Dev) -> Self {
        match d {
            Dev::Cpu => DeviceKind::Cpu,
            Dev::Ndarray => DeviceKind::Ndarray,
            Dev::Gpu => DeviceKind::Gpu,
        }
    }
}

/// What every training run takes besides its hyperparameters.
#[derive(clap::Args)]
struct RunArgs {
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run directory: checkpoint.safetensors, metrics.csv, curves.png (and pictures).
    #[arg(long)]
    out: PathBuf,
    /// Continue from OUT/checkpoint.safetensors, exactly where the last finished epoch left off.
    #[arg(long)]
    resume: bool,
    #[arg(long, value_enum, default_value = "cpu")]
    device: Dev,
    /// Train on a seeded subset of this many images.
    #[arg(long)]
    train_subset: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Ablation: blocks without GRN (ConvNeXt V1's MLP); GRN's γ, β stay zero.
    #[arg(long)]
    no_grn: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Supervised fine-tuning (defaults: the official Atto fine-tuning recipe, lr = blr·batch/256).
    Finetune {
        #[command(flatten)]
        run: RunArgs,
        /// Model size: atto, femto, pico, nano, tiny, base, large, huge.
        #[arg(long, default_value = "atto")]
        size: String,
        /// Fashion-MNIST IDX folder, or an ImageFolder tree (root/<class>/*.png|jpg, optionally
        /// with train/ and val/ subfolders).
        #[arg(long, default_value = "/usr/share/datasets/fashion-mnist")]
        data: PathBuf,
        /// Initial weights: safetensors or a PyTorch checkpoint in timm, official, FCMAE
        /// pretraining or Hugging Face names, a `train export` file or a checkpoint.
        #[arg(long)]
        init: Option<PathBuf>,
        /// Take --init's EMA weights (`model_ema` of a PyTorch checkpoint, `ema` of ours).
        #[arg(long, requires = "init")]
        init_ema: bool,
        /// Take --init's entry of this name (a PyTorch checkpoint holding several state dicts).
        #[arg(long, requires = "init", conflicts_with = "init_ema")]
        init_state: Option<String>,
        /// Square input size in pixels (≥ 32; any size, with timm's floors at each strided convolution).
        #[arg(long, default_value_t = 224)]
        input_size: u32,
        #[arg(long, default_value_t = 600)]
        epochs: u64,
        #[arg(long, default_value_t = 1024)]
        batch: usize,
        /// Peak learning rate (default: blr · batch / 256).
        #[arg(long)]
        lr: Option<f64>,
        /// Base learning rate for the linear scaling rule.
        #[arg(long, default_value_t = 2e-4)]
        blr: f64,
        #[arg(long, default_value_t = 1e-6)]
        min_lr: f64,
        #[arg(long, default_value_t = 0.0)]
        warmup_epochs: f64,
        #[arg(long, default_value_t = 0.3)]
        weight_decay: f64,
        /// Layer-wise learning-rate decay (1 = off).
        #[arg(long, default_value_t = 0.9)]
        layer_decay: f64,
        #[arg(long, default_value_t = 0.1)]
        drop_path: f64,
        #[arg(long, default_value_t = 0.2)]
        label_smoothing: f64,
        /// EMA decay of the weights, evaluated every epoch (0 = no EMA).
        #[arg(long, default_value_t = 0.9999)]
        ema: f64,
        /// Evaluate on a seeded subset of this many test images.
        #[arg(long)]
        test_subset: Option<usize>,
        /// Smallest area fraction of the random resized crop.
        #[arg(long, default_value_t = 0.08)]
        crop_scale_min: f64,
        /// Held-out fraction for a folder without train/ and val/.
        #[arg(long, default_value_t = 0.1)]
        test_fraction: f64,
        /// Evaluate on the test images after every this many epochs (0: only after the last
        /// epoch, which is always evaluated).
        #[arg(long, default_value_t = 1)]
        eval_every: u64,
    },
    /// FCMAE pretraining (defaults: the official recipe; lr = blr·batch/256).
    Pretrain {
        #[command(flatten)]
        run: RunArgs,
        #[arg(long, default_value = "atto")]
        size: String,
        /// Fashion-MNIST IDX folder or a folder of images (labels are not used).
        #[arg(long, default_value = "/usr/share/datasets/fashion-mnist")]
        data: PathBuf,
        /// Square input size (a multiple of 32, at least 64).
        #[arg(long, default_value_t = 224)]
        input_size: u32,
        /// Patch side in pixels (the encoder's stride: 32).
        #[arg(long, default_value_t = 32)]
        patch_size: usize,
        #[arg(long, default_value_t = 0.6)]
        mask_ratio: f64,
        #[arg(long, default_value_t = 512)]
        decoder_dim: usize,
        #[arg(long, default_value_t = 1)]
        decoder_depth: usize,
        /// Targets are raw pixels instead of per-patch normalized ones.
        #[arg(long)]
        no_norm_pix_loss: bool,
        #[arg(long, default_value_t = 800)]
        epochs: u64,
        /// Batch size (the official effective batch is 4096 over many GPUs).
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Peak learning rate (default: blr · batch / 256).
        #[arg(long)]
        lr: Option<f64>,
        #[arg(long, default_value_t = 1.5e-4)]
        blr: f64,
        #[arg(long, default_value_t = 0.0)]
        min_lr: f64,
        #[arg(long, default_value_t = 40.0)]
        warmup_epochs: f64,
        #[arg(long, default_value_t = 0.05)]
        weight_decay: f64,
        /// Write OUT/recon_epochNNN.png every this many epochs (0: never).
        #[arg(long, default_value_t = 1)]
        vis_every: u64,
        /// FCMAE encoder: sparse (visible positions only) or dense (masked; the same function).
        #[arg(long, value_enum, default_value = "sparse")]
        encoder: EncoderArg,
    },
    /// original | masked | reconstruction | reconstruction + visible patches, as one PNG.
    Visualize {
        #[arg(long)]
        checkpoint: PathBuf,
        /// One image file: one row.
        #[arg(long, required_unless_present = "data", conflicts_with = "data")]
        image: Option<PathBuf>,
        /// A dataset (as `finetune --data`): the first `--rows` images of its test split, one row
        /// each, each with its own mask. Held out from `pretrain` for Fashion-MNIST and trees
        /// with train/ and val/; a single tree's pretraining saw every image.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Rows drawn from `--data`.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
        rows: u64,
        #[arg(long)]
        out: PathBuf,
        /// Seed of the random mask (row i of `--data` uses seed + i).
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Training throughput: forward + backward + AdamW steps on random data (fine-tuning step and
    /// FCMAE step), images per second after warm-up steps.
    BenchStep {
        #[arg(long, default_value = "atto")]
        size: String,
        #[arg(long, default_value_t = 224)]
        input_size: u32,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Timed steps (after 2 warm-up steps).
        #[arg(long, default_value_t = 5)]
        steps: u64,
        #[arg(long, value_enum, default_value = "cpu")]
        device: Dev,
        /// FCMAE encoder of the FCMAE step.
        #[arg(long, value_enum, default_value = "sparse")]
        encoder: EncoderArg,
    },
    /// Redraws a run's curves (RUN/curves.png and RUN/curves.svg) from its CSVs: loss per step
    /// (raw, smoothed, epoch means), learning rate per step, test and EMA top-1 per epoch.
    Plot {
        /// A `finetune` or `pretrain` output folder (holding metrics.csv, and steps.csv).
        #[arg(long)]
        run: PathBuf,
    },
    /// Linear probe of a frozen encoder (MAE's protocol): pooled last-stage features, each
    /// standardized with the training split's moments, a linear classifier trained on all labels;
    /// prints top-1 on the test split.
    Probe {
        /// Encoder weights: a `train export` file (a pretraining export too), timm's `.fcmae`
        /// safetensors, any weights `finetune --init` reads, or a checkpoint. Without it: the
        /// random init of --seed.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Take the checkpoint's EMA weights.
        #[arg(long, requires = "weights")]
        ema: bool,
        /// Take the entry of this name (a PyTorch checkpoint holding several state dicts).
        #[arg(long, requires = "weights", conflicts_with = "ema")]
        state: Option<String>,
        #[arg(long, default_value = "atto")]
        size: String,
        /// Fashion-MNIST IDX folder, or an ImageFolder tree (as `finetune --data`).
        #[arg(long, default_value = "/usr/share/datasets/fashion-mnist")]
        data: PathBuf,
        /// Square input size in pixels (≥ 32).
        #[arg(long, default_value_t = 224)]
        input_size: u32,
        /// Classifier epochs over the training features.
        #[arg(long, default_value_t = 30)]
        epochs: u64,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Peak learning rate of the classifier (AdamW; warmup over a tenth of the steps, cosine).
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        #[arg(long, default_value_t = 0.0)]
        weight_decay: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Probe on a seeded subset of this many training images.
        #[arg(long)]
        train_subset: Option<usize>,
        /// Test on a seeded subset of this many test images.
        #[arg(long)]
        test_subset: Option<usize>,
        /// Held-out fraction for a folder without train/ and val/.
        #[arg(long, default_value_t = 0.1)]
        test_fraction: f64,
        /// The encoder has no GRN (trained with --no-grn).
        #[arg(long)]
        no_grn: bool,
        #[arg(long, value_enum, default_value = "cpu")]
        device: Dev,
        /// Also write the result as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Logits of one input (raw f32 NCHW .bin, or an image).
    Predict {
        /// Safetensors or a PyTorch checkpoint in timm, official or Hugging Face names, a `train
        /// export` file or a checkpoint.
        #[arg(long)]
        weights: PathBuf,
        #[arg(long, default_value = "atto")]
        size: String,
        #[arg(long)]
        input: PathBuf,
        /// Image inputs are resized/cropped to this size (.bin inputs carry their own).
        #[arg(long, default_value_t = 224)]
        input_size: u32,
        /// Use a checkpoint's EMA weights.
        #[arg(long)]
        ema: bool,
        /// Use the checkpoint entry of this name (a PyTorch checkpoint holding several).
        #[arg(long, conflicts_with = "ema")]
        state: Option<String>,
        /// Raw little-endian f32 logits.
        #[arg(long)]
        logits_out: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "cpu")]
        device: Dev,
    },
    /// Checkpoint (or any weights) → timm-named safetensors + OUT.json (architecture, normalization).
    /// A pretraining checkpoint exports its encoder only (no head, like timm's `.fcmae` weights).
    Export {
        #[arg(long)]
        checkpoint: PathBuf,
        /// Model size (default: the checkpoint's).
        #[arg(long)]
        size: Option<String>,
        /// Export the EMA weights.
        #[arg(long)]
        ema: bool,
        /// Export the checkpoint entry of this name (a PyTorch checkpoint holding several).
        #[arg(long, conflicts_with = "ema")]
        state: Option<String>,
        #[arg(long)]
        out: PathBuf,
    },
}

/// `--input-size` ≥ 32 (ConvNeXt V2 downsamples by 32), `--batch` and `--epochs` positive.
fn check_run_shape(input_size: u32, batch: usize, epochs: u64) -> Result<(), String> {
    if input_size < 32 {
        return Err(format!(
            "--input-size {input_size}: ConvNeXt V2 needs at least 32 px (it downsamples by 32)"
        ));
    }
    if batch == 0 || epochs == 0 {
        return Err("--batch and --epochs must be positive".into());
    }
    Ok(())
}

fn size(name: &str) -> Result<Size, String> {
    Size::named(name).ok_or_else(|| {
        format!(
            "unknown --size {name:?} (known: {})",
            Size::names().join(", ")
        )
    })
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Plot { run } => {
            for p in train::plot::draw_run(&run)? {
                println!("wrote {}", p.display());
            }
            Ok(())
        }
        Cmd::Finetune {
            run,
            size: s,
            data,
            init,
            init_ema,
            init_state,
            input_size,
            epochs,
            batch,
            lr,
            blr,
            min_lr,
            warmup_epochs,
            weight_decay,
            layer_decay,
            drop_path,
            label_smoothing,
            ema,
            test_subset,
            crop_scale_min,
            test_fraction,
            eval_every,
        } => {
            check_run_shape(input_size, batch, epochs)?;
            if !(0.0..1.0).contains(&label_smoothing)
                || !(0.0..1.0).contains(&drop_path)
                || !(0.0..1.0).contains(&ema)
            {
                return Err("--label-smoothing, --drop-path and --ema must be in [0, 1)".into());
            }
            if !(crop_scale_min > 0.0 && crop_scale_min <= 1.0) {
                return Err("--crop-scale-min must be in (0, 1]".into());
            }
            let lr = lr.unwrap_or(blr * batch as f64 / 256.0);
            let o = finetune::Options {
                size: size(&s)?,
                data,
                init,
                init_entry: quant::Entry::from_flags(init_ema, init_state)?,
                input_size,
                epochs,
                batch,
                lr,
                min_lr,
                warmup_epochs,
                weight_decay,
                layer_decay,
                drop_path,
                label_smoothing,
                ema: (ema > 0.0).then_some(ema),
                seed: run.seed,
                out: run.out,
                resume: run.resume,
                device: run.device.into(),
                train_subset: run.train_subset,
                test_subset,
                crop_scale: (crop_scale_min, 1.0),
                test_fraction,
                eval_every,
                quiet: run.quiet,
                grn: !run.no_grn,
            };
            let world = train::distributed::World::from_env()?;
            let s = world.or_abort(finetune::run(&o, &world))?;
            if !world.is_root() {
                return Ok(());
            }
            println!(
                "final: test top-1 {:.2}%{}, {:.1} img/s",
                100.0 * s.top1,
                s.ema_top1
                    .map_or(String::new(), |a| format!(", EMA top-1 {:.2}%", 100.0 * a)),
                s.img_per_s
            );
            Ok(())
        }
        Cmd::Pretrain {
            run,
            size: s,
            data,
            input_size,
            patch_size,
            mask_ratio,
            decoder_dim,
            decoder_depth,
            no_norm_pix_loss,
            epochs,
            batch,
            lr,
            blr,
            min_lr,
            warmup_epochs,
            weight_decay,
            vis_every,
            encoder,
        } => {
            if batch == 0 || epochs == 0 || decoder_dim == 0 {
                return Err("--batch, --epochs and --decoder-dim must be positive".into());
            }
            if !(mask_ratio > 0.0 && mask_ratio < 1.0) {
                return Err("--mask-ratio must be in (0, 1)".into());
            }
            let o = pretrain::Options {
                size: size(&s)?,
                data,
                input_size,
                patch: patch_size,
                mask_ratio,
                decoder_dim,
                decoder_depth,
                norm_pix: !no_norm_pix_loss,
                epochs,
                batch,
                lr: lr.unwrap_or(blr * batch as f64 / 256.0),
                min_lr,
                warmup_epochs,
                weight_decay,
                seed: run.seed,
                out: run.out,
                resume: run.resume,
                device: run.device.into(),
                train_subset: run.train_subset,
                vis_every,
                quiet: run.quiet,
                grn: !run.no_grn,
                encoder: encoder.into(),
            };
            let world = train::distributed::World::from_env()?;
            let loss = world.or_abort(pretrain::run(&o, &world))?;
            if world.is_root() {
                println!("final: pretrain loss {loss:.4}");
            }
            Ok(())
        }
        Cmd::Visualize {
            checkpoint,
            image,
            data,
            rows,
            out,
            seed,
        } => {
            let images = match (image, data) {
                (Some(path), _) => pretrain::VisualizeImages::File(path),
                (None, Some(data)) => pretrain::VisualizeImages::TestSplit {
                    data,
                    rows: rows as usize,
                },
                (None, None) => return Err("visualize needs --image or --data".into()),
            };
            pretrain::visualize(&checkpoint, &images, &out, seed)?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Cmd::BenchStep {
            size: s,
            input_size,
            batch,
            steps,
            device,
            encoder,
        } => {
            let encoder: train::sparse::Encoder = encoder.into();
            let r = train::bench::steps(
                &size(&s)?,
                input_size as usize,
                batch,
                steps,
                device.into(),
                encoder,
            )?;
            println!(
                "{} {}px batch {batch} on {}: fine-tune step {:.1} img/s ({:.0} ms/step), FCMAE step {:.1} img/s ({:.0} ms/step, {} encoder)",
                s, input_size, r.device, r.finetune_img_s, 1000.0 * batch as f64 / r.finetune_img_s,
                r.fcmae_img_s, 1000.0 * batch as f64 / r.fcmae_img_s, encoder.name()
            );
            Ok(())
        }
        Cmd::Probe {
            weights,
            ema,
            state,
            size: s,
            data,
            input_size,
            epochs,
            batch,
            lr,
            weight_decay,
            seed,
            train_subset,
            test_subset,
            test_fraction,
            no_grn,
            device,
            json,
        } => {
            check_run_shape(input_size, batch, epochs)?;
            if !(lr.is_finite() && lr > 0.0 && weight_decay.is_finite() && weight_decay >= 0.0) {
                return Err("--lr must be positive and --weight-decay non-negative".into());
            }
            let o = probe::Options {
                size: size(&s)?,
                weights,
                entry: quant::Entry::from_flags(ema, state)?,
                data,
                input_size,
                fit: probe::FitConfig {
                    epochs,
                    batch,
                    lr,
                    weight_decay,
                    seed,
                },
                seed,
                train_subset,
                test_subset,
                test_fraction,
                grn: !no_grn,
                device: device.into(),
            };
            let r = probe::run(&o)?;
            println!(
                "linear probe: test top-1 {:.2}% ({} images), train top-1 {:.2}% ({} images), {} features; {:.1} s features, {:.1} s fit{}",
                100.0 * r.top1,
                r.images.1,
                100.0 * r.train_top1,
                r.images.0,
                r.dim,
                r.secs.0,
                r.secs.1,
                if r.skipped > 0 { format!("; {} unreadable images skipped", r.skipped) } else { String::new() }
            );
            if let Some(p) = json {
                let text = serde_json::to_string_pretty(&r.to_json()).map_err(|e| e.to_string())?;
                quant::convert::write_atomic(&p, text.as_bytes()).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        Cmd::Predict {
            weights,
            size: s,
            input,
            input_size,
            ema,
            state,
            logits_out,
            device,
        } => {
            let dev = finetune::device(device.into())?;
            let entry = quant::Entry::from_flags(ema, state)?;
            let model = predict::load_model(&weights, &size(&s)?, &entry, &dev)?;
            let (x, side) = predict::read_input(&input, input_size)?;
            let logits = predict::predict(&model, x, side, &dev)?;
            let mut top: Vec<(usize, f32)> = logits.iter().copied().enumerate().collect();
            top.sort_by(|a, b| b.1.total_cmp(&a.1));
            for (i, v) in top.iter().take(5) {
                println!("{i:>5} {v:>10.5}");
            }
            if let Some(p) = logits_out {
                let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
                quant::convert::write_atomic(&p, &bytes).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        Cmd::Export {
            checkpoint,
            size: s,
            ema,
            state,
            out,
        } => {
            let dev = finetune::device(DeviceKind::Cpu)?;
            let entry = quant::Entry::from_flags(ema, state)?;
            let ck = if Checkpoint::is_checkpoint(&checkpoint) {
                Some(Checkpoint::load(&checkpoint).map_err(|e| e.to_string())?)
            } else {
                None
            };
            match &ck {
                Some(ck) if ck.state["kind"] == "pretrain" => {
                    if entry != quant::Entry::Default {
                        return Err(format!(
                            "{}: --ema/--state: a pretraining checkpoint holds no EMA weights (FCMAE keeps none), only its one set",
                            checkpoint.display()
                        ));
                    }
                    let (m, o) = pretrain::from_checkpoint(ck, &checkpoint, &dev)?;
                    predict::export(&m.encoder, &o.size, o.input_size, None, &out, true)?;
                }
                Some(ck) => {
                    let name = s
                        .unwrap_or_else(|| ck.state["size"].as_str().unwrap_or("atto").to_string());
                    let classes: Option<Vec<String>> =
                        serde_json::from_value(ck.state["classes"].clone()).ok();
                    let input_size = ck.state["input_size"].as_u64().unwrap_or(224) as u32;
                    let sz = size(&name)?;
                    let tensors = predict::checkpoint_weights(ck, &checkpoint, &entry)?;
                    let model = predict::model_from_timm(&tensors, &sz, &dev)
                        .map_err(|e| format!("{}: {e}", checkpoint.display()))?;
                    predict::export(&model, &sz, input_size, classes, &out, false)?;
                }
                None => {
                    let sz = size(&s.unwrap_or_else(|| "atto".into()))?;
                    let model = predict::load_model(&checkpoint, &sz, &entry, &dev)?;
                    predict::export(&model, &sz, 224, None, &out, false)?;
                }
            }
            println!(
                "wrote {} and {}",
                out.display(),
                out.with_extension("json").display()
            );
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
