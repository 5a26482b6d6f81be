//! Training-step throughput on random data, for `train bench-step` and `scripts/bench-train.sh`
//! (side by side with PyTorch/timm's same step).

use std::time::Instant;

use burn::tensor::{Tensor, TensorData};

use crate::fcmae::{self, Fcmae, FcmaeConfig};
use crate::finetune::{device, smoothed_cross_entropy, DeviceKind};
use crate::model::{Config, ConvNeXtV2, Size};
use crate::optim::{AdamW, AdamWConfig};
use crate::parallel;
use crate::rng::SplitMix64;
use crate::sparse::Encoder;

/// Images per second of each step kind.
pub struct Throughput {
    /// Which device ran.
    pub device: String,
    /// Supervised step (forward, label-smoothed CE, backward, AdamW).
    pub finetune_img_s: f64,
    /// FCMAE step (masked encoder, decoder, masked MSE, backward, AdamW).
    pub fcmae_img_s: f64,
}

fn adamw() -> AdamW {
    AdamW::new(AdamWConfig {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.05,
        layer_decay: 0.9,
    })
}

/// Times `steps` steps of each kind after two warm-up steps; `encoder` runs the FCMAE step.
pub fn steps(
    size: &Size,
    s: usize,
    batch: usize,
    steps: u64,
    kind: DeviceKind,
    encoder: Encoder,
) -> Result<Throughput, String> {
    if !s.is_multiple_of(32) || s < 64 || batch == 0 {
        return Err("--input-size must be a multiple of 32 (≥ 64) and --batch positive".into());
    }
    let base = device(kind)?;
    let dev = base.clone().autodiff();
    let mut rng = SplitMix64::new(1);
    let images: Vec<f32> = (0..batch * 3 * s * s)
        .map(|_| rng.next_normal() as f32)
        .collect();
    let labels: Vec<usize> = (0..batch).map(|i| i % 1000).collect();
    let px = 3 * s * s;
    let cfg = Config {
        size: size.clone(),
        num_classes: 1000,
        drop_path: 0.1,
        grn: true,
    };
    let mut model = ConvNeXtV2::new(&cfg, 0, &dev);
    let mut opt = adamw();
    let mut t0 = Instant::now();
    for k in 0..steps + 2 {
        if k == 2 {
            t0 = Instant::now();
        }
        // As the training loops do: the batch in `kind.parts()` slices on as many threads; the
        // loss is read back (the NaN check; on a GPU the sync point that makes the wall clock
        // measure finished steps).
        let (_, grads) = parallel::grads(&model, batch, kind.parts(), |m, i, r| {
            let x = images[r.start * px..r.end * px].to_vec();
            let x = Tensor::<4>::from_data(TensorData::new(x, [r.len(), 3, s, s]), &dev);
            let mut rng = SplitMix64::derive(&[k, i]);
            smoothed_cross_entropy(m.forward(x, Some(&mut rng)), &labels[r], 0.1)
        });
        model = opt.update(1e-4, model, grads.ok_or("non-finite loss on random data")?);
    }
    let finetune_img_s = (steps as usize * batch) as f64 / t0.elapsed().as_secs_f64();
    drop(model);

    let fc = FcmaeConfig {
        encoder: Config {
            drop_path: 0.0,
            grn: true,
            num_classes: 1,
            ..cfg
        },
        decoder_dim: 512,
        decoder_depth: 1,
        patch: 32,
    };
    let mut model = Fcmae::new(&fc, 0, &dev);
    let mut opt = adamw();
    let l = (s / 32) * (s / 32);
    let target = fcmae::patchify(&images, batch, s, s, 32, true);
    let per_target = target.len() / batch;
    for k in 0..steps + 2 {
        if k == 2 {
            t0 = Instant::now();
        }
        let (_, grads) = parallel::grads(&model, batch, kind.parts(), |m, i, r| {
            let mut rng = SplitMix64::derive(&[k, i]);
            let mask = fcmae::random_mask(r.len(), l, 0.6, &mut rng);
            let x = images[r.start * px..r.end * px].to_vec();
            let x = Tensor::<4>::from_data(TensorData::new(x, [r.len(), 3, s, s]), &dev);
            let t = &target[r.start * per_target..r.end * per_target];
            fcmae::masked_mse(m.forward_with(x, &mask, None, encoder), t, &mask)
        });
        model = opt.update(1e-4, model, grads.ok_or("non-finite loss on random data")?);
    }
    let fcmae_img_s = (steps as usize * batch) as f64 / t0.elapsed().as_secs_f64();
    Ok(Throughput {
        device: format!("{kind:?}"),
        finetune_img_s,
        fcmae_img_s,
    })
}
