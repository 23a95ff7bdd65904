//! nabla's own CPU kernels ([`nabla_kernels`]) inside Burn, on the `flex`
//! device only: convolution, BatchNorm with its activation (and ResNet's
//! shortcut summed before it, [`conv_bn_add`]), and max-pooling, forward and
//! backward; in evaluation, BatchNorm folded into the convolution before it
//! ([`conv_bn`]); and the fused Adam step ([`crate::optim`]). Each kernel
//! call is timed for [`crate::profile`] when a profile is recording. (Over
//! 600 lines: one bridge, six operations, each with its forward, backward
//! step and wrapper.)
//!
//! The route is Burn's backend extension: a trait of six operations,
//! implemented for the `Flex` backend (the forward kernels) and for
//! `Autodiff<Flex>` (the forward kernels, recording a hand-written backward
//! step that calls the backward kernels). The models call the functions at
//! the bottom of this file; on any other device, with another dtype, or for a
//! shape the kernels do not cover, those fall back to Burn's own modules, so
//! `cuda` and `wgpu` keep Burn's ops.
//!
//! Burn's own ops can also be chosen on `flex` — `NABLA_KERNELS=burn` for a
//! process, [`use_burn_ops`] for a thread — to compare the two.

use crate::profile;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata};
use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::{DType, Device, Tensor, TensorData};
use burn_flex::FlexTensor;
use nabla_kernels::conv::{conv2d_backward, conv2d_forward, Conv2dShape, ConvGrads};
use nabla_kernels::norm::{
    batch_norm_train_backward, batch_norm_train_forward, Activation, NormShape,
};
use nabla_kernels::optim::{adam_step, AdamStep};
use nabla_kernels::pool::{max_pool2d_backward, max_pool2d_forward, PoolShape};
use rayon::prelude::*;
use std::cell::Cell;
use std::sync::Arc;

/// Geometry of a convolution that the tensors' shapes do not tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub padding_end: [usize; 2],
    pub groups: usize,
    /// Applied to the output; only where no gradient is taken (evaluation
    /// with BatchNorm folded: in training the activation is BatchNorm's).
    pub activation: Activation,
}

/// Geometry of a max-pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    /// ReLU before the pooling, fused.
    pub relu: bool,
}

/// The activation after a BatchNorm, as the extension passes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormGeometry {
    pub epsilon: f64,
    pub activation: Activation,
}

