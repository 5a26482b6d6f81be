//! `edge-bench`: runs an edge model file on one input and reports top-5 and latency per image,
//! on one thread or split across a pool, and with `--profile` the latency of every step of the
//! fused schedule. It is the program a user copies to a board.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use edge::builder::AlignedBytes;
use edge::{Executor, Input, Kernels, Model, Op, Profiler, RayonExecutor, Serial, SpinPool};
use serde_json::json;

mod critical_path;

#[derive(Parser)]
#[command(
    name = "edge-bench",
    version,
    about = "Top-5 and latency per image of an edge model file"
)]
struct Cli {
    /// Model file (f32 from `quant convert`, int8 from `quant calibrate`).
    #[arg(long)]
    model: PathBuf,
    /// Raw little-endian f32 NCHW `[1,3,H,W]` `.bin` (already normalized), or an image
    /// (png/jpg: resized so the crop covers --crop-pct of it, centre-cropped, ImageNet-normalized).
    #[arg(long)]
    input: PathBuf,
    /// Write the logits as raw little-endian f32.
    #[arg(long)]
    logits_out: Option<PathBuf>,
    /// Timed iterations.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    iters: u32,
    /// Untimed iterations before timing.
    #[arg(long, default_value_t = 2)]
    warmup: u32,
    /// Kernel set: the fastest this CPU has (auto: NEON on aarch64, AVX-512 or AVX2 on x86-64),
    /// the scalar references, or one set by name (an error if the CPU lacks it).
    #[arg(long, value_enum, default_value_t = KernelArg::Auto)]
    kernels: KernelArg,
    /// Threads one image is split across (a persistent pool, see --pool); default: every core
    /// the OS gives this process. The logits are bit-identical for any count.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,
    /// The pool behind --threads: `spin` (edge::SpinPool: the calling thread and N − 1 helpers
    /// that wait for each operator spinning, then parked) or `rayon` (edge::RayonExecutor, the
    /// run on one of its threads).
    #[arg(long, value_enum, default_value_t = PoolArg::Spin)]
    pool: PoolArg,
    /// Fraction of the resized image that the centre crop keeps (images only).
    #[arg(long, default_value_t = 0.875)]
    crop_pct: f64,
    /// Instruction counting under qemu-user (benches/qemu/threads.sh), not timing: split the
    /// image as N workers would, each operator on N threads spawned for it (task t on thread t
    /// mod N), and print which schedule step each of one image's calls ran in (`critical-path
    /// call` lines), so that per-thread counts give the critical path and each operator's
    /// imbalance.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64), conflicts_with_all = ["threads", "profile"])]
    critical_path: Option<u32>,
    /// Also time every image on one thread, interleaved with the --threads runs, and report the
    /// median of the per-pair speed-ups: machine drift (frequency, other tenants) that spans
    /// seconds hits both sides of a pair alike, where two separate timings would each catch a
    /// different phase. Each iteration times one image on each side (in alternating order),
    /// each right after an untimed one on the same side, so that both are timed in their
    /// steady state (the pool's helpers running, the caches holding that side's data).
    #[arg(long, conflicts_with = "profile")]
    speedup: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Also time every step of the fused schedule (stem, downsamples, per block dwconv7x7+LN,
    /// fc1+GELU, GRN, fc2+residual, pool, head) over another --iters runs: a table with ms,
    /// share of the image and GMAC/s, and per operator kind (`profile` in --json).
    #[arg(long)]
    profile: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum PoolArg {
    Spin,
    Rayon,
}

#[derive(Clone, Copy, ValueEnum)]
enum KernelArg {
    Auto,
    Scalar,
    Neon,
    Avx2,
    Avx512,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

enum Image {
    Nchw(Vec<f32>),
    Hwc(Vec<u8>),
}

fn load_input(path: &Path, h: usize, w: usize, crop_pct: f64) -> Result<Image, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("bin"))
    {
        let want = 3 * h * w * 4;
        if bytes.len() != want {
            return Err(format!(
                "{}: {} bytes, expected {want} (f32 NCHW [1,3,{h},{w}])",
                path.display(),
                bytes.len()
            ));
        }
        return Ok(Image::Nchw(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ));
    }
    if !(crop_pct > 0.0 && crop_pct <= 1.0) {
        return Err(format!("--crop-pct must be in (0, 1], got {crop_pct}"));
    }
    // Strict decoding: a truncated or corrupt file is an error, not a half-grey picture.
    let img = preprocess::decode_rgb8(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let crop = preprocess::center_crop(&img, h, w, crop_pct)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Image::Hwc(crop))
}

/// Says so when the CPU has int8 features this build does not use (SDOT, fp16 arithmetic).
fn unused_cpu_features(p: edge::Int8Paths) -> Option<&'static str> {
    #[cfg(target_arch = "aarch64")]
    {
        let sdot = std::arch::is_aarch64_feature_detected!("dotprod");
        let fp16 = std::arch::is_aarch64_feature_detected!("fp16");
        if (sdot && !p.gemm.starts_with("SDOT")) || (fp16 && !p.grn.starts_with("native")) {
            return Some(
                "this CPU has SDOT/fp16 that this build does not use: rebuild with \
                 `--features dotprod` and `-C target-feature=+dotprod,+fp16` (docs/kernels.md)",
            );
        }
    }
    let _ = p;
    None
}

