//! The spine end to end as a user runs it: `quant convert` → `edge-bench` reproduces timm's logits.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edge-bench-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn bench(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_edge-bench"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn read_f32(p: &Path) -> Vec<f32> {
    std::fs::read(p)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn atto_model(name: &str) -> PathBuf {
    let out = tmp(name);
    quant::convert_file(
        &fixtures().join("atto/weights.safetensors"),
        None,
        (224, 224),
        &out,
    )
    .unwrap();
    out
}

#[test]
fn reproduces_timm_logits_for_both_kernel_settings() {
    let model = atto_model("a.cnx");
    for kernels in ["auto", "scalar"] {
        for name in ["randn_s0", "astronaut"] {
            let input = fixtures().join(format!("atto/inputs/{name}.bin"));
            let logits = tmp(&format!("{name}-{kernels}.bin"));
            let (ok, stdout, stderr) = bench(&[
                "--model",
                model.to_str().unwrap(),
                "--input",
                input.to_str().unwrap(),
                "--logits-out",
                logits.to_str().unwrap(),
                "--iters",
                "1",
                "--warmup",
                "0",
                "--kernels",
                kernels,
            ]);
            assert!(ok, "{stderr}");
            assert!(
                stdout.contains("top-5") && stdout.contains("latency per image"),
                "{stdout}"
            );
            let got = read_f32(&logits);
            let want = read_f32(&fixtures().join(format!("atto/logits/{name}.bin")));
            let err = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err <= 1e-4, "{name} {kernels}: {err}");
            // top-1 printed is timm's argmax
            let top1 = (0..want.len()).fold(0, |b, i| if want[i] > want[b] { i } else { b });
            assert!(stdout.contains(&format!("1. class {top1:>5}")), "{stdout}");
        }
    }
}

