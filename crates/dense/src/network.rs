//! The sheet's dense network: L hidden layers with an activation, then a
//! softmax output, trained on the mean cross-entropy.

use std::fmt;
use std::str::FromStr;

use ndarray::{Array1, Array2};

use crate::activation::Activation;
use crate::layers::{
    accuracy, cross_entropy, linear_backward, linear_forward, softmax_cross_entropy_backward,
    softmax_forward, LANES,
};
use crate::rng::NumpyRandom;

/// How weights are drawn; biases always start at zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// randn · √(2 / fan_in), the sheet's `initialize_weights`.
    He,
    /// randn · √(2 / (fan_in + fan_out)) (Glorot normal).
    Xavier,
    /// randn · 0.01, the "small random numbers" of older courses.
    Normal,
}

impl Init {
    pub const ALL: [Init; 3] = [Init::He, Init::Xavier, Init::Normal];

    pub fn name(self) -> &'static str {
        match self {
            Init::He => "he",
            Init::Xavier => "xavier",
            Init::Normal => "normal",
        }
    }

    fn scale(self, fan_in: usize, fan_out: usize) -> f64 {
        match self {
            Init::He => (2.0 / fan_in as f64).sqrt(),
            Init::Xavier => (2.0 / (fan_in + fan_out) as f64).sqrt(),
            Init::Normal => 0.01,
        }
    }
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Init {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Init::ALL
            .into_iter()
            .find(|i| i.name() == s)
            .ok_or_else(|| format!("unknown init `{s}`; expected one of he, xavier, normal"))
    }
}

/// Weights W_1 … W_{L+1} (fan_out × fan_in) and biases.
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    pub weights: Vec<Array2<f64>>,
    pub biases: Vec<Array1<f64>>,
    pub activation: Activation,
}

/// Gradients with the network's shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct Grads {
    pub weights: Vec<Array2<f64>>,
    pub biases: Vec<Array1<f64>>,
}

impl Grads {
    pub fn zeros_like(net: &Mlp) -> Self {
        Self {
            weights: net
                .weights
                .iter()
                .map(|w| Array2::zeros(w.raw_dim()))
                .collect(),
            biases: net
                .biases
                .iter()
                .map(|b| Array1::zeros(b.raw_dim()))
                .collect(),
        }
    }
}

fn slice(a: &Array2<f64>) -> &[f64] {
    a.as_slice().expect("parameters are in standard layout")
}

/// Buffers for one batch, reused across updates so training allocates
/// nothing per step. Feature-major, padded to whole tiles (see [`crate::layers`]).
#[derive(Clone, Debug, Default)]
pub struct Workspace {
    labels: Vec<usize>,
    /// Columns per buffer: the batch size rounded up to whole tiles.
    padded: usize,
    /// acts[0] is the input batch; acts[l] the output of hidden layer l.
    acts: Vec<Vec<f64>>,
    /// Pre-activations of the hidden layers, then the logits.
    zs: Vec<Vec<f64>>,
    probs: Vec<f64>,
    delta: Vec<f64>,
    delta_prev: Vec<f64>,
}

impl Workspace {
    /// Loads columns `cols` of `x` (features × samples) and their labels as the batch.
    pub fn load(&mut self, net: &Mlp, x: &Array2<f64>, labels: &[usize], cols: &[usize]) {
        let n = cols.len().div_ceil(LANES).max(1) * LANES;
        self.padded = n;
        let layers = net.weights.len();
        self.acts.resize_with(layers, Vec::new);
        self.zs.resize_with(layers, Vec::new);
        for (l, w) in net.weights.iter().enumerate() {
            self.acts[l].resize(n * w.ncols(), 0.0);
            self.zs[l].resize(n * w.nrows(), 0.0);
        }
        let widest = net
            .weights
            .iter()
            .map(|w| w.nrows().max(w.ncols()))
            .max()
            .unwrap_or(0);
        self.probs.resize(n * net.weights[layers - 1].nrows(), 0.0);
        self.delta.resize(n * widest, 0.0);
        self.delta_prev.resize(n * widest, 0.0);
        for (row, feature) in self.acts[0].chunks_exact_mut(n).zip(x.rows()) {
            let (used, padding) = row.split_at_mut(cols.len());
            for (v, &c) in used.iter_mut().zip(cols) {
                *v = feature[c];
            }
            padding.fill(0.0);
        }
        self.labels.clear();
        self.labels.extend(cols.iter().map(|&c| labels[c]));
    }

    /// Forward pass over the loaded batch; returns the mean cross-entropy.
    pub fn forward(&mut self, net: &Mlp) -> f64 {
        self.propagate(net);
        self.loss()
    }

