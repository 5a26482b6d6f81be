//! `quant`: weight conversion for the edge runtime.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "quant",
    version,
    about = "Turns ConvNeXt V2 weights into edge model files"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// timm- or official-named safetensors (f32/f16/bf16) → f32 edge model file.
    Convert {
        /// The state_dict (.safetensors).
        #[arg(long)]
        weights: PathBuf,
        /// A named size (atto, femto, pico, nano, tiny, base, large, huge); inferred from the
        /// tensor shapes when absent.
        #[arg(long)]
        arch: Option<String>,
        /// Input size the model will run at: N (square) or HxW.
        #[arg(long, default_value = "224", value_parser = parse_hw)]
        input_size: (usize, usize),
        /// Output model file (written atomically; nothing is written on error).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        entry: EntryArgs,
    },
    /// Writes a model with seeded random weights (benchmarks: instruction counts, latency).
    Synth {
        /// A named size (atto, femto, pico, nano, tiny, base, large, huge).
        #[arg(long)]
        arch: String,
        /// Classifier outputs.
        #[arg(long, default_value_t = 1000)]
        num_classes: usize,
        /// Input size: N (square) or HxW.
        #[arg(long, default_value = "224", value_parser = parse_hw)]
        input_size: (usize, usize),
        /// Seed of the weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output model file.
        #[arg(long)]
        out: PathBuf,
    },
    /// int8 post-training calibration: f32 weights + images → int8 model file (GRN in fp16),
    /// with an accuracy report on held-out images.
    Calibrate {
        /// timm- or official-named safetensors (exclusive with --model).
        #[arg(long, conflicts_with = "model", required_unless_present = "model")]
        weights: Option<PathBuf>,
        /// An f32 edge model file (from `quant convert`).
        #[arg(long)]
        model: Option<PathBuf>,
        /// With --weights: a named size (inferred when absent).
        #[arg(long)]
        arch: Option<String>,
        /// With --weights: the input size, N or HxW.
        #[arg(long, default_value = "224", value_parser = parse_hw)]
        input_size: (usize, usize),
        /// A folder of png/jpg images (searched recursively) or the Fashion-MNIST IDX folder.
        #[arg(long)]
        images: PathBuf,
        /// Held-out images from another source (folder or Fashion-MNIST test split) instead of
        /// the held-out part of --images.
        #[arg(long)]
        eval_images: Option<PathBuf>,
        /// Calibration images.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
        num: u64,
        /// Held-out images for the report (Fashion-MNIST: its test split; a folder: the images
        /// after the calibration ones). 0 skips the evaluation.
        #[arg(long, default_value_t = 200)]
        eval: u64,
        /// How activation ranges are chosen.
        #[arg(long, value_enum, default_value_t = MethodArg::Mse)]
        method: MethodArg,
        /// With --method percentile: the central percentage kept.
        #[arg(long, default_value_t = 99.99)]
        percentile: f64,
        /// Seed of the calibration sample.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output int8 model file (written atomically; nothing is written on error).
        #[arg(long)]
        out: PathBuf,
        /// Also write the report as JSON.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Also draw the per-layer SQNR (f32 vs int8) as a bar chart, PNG.
        #[arg(long)]
        report_png: Option<PathBuf>,
        /// The same chart as SVG.
        #[arg(long)]
        report_svg: Option<PathBuf>,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        entry: EntryArgs,
    },
    /// Validates a model file and prints its architecture and arena needs.
    Inspect {
        /// The model file.
        model: PathBuf,
    },
}

/// Which state dict of a PyTorch checkpoint holding several (`model` and `model_ema`, …).
#[derive(clap::Args)]
struct EntryArgs {
    /// Use the checkpoint's EMA weights (`model_ema`, `state_dict_ema` or `ema`).
    #[arg(long, conflicts_with = "state")]
    ema: bool,
    /// Use the checkpoint's entry of this name (e.g. `model`, `state_dict`).
    #[arg(long)]
    state: Option<String>,
}