#[test]
fn json_output_and_png_input() {
    let model = atto_model("b.cnx");
    // The astronaut fixture as a 224×224 PNG: with --crop-pct 1 no resampling happens.
    let raw = std::fs::read(fixtures().join("atto/inputs/astronaut_u8_hwc_224x224x3.bin")).unwrap();
    let png = tmp("astronaut.png");
    image::RgbImage::from_raw(224, 224, raw)
        .unwrap()
        .save(&png)
        .unwrap();
    let logits = tmp("astronaut-png.bin");
    let (ok, stdout, stderr) = bench(&[
        "--model",
        model.to_str().unwrap(),
        "--input",
        png.to_str().unwrap(),
        "--crop-pct",
        "1",
        "--logits-out",
        logits.to_str().unwrap(),
        "--iters",
        "2",
        "--warmup",
        "0",
        "--threads",
        "1",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let lat = &j["latency_ms"];
    for q in ["min", "p50", "p90", "max", "mean"] {
        assert!(lat[q].as_f64().is_some_and(|v| v > 0.0), "{q} in {stdout}");
    }
    assert!(
        lat["min"].as_f64() <= lat["p50"].as_f64() && lat["p90"].as_f64() <= lat["max"].as_f64()
    );
    // One worker: the plan's live set; several keep GRN's partial sums per task too.
    assert_eq!(j["arena_bytes"], 3015695);
    assert_eq!(j["threads"], 1);
    assert!(j["model_bytes"].as_u64().unwrap() > 3_000_000);
    assert_eq!(j["top5"].as_array().unwrap().len(), 5);
    assert!(j["top5"][0]["class"].is_u64() && j.get("profile").is_none());
    let got = read_f32(&logits);
    let want = read_f32(&fixtures().join("atto/logits/astronaut.bin"));
    let err = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(err <= 1e-4, "{err}");
}

/// `--speedup`: every timed image is paired with a 1-thread one (whose logits must equal the
/// pool's, or the run fails), and the ratios' quantiles come out ordered; it cannot be
/// combined with `--profile`.
#[test]
fn speedup_pairs_each_image_with_one_thread() {
    let model = atto_model("speedup.cnx");
    let input = fixtures().join("atto/inputs/astronaut.bin");
    let args = [
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--iters",
        "4",
        "--warmup",
        "0",
        "--threads",
        "2",
        "--speedup",
    ];
    let (ok, stdout, stderr) = bench(&[&args[..], &["--json"]].concat());
    assert!(ok, "{stderr}");
    let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let s = &j["speedup"];
    assert_eq!(s["pairs"], 4, "{stdout}");
    let q = |k: &str| s[k].as_f64().unwrap();
    assert!(q("one_thread_p50_ms") > 0.0 && q("ratio_p10") > 0.0);
    assert!(q("ratio_p10") <= q("ratio_p50") && q("ratio_p50") <= q("ratio_p90"));
    let (ok, stdout, _) = bench(&args);
    assert!(
        ok && stdout.contains("4 interleaved pairs: median"),
        "{stdout}"
    );
    let (ok, _, stderr) = bench(&[&args[..], &["--profile"]].concat());
    assert!(!ok && stderr.contains("--profile"), "{stderr}");
}

#[test]
fn bad_inputs_exit_nonzero_with_a_message() {
    let model = atto_model("c.cnx");
    let short = tmp("short.bin");
    std::fs::write(&short, [0u8; 12]).unwrap();
    let (ok, _, stderr) = bench(&[
        "--model",
        model.to_str().unwrap(),
        "--input",
        short.to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("expected 602112"), "{stderr}");
    let (ok, _, stderr) = bench(&[
        "--model",
        short.to_str().unwrap(),
        "--input",
        short.to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("bad magic"), "{stderr}");
    let notimg = tmp("x.png");
    std::fs::write(&notimg, b"nope").unwrap();
    let (ok, _, stderr) = bench(&[
        "--model",
        model.to_str().unwrap(),
        "--input",
        notimg.to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("x.png"), "{stderr}");
    // A JPEG cut at 60 % of its bytes (an interrupted copy) is an error, not half a picture.
    let raw = std::fs::read(fixtures().join("atto/inputs/astronaut_u8_hwc_224x224x3.bin")).unwrap();
    let jpg = tmp("astronaut.jpg");
    image::RgbImage::from_raw(224, 224, raw)
        .unwrap()
        .save(&jpg)
        .unwrap();
    let whole = std::fs::read(&jpg).unwrap();
    std::fs::write(&jpg, &whole[..whole.len() * 6 / 10]).unwrap();
    let (ok, stdout, stderr) = bench(&[
        "--model",
        model.to_str().unwrap(),
        "--input",
        jpg.to_str().unwrap(),
    ]);
    assert!(
        !ok && stderr.contains("astronaut.jpg: JPEG is truncated or corrupt"),
        "{stderr}"
    );
    assert!(!stdout.contains("top-5"), "{stdout}");
    let (ok, _, _) = bench(&[
        "--model",
        model.to_str().unwrap(),
        "--input",
        short.to_str().unwrap(),
        "--threads",
        "2",
    ]);
    assert!(!ok);
    // A kernel set this target lacks is refused with the runtime's typed error.
    #[cfg(not(target_arch = "aarch64"))]
    {
        let input = fixtures().join("atto/inputs/randn_s0.bin");
        let (ok, _, stderr) = bench(&[
            "--model",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--kernels",
            "neon",
            "--warmup",
            "0",
            "--iters",
            "1",
        ]);
        assert!(
            !ok && stderr.contains("kernel set 'neon' is not available"),
            "{stderr}"
        );
    }
}

#[test]
fn int8_runs_say_which_instruction_paths_ran() {
    // A small int8 model: the `custom` fixture (96×128) calibrated on one synthetic image.
    let f32_file = tmp("custom.cnx");
    quant::convert_file(
        &fixtures().join("extra/custom_weights.safetensors"),
        None,
        (96, 128),
        &f32_file,
    )
    .unwrap();
    let buf = edge::builder::AlignedBytes::from_slice(&std::fs::read(&f32_file).unwrap());
    let f32m = edge::Model::parse(buf.as_slice()).unwrap();
    let img: Vec<u8> = (0..96 * 128 * 3).map(|i| (i * 13 % 256) as u8).collect();
    let int8 = quant::quantize::quantize_with_inputs(
        &f32m,
        [edge::Input::HwcU8(&img)],
        quant::calib::Method::MinMax,
    )
    .unwrap();
    let model = tmp("custom_int8.cnx");
    std::fs::write(&model, int8).unwrap();
    let input = tmp("custom_input.bin");
    std::fs::copy(fixtures().join("extra/custom_input.bin"), &input).unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--model",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--iters",
            "1",
            "--warmup",
            "0",
        ];
        args.extend_from_slice(extra);
        let (ok, stdout, stderr) = bench(&args);
        assert!(ok, "{stderr}");
        stdout
    };
    let out = run(&["--kernels", "scalar"]);
    assert!(
        out.contains("int8 GEMMs: scalar reference (portable Rust); GRN: scalar reference"),
        "{out}"
    );
    let out = run(&["--json"]);
    let want = edge::Kernels::Auto.int8_paths().unwrap();
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["int8_paths"]["gemm"], want.gemm, "{out}");
    assert_eq!(j["int8_paths"]["grn"], want.grn, "{out}");
    // f32 models print no int8 line.
    let out = bench(&[
        "--model",
        f32_file.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--iters",
        "1",
        "--warmup",
        "0",
    ])
    .1;
    assert!(!out.contains("int8 GEMMs"), "{out}");
}

#[test]
fn profile_lists_every_step_f32_and_int8() {
    let f32_file = atto_model("prof.cnx");
    let buf = edge::builder::AlignedBytes::from_slice(&std::fs::read(&f32_file).unwrap());
    let f32m = edge::Model::parse(buf.as_slice()).unwrap();
    let img = std::fs::read(fixtures().join("atto/inputs/astronaut_u8_hwc_224x224x3.bin")).unwrap();
    let int8 = quant::quantize::quantize_with_inputs(
        &f32m,
        [edge::Input::HwcU8(&img)],
        quant::calib::Method::MinMax,
    )
    .unwrap();
    let i8_file = tmp("prof_i8.cnx");
    std::fs::write(&i8_file, int8).unwrap();
    let input = fixtures().join("atto/inputs/astronaut.bin");
    let arch = *f32m.arch();
    for model in [&f32_file, &i8_file] {
        let args = |extra: &'static [&'static str]| {
            let mut a = vec![
                "--model",
                model.to_str().unwrap(),
                "--input",
                input.to_str().unwrap(),
                "--iters",
                "2",
                "--warmup",
                "1",
                "--threads",
                "2",
                "--profile",
            ];
            a.extend_from_slice(extra);
            a
        };
        let (ok, stdout, stderr) = bench(&args(&["--json"]));
        assert!(ok, "{stderr}");
        let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let p = &j["profile"];
        let steps = p["steps"].as_array().unwrap();
        let want: Vec<String> = edge::Op::schedule(&arch).map(|o| o.to_string()).collect();
        let got: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
        assert_eq!(got, want);
        // The shares add up to the whole, the MACs to the model's, and the fc1 of a block in
        // the third stage (the bulk of the work) has a throughput.
        let pct: f64 = steps.iter().map(|s| s["percent"].as_f64().unwrap()).sum();
        assert!((pct - 100.0).abs() < 1e-6, "{pct}");
        let macs: u64 = steps.iter().map(|s| s["macs"].as_u64().unwrap()).sum();
        assert_eq!(macs, arch.macs());
        let fc1 = steps
            .iter()
            .find(|s| s["step"] == "stages.2.blocks.0 fc1+GELU")
            .unwrap();
        assert!(fc1["gmac_per_s"].as_f64().unwrap() > 0.0 && fc1["ms"].as_f64().unwrap() > 0.0);
        // Every nanosecond of a profiled run between its start and its head is charged to a
        // step: the steps cannot add up to more than the run's own wall time.
        let (sum, own) = (
            p["sum_ms"].as_f64().unwrap(),
            p["profiled_run_ms"].as_f64().unwrap(),
        );
        assert!(sum > 0.0 && sum <= own, "{sum} vs {own}");
        let kinds: Vec<&str> = p["kinds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "input",
                "stem conv4x4+LN",
                "dwconv7x7+LN",
                "fc1+GELU",
                "GRN",
                "fc2+residual",
                "downsample LN+conv2x2",
                "pool+LN",
                "head"
            ]
        );
        // The text table: a header, one line per step, the kinds.
        let (ok, text, stderr) = bench(&args(&[]));
        assert!(ok, "{stderr}");
        assert!(
            text.contains(
                "profile: mean over 2 profiled runs, each after a timed one; the steps sum to"
            ),
            "{text}"
        );
        assert!(text.contains("  stages.3.blocks.1 fc2+residual"), "{text}");
        assert!(text.contains("by operator kind"), "{text}");
    }
}

