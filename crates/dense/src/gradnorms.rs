//! The sheet's (ii): per-layer gradient norms of a deep net at one sample,
//! and a description of what they show, computed from the numbers.

use ndarray::Array2;

use crate::activation::Activation;
use crate::network::{Init, Mlp};

/// δ_l = ‖∇_{W_l} ℓ(f(x), y)‖_F for l = 1 … L+1, with y one-hot at `target`.
pub fn gradient_norms(net: &Mlp, input: &[f64], target: usize) -> Vec<f64> {
    let x = Array2::from_shape_vec((input.len(), 1), input.to_vec()).expect("a column");
    let (_, grads) = net.loss_and_grads(&x, &[target]);
    grads
        .weights
        .iter()
        .map(|g| g.iter().map(|v| v * v).sum::<f64>().sqrt())
        .collect()
}

/// One curve of the gradient-norm plot.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct NormCurve {
    pub activation: Activation,
    pub init: Init,
    pub norms: Vec<f64>,
}

/// Sentences about one curve, from its numbers: how δ changes from the
/// output layer back to the first, on average per layer, and where it
/// changes most.
pub fn describe(curve: &NormCurve) -> String {
    let norms = &curve.norms;
    let label = format!("{}/{}", curve.activation, curve.init);
    let layers = norms.len();
    let (first, last) = (norms[0], norms[layers - 1]);
    if first == 0.0 || last == 0.0 || !first.is_finite() || !last.is_finite() {
        let zeros = norms.iter().filter(|&&v| v == 0.0).count();
        return format!(
            "{label}: {zeros} of {layers} layers get an exactly zero (or non-finite) gradient: nothing reaches them."
        );
    }
    let ratio = first / last;
    let per_layer = ratio.powf(1.0 / (layers - 1) as f64);
    let trend = if per_layer < 0.9 {
        format!(
            "shrinks by {:.2}× per layer on the way back: δ_1 is {:.1e} times δ_{layers} — vanishing gradients, the first layers barely learn",
            1.0 / per_layer,
            ratio
        )
    } else if per_layer > 1.1 {
        format!(
            "grows by {per_layer:.2}× per layer on the way back: δ_1 is {ratio:.1e} times δ_{layers} — exploding gradients"
        )
    } else {
        format!(
            "stays within a factor {:.2} per layer (δ_1 / δ_{layers} = {ratio:.2}): the gradient reaches the first layer intact",
            per_layer.max(1.0 / per_layer)
        )
    };
    let (jump_at, jump) = norms
        .windows(2)
        .enumerate()
        .map(|(i, w)| (i + 1, (w[1] / w[0]).ln().abs()))
        .fold(
            (0, 0.0),
            |best, cur| if cur.1 > best.1 { cur } else { best },
        );
    format!(
        "{label}: δ {trend}. The largest step is between layers {jump_at} and {} (factor {:.2}).",
        jump_at + 1,
        jump.exp()
    )
}

/// The sheet's (ii) setting: the net's shape, the sample and the seed.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct NormSetup {
    pub layers: usize,
    pub width: usize,
    pub classes: usize,
    pub input: Vec<f64>,
    pub target: usize,
    pub seed: u32,
}

impl NormSetup {
    /// Builds the net with `activation` and `init` and measures its gradient norms.
    pub fn curve(&self, activation: Activation, init: Init) -> NormCurve {
        let dims = Mlp::dims(self.input.len(), self.layers, self.width, self.classes);
        let net = Mlp::initialize(&dims, init, activation, self.seed);
        NormCurve {
            activation,
            init,
            norms: gradient_norms(&net, &self.input, self.target),
        }
    }
}
