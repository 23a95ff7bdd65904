//! SGD, classical momentum and Nesterov momentum, as the sheet states them.

use std::fmt;
use std::str::FromStr;

use ndarray::{Array1, Array2};

use crate::network::{Grads, Mlp};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Optimizer {
    /// w ← w − α g
    Sgd,
    /// v ← ρ v − α g; w ← w + v
    Momentum,
    /// g at the look-ahead point w + ρ v; then v ← ρ v − α g; w ← w + v
    Nesterov,
}

impl Optimizer {
    pub const ALL: [Optimizer; 3] = [Optimizer::Sgd, Optimizer::Momentum, Optimizer::Nesterov];

    pub fn name(self) -> &'static str {
        match self {
            Optimizer::Sgd => "sgd",
            Optimizer::Momentum => "momentum",
            Optimizer::Nesterov => "nesterov",
        }
    }
}

impl fmt::Display for Optimizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Optimizer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Optimizer::ALL
            .into_iter()
            .find(|o| o.name() == s)
            .ok_or_else(|| format!("unknown optimizer `{s}`; expected sgd, momentum or nesterov"))
    }
}

/// An optimizer with its velocities (one per weight matrix and bias vector).
#[derive(Clone, Debug)]
pub struct OptimizerState {
    pub kind: Optimizer,
    pub lr: f64,
    pub momentum: f64,
    velocity_w: Vec<Array2<f64>>,
    velocity_b: Vec<Array1<f64>>,
}

impl OptimizerState {
    pub fn new(kind: Optimizer, lr: f64, momentum: f64, net: &Mlp) -> Self {
        Self {
            kind,
            lr,
            momentum,
            velocity_w: net
                .weights
                .iter()
                .map(|w| Array2::zeros(w.raw_dim()))
                .collect(),
            velocity_b: net
                .biases
                .iter()
                .map(|b| Array1::zeros(b.raw_dim()))
                .collect(),
        }
    }

    /// w + ρ v: where Nesterov evaluates the gradient. PyTorch's
    /// `SGD(nesterov=True)` keeps exactly these parameters.
    pub fn look_ahead(&self, net: &Mlp) -> Mlp {
        let mut ahead = net.clone();
        for (w, v) in ahead.weights.iter_mut().zip(&self.velocity_w) {
            w.scaled_add(self.momentum, v);
        }
        for (b, v) in ahead.biases.iter_mut().zip(&self.velocity_b) {
            b.scaled_add(self.momentum, v);
        }
        ahead
    }

    /// One update. `gradient` is asked once, at the point the rule needs.
    pub fn step(&mut self, net: &mut Mlp, mut gradient: impl FnMut(&Mlp) -> Grads) {
        let (lr, rho) = (self.lr, self.momentum);
        let g = match self.kind {
            Optimizer::Nesterov => gradient(&self.look_ahead(net)),
            Optimizer::Sgd | Optimizer::Momentum => gradient(net),
        };
        if self.kind == Optimizer::Sgd {
            for (w, gw) in net.weights.iter_mut().zip(&g.weights) {
                w.scaled_add(-lr, gw);
            }
            for (b, gb) in net.biases.iter_mut().zip(&g.biases) {
                b.scaled_add(-lr, gb);
            }
            return;
        }
        for ((w, v), gw) in net
            .weights
            .iter_mut()
            .zip(&mut self.velocity_w)
            .zip(&g.weights)
        {
            *v *= rho;
            v.scaled_add(-lr, gw);
            *w += &*v;
        }
        for ((b, v), gb) in net
            .biases
            .iter_mut()
            .zip(&mut self.velocity_b)
            .zip(&g.biases)
        {
            *v *= rho;
            v.scaled_add(-lr, gb);
            *b += &*v;
        }
    }
}
