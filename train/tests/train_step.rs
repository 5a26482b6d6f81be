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
