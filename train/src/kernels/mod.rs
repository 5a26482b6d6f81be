//! Hand-written CPU kernels for the training step on Burn's flex backend, plugged in as a Burn
//! backend extension with their own backward passes: exact GELU with a vectorizable erf
//! ([`gelu`](mod@gelu)), the depthwise 7×7 convolution with direct-loop gradients ([`dwconv`]),
//! LayerNorm over channels ([`layer_norm`](mod@layer_norm)) and GRN ([`grn`](mod@grn)).
//!
//! The functions of the same names here are what the model calls: when every tensor argument is
//! f32 on flex (with or without autodiff) they run these kernels, anywhere else (wgpu,
//! burn-ndarray, other dtypes) Burn's own ops, so the GPU build and the reference backend are
//! untouched. Each kernel module tests against its definition in f64; the test here compares the
//! whole model's gradients on both routes.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ActivationOps, FloatTensorOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Dispatch, DispatchDevice, Flex};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, FloatDType, Tensor, TensorData};
use rayon::prelude::*;

/// `a·b + c`: one fused instruction in the AVX2+FMA variants (`FMA = true`, compiled with the
/// feature enabled), a multiply and an add otherwise (`mul_add` without hardware FMA would be a
/// libm call).
#[inline(always)]
pub(crate) fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Whether the 8-lane AVX2+FMA variants of the kernels can run here (x86-64 only; the result is
/// cached by std).
pub(crate) fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `fn $name(args)` that runs `$body::<true>` compiled for AVX2+FMA when the
/// CPU has them and `$body::<false>` (baseline ISA) otherwise. `$body` must be
/// `#[inline(always)]` so that it is compiled inside each variant.
macro_rules! isa_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident => $body:ident ( $($arg:ident : $ty:ty),* $(,)? ) $(-> $ret:ty)?) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body::<true>($($arg),*)
                }
                if $crate::kernels::has_avx2_fma() {
                    // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body::<false>($($arg),*)
        }
    };
}

pub mod dwconv;
pub mod gelu;
pub mod grn;
pub mod layer_norm;

/// Elements per rayon task of the element-wise kernels.
const CHUNK: usize = 1 << 14;

/// The ops this module adds to Burn (routed to flex, with autodiff).
#[backend_extension(Flex, Autodiff)]
pub trait FlexKernels: burn::backend::Backend {
    /// Exact GELU.
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Depthwise 7×7 convolution, stride 1, padding 3: `x` `[n, c, h, w]`, `weight`
    /// `[c, 1, 7, 7]`, `bias` `[c]`.
    fn dwconv7x7(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// LayerNorm over the last dimension: `gamma`, `beta` `[c]`.
    fn layer_norm_last(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self>;
    /// Global response normalization of channels-last `x` `[n, h, w, c]`: `gamma`, `beta` `[c]`,
    /// sums of squares clamped at `floor`, `eps` added to the channel mean of the norms.
    fn grn_channels_last(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        floor: f32,
        eps: f64,
    ) -> FloatTensor<Self>;
}

std::thread_local! {
    static BURN_OPS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with Burn's own ops instead of these kernels on this thread: the reference the
/// kernels are tested against, on the same backend.
pub fn with_burn_ops<T>(f: impl FnOnce() -> T) -> T {
    let before = BURN_OPS.replace(true);
    let out = f();
    BURN_OPS.set(before);
    out
}

/// Whether `x` lives on flex as f32 (where these kernels apply).
pub fn on_flex_f32<const D: usize>(x: &Tensor<D>) -> bool {
    if BURN_OPS.get() || x.dtype() != DType::F32 {
        return false;
    }
    match x.device().as_dispatch() {
        DispatchDevice::Flex(_) => true,
        DispatchDevice::Autodiff(a) => matches!(a.clone().inner(), DispatchDevice::Flex(_)),
        _ => false,
    }
}

/// Whether a kernel's parameter tensors are f32 too (its backward reads them as f32).
fn all_f32<const D: usize>(a: &Tensor<D>, b: &Tensor<1>) -> bool {
    a.dtype() == DType::F32 && b.dtype() == DType::F32
}

/// Exact GELU: this module's kernel on flex f32, Burn's elsewhere.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if on_flex_f32(&x) {
        Tensor::from_dispatch(<Dispatch as FlexKernels>::gelu_exact(x.into_dispatch()))
    } else {
        burn::tensor::activation::gelu(x)
    }
}

/// Depthwise 7×7, stride 1, padding 3 (`weight` `[c, 1, 7, 7]`): this module's kernel on flex f32,
/// Burn's `conv2d` elsewhere.
pub fn dwconv7x7(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>) -> Tensor<4> {
    if on_flex_f32(&x) && all_f32(&weight, &bias) {
        Tensor::from_dispatch(<Dispatch as FlexKernels>::dwconv7x7(
            x.into_dispatch(),
            weight.into_dispatch(),
            bias.into_dispatch(),
        ))
    } else {
        let c = weight.dims()[0];
        burn::tensor::module::conv2d(x, weight, Some(bias), dw_options(c))
    }
}

/// LayerNorm over the last dimension (biased variance, `eps` inside the root): this module's
/// kernel on flex f32, Burn's `layer_norm` elsewhere.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
) -> Tensor<D> {
    if on_flex_f32(&x) && all_f32(&gamma, &beta) {
        Tensor::from_dispatch(<Dispatch as FlexKernels>::layer_norm_last(
            x.into_dispatch(),
            gamma.into_dispatch(),
            beta.into_dispatch(),
            eps,
        ))
    } else {
        burn::tensor::module::layer_norm(x, gamma, Some(beta), eps)
    }
}

