//! Training curves of a run folder, redrawn from its CSVs (the source of truth) as
//! `curves.png` and `curves.svg` through the `charts` crate: the loss per logged step with a
//! smoothed line and each epoch's mean, the learning rate per step, and (fine-tuning) test and
//! EMA top-1 per epoch. `train plot --run DIR` calls the same function as the training loop.

use std::path::{Path, PathBuf};

use charts::{Figure, Legend, Mark, Panel, Rgb, Series};

/// Per-step log beside `metrics.csv`: one row per optimizer step.
pub const STEPS_FILE: &str = "steps.csv";
/// Header of [`STEPS_FILE`]: the 1-based epoch, the global step count after the step, the
/// batch's loss and the step's learning rate.
pub const STEPS_HEADER: &str = "epoch,step,loss,lr";
/// Per-epoch log (written by `finetune` and `pretrain`).
pub const METRICS_FILE: &str = "metrics.csv";

/// A numeric CSV with a header row: column `name`, NaN where a cell is empty or not a number.
struct Csv {
    header: Vec<String>,
    rows: Vec<Vec<f64>>,
}

impl Csv {
    fn read(path: &Path) -> Result<Option<Csv>, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let mut lines = text.lines();
        let header: Vec<String> = lines
            .next()
            .ok_or_else(|| format!("{}: empty (no header row)", path.display()))?
            .split(',')
            .map(str::to_string)
            .collect();
        let rows = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split(',')
                    .map(|v| v.parse().unwrap_or(f64::NAN))
                    .collect()
            })
            .collect();
        Ok(Some(Csv { header, rows }))
    }

    fn has(&self, name: &str) -> bool {
        self.header.iter().any(|h| h == name)
    }

    fn column(&self, name: &str) -> Vec<f64> {
        match self.header.iter().position(|h| h == name) {
            Some(i) => self
                .rows
                .iter()
                .map(|r| r.get(i).copied().unwrap_or(f64::NAN))
                .collect(),
            None => Vec::new(),
        }
    }
}

/// A centred moving average over about 1/50 of the points (an odd window; none below 100
/// points), skipping non-finite values; it does not lag behind the curve as an exponential
/// average does.
pub fn smooth(v: &[f64]) -> Vec<f64> {
    let half = v.len() / 100;
    (0..v.len())
        .map(|i| {
            let w = &v[i.saturating_sub(half)..(i + half + 1).min(v.len())];
            let (s, n) = w
                .iter()
                .filter(|x| x.is_finite())
                .fold((0.0, 0usize), |(s, n), &x| (s + x, n + 1));
            if n == 0 {
                f64::NAN
            } else {
                s / n as f64
            }
        })
        .collect()
}

/// The (x, y) points with a finite y: an empty CSV cell (an epoch without evaluation) is none.
fn zip(x: &[f64], y: &[f64]) -> Vec<(f64, f64)> {
    x.iter()
        .copied()
        .zip(y.iter().copied())
        .filter(|&(_, v)| v.is_finite())
        .collect()
}

fn series(label: &str, points: Vec<(f64, f64)>, color: Rgb, mark: Mark, width: u32) -> Series {
    Series {
        label: label.into(),
        points,
        color,
        mark,
        width,
    }
}