impl EntryArgs {
    fn entry(&self) -> Result<quant::Entry, String> {
        quant::Entry::from_flags(self.ema, self.state.clone())
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum MethodArg {
    Minmax,
    Percentile,
    Mse,
}

fn parse_hw(s: &str) -> Result<(usize, usize), String> {
    let parse = |v: &str| v.trim().parse::<usize>().map_err(|e| format!("{v:?}: {e}"));
    match s.split_once(['x', 'X', ',']) {
        Some((h, w)) => Ok((parse(h)?, parse(w)?)),
        None => parse(s).map(|n| (n, n)),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quant: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> Result<(), Box<dyn std::error::Error>> {
    match cmd {
        Cmd::Convert {
            weights,
            arch,
            input_size,
            out,
            entry,
        } => {
            // The notes first: they explain a refusal too (an FCMAE checkpoint has no head).
            let (sd, notes) = quant::load_state_dict_entry(&weights, entry.entry()?)?;
            notes.print();
            let a =
                quant::convert::convert_state_dict_to_file(&sd, arch.as_deref(), input_size, &out)?;
            let len = std::fs::metadata(&out)?.len();
            println!(
                "wrote {} ({} bytes): {} depths {:?} dims {:?}, {} classes, input {}x{}, {} params, {:.3} GMAC",
                out.display(),
                len,
                a.name().unwrap_or("custom"),
                a.depths(),
                a.dims(),
                a.num_classes,
                a.input_h,
                a.input_w,
                a.param_count(),
                a.macs() as f64 / 1e9
            );
            Ok(())
        }
        Cmd::Synth {
            arch,
            num_classes,
            input_size,
            seed,
            out,
        } => {
            let a = edge::Arch::named(&arch, num_classes, input_size.0, input_size.1)
                .ok_or_else(|| quant::ConvertError::UnknownArch(arch.clone()))?;
            let file = quant::synth::synth_model(&a, seed)?;
            quant::convert::write_atomic(&out, &file)?;
            println!(
                "wrote {} ({} bytes): {arch} with random weights (seed {seed})",
                out.display(),
                file.len()
            );
            Ok(())
        }
        Cmd::Calibrate {
            weights,
            model,
            arch,
            input_size,
            images,
            eval_images,
            num,
            eval,
            method,
            percentile,
            seed,
            out,
            report,
            report_png,
            report_svg,
            quiet,
            entry,
        } => {
            if eval == 0 && (report_png.is_some() || report_svg.is_some()) {
                return Err(
                    "--report-png/--report-svg chart the held-out evaluation: give --eval > 0"
                        .into(),
                );
            }
            let method = match method {
                MethodArg::Minmax => quant::calib::Method::MinMax,
                MethodArg::Mse => quant::calib::Method::Mse,
                MethodArg::Percentile if percentile > 0.0 && percentile <= 100.0 => {
                    quant::calib::Method::Percentile(percentile)
                }
                MethodArg::Percentile => {
                    return Err(
                        format!("--percentile must be in (0, 100], got {percentile}").into(),
                    )
                }
            };
            let f32_file = match (&weights, &model) {
                (Some(w), _) => {
                    let (sd, note) = quant::load_state_dict_entry(w, entry.entry()?)?;
                    note.print();
                    let a = match &arch {
                        Some(n) => quant::convert::named_arch(n, &sd, input_size.0, input_size.1)?,
                        None => quant::infer_arch(&sd, input_size.0, input_size.1)?,
                    };
                    quant::convert::convert(&sd, &a)?
                }
                (None, Some(_)) if entry.entry()? != quant::Entry::Default => {
                    return Err("--ema/--state choose weights inside --weights; an edge model file (--model) holds one set".into())
                }
                (None, Some(m)) => std::fs::read(m).map_err(|e| format!("{}: {e}", m.display()))?,
                (None, None) => return Err("give --weights or --model".into()),
            };
            let src = quant::data::Source::open(&images)?;
            let opt = quant::calibrate::Options {
                num: num as usize,
                eval: eval as usize,
                method,
                seed,
                progress: !quiet,
            };
            let eval_src = match &eval_images {
                Some(p) => Some(quant::data::Source::open(p)?),
                None => None,
            };
            let (int8, rep) =
                quant::calibrate::calibrate(&f32_file, &src, eval_src.as_ref(), &opt)?;
            quant::convert::write_atomic(&out, &int8)?;
            let buf = edge::builder::AlignedBytes::from_slice(&int8);
            let m = edge::Model::parse(buf.as_slice())?;
            let name = m.arch().name().unwrap_or("custom");
            let method_name = match method {
                quant::calib::Method::MinMax => "minmax".to_string(),
                quant::calib::Method::Mse => "mse".to_string(),
                quant::calib::Method::Percentile(p) => format!("percentile {p}"),
            };
            println!(
                "wrote {} ({} bytes): int8 {name}, method {method_name}",
                out.display(),
                int8.len()
            );
            print!("{}", rep.table());
            if let Some(r) = report {
                let mut source = images.display().to_string();
                if let Some(e) = &eval_images {
                    source += &format!(" (held out: {})", e.display());
                }
                let j = rep.to_json(&source, &method_name, name);
                let text = serde_json::to_string_pretty(&j)?;
                quant::convert::write_atomic(&r, text.as_bytes())?;
                println!("report: {}", r.display());
            }
            if report_png.is_some() || report_svg.is_some() {
                rep.write_chart(
                    name,
                    &method_name,
                    report_png.as_deref(),
                    report_svg.as_deref(),
                )?;
                for p in report_png.iter().chain(&report_svg) {
                    println!("chart: {}", p.display());
                }
            }
            Ok(())
        }
        Cmd::Inspect { model } => {
            let bytes = std::fs::read(&model)?;
            let buf = edge::builder::AlignedBytes::from_slice(&bytes);
            let m = edge::Model::parse(buf.as_slice())?;
            let a = m.arch();
            let plan = m.arena_plan();
            println!(
                "{}: valid edge model, format version {}, {}",
                model.display(),
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
                m.precision().name()
            );
            println!(
                "  arch {} depths {:?} dims {:?}, {} classes, input {}x{}, eps ln {:e} grn {:e}",
                a.name().unwrap_or("custom"),
                a.depths(),
                a.dims(),
                a.num_classes,
                a.input_h,
                a.input_w,
                a.ln_eps,
                a.grn_eps
            );
            println!(
                "  {} params, {} MACs ({:.3} GMAC) per image",
                a.param_count(),
                a.macs(),
                a.macs() as f64 / 1e9
            );
            println!(
                "  arena {} bytes (largest live set {} bytes), file {} bytes",
                m.arena_len(),
                plan.live_set_bytes(),
                m.file_len()
            );
            Ok(())
        }
    }
}