#[backend_extension(Flex, Autodiff)]
pub trait KernelOps: Backend {
    fn nabla_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self>;
    fn nabla_conv2d_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self>;
    /// The normalised, activated output and the batch statistics `[2, C]`
    /// (mean, then biased variance), which carry no gradient.
    fn nabla_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        geometry: NormGeometry,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// [`KernelOps::nabla_batch_norm`] with `residual` added before the
    /// activation: ResNet's `relu(bn2(conv2(x)) + shortcut)` in one pass.
    fn nabla_batch_norm_add(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        geometry: NormGeometry,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
    fn nabla_max_pool2d(x: FloatTensor<Self>, geometry: PoolGeometry) -> FloatTensor<Self>;
    /// One Adam step: the parameter and the two moments after it.
    fn nabla_adam(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// A contiguous f32 tensor (a copy only when the input is a strided view).
fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

fn data(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous f32 tensor")
}

/// `n` zeros for a kernel's output, written over the rayon pool. A kernel's
/// output must be initialised before the kernel gets it as `&mut [f32]`;
/// zeroed on the calling thread (`vec![0.0; n]`, mimalloc's memset) it
/// was about 60 % of that thread's time in a ResNet34 step while the pool
/// waited (AMD EPYC Zen 4).
fn zeros(n: usize) -> Vec<f32> {
    if n < PARALLEL_ZEROS {
        return vec![0.0; n];
    }
    let mut v = Vec::with_capacity(n);
    v.par_extend(rayon::iter::repeat_n(0f32, n));
    v
}

/// Outputs from this many values on are zeroed in parallel (256 KiB).
const PARALLEL_ZEROS: usize = 1 << 16;

fn tensor(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
}

fn dims<const N: usize>(t: &FlexTensor) -> [usize; N] {
    t.shape().dims()
}

/// The kernels' shape of a convolution of `x` by `w` (their dimensions).
fn conv_shape(x: [usize; 4], w: [usize; 4], g: &ConvGeometry) -> Conv2dShape {
    let [batch, in_channels, in_h, in_w] = x;
    let [out_channels, _, kh, kw] = w;
    Conv2dShape {
        batch,
        in_channels,
        in_h,
        in_w,
        out_channels,
        kernel: [kh, kw],
        stride: g.stride,
        padding: g.padding,
        padding_end: g.padding_end,
        groups: g.groups,
    }
}

fn conv_forward(
    x: FlexTensor,
    w: FlexTensor,
    b: Option<FlexTensor>,
    g: ConvGeometry,
) -> FlexTensor {
    let (x, w) = (contiguous(x), contiguous(w));
    let b = b.map(contiguous);
    let s = conv_shape(dims(&x), dims(&w), &g);
    let out = profile::timed(
        || profile::conv_name(&s),
        "forward",
        || {
            let mut out = zeros(s.output_len());
            conv2d_forward(&s, data(&x), data(&w), b.as_ref().map(data), &mut out);
            let clamp = match g.activation {
                Activation::Identity => None,
                Activation::Relu => Some(f32::INFINITY),
                Activation::Relu6 => Some(6.0),
            };
            if let Some(top) = clamp {
                out.par_chunks_mut(1 << 14)
                    .for_each(|c| c.iter_mut().for_each(|v| *v = v.max(0.0).min(top)));
            }
            out
        },
    );
    tensor(out, &[s.batch, s.out_channels, s.out_h(), s.out_w()])
}

fn norm_shape(x: &FlexTensor) -> NormShape {
    let [batch, channels, h, w] = dims(x);
    NormShape {
        batch,
        channels,
        spatial: h * w,
    }
}

/// `(y, stats)` with `stats = [mean; var]`.
fn norm_forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    residual: Option<&FlexTensor>,
    g: NormGeometry,
) -> (FlexTensor, FlexTensor) {
    let s = norm_shape(x);
    let (y, mean) = profile::timed(
        || profile::plane_name("batch norm", dims(x)),
        "forward",
        || {
            let mut y = zeros(s.len());
            let (mut mean, var) = batch_norm_train_forward(
                &s,
                data(x),
                data(gamma),
                data(beta),
                residual.map(data),
                g.epsilon,
                g.activation,
                &mut y,
            );
            mean.extend(var);
            (y, mean)
        },
    );
    (tensor(y, &dims::<4>(x)), tensor(mean, &[2, s.channels]))
}

/// The kernels' shape of a pooling of an input of dimensions `x`.
fn pool_shape(x: [usize; 4], g: &PoolGeometry) -> PoolShape {
    let [n, c, in_h, in_w] = x;
    PoolShape {
        planes: n * c,
        in_h,
        in_w,
        kernel: g.kernel,
        stride: g.stride,
        padding: g.padding,
    }
}

/// `max-pool 3×3/2 64 @64×64` in a profile.
fn pool_name(g: &PoolGeometry, x: [usize; 4]) -> String {
    let [kh, kw] = g.kernel;
    profile::plane_name(&format!("max-pool {kh}×{kw}/{}", g.stride[0]), x)
}

fn pool_forward(x: &FlexTensor, g: PoolGeometry) -> (FlexTensor, Vec<u8>) {
    let s = pool_shape(dims(x), &g);
    let [n, c, _, _] = dims(x);
    let (y, arg) = profile::timed(
        || pool_name(&g, dims(x)),
        "forward",
        || {
            let mut y = zeros(s.output_len());
            let arg = max_pool2d_forward(&s, data(x), g.relu, &mut y);
            (y, arg)
        },
    );
    (tensor(y, &[n, c, s.out_h(), s.out_w()]), arg)
}

impl KernelOps for Flex {
    fn nabla_conv2d(x: FlexTensor, weight: FlexTensor, geometry: ConvGeometry) -> FlexTensor {
        conv_forward(x, weight, None, geometry)
    }

    fn nabla_conv2d_bias(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        geometry: ConvGeometry,
    ) -> FlexTensor {
        conv_forward(x, weight, Some(bias), geometry)
    }

    fn nabla_batch_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        geometry: NormGeometry,
    ) -> (FlexTensor, FlexTensor) {
        norm_forward(
            &contiguous(x),
            &contiguous(gamma),
            &contiguous(beta),
            None,
            geometry,
        )
    }

    fn nabla_batch_norm_add(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        residual: FlexTensor,
        geometry: NormGeometry,
    ) -> (FlexTensor, FlexTensor) {
        norm_forward(
            &contiguous(x),
            &contiguous(gamma),
            &contiguous(beta),
            Some(&contiguous(residual)),
            geometry,
        )
    }

    fn nabla_max_pool2d(x: FlexTensor, geometry: PoolGeometry) -> FlexTensor {
        pool_forward(&contiguous(x), geometry).0
    }

    fn nabla_adam(
        param: FlexTensor,
        grad: FlexTensor,
        moment_1: FlexTensor,
        moment_2: FlexTensor,
        step: AdamStep,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (mut p, mut m1, mut m2) = (owned(param), owned(moment_1), owned(moment_2));
        let g = contiguous(grad);
        profile::timed(
            || "adam, every parameter".into(),
            "update",
            || {
                adam_step(
                    &step,
                    p.storage_mut(),
                    data(&g),
                    m1.storage_mut(),
                    m2.storage_mut(),
                )
            },
        );
        (p, m1, m2)
    }
}

/// A tensor whose storage is exactly its contiguous values, to update in
/// place (copied first when it is a view, or shared).
fn owned(t: FlexTensor) -> FlexTensor {
    let whole = t.as_slice::<f32>().map(<[f32]>::len) == Some(t.storage::<f32>().len());
    if whole {
        t
    } else {
        t.to_contiguous()
    }
}

type Ad<C> = Autodiff<Flex, C>;

/// The backward step of a convolution: gradients of the input, the weight
/// and (when there is one) the bias, each only when its node wants one.
#[derive(Debug)]
struct ConvBackward;

type ConvState = (FlexTensor, FlexTensor, ConvGeometry);

fn conv_grads(
    state: ConvState,
    grad: FlexTensor,
    want: [bool; 3],
) -> (Option<FlexTensor>, Option<FlexTensor>, Option<FlexTensor>) {
    let (x, w, g) = state;
    let grad = contiguous(grad);
    let s = conv_shape(dims(&x), dims(&w), &g);
    let (dx, dw, db) = profile::timed(
        || profile::conv_name(&s),
        if want[0] {
            "backward"
        } else {
            "backward, no input gradient"
        },
        || {
            let mut dx = want[0].then(|| zeros(s.input_len()));
            let mut dw = want[1].then(|| zeros(s.weight_len()));
            let mut db = want[2].then(|| zeros(s.out_channels));
            conv2d_backward(
                &s,
                data(&x),
                data(&w),
                data(&grad),
                ConvGrads {
                    input: dx.as_deref_mut(),
                    weight: dw.as_deref_mut(),
                    bias: db.as_deref_mut(),
                },
            );
            (dx, dw, db)
        },
    );
    (
        dx.map(|v| tensor(v, &dims::<4>(&x))),
        dw.map(|v| tensor(v, &dims::<4>(&w))),
        db.map(|v| tensor(v, &[s.out_channels])),
    )
}

impl Backward<Flex, 2> for ConvBackward {
    type State = ConvState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (dx, dw, _) = conv_grads(ops.state, grad, [node_x.is_some(), node_w.is_some(), false]);
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<Flex>(node.id, dx);
        }
        if let (Some(node), Some(dw)) = (node_w, dw) {
            grads.register::<Flex>(node.id, dw);
        }
    }
}