/// The figure of a run: `kind` from the metrics' columns (fine-tuning has `test_top1`).
fn figure(run: &Path, metrics: &Csv, steps: Option<&Csv>) -> Figure {
    let finetune = metrics.has("test_top1");
    let (kind, loss_axis) = if finetune {
        ("fine-tuning", "cross-entropy (label-smoothed)")
    } else {
        ("FCMAE pretraining", "MSE on masked patches")
    };
    let epochs = metrics.rows.len();
    let epoch_step = metrics.column("step");
    let epoch_loss = metrics.column("train_loss");
    let mut loss = Vec::new();
    let mut lr = Vec::new();
    if let Some(st) = steps {
        let (s, l, r) = (st.column("step"), st.column("loss"), st.column("lr"));
        loss.push(series(
            "loss per step",
            zip(&s, &l),
            Rgb::RED.lighten(0.65),
            Mark::Line,
            1,
        ));
        loss.push(series(
            "smoothed",
            zip(&s, &smooth(&l)),
            Rgb::RED,
            Mark::Line,
            2,
        ));
        lr.push(series("", zip(&s, &r), Rgb::PURPLE, Mark::Line, 2));
    } else {
        // Runs from before the per-step log: the epoch's lr is its last step's.
        lr.push(series(
            "",
            zip(&epoch_step, &metrics.column("lr")),
            Rgb::PURPLE,
            Mark::LineAndDots,
            2,
        ));
    }
    // An epoch's mean loss sits at the middle of its steps.
    let mid: Vec<f64> = epoch_step
        .iter()
        .scan(0.0, |prev, &s| {
            let m = (*prev + s) / 2.0;
            *prev = s;
            Some(m)
        })
        .collect();
    loss.push(series(
        "epoch mean",
        zip(&mid, &epoch_loss),
        Rgb(90, 20, 20),
        Mark::Dots,
        2,
    ));
    let steps_done = epoch_step.last().copied().unwrap_or(0.0);
    let name = run
        .file_name()
        .map_or_else(|| run.display().to_string(), |n| n.to_string_lossy().into());
    let mut panels = vec![
        Panel {
            title: "training loss".into(),
            x_label: "optimizer step".into(),
            y_label: loss_axis.into(),
            series: loss,
            y_range: None,
            legend: Legend::UpperRight,
            x_integer: true,
        },
        Panel {
            title: "learning rate (cosine schedule)".into(),
            x_label: "optimizer step".into(),
            y_label: "learning rate".into(),
            series: lr,
            y_range: None,
            legend: Legend::UpperRight,
            x_integer: true,
        },
    ];
    if finetune {
        let e = metrics.column("epoch");
        let pct = |v: Vec<f64>| v.into_iter().map(|a| 100.0 * a).collect::<Vec<_>>();
        let top1 = zip(&e, &pct(metrics.column("test_top1")));
        let ema = zip(&e, &pct(metrics.column("ema_top1")));
        let mut acc = Vec::new();
        if !top1.is_empty() {
            acc.push(series("test top-1", top1, Rgb::BLUE, Mark::LineAndDots, 2));
        }
        if !ema.is_empty() {
            acc.push(series("EMA top-1", ema, Rgb::GREEN, Mark::LineAndDots, 2));
        }
        // Runs with `--eval-every 0` have no accuracy until their last epoch.
        if !acc.is_empty() {
            panels.push(Panel {
                title: "test accuracy".into(),
                x_label: "epoch".into(),
                y_label: "top-1 (%)".into(),
                series: acc,
                y_range: None,
                legend: Legend::LowerRight,
                x_integer: true,
            });
        }
    }
    Figure {
        title: format!(
            "{kind}: {name} ({epochs} epoch{}, {steps_done} steps)",
            if epochs == 1 { "" } else { "s" }
        ),
        columns: panels.len(),
        panels,
        panel_size: (520, 380),
    }
}

