//! `quant calibrate`: observe an f32 model on calibration images, write the int8 model, and
//! measure it against the f32 model on held-out images (never the calibration ones).

use std::collections::HashMap;

use edge::builder::AlignedBytes;
use edge::{Input, Kernels, Model, Observer, QParams, Tap};
use indicatif::{ProgressBar, ProgressStyle};

use crate::calib::Method;
use crate::data::{Item, Source};
use crate::quantize::{self, is_quantized_tap, tap_name, StatsObserver};

/// What `calibrate` does.
#[derive(Clone, Debug)]
pub struct Options {
    /// Calibration images.
    pub num: usize,
    /// Held-out evaluation images (0: no evaluation).
    pub eval: usize,
    /// Range selection.
    pub method: Method,
    /// Shuffling seed.
    pub seed: u64,
    /// Draw progress bars (stderr).
    pub progress: bool,
}

/// Per-layer error of the int8 model.
#[derive(Clone, Debug)]
pub struct LayerReport {
    /// The tap's name.
    pub name: String,
    /// Its quantization.
    pub q: QParams,
    /// `10·log10(Σ f² / Σ (f − deq(q))²)` over every evaluated element, in dB.
    pub sqnr_db: f64,
}

/// What calibration and evaluation measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Calibration images used / skipped.
    pub calib_used: usize,
    /// See `calib_used`.
    pub calib_skipped: usize,
    /// Evaluation images used / skipped.
    pub eval_used: usize,
    /// See `eval_used`.
    pub eval_skipped: usize,
    /// Fraction of evaluation images where int8's top-1 equals f32's.
    pub top1_agreement: f64,
    /// Fraction where f32's top-1 is among int8's top-5.
    pub top5_agreement: f64,
    /// Mean and minimum cosine similarity of the logits.
    pub cosine_mean: f64,
    /// See `cosine_mean`.
    pub cosine_min: f64,
    /// Accuracy of each model against labels (when the source has labels and the model as many
    /// classes as they do).
    pub accuracy: Option<(f64, f64)>,
    /// Per-layer SQNR in network order.
    pub layers: Vec<LayerReport>,
    /// File sizes (f32, int8) and parameter count.
    pub f32_bytes: usize,
    /// See `f32_bytes`.
    pub int8_bytes: usize,
    /// See `f32_bytes`.
    pub params: u64,
}

fn bar(progress: bool, n: usize, what: &str) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(n as u64);
    b.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{bar:30}] {pos}/{len} images  {per_sec}  eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    b.set_message(what.to_string());
    b
}

/// Keeps a copy of every quantized tap's f32 activations (one image).
#[derive(Default)]
struct KeepObserver {
    acts: HashMap<Tap, Vec<f32>>,
}

impl Observer for KeepObserver {
    const ENABLED: bool = true;
    fn observe(&mut self, tap: Tap, _h: usize, _w: usize, _c: usize, nhwc: &[f32]) {
        if is_quantized_tap(tap) {
            self.acts.insert(tap, nhwc.to_vec());
        }
    }
}

/// Accumulates signal and noise energy of the int8 taps against the kept f32 ones.
struct SqnrObserver<'k> {
    reference: &'k HashMap<Tap, Vec<f32>>,
    energy: &'k mut HashMap<Tap, (f64, f64)>,
    order: &'k mut Vec<(Tap, QParams)>,
}

impl Observer for SqnrObserver<'_> {
    const ENABLED: bool = true;
    fn observe(&mut self, _: Tap, _: usize, _: usize, _: usize, _: &[f32]) {}
    fn observe_i8(&mut self, tap: Tap, _h: usize, _w: usize, _c: usize, q: &[i8], qp: QParams) {
        let Some(f) = self.reference.get(&tap) else {
            return;
        };
        if !self.order.iter().any(|(t, _)| *t == tap) {
            self.order.push((tap, qp));
        }
        let e = self.energy.entry(tap).or_insert((0.0, 0.0));
        for (&x, &v) in f.iter().zip(q) {
            let d = (v as i32 - qp.zero) as f64 * qp.scale as f64;
            e.0 += x as f64 * x as f64;
            e.1 += (x as f64 - d) * (x as f64 - d);
        }
    }
}