/// GRN of channels-last `x` (see [`grn`](mod@grn)): this module's kernel on flex f32, `reference`
/// (Burn's ops) elsewhere.
pub fn grn(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    floor: f32,
    eps: f64,
    reference: impl FnOnce(Tensor<4>, Tensor<1>, Tensor<1>) -> Tensor<4>,
) -> Tensor<4> {
    if on_flex_f32(&x) && all_f32(&gamma, &beta) {
        Tensor::from_dispatch(<Dispatch as FlexKernels>::grn_channels_last(
            x.into_dispatch(),
            gamma.into_dispatch(),
            beta.into_dispatch(),
            floor,
            eps,
        ))
    } else {
        reference(x, gamma, beta)
    }
}

fn dw_options(c: usize) -> ConvOptions<2> {
    ConvOptions::new([1, 1], [dwconv::PAD; 2], [1, 1], c)
}

/// `t`'s elements as a contiguous f32 tensor (a copy only if `t` is strided).
fn contiguous(t: &FlexTensor) -> FlexTensor {
    t.to_contiguous()
}

fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("a contiguous f32 flex tensor (callers route only f32)")
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let s = t.layout().shape();
    [s[0], s[1], s[2], s[3]]
}

fn flex_from(values: Vec<f32>, shape: impl Into<burn::tensor::Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn gelu_flex(x: FlexTensor) -> FlexTensor {
    let x = contiguous(&x);
    let src = f32s(&x);
    let mut out = vec![0f32; src.len()];
    out.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(o, s)| gelu::gelu_f32(s, o));
    flex_from(out, x.layout().shape().clone())
}

fn gelu_backward_flex(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
    let (x, grad) = (contiguous(&x), contiguous(&grad));
    let (xs, gs) = (f32s(&x), f32s(&grad));
    let mut out = vec![0f32; xs.len()];
    out.par_chunks_mut(CHUNK)
        .zip(xs.par_chunks(CHUNK).zip(gs.par_chunks(CHUNK)))
        .for_each(|(o, (x, g))| gelu::gelu_backward_f32(x, g, o));
    flex_from(out, x.layout().shape().clone())
}

fn dwconv_flex(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
    let (x, weight, bias) = (contiguous(&x), contiguous(&weight), contiguous(&bias));
    let shape = dims4(&x);
    let mut out = vec![0f32; shape.iter().product()];
    dwconv::dwconv7x7_f32(f32s(&x), f32s(&weight), f32s(&bias), shape, &mut out);
    flex_from(out, shape)
}

/// `t` as a contiguous f32 tensor (no copy when it already is one): the normalizations compute
/// other float types in f32.
fn contiguous_f32(t: FlexTensor) -> FlexTensor {
    contiguous(&<Flex as FloatTensorOps<Flex>>::float_cast(
        t,
        FloatDType::F32,
    ))
}

/// `y` back in the input's float type (no-op for f32).
fn cast_to(y: FlexTensor, dtype: DType) -> FlexTensor {
    <Flex as FloatTensorOps<Flex>>::float_cast(y, dtype.into())
}

