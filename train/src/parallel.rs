//! Data parallelism across CPU cores for one training step.
//!
//! Burn's CPU backends run most kernels (depthwise-conv backward, GELU's erf, element-wise ops)
//! on one thread, so a step keeps about one core busy. Here a batch is cut into [`PARTS`] slices
//! that run forward and backward concurrently, each on its own autodiff graph over the same
//! weights (fresh leaves sharing the weight buffers), and the gradients are summed. Each slice's
//! loss is weighted by its share of the batch, so the sum is the gradient of the whole batch's
//! mean loss: the same step as one pass, up to float rounding (nothing in ConvNeXt V2 mixes
//! samples: LayerNorm and GRN are per sample).
//!
//! The number of slices is fixed, not the machine's core count, so that a run's numbers do not
//! depend on where it runs.

use std::ops::Range;

use burn::module::{Module, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use crate::weights::{map_keyed, visit_keyed, KeyedMap, KeyedParam};

/// Slices per batch on CPU devices (this machine kind has two cores).
pub const PARTS: usize = 2;

/// `model` with every parameter a new autodiff leaf over the same values and the same
/// [`ParamId`], so that a graph built on it is independent of graphs built on `model`.
pub fn twin<M: Module>(model: &M) -> M {
    struct Leaf;
    impl KeyedMap for Leaf {
        fn map<const D: usize>(&mut self, _: String, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, tensor, mapper) = param.consume();
            let tensor = if tensor.is_autodiff() {
                Tensor::from_inner(tensor.inner()).require_grad()
            } else {
                tensor
            };
            Param::from_mapped_value(id, tensor, mapper)
        }
    }
    map_keyed(model.clone(), &mut Leaf)
}

/// Splits `0..n` into at most `parts` contiguous, nearly equal, non-empty ranges.
pub fn split(n: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    (0..parts)
        .map(|i| (i * n / parts)..((i + 1) * n / parts))
        .filter(|r| !r.is_empty())
        .collect()
}

/// Cuts samples `0..n` into at most `parts` slices ([`split`]) and runs `loss_of(model, i,
/// range)` for slice `i` concurrently, each on its own graph. `loss_of` returns the slice's
/// mean loss; it is weighted by the slice's share of the batch, so the result is the batch's
/// mean loss value and its gradients with respect to `model`'s parameters. Returns no gradients
/// when the loss is not finite (nothing is differentiated then).
pub fn grads<M, F>(model: &M, n: usize, parts: usize, loss_of: F) -> (f64, Option<GradientsParams>)
where
    M: Module + Sync,
    F: Fn(&M, u64, Range<usize>) -> Tensor<1> + Sync,
{
    let slices = split(n, parts);
    let weighted = |m: &M, i: usize, r: Range<usize>| {
        let w = r.len() as f64 / n as f64;
        let loss = loss_of(m, i as u64, r).mul_scalar(w);
        let lv = loss.clone().into_scalar::<f32>() as f64;
        (loss, lv)
    };
    if slices.len() <= 1 {
        let (loss, lv) = weighted(model, 0, 0..n);
        let g = lv
            .is_finite()
            .then(|| GradientsParams::from_grads(loss.backward(), model));
        return (lv, g);
    }
    // Forward on every slice first: a non-finite loss anywhere skips every backward pass.
    let losses: Vec<(M, Tensor<1>, f64)> = on_threads(slices.into_iter().enumerate(), |(i, r)| {
        let m = twin(model);
        let (loss, lv) = weighted(&m, i, r);
        (m, loss, lv)
    });
    let lv: f64 = losses.iter().map(|l| l.2).sum();
    if !lv.is_finite() {
        return (lv, None);
    }
    let parts = on_threads(losses, |(m, loss, _)| {
        GradientsParams::from_grads(loss.backward(), &m)
    });
    (lv, Some(sum(model, parts)))
}

/// `f` on every item, one scoped thread each; results in item order.
pub fn on_threads<I, T, F>(items: I, f: F) -> Vec<T>
where
    I: IntoIterator,
    I::Item: Send,
    T: Send,
    F: Fn(I::Item) -> T + Sync,
{
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = items
            .into_iter()
            .map(|item| scope.spawn(move || f(item)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a worker thread panicked"))
            .collect()
    })
}