fn top_k(v: &[f32], k: usize) -> Vec<usize> {
    let mut o: Vec<usize> = (0..v.len()).collect();
    o.sort_by(|&i, &j| v[j].total_cmp(&v[i]).then(i.cmp(&j)));
    o.truncate(k);
    o
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let na: f64 = a.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        return if na == nb { 1.0 } else { 0.0 };
    }
    dot / (na * nb)
}

/// Evaluation sums of one worker.
#[derive(Default)]
struct EvalAcc {
    used: usize,
    skipped: usize,
    top1: usize,
    top5: usize,
    cos_sum: f64,
    cos_min: f64,
    correct: (usize, usize),
    labelled: usize,
    energy: HashMap<Tap, (f64, f64)>,
    order: Vec<(Tap, QParams)>,
}

fn evaluate_items(
    f32m: &Model,
    i8m: &Model,
    src: &Source,
    items: &[Item],
    pb: &ProgressBar,
) -> Result<EvalAcc, edge::Error> {
    let a = *f32m.arch();
    let mut acc = EvalAcc {
        cos_min: 1.0,
        ..EvalAcc::default()
    };
    let mut arena_f = vec![0u8; f32m.arena_len()];
    let mut arena_q = vec![0u8; i8m.arena_len()];
    let (mut lf, mut lq) = (vec![0f32; a.num_classes], vec![0f32; a.num_classes]);
    for &it in items {
        pb.inc(1);
        let s = match src.load(it, a.input_h, a.input_w) {
            Ok(s) => s,
            Err(msg) => {
                say_skipped(pb, &msg);
                acc.skipped += 1;
                continue;
            }
        };
        let mut keep = KeepObserver::default();
        f32m.run_with(
            Input::HwcU8(&s.rgb),
            &mut arena_f,
            &mut lf,
            Kernels::Auto,
            &mut keep,
        )?;
        let mut sq = SqnrObserver {
            reference: &keep.acts,
            energy: &mut acc.energy,
            order: &mut acc.order,
        };
        i8m.run_with(
            Input::HwcU8(&s.rgb),
            &mut arena_q,
            &mut lq,
            Kernels::Auto,
            &mut sq,
        )?;
        acc.used += 1;
        let (tf, tq) = (top_k(&lf, 5), top_k(&lq, 5));
        acc.top1 += (tf[0] == tq[0]) as usize;
        acc.top5 += tq.contains(&tf[0]) as usize;
        let c = cosine(&lf, &lq);
        acc.cos_sum += c;
        acc.cos_min = acc.cos_min.min(c);
        if let Some(l) = s.label.filter(|&l| l < a.num_classes) {
            acc.labelled += 1;
            acc.correct.0 += (tf[0] == l) as usize;
            acc.correct.1 += (tq[0] == l) as usize;
        }
    }
    Ok(acc)
}

/// Names an unusable image on stderr (above the progress bar when one is drawn; `--quiet`
/// hides the bar, not the skipped files).
fn say_skipped(pb: &ProgressBar, msg: &str) {
    if pb.is_hidden() {
        eprintln!("skipped: {msg}");
    } else {
        pb.println(format!("skipped: {msg}"));
    }
}

