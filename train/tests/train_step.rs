//! Gradient flow and the optimizer on the real model: every parameter receives a gradient, and
//! AdamW drives the loss on a fixed batch of 8 random images to (near) zero.

use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use train::finetune::smoothed_cross_entropy;
use train::model::{Config, ConvNeXtV2, Size};
use train::optim::{AdamW, AdamWConfig};
use train::rng::SplitMix64;

#[test]
fn every_parameter_gets_a_gradient_and_adamw_overfits_a_batch() {
    let dev = train::finetune::device(train::finetune::DeviceKind::Cpu)
        .unwrap()
        .autodiff();
    let cfg = Config {
        size: Size::named("atto").unwrap(),
        num_classes: 4,
        drop_path: 0.0,
        grn: true,
    };
    let mut model = ConvNeXtV2::new(&cfg, 1, &dev);
    let mut rng = SplitMix64::new(5);
    let x: Vec<f32> = (0..8 * 3 * 32 * 32)
        .map(|_| rng.next_normal() as f32)
        .collect();
    let labels = [0usize, 1, 2, 3, 0, 1, 2, 3];
    let mut opt = AdamW::new(AdamWConfig {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        layer_decay: 1.0,
    });
    let n_params = train::weights::burn_tensors(&model).len();
    let mut losses = Vec::new();
    for step in 0..40 {
        let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), [8, 3, 32, 32]), &dev);
        let loss = smoothed_cross_entropy(model.forward(xt, None), &labels, 0.0);
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        if step == 0 {
            assert_eq!(grads.len(), n_params, "parameters without a gradient");
        }
        model = opt.update(1e-3, model, grads);
    }
    assert!(
        (losses[0] - 4f32.ln()).abs() < 0.2,
        "initial loss {}",
        losses[0]
    );
    assert!(*losses.last().unwrap() < 0.05, "losses {losses:?}");
}

/// `grn: false` (the `--no-grn` ablation): GRN is the identity whatever γ, β hold, its γ, β get
/// no gradient (so AdamW leaves them at zero), and every other parameter still trains.
#[test]
fn without_grn_the_blocks_skip_it_and_its_parameters_stay_untrained() {
    let dev = train::finetune::device(train::finetune::DeviceKind::Cpu)
        .unwrap()
        .autodiff();
    let cfg = |grn| Config {
        size: Size::named("atto").unwrap(),
        num_classes: 4,
        drop_path: 0.0,
        grn,
    };
    // Both models get the same non-zero GRN γ, β.
    let set_grn = |m: ConvNeXtV2| {
        train::weights::replace_tensors(m, &mut |k, s| {
            k.contains(".mlp.grn.").then(|| {
                let n: usize = s.iter().product();
                TensorData::new(
                    (0..n).map(|i| 0.5 - 0.1 * (i % 9) as f32).collect(),
                    s.to_vec(),
                )
            })
        })
    };
    let with = set_grn(ConvNeXtV2::new(&cfg(true), 1, &dev));
    let without = set_grn(ConvNeXtV2::new(&cfg(false), 1, &dev));
    let zeroed =
        train::weights::replace_tensors(ConvNeXtV2::new(&cfg(true), 1, &dev), &mut |k, s| {
            k.contains(".mlp.grn.")
                .then(|| TensorData::zeros::<f32, _>(s.to_vec()))
        });
    let mut rng = SplitMix64::new(6);
    let x: Vec<f32> = (0..2 * 3 * 64 * 64)
        .map(|_| rng.next_normal() as f32)
        .collect();
    let logits = |m: &ConvNeXtV2| {
        let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), [2, 3, 64, 64]), &dev);
        m.forward(xt, None).into_data().try_to_vec::<f32>().unwrap()
    };
    let (a, b, c) = (logits(&with), logits(&without), logits(&zeroed));
    let diff = |p: &[f32], q: &[f32]| p.iter().zip(q).fold(0f32, |m, (u, v)| m.max((u - v).abs()));
    assert_eq!(diff(&b, &c), 0.0, "GRN off must equal GRN with γ = β = 0");
    assert!(diff(&a, &b) > 1e-3, "GRN on must use γ, β: {a:?} vs {b:?}");

    let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), [2, 3, 64, 64]), &dev);
    let loss = smoothed_cross_entropy(without.forward(xt, None), &[1, 3], 0.0);
    let grads = GradientsParams::from_grads(loss.backward(), &without);
    let n_params = train::weights::burn_tensors(&without).len();
    let n_grn = 2 * 12; // γ and β in each of Atto's 2 + 2 + 6 + 2 blocks
    assert_eq!(grads.len(), n_params - n_grn);
}