impl Backward<Flex, 3> for ConvBackward {
    type State = ConvState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let want = [node_x.is_some(), node_w.is_some(), node_b.is_some()];
        let (dx, dw, db) = conv_grads(ops.state, grad, want);
        for (node, g) in [(node_x, dx), (node_w, dw), (node_b, db)] {
            if let (Some(node), Some(g)) = (node, g) {
                grads.register::<Flex>(node.id, g);
            }
        }
    }
}

/// The backward step of BatchNorm and its activation: parents `[x, gamma,
/// beta]` (`N = 3`) or `[x, gamma, beta, residual]` (`N = 4`, the residual
/// summed before the activation).
#[derive(Debug)]
struct NormBackward<const N: usize>;

/// Input, output, gamma, batch statistics.
type NormState = (FlexTensor, FlexTensor, FlexTensor, FlexTensor, NormGeometry);

impl<const N: usize> Backward<Flex, N> for NormBackward<N> {
    type State = NormState;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        // The output gradient's buffer becomes dx (copied first only when
        // it is shared or a view).
        let mut dx = owned(grads.consume::<Flex>(&ops.node));
        let (x, y, gamma, stats, g) = ops.state;
        let s = norm_shape(&x);
        let (mean, var) = data(&stats).split_at(s.channels);
        let (dresidual, (dgamma, dbeta)) = profile::timed(
            || profile::plane_name("batch norm", dims(&x)),
            "backward",
            || {
                let mut dresidual = (N == 4).then(|| zeros(s.len()));
                let grads = batch_norm_train_backward(
                    &s,
                    data(&x),
                    data(&y),
                    data(&gamma),
                    mean,
                    var,
                    g.epsilon,
                    g.activation,
                    dx.storage_mut(),
                    dresidual.as_deref_mut(),
                );
                (dresidual, grads)
            },
        );
        let shape = dims::<4>(&x);
        let values = [
            Some(dx),
            Some(tensor(dgamma, &[s.channels])),
            Some(tensor(dbeta, &[s.channels])),
            dresidual.map(|d| tensor(d, &shape)),
        ];
        for (node, g) in ops.parents.into_iter().zip(values) {
            if let (Some(node), Some(g)) = (node, g) {
                grads.register::<Flex>(node.id, g);
            }
        }
    }
}