    /// Forward pass over the loaded batch up to the softmax, all that
    /// [`Workspace::backward`] needs: training skips the loss's logarithms.
    pub fn propagate(&mut self, net: &Mlp) {
        let layers = net.weights.len();
        for l in 0..layers {
            let b = net.biases[l].as_slice().expect("standard layout");
            let (before, after) = self.acts.split_at_mut(l + 1);
            let (w, z) = (slice(&net.weights[l]), &mut self.zs[l]);
            linear_forward(w, b, &before[l], z);
            if l + 1 < layers {
                net.activation.forward(&self.zs[l], &mut after[0]);
            }
        }
        softmax_forward(&self.zs[layers - 1], &mut self.probs, self.padded);
    }

    /// Mean cross-entropy of the last forward pass.
    pub fn loss(&self) -> f64 {
        cross_entropy(self.zs.last().expect("a forward pass"), &self.labels)
    }

    /// Backward pass after [`Workspace::propagate`]; writes every gradient into `grads`.
    pub fn backward(&mut self, net: &Mlp, grads: &mut Grads) {
        let layers = net.weights.len();
        let n = self.padded;
        let k = net.weights[layers - 1].nrows();
        softmax_cross_entropy_backward(&self.probs, &self.labels, &mut self.delta[..n * k]);
        for l in (0..layers).rev() {
            let (m, fan_in) = net.weights[l].dim();
            let dx = (l > 0).then(|| &mut self.delta_prev[..n * fan_in]);
            linear_backward(
                &self.acts[l],
                slice(&net.weights[l]),
                &self.delta[..n * m],
                grads.weights[l].as_slice_mut().expect("standard layout"),
                grads.biases[l].as_slice_mut().expect("standard layout"),
                dx,
            );
            if l > 0 {
                let dz = &mut self.delta_prev[..n * fan_in];
                net.activation.backward(&self.zs[l - 1], &self.acts[l], dz);
                std::mem::swap(&mut self.delta, &mut self.delta_prev);
            }
        }
    }

    /// Softmax output of the last forward pass, classes × samples.
    pub fn probabilities(&self) -> Array2<f64> {
        let k = self.probs.len() / self.padded;
        Array2::from_shape_fn((k, self.labels.len()), |(i, j)| {
            self.probs[i * self.padded + j]
        })
    }

    /// Accuracy of the last forward pass.
    pub fn accuracy(&self) -> f64 {
        accuracy(&self.probs, &self.labels)
    }
}

impl Mlp {
    /// The sheet's `initialize_weights(layer_dims)`: one numpy generator
    /// seeded `seed`; W1 drawn, b1 zeros, W2 drawn, and so on.
    pub fn initialize(layer_dims: &[usize], init: Init, activation: Activation, seed: u32) -> Self {
        let mut rng = NumpyRandom::new(seed);
        let mut weights = Vec::new();
        let mut biases = Vec::new();
        for pair in layer_dims.windows(2) {
            let (fan_in, fan_out) = (pair[0], pair[1]);
            let scale = init.scale(fan_in, fan_out);
            let draws = rng.randn_vec(fan_out * fan_in);
            let w = Array2::from_shape_vec((fan_out, fan_in), draws)
                .expect("draws fill the shape")
                .mapv(|v| v * scale);
            weights.push(w);
            biases.push(Array1::zeros(fan_out));
        }
        Self {
            weights,
            biases,
            activation,
        }
    }

    /// `[d_in, width × layers, classes]`.
    pub fn dims(input: usize, layers: usize, width: usize, classes: usize) -> Vec<usize> {
        std::iter::once(input)
            .chain(std::iter::repeat_n(width, layers))
            .chain(std::iter::once(classes))
            .collect()
    }

    fn workspace(&self, x: &Array2<f64>, labels: &[usize]) -> Workspace {
        let mut ws = Workspace::default();
        let cols: Vec<usize> = (0..x.ncols()).collect();
        ws.load(self, x, labels, &cols);
        ws
    }

    /// Softmax output (classes × samples) for inputs `x` (features × samples).
    pub fn forward(&self, x: &Array2<f64>) -> Array2<f64> {
        let mut ws = self.workspace(x, &vec![0; x.ncols()]);
        ws.forward(self);
        ws.probabilities()
    }

    /// Mean cross-entropy and its gradient with respect to every parameter.
    pub fn loss_and_grads(&self, x: &Array2<f64>, labels: &[usize]) -> (f64, Grads) {
        let mut ws = self.workspace(x, labels);
        let loss = ws.forward(self);
        let mut grads = Grads::zeros_like(self);
        ws.backward(self, &mut grads);
        (loss, grads)
    }

    /// Mean cross-entropy and accuracy on a data set.
    pub fn evaluate(&self, x: &Array2<f64>, labels: &[usize]) -> (f64, f64) {
        let mut ws = self.workspace(x, labels);
        let loss = ws.forward(self);
        (loss, ws.accuracy())
    }

    /// ‖W‖₂ over all layers' weights (biases excluded), as the sheet's (iii) plots.
    pub fn weight_norm(&self) -> f64 {
        self.weights
            .iter()
            .map(|w| w.iter().map(|v| v * v).sum::<f64>())
            .sum::<f64>()
            .sqrt()
    }
}
