//! Hidden-layer activations: forward and backward over whole arrays.

use std::fmt;
use std::str::FromStr;

use ndarray::{Array2, Zip};

/// SELU's constants (Klambauer et al., 2017), as in PyTorch.
const SELU_LAMBDA: f64 = 1.050_700_987_355_480_5;
const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
/// Negative slope of leaky ReLU, as PyTorch's default.
const LEAKY_SLOPE: f64 = 0.01;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// ELU with α = 1, the sheet's choice.
    Elu,
    Relu,
    LeakyRelu,
    Tanh,
    Sigmoid,
    Selu,
}

impl Activation {
    pub const ALL: [Activation; 6] = [
        Activation::Elu,
        Activation::Relu,
        Activation::LeakyRelu,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Selu,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Activation::Elu => "elu",
            Activation::Relu => "relu",
            Activation::LeakyRelu => "leaky-relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Selu => "selu",
        }
    }

    pub fn apply(self, z: f64) -> f64 {
        match self {
            Activation::Elu => {
                if z > 0.0 {
                    z
                } else {
                    z.exp_m1()
                }
            }
            Activation::Relu => z.max(0.0),
            Activation::LeakyRelu => {
                if z > 0.0 {
                    z
                } else {
                    LEAKY_SLOPE * z
                }
            }
            Activation::Tanh => z.tanh(),
            Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
            Activation::Selu => SELU_LAMBDA * if z > 0.0 { z } else { SELU_ALPHA * z.exp_m1() },
        }
    }

    /// da/dz given z and a = act(z).
    pub fn derivative(self, z: f64, a: f64) -> f64 {
        match self {
            Activation::Elu => {
                if z > 0.0 {
                    1.0
                } else {
                    a + 1.0
                }
            }
            Activation::Relu => f64::from(u8::from(z > 0.0)),
            Activation::LeakyRelu => {
                if z > 0.0 {
                    1.0
                } else {
                    LEAKY_SLOPE
                }
            }
            Activation::Tanh => 1.0 - a * a,
            Activation::Sigmoid => a * (1.0 - a),
            Activation::Selu => {
                if z > 0.0 {
                    SELU_LAMBDA
                } else {
                    a + SELU_LAMBDA * SELU_ALPHA
                }
            }
        }
    }

    pub fn forward(self, z: &Array2<f64>) -> Array2<f64> {
        z.mapv(|v| self.apply(v))
    }

    /// dL/dz from dL/da, in place in `da`.
    pub fn backward(self, z: &Array2<f64>, a: &Array2<f64>, da: &mut Array2<f64>) {
        Zip::from(da)
            .and(z)
            .and(a)
            .for_each(|g, &z, &a| *g *= self.derivative(z, a));
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Activation::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown activation `{s}`; expected one of {}",
                    Activation::ALL.map(Activation::name).join(", ")
                )
            })
    }
}