/// The backward step of max-pooling: the output gradient scattered to the winners.
#[derive(Debug)]
struct PoolBackward;

impl Backward<Flex, 1> for PoolBackward {
    /// Input shape, output, winners.
    type State = ([usize; 4], FlexTensor, Arc<Vec<u8>>, PoolGeometry);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let Some(node) = node_x else { return };
        let (shape, y, arg, g) = ops.state;
        let s = pool_shape(shape, &g);
        let dx = profile::timed(
            || pool_name(&g, shape),
            "backward",
            || {
                let mut dx = zeros(shape.iter().product());
                max_pool2d_backward(&s, data(&grad), data(&y), &arg, g.relu, &mut dx);
                dx
            },
        );
        grads.register::<Flex>(node.id, tensor(dx, &shape));
    }
}

/// BatchNorm's forward pass on `[x, gamma, beta]` (and the residual when
/// given), recording its backward step when the graph asks for one.
fn norm_recorded<B, C, const N: usize>(
    kind: OpsKind<B, Flex, NormState, C, N>,
    inputs: [FlexTensor; 3],
    residual: Option<FlexTensor>,
    geometry: NormGeometry,
) -> (FloatTensor<Ad<C>>, FloatTensor<Ad<C>>)
where
    B: Backward<Flex, N, State = NormState>,
    C: CheckpointStrategy,
{
    let [x, gamma, beta] = inputs.map(contiguous);
    let residual = residual.map(contiguous);
    let (y, stats) = norm_forward(&x, &gamma, &beta, residual.as_ref(), geometry);
    let out = match kind {
        OpsKind::Tracked(prep) => prep.finish((x, y.clone(), gamma, stats.clone(), geometry), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    (out, <Ad<C> as AutodiffBackend>::from_inner(stats))
}

impl<C: CheckpointStrategy> KernelOps for Ad<C> {
    fn nabla_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self> {
        let prep = Backward::<Flex, 2>::prepare::<C>(ConvBackward, [x.node(), weight.node()])
            .compute_bound();
        let (x, w) = (
            contiguous(x.into_primitive()),
            contiguous(weight.into_primitive()),
        );
        match prep.stateful() {
            OpsKind::Tracked(prep) => {
                let out = conv_forward(x.clone(), w.clone(), None, geometry);
                prep.finish((x, w, geometry), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(conv_forward(x, w, None, geometry)),
        }
    }

    fn nabla_conv2d_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self> {
        let prep =
            Backward::<Flex, 3>::prepare::<C>(ConvBackward, [x.node(), weight.node(), bias.node()])
                .compute_bound();
        let (x, w) = (
            contiguous(x.into_primitive()),
            contiguous(weight.into_primitive()),
        );
        let b = bias.into_primitive();
        match prep.stateful() {
            OpsKind::Tracked(prep) => {
                let out = conv_forward(x.clone(), w.clone(), Some(b), geometry);
                prep.finish((x, w, geometry), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(conv_forward(x, w, Some(b), geometry)),
        }
    }

    fn nabla_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        geometry: NormGeometry,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let kind = NormBackward::<3>
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let inputs = [x, gamma, beta].map(|t| t.into_primitive());
        norm_recorded::<_, C, 3>(kind, inputs, None, geometry)
    }

    fn nabla_batch_norm_add(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        geometry: NormGeometry,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let kind = NormBackward::<4>
            .prepare::<C>([x.node(), gamma.node(), beta.node(), residual.node()])
            .compute_bound()
            .stateful();
        let inputs = [x, gamma, beta].map(|t| t.into_primitive());
        norm_recorded::<_, C, 4>(kind, inputs, Some(residual.into_primitive()), geometry)
    }

    fn nabla_adam(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // An optimizer step is not part of any graph: run it on the inner
        // tensors.
        let inner = <Ad<C> as AutodiffBackend>::inner;
        let (p, m1, m2) = Flex::nabla_adam(
            inner(param),
            inner(grad),
            inner(moment_1),
            inner(moment_2),
            step,
        );
        let outer = <Ad<C> as AutodiffBackend>::from_inner;
        (outer(p), outer(m1), outer(m2))
    }

    fn nabla_max_pool2d(x: FloatTensor<Self>, geometry: PoolGeometry) -> FloatTensor<Self> {
        let prep = PoolBackward.prepare::<C>([x.node()]).compute_bound();
        let x = contiguous(x.into_primitive());
        let shape = dims::<4>(&x);
        let (y, arg) = pool_forward(&x, geometry);
        match prep.stateful() {
            OpsKind::Tracked(prep) => prep.finish((shape, y.clone(), Arc::new(arg), geometry), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

thread_local! {
    static BURN_OPS: Cell<bool> = Cell::new(std::env::var("NABLA_KERNELS").is_ok_and(|v| v == "burn"));
}

/// Use Burn's own ops (`true`) or nabla's kernels (`false`, the default) on
/// the `flex` device, on this thread; returns the previous setting.
pub fn use_burn_ops(burn: bool) -> bool {
    BURN_OPS.with(|b| b.replace(burn))
}

/// Whether a tensor goes through nabla's kernels.
fn ours<const D: usize>(x: &Tensor<D>) -> bool {
    !BURN_OPS.with(Cell::get) && x.dtype() == DType::F32 && x.device().inner() == Device::flex()
}

/// Burn's "same" padding: `(before, after)` with the larger half after.
fn same_padding(kernel: usize, stride: usize, size: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out.max(1) - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2)
}

pub(crate) fn padding_pairs(
    p: &PaddingConfig2d,
    h: usize,
    w: usize,
    k: [usize; 2],
    s: [usize; 2],
) -> ([usize; 2], [usize; 2]) {
    match *p {
        PaddingConfig2d::Valid => ([0, 0], [0, 0]),
        PaddingConfig2d::Same => {
            let (t, b) = same_padding(k[0], s[0], h);
            let (l, r) = same_padding(k[1], s[1], w);
            ([t, l], [b, r])
        }
        PaddingConfig2d::Explicit(t, l, b, r) => ([t, l], [b, r]),
    }
}

/// `conv.forward(x)`, through nabla's kernels on `flex`.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    conv2d_activated(conv, x, Activation::Identity)
}

/// `act(conv.forward(x))`, the activation fused into the convolution when
/// nabla's kernels run it and no gradient is taken.
fn conv2d_activated(conv: &Conv2d, x: Tensor<4>, activation: Activation) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let (padding, padding_end) = padding_pairs(&conv.padding, h, w, conv.kernel_size, conv.stride);
    let fused = !x.device().is_autodiff();
    let geometry = ConvGeometry {
        stride: conv.stride,
        padding,
        padding_end,
        groups: conv.groups,
        activation: if fused {
            activation
        } else {
            Activation::Identity
        },
    };
    let shape = conv_shape(x.dims(), conv.weight.dims(), &geometry);
    if !ours(&x) || conv.dilation != [1, 1] || shape.check().is_err() {
        return activate(conv.forward(x), activation);
    }
    let out = match &conv.bias {
        Some(bias) => <Dispatch as KernelOps>::nabla_conv2d_bias(
            x.into_dispatch(),
            conv.weight.val().into_dispatch(),
            bias.val().into_dispatch(),
            geometry,
        ),
        None => <Dispatch as KernelOps>::nabla_conv2d(
            x.into_dispatch(),
            conv.weight.val().into_dispatch(),
            geometry,
        ),
    };
    let y = Tensor::from_dispatch(out);
    if fused {
        y
    } else {
        activate(y, activation)
    }
}

/// `act(norm.forward(x))`, with the activation fused through nabla's kernels
/// in training on `flex`; evaluation (running statistics) stays Burn's.
pub fn batch_norm(norm: &BatchNorm, x: Tensor<4>, activation: Activation) -> Tensor<4> {
    batch_norm_add(norm, x, None, activation)
}

/// `act(norm.forward(x) + residual)`, [`batch_norm`] with an optional
/// residual summed in the same pass.
fn batch_norm_add(
    norm: &BatchNorm,
    x: Tensor<4>,
    residual: Option<Tensor<4>>,
    activation: Activation,
) -> Tensor<4> {
    let training = x.device().is_autodiff() && norm.training.is_enabled();
    if !ours(&x) || !training {
        return activate(add(norm.forward(x), residual), activation);
    }
    let geometry = NormGeometry {
        epsilon: norm.epsilon,
        activation,
    };
    let (x, gamma, beta) = (
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        norm.beta.val().into_dispatch(),
    );
    let (y, stats) = match residual {
        Some(r) => <Dispatch as KernelOps>::nabla_batch_norm_add(
            x,
            gamma,
            beta,
            r.into_dispatch(),
            geometry,
        ),
        None => <Dispatch as KernelOps>::nabla_batch_norm(x, gamma, beta, geometry),
    };
    let y = Tensor::<4>::from_dispatch(y);
    let stats = Tensor::<2>::from_dispatch(stats);
    let channels = stats.dims()[1];
    let mean = stats.clone().slice([0..1, 0..channels]).reshape([channels]);
    let var = stats.slice([1..2, 0..channels]).reshape([channels]);
    // The running statistics as Burn's BatchNorm updates them.
    let device = mean.device();
    let m = norm.momentum;
    let running_mean = norm.running_mean.value_sync().to_device(&device);
    let running_var = norm.running_var.value_sync().to_device(&device);
    norm.running_mean.update(
        running_mean
            .mul_scalar(1.0 - m)
            .add(mean.detach().mul_scalar(m))
            .detach(),
    );
    norm.running_var.update(
        running_var
            .mul_scalar(1.0 - m)
            .add(var.detach().mul_scalar(m))
            .detach(),
    );
    y
}

/// `y + residual`, or `y` when there is none.
fn add(y: Tensor<4>, residual: Option<Tensor<4>>) -> Tensor<4> {
    match residual {
        Some(r) => y + r,
        None => y,
    }
}

fn activate(y: Tensor<4>, activation: Activation) -> Tensor<4> {
    match activation {
        Activation::Identity => y,
        Activation::Relu => burn::tensor::activation::relu(y),
        Activation::Relu6 => burn::tensor::activation::relu6(y),
    }
}

/// `act(norm(conv(x)))`. In training: the convolution, then BatchNorm and
/// the activation fused ([`batch_norm`]). In evaluation on `flex`: the
/// BatchNorm folded into the convolution — weight `W·s` and bias
/// `β + (b − μ)·s` with `s = γ / √(σ² + ε)` from the running statistics —
/// so one convolution and the activation, with no normalising pass.
pub fn conv_bn(conv: &Conv2d, norm: &BatchNorm, x: Tensor<4>, activation: Activation) -> Tensor<4> {
    conv_bn_add(conv, norm, x, None, activation)
}

/// `act(norm(conv(x)) + residual)`: [`conv_bn`] with ResNet's shortcut added
/// before the activation, in BatchNorm's pass in training (in evaluation,
/// after the folded convolution).
pub fn conv_bn_add(
    conv: &Conv2d,
    norm: &BatchNorm,
    x: Tensor<4>,
    residual: Option<Tensor<4>>,
    activation: Activation,
) -> Tensor<4> {
    let training = x.device().is_autodiff() && norm.training.is_enabled();
    if training || !ours(&x) {
        return batch_norm_add(norm, conv2d(conv, x), residual, activation);
    }
    let device = x.device();
    let mean = norm.running_mean.value_sync().to_device(&device);
    let var = norm.running_var.value_sync().to_device(&device);
    let scale = norm.gamma.val().div(var.add_scalar(norm.epsilon).sqrt());
    let channels = scale.dims()[0];
    let weight = conv
        .weight
        .val()
        .mul(scale.clone().reshape([channels, 1, 1, 1]));
    let shift = match &conv.bias {
        Some(b) => b.val().sub(mean),
        None => mean.neg(),
    };
    let mut folded = conv.clone();
    folded.weight = Param::from_tensor(weight);
    folded.bias = Some(Param::from_tensor(norm.beta.val().add(shift.mul(scale))));
    match residual {
        Some(r) => activate(conv2d(&folded, x) + r, activation),
        None => conv2d_activated(&folded, x, activation),
    }
}

/// `pool.forward(x)` (of `relu(x)` when `relu`), through nabla's kernels on `flex`.
pub fn max_pool2d(pool: &MaxPool2d, x: Tensor<4>, relu: bool) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let (padding, padding_end) = padding_pairs(&pool.padding, h, w, pool.kernel_size, pool.stride);
    let geometry = PoolGeometry {
        kernel: pool.kernel_size,
        stride: pool.stride,
        padding,
        relu,
    };
    let fits = padding == padding_end
        && pool.dilation == [1, 1]
        && !pool.ceil_mode
        && pool_shape(x.dims(), &geometry).supported();
    if !ours(&x) || !fits {
        let x = if relu {
            burn::tensor::activation::relu(x)
        } else {
            x
        };
        return pool.forward(x);
    }
    Tensor::from_dispatch(<Dispatch as KernelOps>::nabla_max_pool2d(
        x.into_dispatch(),
        geometry,
    ))
}

/// Whether a tensor goes through nabla's kernels (f32 on `flex`).
pub fn on_kernels<const D: usize>(x: &Tensor<D>) -> bool {
    ours(x)
}

/// One Adam step through nabla's fused kernel, for tensors that are
/// [`on_kernels`]: the parameter and the two moments after it.
pub fn adam<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    [m1, m2]: [Tensor<D>; 2],
    step: AdamStep,
) -> [Tensor<D>; 3] {
    assert!(
        [&param, &grad, &m1, &m2].iter().all(|t| on_kernels(*t)),
        "the fused Adam step needs f32 tensors on flex"
    );
    let (p, m1, m2) = <Dispatch as KernelOps>::nabla_adam(
        param.into_dispatch(),
        grad.into_dispatch(),
        m1.into_dispatch(),
        m2.into_dispatch(),
        step,
    );
    [
        Tensor::from_dispatch(p),
        Tensor::from_dispatch(m1),
        Tensor::from_dispatch(m2),
    ]
}
