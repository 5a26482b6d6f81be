//! What `finetune` and `pretrain` share around the training step: the metrics CSV (truncated to
//! the checkpoint's epoch on resume, so the curve is rewritten exactly), the progress bar, and
//! loading Burn-layout checkpoint tensors back into a module.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use burn::module::Module;
use burn::tensor::TensorData;
use indicatif::{ProgressBar, ProgressStyle};

use crate::weights::{self, WeightsError};

/// A metrics CSV with a fixed header; the first column is the epoch.
pub struct MetricsCsv {
    /// File path.
    pub path: PathBuf,
}

impl MetricsCsv {
    /// Starts a fresh CSV, or on resume keeps the rows of epochs ≤ `resume_epoch`.
    pub fn open(
        path: PathBuf,
        header: &'static str,
        resume_epoch: Option<u64>,
    ) -> Result<Self, String> {
        let text = match resume_epoch {
            Some(_) => std::fs::read_to_string(&path).unwrap_or_default(),
            None => String::new(),
        };
        let mut out = format!("{header}\n");
        if let Some(epoch) = resume_epoch {
            for line in text.lines().skip(1) {
                let e = line.split(',').next().and_then(|e| e.parse::<u64>().ok());
                if e.is_some_and(|e| e <= epoch) {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        std::fs::write(&path, out).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(MetricsCsv { path })
    }

    /// Appends one row.
    pub fn append(&self, row: &str) -> Result<(), String> {
        self.append_rows(std::iter::once(row))
    }

    /// Appends rows in one write.
    pub fn append_rows<S: AsRef<str>>(
        &self,
        rows: impl IntoIterator<Item = S>,
    ) -> Result<(), String> {
        let mut text = String::new();
        for r in rows {
            text.push_str(r.as_ref());
            text.push('\n');
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        f.write_all(text.as_bytes())
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// The epoch's per-step rows (see [`crate::plot::STEPS_HEADER`]).
    pub fn append_steps(&self, epoch: u64, stats: &EpochStats) -> Result<(), String> {
        self.append_rows(
            stats
                .steps
                .iter()
                .map(|(step, loss, lr)| format!("{},{step},{loss:.6},{lr:.6e}", epoch + 1)),
        )
    }
}

/// The per-epoch progress bar (hidden with `quiet`): loss, lr, img/s, elapsed and ETA.
pub fn progress(steps: u64, quiet: bool, prefix: String) -> ProgressBar {
    let pb = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(steps)
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:28}] {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    pb.set_prefix(prefix);
    pb
}

/// Loads Burn-layout tensors (a checkpoint group) into `model`: every parameter must be present
/// with its exact shape and every tensor used.
pub fn load_burn_layout<M: Module>(
    model: M,
    tensors: &HashMap<String, TensorData>,
) -> Result<M, WeightsError> {
    let mut missing = Vec::new();
    let mut misshaped = Vec::new();
    let have = weights::param_shapes(&model);
    for (k, shape) in &have {
        match tensors.get(k) {
            None => missing.push(k.clone()),
            Some(t) if t.shape().to_vec() != *shape => {
                misshaped.push((k.clone(), shape.clone(), t.shape().to_vec()))
            }
            Some(_) => {}
        }
    }
    let mut unused: Vec<String> = tensors
        .keys()
        .filter(|k| !have.iter().any(|(h, _)| h == *k))
        .cloned()
        .collect();
    unused.sort();
    if !missing.is_empty() || !misshaped.is_empty() || !unused.is_empty() {
        return Err(WeightsError::Mismatch {
            missing,
            misshaped,
            unused,
        });
    }
    // A diverged checkpoint is named here (resume, export, visualize), not as a NaN loss later.
    quant::values::check_finite(
        tensors
            .iter()
            .filter_map(|(k, t)| Some((k.as_str(), t.as_slice::<f32>().ok()?))),
    )
    .map_err(WeightsError::Values)?;
    Ok(weights::replace_tensors(model, &mut |k, _| {
        tensors.get(k).cloned()
    }))
}

/// One epoch's setting, shared by fine-tuning and pretraining.
pub struct Epoch<'a> {
    /// Training images.
    pub train: &'a crate::data::Split,
    /// Batch size.
    pub batch: usize,
    /// Square input size.
    pub input_size: u32,
    /// Training augmentation.
    pub augment: crate::data::Augment,
    /// Run seed.
    pub seed: u64,
    /// This epoch (0-based) and the run's count.
    pub epoch: u64,
    /// Epochs in the run.
    pub epochs: u64,
    /// Learning rate of global step `i`.
    pub lr: &'a dyn Fn(u64) -> f64,
    /// The checkpoint a NaN stop points to.
    pub checkpoint: &'a std::path::Path,
    /// No progress bar.
    pub quiet: bool,
    /// The ranks sharing each batch (each decodes and steps on its shard only).
    pub world: &'a crate::distributed::World,
}

/// What an epoch measured.
pub struct EpochStats {
    /// Mean training loss over the images seen.
    pub loss: f64,
    /// Images stepped on.
    pub seen: usize,
    /// Unreadable images skipped.
    pub skipped: usize,
    /// Wall time.
    pub secs: f64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Every step's global step count (1-based), batch loss and learning rate.
    pub steps: Vec<(u64, f64, f64)>,
}

impl EpochStats {
    /// Training images per second.
    pub fn img_per_s(&self) -> f64 {
        self.seen as f64 / self.secs
    }
}

/// Runs one epoch: the epoch's seeded order in batches decoded ahead on another thread, a progress
/// bar, and `step(k, lr, batch)` for each batch, which returns the global batch's loss and sample
/// count and updates the model only when that loss is finite. A non-finite loss stops the run
/// with the step, the lr and the last good checkpoint named.
///
/// With several ranks ([`Epoch::world`]) the order and the batches are the same on every rank and
/// for any rank count; each rank decodes only its shard of each batch, calls `step` for every
/// batch even when its shard is empty (the step's reductions need every rank), and only rank 0
/// shows progress. The returned counts are global.
pub fn run_epoch(
    e: &Epoch<'_>,
    mut step: impl FnMut(u64, f64, crate::data::Batch) -> (f64, usize),
) -> Result<EpochStats, String> {
    let steps = e.train.len().div_ceil(e.batch) as u64;
    let order =
        crate::rng::SplitMix64::derive(&[e.seed, e.epoch, 0x5348_5546]).permutation(e.train.len());
    let batches: Vec<Vec<usize>> = order
        .chunks(e.batch)
        .map(|c| c[e.world.shard(c.len())].to_vec())
        .collect();
    let rx = crate::data::prefetch(
        e.train.clone(),
        batches,
        e.input_size,
        Some((e.augment, e.seed, e.epoch)),
    );
    let pb = progress(
        steps,
        e.quiet || !e.world.is_root(),
        format!("epoch {}/{}", e.epoch + 1, e.epochs),
    );
    let t0 = std::time::Instant::now();
    let mut st = EpochStats {
        loss: 0.0,
        seen: 0,
        skipped: 0,
        secs: 0.0,
        lr: 0.0,
        steps: Vec::with_capacity(steps as usize),
    };
    let mut loss_sum = 0.0;
    for (k, b) in rx.into_iter().enumerate() {
        st.skipped += b.skipped.len();
        for s in &b.skipped {
            if pb.is_hidden() {
                eprintln!("skipped unreadable image: {s}");
            } else {
                pb.println(format!("skipped unreadable image: {s}"));
            }
        }
        if b.is_empty() && e.world.size() == 1 {
            pb.inc(1);
            continue;
        }
        let global = e.epoch * steps + k as u64;
        st.lr = (e.lr)(global);
        let (lv, n) = step(k as u64, st.lr, b);
        if n == 0 {
            pb.inc(1);
            continue;
        }
        if !lv.is_finite() {
            pb.abandon();
            let last = if e.checkpoint.is_file() {
                e.checkpoint.display().to_string()
            } else {
                "none (first epoch)".into()
            };
            return Err(format!(
                "loss is {lv} at epoch {} step {k} (lr {:.3e}): stopping; the last good checkpoint is {last} (lower --lr, or check the data)",
                e.epoch + 1,
                st.lr
            ));
        }
        st.steps.push((global + 1, lv, st.lr));
        loss_sum += lv * n as f64;
        st.seen += n;
        let ips = st.seen as f64 / t0.elapsed().as_secs_f64();
        pb.set_message(format!("loss {lv:.4} lr {:.2e} {ips:.1} img/s", st.lr));
        pb.inc(1);
    }
    pb.finish_and_clear();
    let mut skipped = [st.skipped as f64];
    e.world.sum_f64(&mut skipped);
    st.skipped = skipped[0] as usize;
    st.secs = t0.elapsed().as_secs_f64();
    st.loss = loss_sum / st.seen.max(1) as f64;
    Ok(st)
}
