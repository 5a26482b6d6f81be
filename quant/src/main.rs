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
    /// Validates a model file and prints its architecture and arena needs.
    Inspect {
        /// The model file.
        model: PathBuf,
    },
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
        } => {
            let a = quant::convert_file(&weights, arch.as_deref(), input_size, &out)?;
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
        Cmd::Inspect { model } => {
            let bytes = std::fs::read(&model)?;
            let buf = edge::builder::AlignedBytes::from_slice(&bytes);
            let m = edge::Model::parse(buf.as_slice())?;
            let a = m.arch();
            let plan = m.arena_plan();
            println!(
                "{}: valid edge model, format version {}",
                model.display(),
                edge::format::VERSION
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