/// Calibrates `f32_file` on `src` and returns the int8 file and the report. Held-out images
/// come from `eval_src` when given (all of it is held out), else from `src`'s held-out split.
pub fn calibrate(
    f32_file: &[u8],
    src: &Source,
    eval_src: Option<&Source>,
    opt: &Options,
) -> Result<(Vec<u8>, Report), Box<dyn std::error::Error>> {
    let fbuf = AlignedBytes::from_slice(f32_file);
    let f32m = Model::parse(fbuf.as_slice())?;
    let a = *f32m.arch();
    let weights = quantize::f32_weights(&f32m)?;
    quantize::check_fp16_params(&a, &weights)?;
    let draw = src.calibration_order(opt.seed);
    let src_eval = eval_src.unwrap_or(src);
    let mut report = Report {
        f32_bytes: f32_file.len(),
        params: a.param_count(),
        ..Report::default()
    };

    // 1. Observe.
    // `--num N` means N readable images: unreadable ones are skipped, counted and replaced by
    // the next candidates of the draw.
    let pb = bar(opt.progress, opt.num.min(draw.len()), "calibrating");
    let mut stats = StatsObserver::default();
    let mut arena = vec![0u8; f32m.arena_len()];
    let mut logits = vec![0f32; a.num_classes];
    let mut taken = 0;
    for &it in &draw {
        if report.calib_used == opt.num {
            break;
        }
        taken += 1;
        match src.load(it, a.input_h, a.input_w) {
            Ok(s) => {
                f32m.run_with(
                    Input::HwcU8(&s.rgb),
                    &mut arena,
                    &mut logits,
                    Kernels::Auto,
                    &mut stats,
                )?;
                report.calib_used += 1;
                pb.inc(1);
            }
            Err(msg) => {
                say_skipped(&pb, &msg);
                report.calib_skipped += 1;
            }
        }
    }
    pb.finish_and_clear();
    let eval = match eval_src {
        None => src.held_out(&draw[taken..], opt.eval),
        Some(e) => e.held_out(&e.calibration_order(opt.seed), opt.eval),
    };
    if report.calib_used == 0 {
        return Err(format!(
            "no readable calibration image ({} skipped)",
            report.calib_skipped
        )
        .into());
    }

    // 2. Quantize.
    let act = quantize::activation_params(&stats.stats, opt.method)?;
    let int8 = quantize::quantize(&a, &weights, &act)?;
    report.int8_bytes = int8.len();

    // 3. Evaluate on held-out images, one worker per core.
    if !eval.is_empty() {
        let qbuf = AlignedBytes::from_slice(&int8);
        let i8m = Model::parse(qbuf.as_slice())?;
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(eval.len());
        let pb = bar(opt.progress, eval.len(), "evaluating");
        let chunk = eval.len().div_ceil(workers);
        let results: Vec<Result<EvalAcc, edge::Error>> = std::thread::scope(|sc| {
            let hs: Vec<_> = eval
                .chunks(chunk)
                .map(|part| {
                    let (f, q, pb) = (&f32m, &i8m, &pb);
                    sc.spawn(move || evaluate_items(f, q, src_eval, part, pb))
                })
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join().unwrap_or(Err(edge::Error::BadArch {
                        reason: "evaluation worker panicked",
                    }))
                })
                .collect()
        });
        pb.finish_and_clear();
        let mut total = EvalAcc {
            cos_min: 1.0,
            ..EvalAcc::default()
        };
        for r in results {
            let r = r?;
            total.used += r.used;
            total.skipped += r.skipped;
            total.top1 += r.top1;
            total.top5 += r.top5;
            total.cos_sum += r.cos_sum;
            total.cos_min = total.cos_min.min(r.cos_min);
            total.labelled += r.labelled;
            total.correct.0 += r.correct.0;
            total.correct.1 += r.correct.1;
            for (t, (s, n)) in r.energy {
                let e = total.energy.entry(t).or_insert((0.0, 0.0));
                e.0 += s;
                e.1 += n;
            }
            if total.order.len() < r.order.len() {
                total.order = r.order;
            }
        }
        let n = total.used.max(1) as f64;
        report.eval_used = total.used;
        report.eval_skipped = total.skipped;
        report.top1_agreement = total.top1 as f64 / n;
        report.top5_agreement = total.top5 as f64 / n;
        report.cosine_mean = total.cos_sum / n;
        report.cosine_min = total.cos_min;
        if total.labelled > 0 && src_eval.label_classes() == Some(a.num_classes) {
            let l = total.labelled as f64;
            report.accuracy = Some((total.correct.0 as f64 / l, total.correct.1 as f64 / l));
        }
        report.layers = total
            .order
            .iter()
            .map(|&(t, q)| {
                let (s, e) = total.energy.get(&t).copied().unwrap_or((0.0, 0.0));
                LayerReport {
                    name: tap_name(t),
                    q,
                    sqnr_db: 10.0 * (s / e.max(f64::MIN_POSITIVE)).log10(),
                }
            })
            .collect();
    }
    Ok((int8, report))
}

