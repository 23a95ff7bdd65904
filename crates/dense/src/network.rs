//! The sheet's dense network: L hidden layers with an activation, then a
//! softmax output, trained on the mean cross-entropy.

use std::fmt;
use std::str::FromStr;

use ndarray::{Array1, Array2};

use crate::activation::Activation;
use crate::layers::{
    accuracy, cross_entropy, linear_backward, linear_forward, softmax_cross_entropy_backward,
    softmax_forward,
};
use crate::rng::NumpyRandom;

/// How weights are drawn; biases always start at zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
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

/// What the forward pass keeps for the backward pass.
#[derive(Clone, Debug)]
pub struct Forward {
    /// a_0 = x, a_1, …, a_L (inputs to each linear layer).
    pub inputs: Vec<Array2<f64>>,
    /// z_1, …, z_L (pre-activations of the hidden layers).
    pub hidden_z: Vec<Array2<f64>>,
    /// softmax output, classes × samples.
    pub probs: Array2<f64>,
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

    pub fn forward(&self, x: &Array2<f64>) -> Forward {
        let last = self.weights.len() - 1;
        let mut inputs = vec![x.clone()];
        let mut hidden_z = Vec::with_capacity(last);
        for l in 0..last {
            let z = linear_forward(&self.weights[l], &self.biases[l], &inputs[l]);
            inputs.push(self.activation.forward(&z));
            hidden_z.push(z);
        }
        let logits = linear_forward(&self.weights[last], &self.biases[last], &inputs[last]);
        Forward {
            inputs,
            hidden_z,
            probs: softmax_forward(&logits),
        }
    }

    /// Mean cross-entropy and its gradient with respect to every parameter.
    pub fn loss_and_grads(&self, x: &Array2<f64>, labels: &[usize]) -> (f64, Grads) {
        let fwd = self.forward(x);
        let loss = cross_entropy(&fwd.probs, labels);
        let mut dz = softmax_cross_entropy_backward(&fwd.probs, labels);
        let layers = self.weights.len();
        let mut weights = Vec::with_capacity(layers);
        let mut biases = Vec::with_capacity(layers);
        for l in (0..layers).rev() {
            let (dw, db, mut da) = linear_backward(&self.weights[l], &fwd.inputs[l], &dz);
            weights.push(dw);
            biases.push(db);
            if l > 0 {
                self.activation
                    .backward(&fwd.hidden_z[l - 1], &fwd.inputs[l], &mut da);
                dz = da;
            }
        }
        weights.reverse();
        biases.reverse();
        (loss, Grads { weights, biases })
    }

    /// Mean cross-entropy and accuracy on a data set.
    pub fn evaluate(&self, x: &Array2<f64>, labels: &[usize]) -> (f64, f64) {
        let p = self.forward(x).probs;
        (cross_entropy(&p, labels), accuracy(&p, labels))
    }

    /// ‖W‖₂ over all layers' weights (biases excluded), as the sheet's (iii) plots.
    pub fn weight_norm(&self) -> f64 {
        self.weights
            .iter()
            .map(|w| w.iter().map(|v| v * v).sum::<f64>())
            .sum::<f64>()
            .sqrt()
    }

    pub fn parameter_count(&self) -> usize {
        self.weights.iter().map(Array2::len).sum::<usize>()
            + self.biases.iter().map(Array1::len).sum::<usize>()
    }
}
