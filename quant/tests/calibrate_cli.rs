//! `quant calibrate` as a user runs it: the timm Atto fixture calibrated on real Fashion-MNIST
//! images (Debian's `dataset-fashion-mnist`, installed by scripts/test.sh), the int8 file and the
//! report checked; bad inputs refused with nothing written.

use std::path::{Path, PathBuf};
mod common;
use common::*;

const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

fn tmp(name: &str) -> PathBuf {
    tmp_in("calib", name)
}

#[test]
fn calibrates_atto_on_fashion_mnist_with_a_report() {
    assert!(
        Path::new(FASHION_MNIST)
            .join("t10k-images-idx3-ubyte.gz")
            .exists(),
        "{FASHION_MNIST} missing: apt-get install dataset-fashion-mnist (scripts/test.sh does)"
    );
    let (out, rep) = (tmp("atto_i8.cnx"), tmp("report.json"));
    let (png, svg) = (tmp("sqnr.png"), tmp("sqnr.svg"));
    let w = fixtures().join("atto/weights.safetensors");
    let (ok, stdout, stderr) = quant(&[
        "calibrate",
        "--weights",
        w.to_str().unwrap(),
        "--images",
        FASHION_MNIST,
        "--num",
        "8",
        "--eval",
        "24",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
        "--report",
        rep.to_str().unwrap(),
        "--report-png",
        png.to_str().unwrap(),
        "--report-svg",
        svg.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    println!("{stdout}");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rep).unwrap()).unwrap();
    let f = |p: &str| j.pointer(p).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
    assert_eq!(f("/calibration/images"), 8.0);
    assert_eq!(f("/evaluation/images"), 24.0);
    // The file: one byte per weight plus the f32/fp16 parameters and records (target ≤ 1.1).
    let size = std::fs::metadata(&out).unwrap().len() as f64;
    assert_eq!(size, f("/files/int8_bytes"));
    assert!(
        f("/files/int8_bytes_per_param") < 1.1,
        "{}",
        f("/files/int8_bytes_per_param")
    );
    // ImageNet weights on out-of-distribution images: logits still agree closely.
    assert!(f("/evaluation/logits_cosine_mean") > 0.999, "{j}");
    assert!(f("/evaluation/top1_agreement") >= 0.9, "{j}");
    assert!(f("/evaluation/top5_agreement") >= 0.99, "{j}");
    // 1000 classes ≠ 10 labels: no accuracy claimed.
    assert!(j.pointer("/evaluation/accuracy_f32").unwrap().is_null());
    let layers = j["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1 + 1 + 3 * 2 + 12 * 5 + 1); // input, stem, downsamples, blocks, head
    for l in layers {
        let db = l["sqnr_db"].as_f64().unwrap();
        assert!(db > 20.0, "{l}");
    }
    // The chart: one bar per layer, named, under a title with the agreement figures.
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (1100, 100 + 16 * layers.len() as u32));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.contains("logits cosine") && text.contains("top-1 agreement"),
        "{text}"
    );
    for l in layers {
        let name = l["tap"].as_str().unwrap();
        assert!(text.contains(&format!("\n{name}\n")), "no bar label {name}");
    }
    // The written model is a valid int8 file.
    let (ok, stdout, _) = quant(&["inspect", out.to_str().unwrap()]);
    assert!(ok && stdout.contains("int8"), "{stdout}");

    // Held-out images from another source: every image of the folder is evaluated.
    let photos = tmp("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for i in 0..3u8 {
        let img = image::RgbImage::from_fn(300, 200, |x, y| {
            image::Rgb([(x / 2) as u8, (y + 40 * i as u32) as u8, 128])
        });
        img.save(photos.join(format!("p{i}.png"))).unwrap();
    }
    let out2 = tmp("atto_i8_photos.cnx");
    let (ok, stdout, stderr) = quant(&[
        "calibrate",
        "--model",
        out.with_extension("f32").to_str().unwrap(),
        "--images",
        FASHION_MNIST,
        "--eval-images",
        photos.to_str().unwrap(),
        "--num",
        "2",
        "--quiet",
        "--out",
        out2.to_str().unwrap(),
    ]);
    assert!(
        !ok && stderr.contains("atto_i8.f32"),
        "a missing --model is named: {stderr}"
    );
    let f32_model = tmp("atto.cnx");
    let (ok, _, stderr) = quant(&[
        "convert",
        "--weights",
        w.to_str().unwrap(),
        "--out",
        f32_model.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let (ok, stdout2, stderr) = quant(&[
        "calibrate",
        "--model",
        f32_model.to_str().unwrap(),
        "--images",
        FASHION_MNIST,
        "--eval-images",
        photos.to_str().unwrap(),
        "--num",
        "2",
        "--quiet",
        "--out",
        out2.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout2.contains("held-out: 3 images (0 skipped)"),
        "{stdout2}"
    );
    // An int8 model is not a calibration input.
    let (ok, _, stderr) = quant(&[
        "calibrate",
        "--model",
        out2.to_str().unwrap(),
        "--images",
        FASHION_MNIST,
        "--out",
        tmp("never2.cnx").to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("needs an f32 model"), "{stderr}");
    assert!(!tmp("never2.cnx").exists());
}

#[test]
fn calibration_failures_are_named_and_write_nothing() {
    let out = tmp("never.cnx");
    let w = fixtures().join("atto/weights.safetensors");
    // A folder whose only image is corrupt: skipped, counted, then fatal (none remain).
    let dir = tmp("broken-images");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.png"), b"\x89PNG but not really").unwrap();
    let args = |images: &str| {
        vec![
            "calibrate".to_string(),
            "--weights".into(),
            w.to_str().unwrap().into(),
            "--images".into(),
            images.into(),
            "--quiet".into(),
            "--out".into(),
            out.to_str().unwrap().into(),
        ]
    };
    let run = |a: Vec<String>| quant(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let (ok, _, stderr) = run(args(dir.to_str().unwrap()));
    assert!(
        !ok && stderr.contains("no readable calibration image (1 skipped)"),
        "{stderr}"
    );
    let empty = tmp("empty-dir");
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, _, stderr) = run(args(empty.to_str().unwrap()));
    assert!(
        !ok && stderr.contains("no images found (.jpg, .jpeg, .png"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(args("/nonexistent/images"));
    assert!(!ok && stderr.contains("/nonexistent/images"), "{stderr}");
    let mut a = args(dir.to_str().unwrap());
    a.extend([
        "--method".into(),
        "percentile".into(),
        "--percentile".into(),
        "0".into(),
    ]);
    let (ok, _, stderr) = run(a);
    assert!(!ok && stderr.contains("--percentile"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn num_means_readable_images_and_truncated_files_are_skipped_and_counted() {
    // 6 good images (PNG, JPEG, PPM) and 2 cut ones (a JPEG at 60 % of its bytes, a PNG at 50 %).
    let dir = tmp("mixed-images");
    std::fs::create_dir_all(&dir).unwrap();
    let pic = |i: u32| {
        image::RgbImage::from_fn(150, 110, move |x, y| {
            image::Rgb([(x + 20 * i) as u8, (y * 2) as u8, ((x ^ y) + i) as u8])
        })
    };
    for (i, ext) in ["png", "jpg", "ppm", "png", "jpg", "jpeg"]
        .iter()
        .enumerate()
    {
        pic(i as u32)
            .save(dir.join(format!("good{i}.{ext}")))
            .unwrap();
    }
    let cut = |src: &str, dst: &str, frac: f64| {
        let b = std::fs::read(dir.join(src)).unwrap();
        std::fs::write(dir.join(dst), &b[..(b.len() as f64 * frac) as usize]).unwrap();
    };
    pic(9).save(dir.join("whole.jpg")).unwrap();
    cut("whole.jpg", "cut.jpg", 0.6);
    std::fs::remove_file(dir.join("whole.jpg")).unwrap();
    pic(8).save(dir.join("whole.png")).unwrap();
    cut("whole.png", "cut.png", 0.5);
    std::fs::remove_file(dir.join("whole.png")).unwrap();
    let w = fixtures().join("extra/custom_official_f32.safetensors");
    let (out, rep) = (tmp("mixed.cnx"), tmp("mixed.json"));
    let run = |num: &str| {
        let (ok, stdout, stderr) = quant(&[
            "calibrate",
            "--weights",
            w.to_str().unwrap(),
            "--input-size",
            "96x128",
            "--images",
            dir.to_str().unwrap(),
            "--num",
            num,
            "--eval",
            "8",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
            "--report",
            rep.to_str().unwrap(),
        ]);
        assert!(ok, "{stdout}\n{stderr}");
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&rep).unwrap()).unwrap();
        let f = |p: &str| j.pointer(p).and_then(|v| v.as_u64()).unwrap();
        (
            f("/calibration/images"),
            f("/calibration/skipped"),
            f("/evaluation/images"),
            stdout + &stderr,
        )
    };
    // Whatever the draw order, 4 readable images are used; calibration and evaluation together
    // see each of the 6 readable images once.
    let (used, skipped, eval, _) = run("4");
    assert_eq!(used, 4);
    assert!(skipped <= 2);
    assert_eq!(used + eval, 6);
    // More than exist: all 6, both cut files skipped and named.
    let (used, skipped, eval, log) = run("7");
    assert_eq!((used, skipped, eval), (6, 2, 0));
    assert!(
        log.contains("cut.jpg: JPEG is truncated or corrupt")
            && log.contains("cut.png: PNG is truncated or corrupt"),
        "{log}"
    );
}