/// LayerNorm forward: the output, the contiguous f32 input and each row's (μ, 1/σ).
fn layer_norm_flex(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    eps: f64,
) -> (FlexTensor, FlexTensor, Vec<[f32; 2]>) {
    let (x, gamma, beta) = (
        contiguous_f32(x),
        contiguous_f32(gamma),
        contiguous_f32(beta),
    );
    let xs = f32s(&x);
    let mut y = vec![0f32; xs.len()];
    let stats = layer_norm::layer_norm_f32(xs, f32s(&gamma), f32s(&beta), eps as f32, &mut y);
    (flex_from(y, x.layout().shape().clone()), x, stats)
}

/// `[n, h·w, c]` of a channels-last 4-D tensor.
fn grn_dims(x: &FlexTensor) -> [usize; 3] {
    let [n, h, w, c] = dims4(x);
    [n, h * w, c]
}

/// GRN forward: the output, the contiguous f32 input and each image's channel norms.
fn grn_flex(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    floor: f32,
    eps: f64,
) -> (FlexTensor, FlexTensor, Vec<f32>) {
    let (x, gamma, beta) = (
        contiguous_f32(x),
        contiguous_f32(gamma),
        contiguous_f32(beta),
    );
    let xs = f32s(&x);
    let mut y = vec![0f32; xs.len()];
    let dims = grn_dims(&x);
    let norms = grn::grn_f32(
        xs,
        f32s(&gamma),
        f32s(&beta),
        dims,
        floor,
        eps as f32,
        &mut y,
    );
    (flex_from(y, x.layout().shape().clone()), x, norms)
}

impl FlexKernels for Flex {
    fn gelu_exact(x: FlexTensor) -> FlexTensor {
        if x.dtype() != DType::F32 {
            return <Flex as ActivationOps<Flex>>::gelu(x);
        }
        gelu_flex(x)
    }

    fn dwconv7x7(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        if x.dtype() != DType::F32 || weight.dtype() != DType::F32 || bias.dtype() != DType::F32 {
            let c = weight.layout().shape()[0];
            return <Flex as ModuleOps<Flex>>::conv2d(x, weight, Some(bias), dw_options(c));
        }
        dwconv_flex(x, weight, bias)
    }

    fn layer_norm_last(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, eps: f64) -> FlexTensor {
        let dtype = x.dtype();
        cast_to(layer_norm_flex(x, gamma, beta, eps).0, dtype)
    }

    fn grn_channels_last(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        floor: f32,
        eps: f64,
    ) -> FlexTensor {
        let dtype = x.dtype();
        cast_to(grn_flex(x, gamma, beta, floor, eps).0, dtype)
    }
}

#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        if let Some(node) = parent {
            grads.register::<Flex>(node.id, gelu_backward_flex(ops.state, grad));
        }
    }
}

#[derive(Debug)]
struct DwconvBackward;

impl Backward<Flex, 3> for DwconvBackward {
    /// The forward's input and weight.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [px, pw, pb] = ops.parents;
        let grad = contiguous(&grads.consume::<Flex>(&ops.node));
        let (x, weight) = ops.state;
        let (x, weight) = (contiguous(&x), contiguous(&weight));
        let shape = dims4(&x);
        let g = f32s(&grad);
        if let Some(node) = px {
            let mut dx = vec![0f32; g.len()];
            dwconv::dwconv7x7_input_grad_f32(g, f32s(&weight), shape, &mut dx);
            grads.register::<Flex>(node.id, flex_from(dx, shape));
        }
        if pw.is_some() || pb.is_some() {
            let (dw, db) = dwconv::dwconv7x7_weight_bias_grad_f32(f32s(&x), g, shape);
            if let Some(node) = pw {
                grads.register::<Flex>(node.id, flex_from(dw, weight.layout().shape().clone()));
            }
            if let Some(node) = pb {
                grads.register::<Flex>(node.id, flex_from(db, [shape[1]]));
            }
        }
    }
}

/// Registers the gradients of a normalization's input (shaped as `x`) and of its `[c]` scale and
/// shift, for the parents that track one.
fn register_norm_grads(
    grads: &mut Gradients,
    parents: [Option<NodeId>; 3],
    x: &FlexTensor,
    [dx, dg, db]: [Vec<f32>; 3],
) {
    let c = dg.len();
    let [px, pg, pb] = parents;
    for (parent, t) in [
        (px, flex_from(dx, x.layout().shape().clone())),
        (pg, flex_from(dg, [c])),
        (pb, flex_from(db, [c])),
    ] {
        if let Some(id) = parent {
            grads.register::<Flex>(id, t);
        }
    }
}

