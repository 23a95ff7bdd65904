//! SGD, classical momentum and Nesterov momentum, as the sheet states them.

use std::fmt;
use std::str::FromStr;

use crate::network::{Grads, Mlp};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    velocity: Grads,
    /// Nesterov's look-ahead parameters, kept to avoid an allocation per step.
    ahead: Option<Mlp>,
}

impl OptimizerState {
    pub fn new(kind: Optimizer, lr: f64, momentum: f64, net: &Mlp) -> Self {
        Self {
            kind,
            lr,
            momentum,
            velocity: Grads::zeros_like(net),
            ahead: None,
        }
    }

    fn fill_look_ahead(&self, net: &Mlp, ahead: &mut Mlp) {
        for ((a, w), v) in ahead
            .weights
            .iter_mut()
            .zip(&net.weights)
            .zip(&self.velocity.weights)
        {
            a.assign(w);
            a.scaled_add(self.momentum, v);
        }
        for ((a, b), v) in ahead
            .biases
            .iter_mut()
            .zip(&net.biases)
            .zip(&self.velocity.biases)
        {
            a.assign(b);
            a.scaled_add(self.momentum, v);
        }
    }

    /// w + ρ v: where Nesterov evaluates the gradient. PyTorch's
    /// `SGD(nesterov=True)` keeps exactly these parameters.
    pub fn look_ahead(&self, net: &Mlp) -> Mlp {
        let mut ahead = net.clone();
        self.fill_look_ahead(net, &mut ahead);
        ahead
    }

    /// One update. `gradient(at, grads)` writes the gradient at the point
    /// the rule needs into `grads`, a buffer with the network's shapes.
    pub fn step(
        &mut self,
        net: &mut Mlp,
        grads: &mut Grads,
        mut gradient: impl FnMut(&Mlp, &mut Grads),
    ) {
        let (lr, rho) = (self.lr, self.momentum);
        if self.kind == Optimizer::Nesterov {
            let mut ahead = self.ahead.take().unwrap_or_else(|| net.clone());
            self.fill_look_ahead(net, &mut ahead);
            gradient(&ahead, grads);
            self.ahead = Some(ahead);
        } else {
            gradient(net, grads);
        }
        if self.kind == Optimizer::Sgd {
            for (w, g) in net.weights.iter_mut().zip(&grads.weights) {
                w.scaled_add(-lr, g);
            }
            for (b, g) in net.biases.iter_mut().zip(&grads.biases) {
                b.scaled_add(-lr, g);
            }
            return;
        }
        let velocity = &mut self.velocity;
        for ((w, v), g) in net
            .weights
            .iter_mut()
            .zip(&mut velocity.weights)
            .zip(&grads.weights)
        {
            *v *= rho;
            v.scaled_add(-lr, g);
            *w += &*v;
        }
        for ((b, v), g) in net
            .biases
            .iter_mut()
            .zip(&mut velocity.biases)
            .zip(&grads.biases)
        {
            *v *= rho;
            v.scaled_add(-lr, g);
            *b += &*v;
        }
    }
}