impl Report {
    /// Per-layer SQNR as horizontal bars in network order (the five lowest in red), titled
    /// with the logits' mean cosine and the top-1 agreement; written as PNG and/or SVG.
    ///
    /// Errors: no per-layer figures (the evaluation was skipped, `--eval 0`), or a file that
    /// cannot be written.
    pub fn write_chart(
        &self,
        model: &str,
        method: &str,
        png: Option<&std::path::Path>,
        svg: Option<&std::path::Path>,
    ) -> Result<(), String> {
        if self.layers.is_empty() {
            return Err(
                "the SQNR chart needs the held-out evaluation (--eval > 0): no per-layer figures"
                    .into(),
            );
        }
        let mut order: Vec<usize> = (0..self.layers.len()).collect();
        order.sort_by(|&a, &b| self.layers[a].sqnr_db.total_cmp(&self.layers[b].sqnr_db));
        let mut group = vec![0; self.layers.len()];
        for &i in order.iter().take(5) {
            group[i] = 1;
        }
        let bars = charts::Bars {
            title: format!(
                "int8 {model} ({method}): per-layer SQNR; logits cosine {:.5}, top-1 agreement {:.1} % on {} held-out images",
                self.cosine_mean,
                100.0 * self.top1_agreement,
                self.eval_used
            ),
            categories: self.layers.iter().map(|l| l.name.clone()).collect(),
            values: self.layers.iter().map(|l| l.sqnr_db).collect(),
            value_label: "SQNR of the int8 activation vs f32 (dB, higher is better)".into(),
            group,
            legend: vec![
                ("layer".into(), charts::Rgb::BLUE),
                ("the 5 lowest".into(), charts::Rgb::RED),
            ],
            width: 1100,
        };
        charts::write_bars(&bars, png, svg).map_err(|e| e.to_string())
    }

    /// The report as JSON.
    pub fn to_json(&self, source: &str, method: &str, arch: &str) -> serde_json::Value {
        use serde_json::json;
        json!({
            "arch": arch,
            "method": method,
            "source": source,
            "files": {
                "f32_bytes": self.f32_bytes,
                "int8_bytes": self.int8_bytes,
                "params": self.params,
                "int8_bytes_per_param": self.int8_bytes as f64 / self.params.max(1) as f64,
            },
            "calibration": {"images": self.calib_used, "skipped": self.calib_skipped},
            "evaluation": {
                "images": self.eval_used,
                "skipped": self.eval_skipped,
                "top1_agreement": self.top1_agreement,
                "top5_agreement": self.top5_agreement,
                "logits_cosine_mean": self.cosine_mean,
                "logits_cosine_min": self.cosine_min,
                "accuracy_f32": self.accuracy.map(|a| a.0),
                "accuracy_int8": self.accuracy.map(|a| a.1),
            },
            "layers": self.layers.iter().map(|l| json!({
                "tap": l.name, "sqnr_db": l.sqnr_db, "scale": l.q.scale, "zero_point": l.q.zero,
            })).collect::<Vec<_>>(),
        })
    }

    /// A short table for the terminal.
    pub fn table(&self) -> String {
        let mut s = String::new();
        s += &format!(
            "files: f32 {} B, int8 {} B ({:.3} B/param, {} params)\n",
            self.f32_bytes,
            self.int8_bytes,
            self.int8_bytes as f64 / self.params.max(1) as f64,
            self.params
        );
        s += &format!(
            "calibration: {} images ({} skipped)\n",
            self.calib_used, self.calib_skipped
        );
        if self.eval_used > 0 {
            s += &format!(
                "held-out: {} images ({} skipped): top-1 agreement {:.2} %, f32 top-1 in int8 top-5 {:.2} %, logits cosine mean {:.5} min {:.5}\n",
                self.eval_used,
                self.eval_skipped,
                100.0 * self.top1_agreement,
                100.0 * self.top5_agreement,
                self.cosine_mean,
                self.cosine_min
            );
            if let Some((f, q)) = self.accuracy {
                s += &format!(
                    "accuracy: f32 {:.2} %, int8 {:.2} % ({:+.2} points)\n",
                    100.0 * f,
                    100.0 * q,
                    100.0 * (q - f)
                );
            }
            let worst = self
                .layers
                .iter()
                .min_by(|a, b| a.sqnr_db.total_cmp(&b.sqnr_db));
            s += "per-layer SQNR (dB):\n";
            for l in &self.layers {
                s += &format!("  {:<34} {:>6.2}\n", l.name, l.sqnr_db);
            }
            if let Some(w) = worst {
                s += &format!("lowest: {} at {:.2} dB\n", w.name, w.sqnr_db);
            }
        }
        s
    }
}