/// Adds the per-slice gradients parameter by parameter.
fn sum<M: Module>(model: &M, parts: Vec<GradientsParams>) -> GradientsParams {
    struct Sum {
        parts: Vec<GradientsParams>,
        out: GradientsParams,
    }
    impl Sum {
        fn add<const D: usize>(&mut self, id: ParamId) {
            let total = self
                .parts
                .iter_mut()
                .filter_map(|g| g.remove::<D>(id))
                .reduce(|a, b| a + b);
            if let Some(t) = total {
                self.out.register(id, t);
            }
        }
    }
    impl KeyedParam for Sum {
        fn param<const D: usize>(&mut self, _: String, param: &Param<Tensor<D>>) {
            self.add::<D>(param.id);
        }
    }
    let mut s = Sum {
        parts,
        out: GradientsParams::new(),
    };
    visit_keyed(model, &mut s);
    s.out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use crate::finetune::smoothed_cross_entropy;
    use crate::model::{Config, ConvNeXtV2, Size};
    use crate::rng::SplitMix64;
    use burn::tensor::{Device, TensorData};

    /// Every gradient as (key, values).
    pub(crate) fn flat(model: &ConvNeXtV2, g: &GradientsParams) -> Vec<(String, Vec<f32>)> {
        struct Get<'a>(&'a GradientsParams, Vec<(String, Vec<f32>)>);
        impl KeyedParam for Get<'_> {
            fn param<const D: usize>(&mut self, key: String, param: &Param<Tensor<D>>) {
                let g = self
                    .0
                    .get::<D>(param.id)
                    .expect("every parameter has a gradient");
                self.1
                    .push((key, g.into_data().try_to_vec::<f32>().unwrap()));
            }
        }
        let mut v = Get(g, Vec::new());
        visit_keyed(model, &mut v);
        v.1
    }

    /// Two slices on two threads give the whole batch's gradient (one graph, one pass).
    #[test]
    fn sliced_gradients_equal_the_whole_batch_gradients() {
        let device = Device::flex().autodiff();
        let config = Config {
            size: Size::named("atto").unwrap(),
            num_classes: 5,
            drop_path: 0.0,
            grn: true,
        };
        // Non-zero GRN γ/β so that every path carries gradient.
        let model =
            crate::weights::replace_tensors(ConvNeXtV2::new(&config, 3, &device), &mut |k, s| {
                k.contains("grn").then(|| {
                    let n: usize = s.iter().product();
                    TensorData::new(
                        (0..n).map(|i| 0.1 + 0.01 * (i % 7) as f32).collect(),
                        s.to_vec(),
                    )
                })
            });
        let (n, px) = (5usize, 3 * 32 * 32);
        let mut rng = SplitMix64::new(9);
        let images: Vec<f32> = (0..n * px).map(|_| rng.next_normal() as f32).collect();
        let labels: Vec<usize> = (0..n).map(|i| (i * 3) % 5).collect();
        let loss_of = |m: &ConvNeXtV2, _: u64, r: Range<usize>| {
            let x = TensorData::new(
                images[r.start * px..r.end * px].to_vec(),
                [r.len(), 3, 32, 32],
            );
            let logits = m.forward(Tensor::<4>::from_data(x, &device), None);
            smoothed_cross_entropy(logits, &labels[r], 0.1)
        };
        let (l1, g1) = grads(&model, n, 1, loss_of);
        let (l2, g2) = grads(&model, n, 2, loss_of);
        assert!((l1 - l2).abs() < 1e-5 * l1.abs(), "{l1} vs {l2}");
        let (a, b) = (flat(&model, &g1.unwrap()), flat(&model, &g2.unwrap()));
        assert_eq!(a.len(), b.len());
        assert!(a.len() > 50);
        for ((k, x), (_, y)) in a.iter().zip(&b) {
            let scale = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(scale > 0.0, "{k}: zero gradient");
            let err = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
            assert!(err <= 1e-4 * scale, "{k}: max |Δ| {err} vs max |g| {scale}");
        }
    }

    #[test]
    fn split_covers_every_index_once() {
        assert_eq!(split(7, 2), vec![0..3, 3..7]);
        assert_eq!(split(1, 2), vec![0..1]);
        assert_eq!(split(64, 2), vec![0..32, 32..64]);
        assert_eq!(split(0, 2), Vec::<Range<usize>>::new());
    }
}
