//! `train finetune` end to end on a small generated ImageFolder (two classes: horizontal vs
//! vertical stripes, 32 px, plus one corrupt file): the loss falls and the stripes are learned,
//! metrics/plot/checkpoint are written, `kill -9` mid-epoch then `--resume` reproduces the
//! uninterrupted run's metrics exactly, and a non-finite loss stops the run keeping the last good
//! checkpoint.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("train-ft-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// root/{horizontal,vertical}/NN.png, 32×32, random phase/period/colour; one corrupt file.
fn stripes(root: &Path, per_class: usize) {
    let mut s = 12345u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for (ci, class) in ["horizontal", "vertical"].iter().enumerate() {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for k in 0..per_class {
            let period = 4 + (next() % 5) as u32;
            let phase = (next() % 8) as u32;
            // Orientation and a colour cast both tell the classes apart: learnable in a few steps.
            let base = if ci == 0 {
                [150u8, 40, 40]
            } else {
                [40u8, 40, 150]
            };
            let hue = [
                base[0] + (next() % 50) as u8,
                base[1] + (next() % 50) as u8,
                base[2] + (next() % 50) as u8,
            ];
            let img = image::RgbImage::from_fn(32, 32, |x, y| {
                let t = if ci == 0 { y } else { x };
                let on = ((t + phase) / (period / 2).max(1)).is_multiple_of(2);
                let n = (next() % 40) as u8;
                if on {
                    image::Rgb([hue[0] + n, hue[1] + n, hue[2] + n])
                } else {
                    image::Rgb([255 - hue[0] - n / 2, 250 - n, 240 - n])
                }
            });
            img.save(dir.join(format!("{k:02}.png"))).unwrap();
        }
    }
    std::fs::write(root.join("vertical").join("corrupt.png"), b"not a png").unwrap();
}

fn finetune(data: &Path, out: &Path, epochs: u32, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_train"));
    c.arg("finetune")
        .args(["--size", "atto", "--input-size", "32", "--batch", "8"])
        .args(["--epochs", &epochs.to_string()])
        .args(["--warmup-epochs", "1", "--weight-decay", "0.05"])
        .args([
            "--layer-decay",
            "1",
            "--drop-path",
            "0",
            "--label-smoothing",
            "0.1",
        ])
        .args([
            "--ema",
            "0.9",
            "--crop-scale-min",
            "0.5",
            "--test-fraction",
            "0.25",
        ])
        .args(["--seed", "7", "--quiet", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(extra);
    if !extra.contains(&"--lr") {
        c.args(["--lr", "1e-3"]);
    }
    c
}

/// CSV rows without the timing columns (img/s, seconds).
fn metrics(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            format!(
                "{},{},{},{},{},{},{}",
                f[0], f[1], f[2], f[3], f[5], f[6], f[7]
            )
        })
        .collect()
}

