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
        "--json",
    ]);
    assert!(ok, "{stderr}");
    for key in [
        "\"latency_ms\":{\"min\":",
        "\"p50\":",
        "\"p90\":",
        "\"arena_bytes\":3015695",
        "\"model_bytes\":",
        "\"top5\":[{\"class\":",
    ] {
        assert!(stdout.contains(key), "{key} in {stdout}");
    }
    let got = read_f32(&logits);
    let want = read_f32(&fixtures().join("atto/logits/astronaut.bin"));
    let err = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(err <= 1e-4, "{err}");
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
    assert!(
        out.contains(&format!("\"int8_paths\":{{\"gemm\":\"{}\"", want.gemm)),
        "{out}"
    );
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