fn run(cli: &Cli) -> Result<(), Box<dyn std::error::Error>> {
    let bytes = std::fs::read(&cli.model).map_err(|e| format!("{}: {e}", cli.model.display()))?;
    let buf = AlignedBytes::from_slice(&bytes);
    let model =
        Model::parse(buf.as_slice()).map_err(|e| format!("{}: {e}", cli.model.display()))?;
    let a = *model.arch();
    let image = load_input(&cli.input, a.input_h, a.input_w, cli.crop_pct)?;
    let input = match &image {
        Image::Nchw(v) => Input::NchwF32(v),
        Image::Hwc(v) => Input::HwcU8(v),
    };
    let kernels = match cli.kernels {
        KernelArg::Auto => Kernels::Auto,
        KernelArg::Scalar => Kernels::Scalar,
        KernelArg::Neon => Kernels::Neon,
        KernelArg::Avx2 => Kernels::Avx2,
        KernelArg::Avx512 => Kernels::Avx512,
    };
    // `run_with` refuses a set this target lacks with its typed error.
    let kernel_name = kernels
        .resolved_name_for(model.precision())
        .unwrap_or("unavailable");
    let precision = model.precision().name();
    // int8: which instruction paths ran (a Cortex-A72 runs the ARMv8.0 forms, an A76 build with
    // `dotprod` SDOT and native fp16), so a reader knows what the latency measured.
    let int8_paths = (model.precision() == edge::Precision::Int8)
        .then(|| kernels.int8_paths())
        .flatten();
    if let Some(n) = cli.critical_path {
        return count_critical_path(&model, input, kernels, n as usize, cli.iters);
    }
    let threads = match cli.threads {
        Some(t) => t as usize,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    // One thread: the calling thread itself (`Serial`), no pool.
    let pool = match (threads > 1, cli.pool) {
        (false, _) => Pool::Serial,
        (true, PoolArg::Spin) => Pool::Spin(
            SpinPool::new(threads).map_err(|e| format!("thread pool of {threads}: {e}"))?,
        ),
        (true, PoolArg::Rayon) => Pool::Rayon(
            RayonExecutor::new(threads).map_err(|e| format!("thread pool of {threads}: {e}"))?,
        ),
    };
    let run = |arena: &mut [u8], logits: &mut [f32]| {
        pool.on(|exec| model.run_parallel(input, arena, logits, kernels, exec))
    };
    let run_profiled = |arena: &mut [u8], logits: &mut [f32], ticks: &mut [u64]| {
        let origin = Instant::now();
        let mut prof = Profiler::new(|| origin.elapsed().as_nanos() as u64, ticks);
        pool.on(|exec| model.run_with_executor(input, arena, logits, kernels, &mut prof, exec))
    };
    let mut arena = vec![0u8; model.arena_len_for(threads)];
    let mut logits = vec![0f32; a.num_classes];
    for _ in 0..cli.warmup {
        run(&mut arena, &mut logits)?;
    }
    let mut ms = Vec::with_capacity(cli.iters as usize);
    // --profile: each timed run is followed by a profiled one, so that both see the same
    // machine (frequency, other tenants) and their means compare.
    let mut ticks = vec![0u64; if cli.profile { Op::count(&a) } else { 0 }];
    let mut profiled_ms = 0.0;
    // --speedup: (1-thread ms, --threads ms) per iteration.
    let mut pairs = Vec::with_capacity(if cli.speedup { cli.iters as usize } else { 0 });
    let mut serial_logits = vec![0f32; a.num_classes];
    let mut run_serial = |arena: &mut [u8]| -> Result<f64, edge::Error> {
        model.run_parallel(input, arena, &mut serial_logits, kernels, &Serial)?;
        let t = Instant::now();
        model.run_parallel(input, arena, &mut serial_logits, kernels, &Serial)?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    if cli.speedup {
        for _ in 0..cli.warmup {
            run_serial(&mut arena)?;
        }
    }
    for i in 0..cli.iters {
        let serial_first = cli.speedup && i % 2 == 0;
        let before = if serial_first {
            Some(run_serial(&mut arena)?)
        } else {
            None
        };
        if cli.speedup {
            run(&mut arena, &mut logits)?;
        }
        let t = Instant::now();
        run(&mut arena, &mut logits)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        if cli.speedup {
            let one = match before {
                Some(one) => one,
                None => run_serial(&mut arena)?,
            };
            pairs.push((one, ms[ms.len() - 1]));
        }
        if cli.profile {
            let t = Instant::now();
            run_profiled(&mut arena, &mut logits, &mut ticks)?;
            profiled_ms += t.elapsed().as_secs_f64() * 1e3;
        }
    }
    let mean_ms = ms.iter().sum::<f64>() / ms.len() as f64;
    let profile = cli.profile.then(|| {
        StepProfile::new(
            &a,
            &ticks,
            cli.iters,
            mean_ms,
            profiled_ms / cli.iters as f64,
        )
    });
    let speedup = cli.speedup.then(|| Speedup::new(&pairs));
    if cli.speedup && serial_logits != logits {
        return Err("--speedup: the 1-thread logits differ from the --threads ones".into());
    }
    ms.sort_by(f64::total_cmp);
    let pct = |q: f64| quantile(&ms, q);
    let order = ranked(&logits);
    let top5 = &order[..order.len().min(5)];
    if let Some(p) = &cli.logits_out {
        let raw: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(p, raw).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let name = a.name().unwrap_or("custom");
    if cli.json {
        let top: Vec<_> = top5
            .iter()
            .map(|&i| json!({"class": i, "logit": logits[i]}))
            .collect();
        let mut out = json!({
            "model": cli.model.display().to_string(),
            "arch": name,
            "precision": precision,
            "input_h": a.input_h,
            "input_w": a.input_w,
            "classes": a.num_classes,
            "kernels": kernel_name,
            "threads": threads,
            "pool": pool.name(),
            "iters": cli.iters,
            "latency_ms": {"min": ms[0], "p50": pct(0.5), "p90": pct(0.9), "max": ms[ms.len() - 1], "mean": mean_ms},
            "arena_bytes": model.arena_len_for(threads),
            "live_set_bytes": model.arena_plan().live_set_bytes(),
            "model_bytes": model.file_len(),
            "macs": a.macs(),
            "top5": top,
        });
        if let Some(p) = int8_paths {
            out["int8_paths"] = json!({"gemm": p.gemm, "grn": p.grn});
        }
        if let Some(p) = &profile {
            out["profile"] = p.json();
        }
        if let Some(s) = &speedup {
            out["speedup"] = json!({
                "pairs": pairs.len(),
                "one_thread_p50_ms": s.one_p50,
                "ratio_p10": s.p10,
                "ratio_p50": s.p50,
                "ratio_p90": s.p90,
            });
        }
        println!("{out}");
    } else {
        println!(
            "model   {} ({} bytes): {name} {precision}, input {}x{}, {} classes, {:.3} GMAC",
            cli.model.display(),
            model.file_len(),
            a.input_h,
            a.input_w,
            a.num_classes,
            a.macs() as f64 / 1e9
        );
        println!(
            "kernels {kernel_name} ({threads} thread{})",
            if threads == 1 { "" } else { "s" }
        );
        if let Some(p) = int8_paths {
            println!("        {p}");
            if let Some(hint) = unused_cpu_features(p) {
                println!("        {hint}");
            }
        }
        println!(
            "arena   {} bytes (largest live set {} bytes)",
            model.arena_len_for(threads),
            model.arena_plan().live_set_bytes()
        );
        println!("top-5");
        for (r, &i) in top5.iter().enumerate() {
            println!("  {}. class {i:>5}  logit {:+.6}", r + 1, logits[i]);
        }
        println!(
            "latency per image over {} iters (ms): min {:.3}  p50 {:.3}  p90 {:.3}  max {:.3}",
            cli.iters,
            ms[0],
            pct(0.5),
            pct(0.9),
            ms[ms.len() - 1]
        );
        if let Some(p) = &profile {
            p.print();
        }
        if let Some(s) = &speedup {
            println!(
                "speed-up over 1 thread, {} interleaved pairs: median {:.3}× (p10 {:.3}×, p90 {:.3}×); 1 thread p50 {:.3} ms",
                pairs.len(),
                s.p50,
                s.p10,
                s.p90,
                s.one_p50
            );
        }
    }
    Ok(())
}

/// `--speedup`: the per-pair ratios (1-thread time ÷ --threads time) and the 1-thread median.
struct Speedup {
    p10: f64,
    p50: f64,
    p90: f64,
    one_p50: f64,
}

impl Speedup {
    fn new(pairs: &[(f64, f64)]) -> Speedup {
        let sorted = |v: Vec<f64>| {
            let mut v = v;
            v.sort_by(f64::total_cmp);
            v
        };
        let ratios = sorted(pairs.iter().map(|&(one, n)| one / n).collect());
        let one = sorted(pairs.iter().map(|p| p.0).collect());
        Speedup {
            p10: quantile(&ratios, 0.1),
            p50: quantile(&ratios, 0.5),
            p90: quantile(&ratios, 0.9),
            one_p50: quantile(&one, 0.5),
        }
    }
}

/// The `q` quantile of ascending, non-empty `sorted` (the nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The executor behind `--threads`.
enum Pool {
    Serial,
    Spin(SpinPool),
    Rayon(RayonExecutor),
}

impl Pool {
    /// Runs `f` with this pool as the executor; with rayon, on one of its threads, so that it
    /// is a worker of every operator (see `RayonExecutor::install`).
    fn on<R: Send>(&self, f: impl FnOnce(&dyn Executor) -> R + Send) -> R {
        match self {
            Pool::Serial => f(&Serial),
            Pool::Spin(p) => f(p),
            Pool::Rayon(p) => p.install(|| f(p)),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Pool::Serial => "serial",
            Pool::Spin(_) => "spin",
            Pool::Rayon(_) => "rayon",
        }
    }
}

/// Class indices by logit, highest first (ties: the lower index first).
fn ranked(logits: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&i, &j| logits[j].total_cmp(&logits[i]).then(i.cmp(&j)));
    order
}

/// `--critical-path N`: one start-up calibration set of threads, then `iters` images on
/// [`critical_path::SpawnPerCall`], then one line per executor call of one image naming its step.
fn count_critical_path(
    model: &Model,
    input: Input,
    kernels: Kernels,
    workers: usize,
    iters: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    let a = *model.arch();
    let exec = critical_path::SpawnPerCall::new(workers);
    let mut arena = vec![0u8; model.arena_len_for(workers)];
    let mut logits = vec![0f32; a.num_classes];
    exec.calibrate();
    for _ in 0..iters {
        let mut tracker = exec.tracker();
        model.run_with_executor(input, &mut arena, &mut logits, kernels, &mut tracker, &exec)?;
    }
    let steps: Vec<Op> = Op::schedule(&a).collect();
    let calls = exec.calls();
    // Every image makes the same calls: the first image's are listed, so that this printing costs
    // the calling thread the same for 1 image as for 3 and cancels in threads.sh's difference of
    // the two (it is the harness's work, not the runtime's).
    let per_image = calls.len() / iters.max(1) as usize;
    println!(
        "critical-path workers {workers} images {iters} calls {} (threads: 0 main, then sets of {workers}: 2 calibration sets, one per call); the {per_image} calls of one image:",
        calls.len()
    );
    for (i, s) in calls[..per_image].iter().enumerate() {
        let (name, kind) = steps
            .get(*s)
            .map_or(("?".to_string(), "?"), |op| (op.to_string(), op.kind()));
        println!("critical-path call {i} step {s} kind {kind} op {name}");
    }
    if let Some(&i) = ranked(&logits).first() {
        println!("top-1 class {i} logit {:+.6}", logits[i]);
    }
    Ok(())
}

/// Mean time of every step of the fused schedule over the profiled runs.
struct StepProfile {
    /// (step, kind, mean ms, MACs) in schedule order.
    steps: Vec<(String, &'static str, f64, u64)>,
    iters: u32,
    /// Mean latency of the unprofiled runs.
    latency_ms: f64,
    /// Mean wall time of the profiled runs themselves.
    profiled_ms: f64,
    /// Under qemu-user (see [`emulated`]).
    emulated: bool,
}

impl StepProfile {
    fn new(a: &edge::Arch, ticks: &[u64], iters: u32, latency_ms: f64, profiled_ms: f64) -> Self {
        let steps = Op::schedule(a)
            .zip(ticks)
            .map(|(op, &t)| {
                (
                    op.to_string(),
                    op.kind(),
                    t as f64 / iters as f64 / 1e6,
                    op.macs(a),
                )
            })
            .collect();
        StepProfile {
            steps,
            iters,
            latency_ms,
            profiled_ms,
            emulated: emulated(),
        }
    }

    fn sum_ms(&self) -> f64 {
        self.steps.iter().map(|s| s.2).sum()
    }

    /// Per kind, in order of first appearance: (kind, ms, MACs).
    fn kinds(&self) -> Vec<(&'static str, f64, u64)> {
        let mut out: Vec<(&'static str, f64, u64)> = Vec::new();
        for &(_, kind, ms, macs) in &self.steps {
            match out.iter_mut().find(|k| k.0 == kind) {
                Some(k) => {
                    k.1 += ms;
                    k.2 += macs;
                }
                None => out.push((kind, ms, macs)),
            }
        }
        out
    }

    fn gmacs(ms: f64, macs: u64) -> Option<f64> {
        (macs > 0 && ms > 0.0).then(|| macs as f64 / (ms * 1e-3) / 1e9)
    }

    fn json(&self) -> serde_json::Value {
        let sum = self.sum_ms();
        let row = |name: &str, kind: &str, ms: f64, macs: u64| json!({"step": name, "kind": kind, "ms": ms, "percent": 100.0 * ms / sum, "macs": macs, "gmac_per_s": Self::gmacs(ms, macs)});
        json!({
            "iters": self.iters,
            "emulated": self.emulated,
            "sum_ms": sum,
            "sum_over_latency": sum / self.latency_ms,
            "profiled_run_ms": self.profiled_ms,
            "steps": self.steps.iter().map(|(n, k, ms, m)| row(n, k, *ms, *m)).collect::<Vec<_>>(),
            "kinds": self.kinds().iter().map(|(k, ms, m)| row(k, k, *ms, *m)).collect::<Vec<_>>(),
        })
    }

    fn print(&self) {
        let sum = self.sum_ms();
        println!(
            "profile: mean over {} profiled runs, each after a timed one; the steps sum to {sum:.3} ms = {:.1} % of the \
             unprofiled mean latency {:.3} ms ({:.1} % of the profiled runs' own {:.3} ms)",
            self.iters,
            100.0 * sum / self.latency_ms,
            self.latency_ms,
            100.0 * sum / self.profiled_ms,
            self.profiled_ms
        );
        if self.emulated {
            println!(
                "         (under an emulator, qemu-user: emulation time, not the device's; \
                 instruction counts are the measure there, benches/qemu)"
            );
        }
        let line = |name: &str, ms: f64, macs: u64| {
            let g = Self::gmacs(ms, macs).map_or("-".to_string(), |g| format!("{g:.2}"));
            println!("  {name:<36} {ms:>9.3} {:>6.1} {g:>8}", 100.0 * ms / sum);
        };
        println!("  {:<36} {:>9} {:>6} {:>8}", "step", "ms", "%", "GMAC/s");
        for (n, _, ms, macs) in &self.steps {
            line(n, *ms, *macs);
        }
        println!("by operator kind");
        for (k, ms, macs) in self.kinds() {
            line(k, ms, macs);
        }
    }
}

/// Whether this aarch64 binary runs under qemu-user on another ISA: qemu passes the host's
/// `/proc/cpuinfo` through, which then names an x86 vendor.
fn emulated() -> bool {
    cfg!(target_arch = "aarch64")
        && std::fs::read_to_string("/proc/cpuinfo")
            .is_ok_and(|c| c.contains("GenuineIntel") || c.contains("AuthenticAMD"))
}