/// Sums per-task `[dγ | dβ]` partials of `2c` values into `(dγ, dβ)`.
pub(crate) fn sum_scale_shift_grads(
    partials: impl ParallelIterator<Item = Vec<f32>>,
    c: usize,
) -> (Vec<f32>, Vec<f32>) {
    let total = partials.reduce(
        || vec![0f32; 2 * c],
        |mut a, b| {
            a.iter_mut().zip(&b).for_each(|(p, q)| *p += q);
            a
        },
    );
    let (dg, db) = total.split_at(c);
    (dg.to_vec(), db.to_vec())
}

#[derive(Debug)]
struct LayerNormBackward;

impl Backward<Flex, 3> for LayerNormBackward {
    /// The forward's input, γ and each row's (μ, 1/σ).
    type State = (FlexTensor, FlexTensor, Vec<[f32; 2]>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = contiguous(&grads.consume::<Flex>(&ops.node));
        let (x, gamma, stats) = ops.state;
        let gamma = contiguous(&gamma);
        let mut dx = vec![0f32; f32s(&x).len()];
        let (dg, db) =
            layer_norm::layer_norm_backward_f32(f32s(&x), f32s(&gamma), &stats, f32s(&dy), &mut dx);
        register_norm_grads(
            grads,
            ops.parents.map(|p| p.map(|n| n.id)),
            &x,
            [dx, dg, db],
        );
    }
}

#[derive(Debug)]
struct GrnBackward;

impl Backward<Flex, 3> for GrnBackward {
    /// The forward's input, γ, each image's channel norms, the clamp floor and ε.
    type State = (FlexTensor, FlexTensor, Vec<f32>, f32, f64);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = contiguous(&grads.consume::<Flex>(&ops.node));
        let (x, gamma, norms, floor, eps) = ops.state;
        let gamma = contiguous(&gamma);
        let mut dx = vec![0f32; f32s(&x).len()];
        let (dg, db) = grn::grn_backward_f32(
            f32s(&x),
            f32s(&gamma),
            &norms,
            f32s(&dy),
            grn_dims(&x),
            floor,
            eps as f32,
            &mut dx,
        );
        register_norm_grads(
            grads,
            ops.parents.map(|p| p.map(|n| n.id)),
            &x,
            [dx, dg, db],
        );
    }
}

impl<C: CheckpointStrategy> FlexKernels for Autodiff<Flex, C> {
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match GeluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let input = x.primitive().clone();
                let out = <Flex as FlexKernels>::gelu_exact(input.clone());
                prep.finish(input, out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(<Flex as FlexKernels>::gelu_exact(x.into_primitive()))
            }
        }
    }

    fn dwconv7x7(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        tracked3::<C, _>(DwconvBackward, [x, weight, bias], |x, w, b| {
            let y = <Flex as FlexKernels>::dwconv7x7(x.clone(), w.clone(), b);
            (y, (x, w))
        })
    }

    fn layer_norm_last(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        tracked3::<C, _>(LayerNormBackward, [x, gamma, beta], |x, g, b| {
            let (y, x, stats) = layer_norm_flex(x, g.clone(), b, eps);
            (y, (x, g, stats))
        })
    }

    fn grn_channels_last(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        floor: f32,
        eps: f64,
    ) -> FloatTensor<Self> {
        tracked3::<C, _>(GrnBackward, [x, gamma, beta], |x, g, b| {
            let (y, x, norms) = grn_flex(x, g.clone(), b, floor, eps);
            (y, (x, g, norms, floor, eps))
        })
    }
}