#[test]
fn critical_path_mode_runs_the_same_image_and_names_every_call() {
    let model = atto_model("cp.cnx");
    let input = fixtures().join("atto/inputs/astronaut.bin");
    let (m, i) = (model.to_str().unwrap(), input.to_str().unwrap());
    let (ok, plain, stderr) = bench(&["--model", m, "--input", i, "--iters", "1", "--warmup", "0"]);
    assert!(ok, "{stderr}");
    let top1 = plain.lines().find(|l| l.contains("1. class")).unwrap();
    let (class, logit) = {
        let w: Vec<&str> = top1.split_whitespace().collect();
        (w[2].to_string(), w[4].to_string())
    };
    for workers in ["1", "3"] {
        let args = [
            "--model",
            m,
            "--input",
            i,
            "--iters",
            "1",
            "--critical-path",
            workers,
        ];
        let (ok, out, stderr) = bench(&args);
        assert!(ok, "{stderr}");
        // Same logits as the plain run (the split is bit-identical).
        assert!(
            out.contains(&format!("top-1 class {class} logit {logit}")),
            "{workers}: {out}"
        );
        let steps: Vec<usize> = out
            .lines()
            .filter(|l| l.starts_with("critical-path call "))
            .map(|l| {
                assert!(!l.contains("kind ?"), "{l}");
                l.split_whitespace().nth(4).unwrap().parse().unwrap()
            })
            .collect();
        if workers == "1" {
            // One worker: every operator in one call on the calling thread, no executor calls.
            assert!(steps.is_empty(), "{out}");
        } else {
            // Every block's four steps and the stem at least, in schedule order.
            assert!(steps.len() > 4 * 12, "{out}");
            assert!(steps.windows(2).all(|w| w[0] <= w[1]), "{steps:?}");
            // Two images make twice the calls, and the list is one image's: the same lines.
            let mut two = args;
            two[5] = "2";
            let (ok, out2, stderr) = bench(&two);
            assert!(ok, "{stderr}");
            let calls = |out: &str| -> Vec<String> {
                out.lines()
                    .filter(|l| l.starts_with("critical-path call "))
                    .map(str::to_string)
                    .collect()
            };
            assert_eq!(calls(&out), calls(&out2));
            let total = format!("calls {} ", 2 * steps.len());
            assert!(out2.contains(&total), "{out2}");
        }
    }
    // Not with a pool or the profile: it is a counting mode.
    let (ok, _, stderr) = bench(&[
        "--model",
        m,
        "--input",
        i,
        "--critical-path",
        "2",
        "--threads",
        "2",
    ]);
    assert!(!ok && stderr.contains("--critical-path"), "{stderr}");
}