/// Redraws `run/curves.png` and `run/curves.svg` from `run/metrics.csv` and (when present)
/// `run/steps.csv`; returns the two paths.
///
/// Errors: a missing or empty `metrics.csv`, a CSV without rows, or a file that cannot be
/// written, each naming the file.
pub fn draw_run(run: &Path) -> Result<[PathBuf; 2], String> {
    let mpath = run.join(METRICS_FILE);
    let metrics = Csv::read(&mpath)?.ok_or_else(|| {
        format!(
            "{}: not found (is {} a `train finetune` or `train pretrain` output folder?)",
            mpath.display(),
            run.display()
        )
    })?;
    if metrics.rows.is_empty() || !metrics.has("train_loss") {
        return Err(format!(
            "{}: no epoch rows with a train_loss column to plot",
            mpath.display()
        ));
    }
    let steps = Csv::read(&run.join(STEPS_FILE))?.filter(|s| !s.rows.is_empty());
    let fig = figure(run, &metrics, steps.as_ref());
    let out = [run.join("curves.png"), run.join("curves.svg")];
    charts::write_figure(&fig, Some(&out[0]), Some(&out[1])).map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_is_a_centred_moving_average() {
        // Few points: no smoothing at all.
        let v = [3.0, 1.0, 2.0];
        assert_eq!(smooth(&v), v.to_vec());
        // 300 points: a window of 3 by 3 points each side (7), cut at the ends; a NaN is left
        // out of its windows.
        let mut v: Vec<f64> = (0..300).map(|i| (i % 7) as f64).collect();
        v[100] = f64::NAN;
        let s = smooth(&v);
        assert_eq!(s[0], (0.0 + 1.0 + 2.0 + 3.0) / 4.0);
        assert_eq!(s[50], 3.0, "a whole period of 0..7 averages to 3");
        let w: Vec<f64> = (97..=103)
            .filter(|&i| i != 100)
            .map(|i| (i % 7) as f64)
            .collect();
        assert_eq!(s[100], w.iter().sum::<f64>() / 6.0);
        assert_eq!(s[299], (v[296] + v[297] + v[298] + v[299]) / 4.0);
    }

    /// A synthetic run folder: `epochs` epochs of `per` steps.
    fn run_dir(name: &str, epochs: u64, per: u64, finetune: bool) -> PathBuf {
        let d = std::env::temp_dir().join(format!("plot-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let mut m = String::from(if finetune {
            "epoch,step,train_loss,lr,img_per_s,test_top1,ema_top1,skipped,seconds\n"
        } else {
            "epoch,step,train_loss,lr,img_per_s,skipped,seconds\n"
        });
        let mut st = format!("{STEPS_HEADER}\n");
        for e in 1..=epochs {
            for k in 1..=per {
                let i = (e - 1) * per + k;
                st += &format!("{e},{i},{},{}\n", 2.0 / (i as f64).sqrt(), 1e-3 / i as f64);
            }
            let acc = 1.0 - 0.5 / e as f64;
            m += &if finetune {
                format!(
                    "{e},{},{},1e-4,10,{acc},{},0,1\n",
                    e * per,
                    2.0 / e as f64,
                    acc - 0.01
                )
            } else {
                format!("{e},{},{},1e-4,10,0,1\n", e * per, 2.0 / e as f64)
            };
        }
        std::fs::write(d.join(METRICS_FILE), m).unwrap();
        std::fs::write(d.join(STEPS_FILE), st).unwrap();
        d
    }

    #[test]
    fn one_epoch_and_a_hundred_both_draw() {
        for (name, epochs, per, finetune, title) in [
            ("one", 1, 3, true, "fine-tuning: plot-"),
            ("hundred", 100, 20, true, "(100 epochs, 2000 steps)"),
            ("fcmae", 2, 5, false, "FCMAE pretraining"),
        ] {
            let d = run_dir(name, epochs, per, finetune);
            let [png, svg] = draw_run(&d).unwrap();
            let img = image::open(&png).unwrap().to_rgb8();
            let panels = if finetune { 3 } else { 2 };
            assert_eq!(img.dimensions(), (520 * panels, 420));
            let text = std::fs::read_to_string(&svg).unwrap();
            assert!(text.contains(title), "{name}: no {title:?}");
            assert_eq!(text.contains("test top-1"), finetune, "{name}");
            assert!(text.contains("optimizer step") && text.contains("learning rate"));
            if epochs == 1 {
                assert!(text.contains("(1 epoch, 3 steps)"), "{name}");
            }
            std::fs::remove_dir_all(&d).unwrap();
        }
    }

    #[test]
    fn a_folder_without_metrics_is_named() {
        let d = std::env::temp_dir().join(format!("plot-{}-none", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let e = draw_run(&d).unwrap_err();
        assert!(e.contains("metrics.csv: not found"), "{e}");
        std::fs::write(d.join(METRICS_FILE), "epoch,step,train_loss\n").unwrap();
        let e = draw_run(&d).unwrap_err();
        assert!(e.contains("no epoch rows"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