/// Records a three-input kernel on the autodiff graph: `forward` computes the output and the state
/// `op`'s backward needs from the three inputs; when no input is tracked the state is dropped.
fn tracked3<C: CheckpointStrategy, O: Backward<Flex, 3>>(
    op: O,
    [a, b, c]: [FloatTensor<Autodiff<Flex, C>>; 3],
    forward: impl FnOnce(FlexTensor, FlexTensor, FlexTensor) -> (FlexTensor, O::State),
) -> FloatTensor<Autodiff<Flex, C>> {
    let prepared = op
        .prepare::<C>([a.node(), b.node(), c.node()])
        .compute_bound()
        .stateful();
    let (y, state) = forward(a.into_primitive(), b.into_primitive(), c.into_primitive());
    match prepared {
        OpsKind::Tracked(prep) => prep.finish(state, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// ∂L/∂args[which][i] by central differences with step `h`, for a loss of the three argument
/// vectors of a normalization (input, scale, shift): the gradient tests' independent reference.
#[cfg(test)]
pub(crate) fn central_difference(
    loss: impl Fn(&[f64], &[f64], &[f64]) -> f64,
    args: [&[f64]; 3],
    which: usize,
    i: usize,
    h: f64,
) -> f64 {
    let mut plus = args.map(<[f64]>::to_vec);
    let mut minus = plus.clone();
    plus[which][i] += h;
    minus[which][i] -= h;
    (loss(&plus[0], &plus[1], &plus[2]) - loss(&minus[0], &minus[1], &minus[2])) / (2.0 * h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finetune::smoothed_cross_entropy;
    use crate::model::{Config, ConvNeXtV2, Size};
    use crate::parallel::tests::flat;
    use crate::rng::SplitMix64;
    use burn::optim::GradientsParams;
    use burn::tensor::Device;

    /// The whole Atto model at 64 px (stage maps 16², 8², 4², 2²: larger and smaller than the
    /// kernel), on flex: the loss and every parameter's gradient with these kernels equal those
    /// with Burn's own GELU and `conv2d`.
    #[test]
    fn model_gradients_equal_burns_ops() {
        let device = Device::flex().autodiff();
        let probe = Tensor::<1>::zeros([1], &device);
        assert!(
            on_flex_f32(&probe),
            "autodiff flex tensors take the kernels"
        );
        assert!(!with_burn_ops(|| on_flex_f32(&probe)));
        let config = Config {
            size: Size::named("atto").unwrap(),
            num_classes: 5,
            drop_path: 0.0,
            grn: true,
        };
        // Non-zero GRN γ/β and depthwise biases so that every path carries gradient.
        let model =
            crate::weights::replace_tensors(ConvNeXtV2::new(&config, 3, &device), &mut |k, s| {
                (k.contains("grn") || k.contains("conv_dw.bias")).then(|| {
                    let n: usize = s.iter().product();
                    TensorData::new(
                        (0..n).map(|i| 0.1 + 0.01 * (i % 7) as f32).collect(),
                        s.to_vec(),
                    )
                })
            });
        let (n, s) = (3usize, 64usize);
        let mut rng = SplitMix64::new(21);
        let images: Vec<f32> = (0..n * 3 * s * s)
            .map(|_| rng.next_normal() as f32)
            .collect();
        let run = || {
            let x = Tensor::<4>::from_data(TensorData::new(images.clone(), [n, 3, s, s]), &device);
            let loss = smoothed_cross_entropy(model.forward(x, None), &[1, 4, 0], 0.1);
            let value = loss.clone().into_scalar::<f32>();
            (
                value,
                flat(
                    &model,
                    &GradientsParams::from_grads(loss.backward(), &model),
                ),
            )
        };
        let (l_k, g_k) = run();
        let (l_b, g_b) = with_burn_ops(run);
        assert!((l_k - l_b).abs() < 1e-5 * l_b.abs(), "{l_k} vs {l_b}");
        assert_eq!(g_k.len(), g_b.len());
        let dw = g_k.iter().filter(|(k, _)| k.contains("conv_dw")).count();
        assert_eq!(dw, 2 * 12, "depthwise weight and bias of Atto's 12 blocks");
        let mut worst = (0f64, String::new());
        for ((k, a), (k2, b)) in g_k.iter().zip(&g_b) {
            assert_eq!(k, k2);
            let norm = b.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
            assert!(norm > 0.0, "{k}: zero gradient");
            let diff = a
                .iter()
                .zip(b)
                .map(|(p, q)| ((p - q) as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            if diff / norm > worst.0 {
                worst = (diff / norm, k.clone());
            }
        }
        println!(
            "worst relative L2 gradient difference {:.2e} ({})",
            worst.0, worst.1
        );
        assert!(
            worst.0 <= 1e-5,
            "{}: relative L2 difference {:e}",
            worst.1,
            worst.0
        );
    }
}
