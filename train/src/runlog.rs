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
    header: &'static str,
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
        Ok(MetricsCsv { path, header })
    }

    /// Appends one row.
    pub fn append(&self, row: &str) -> Result<(), String> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        writeln!(f, "{row}").map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// Column `name` of every row (NaN where empty).
    pub fn column(&self, name: &str) -> Vec<f64> {
        let Some(i) = self.header.split(',').position(|h| h == name) else {
            return Vec::new();
        };
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .map(|l| {
                l.split(',')
                    .nth(i)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN)
            })
            .collect()
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
    let have = weights::burn_tensors(&model);
    for (k, d) in &have {
        match tensors.get(k) {
            None => missing.push(k.clone()),
            Some(t) if t.shape().to_vec() != d.shape().to_vec() => {
                misshaped.push((k.clone(), d.shape().to_vec(), t.shape().to_vec()))
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
    Ok(weights::replace_tensors(model, &mut |k, _| {
        tensors.get(k).cloned()
    }))
}