#[test]
fn finetune_learns_checkpoints_resumes_exactly_and_stops_on_nan() {
    let root = tmp("root");
    let data = root.join("data");
    stripes(&data, 32);

    // The uninterrupted reference run.
    let a = root.join("a");
    let o = finetune(&data, &a, 10, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let ra = metrics(&a);
    assert_eq!(ra.len(), 10, "{ra:?}");
    let col = |r: &str, i: usize| r.split(',').nth(i).unwrap().parse::<f64>().unwrap();
    assert!(
        col(&ra[9], 2) < col(&ra[0], 2),
        "train loss does not fall: {ra:?}"
    );
    // Chance is 0.5 on the 16 held-out images.
    assert!(col(&ra[9], 4) >= 0.8, "stripes not learned: {ra:?}");
    // The corrupt file is skipped and counted every epoch (train or test split) and named.
    assert!(ra.iter().all(|r| col(r, 6) >= 1.0), "{ra:?}");
    assert!(stderr.contains("corrupt.png"), "{stderr}");
    assert!(a.join("checkpoint.safetensors").is_file());
    assert!(image::open(a.join("curves.png")).is_ok());
    // One steps.csv row per optimizer step, ending at the last epoch's step count.
    let steps_a = std::fs::read_to_string(a.join("steps.csv")).unwrap();
    let last_step = col(&ra[9], 1);
    assert_eq!(steps_a.lines().count() - 1, last_step as usize, "{steps_a}");
    let last = steps_a.lines().last().unwrap();
    assert!(last.starts_with(&format!("10,{last_step},")), "{last}");
    // `train plot` redraws both pictures from the CSVs, titled with the run and its length.
    std::fs::remove_file(a.join("curves.svg")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["plot", "--run"])
        .arg(&a)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let svg = std::fs::read_to_string(a.join("curves.svg")).unwrap();
    for s in [
        "fine-tuning: a (10 epochs",
        "EMA top-1",
        "test top-1",
        "smoothed",
        "learning rate",
    ] {
        assert!(svg.contains(s), "curves.svg lacks {s:?}");
    }

    // kill -9 in the middle of epoch 2, then --resume: same metrics, row for row.
    let b = root.join("b");
    let mut child = finetune(&data, &b, 10, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !b.join("checkpoint.safetensors").is_file() {
        assert!(t0.elapsed() < Duration::from_secs(600), "no checkpoint");
        assert!(child.try_wait().unwrap().is_none(), "run ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = metrics(&b);
    assert!(!partial.is_empty() && partial.len() < 10, "{partial:?}");
    let o = finetune(&data, &b, 10, &["--resume"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        metrics(&b),
        ra,
        "resumed run differs from the uninterrupted one"
    );
    assert_eq!(
        std::fs::read_to_string(b.join("steps.csv")).unwrap(),
        steps_a,
        "resumed per-step log differs"
    );

    // A diverging run stops with a clear message and leaves the last good checkpoint untouched.
    let before = std::fs::read(a.join("checkpoint.safetensors")).unwrap();
    let o = finetune(&data, &a, 12, &["--resume", "--lr", "1e30"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("loss is"), "{stderr}");
    assert_eq!(
        std::fs::read(a.join("checkpoint.safetensors")).unwrap(),
        before
    );

    // export of the checkpoint → predict on a training image gives its class.
    let exported = root.join("ft.safetensors");
    let o = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["export", "--ema", "--checkpoint"])
        .arg(a.join("checkpoint.safetensors"))
        .arg("--out")
        .arg(&exported)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json = std::fs::read_to_string(exported.with_extension("json")).unwrap();
    assert!(
        json.contains("\"horizontal\"") && json.contains("\"input_size\""),
        "{json}"
    );
    std::fs::remove_dir_all(root).ok();
}

#[test]
fn bad_arguments_and_data_are_clear_errors() {
    let root = tmp("bad");
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_train"))
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let out = root.join("o");
    let out = out.to_str().unwrap();
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, e) = run(&["finetune", "--data", empty.to_str().unwrap(), "--out", out]);
    assert_eq!(code, Some(1));
    assert!(e.contains("no images found"), "{e}");
    let (code, e) = run(&["finetune", "--input-size", "16", "--out", out]);
    assert_eq!(code, Some(1));
    assert!(e.contains("at least 32"), "{e}");
    let (code, e) = run(&[
        "finetune",
        "--size",
        "gigantic",
        "--data",
        empty.to_str().unwrap(),
        "--out",
        out,
    ]);
    assert_eq!(code, Some(1));
    assert!(e.contains("unknown --size"), "{e}");
    std::fs::remove_dir_all(root).ok();
}

/// `train probe` on the stripes: the random init's pooled features already separate the two
/// classes linearly (chance: 0.5), timm's ImageNet Atto too (its 1000-class head is replaced);
/// weights of another size are an error naming a tensor, and nothing is written.
#[test]
fn probe_separates_the_stripes_and_names_bad_weights() {
    let root = tmp("probe");
    let data = root.join("data");
    stripes(&data, 24);
    let timm =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/atto/weights.safetensors");
    let probe = |json: &Path, extra: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_train"))
            .args(["probe", "--input-size", "32", "--epochs", "20"])
            .args([
                "--batch",
                "8",
                "--lr",
                "1e-2",
                "--test-fraction",
                "0.25",
                "--data",
            ])
            .arg(&data)
            .arg("--json")
            .arg(json)
            .args(extra)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    for (name, extra) in [
        ("random", vec!["--size", "atto"]),
        (
            "timm",
            vec!["--size", "atto", "--weights", timm.to_str().unwrap()],
        ),
    ] {
        let json = root.join(format!("{name}.json"));
        let (code, out, err) = probe(&json, &extra);
        assert_eq!(code, Some(0), "{name}: {err}");
        assert!(out.contains("linear probe: test top-1"), "{out}");
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(r["dim"], 320);
        // 48 images, one corrupt file skipped and counted; 12 held out (test fraction 0.25).
        assert_eq!(r["skipped"], 1, "{r}");
        let top1 = r["top1"].as_f64().unwrap();
        assert!(top1 >= 0.9, "{name}: {r}");
        assert!(r["train_top1"].as_f64().unwrap() >= 0.9, "{name}: {r}");
    }
    let json = root.join("femto.json");
    let (code, _, err) = probe(
        &json,
        &["--size", "femto", "--weights", timm.to_str().unwrap()],
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("stem.0.weight"), "{err}");
    assert!(!json.exists());
    std::fs::remove_dir_all(root).ok();
}
