//! Hidden-layer activations: forward and backward over whole arrays.

use std::fmt;
use std::str::FromStr;

use crate::simd::{dispatch, Kernel, Lanes, Portable};

/// SELU's constants (Klambauer et al., 2017), as in PyTorch.
const SELU_LAMBDA: f64 = 1.050_700_987_355_480_5;
const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
/// Negative slope of leaky ReLU, as PyTorch's default.
const LEAKY_SLOPE: f64 = 0.01;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
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
                    expm1_nonpositive(z)
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
            Activation::Selu => {
                SELU_LAMBDA
                    * if z > 0.0 {
                        z
                    } else {
                        SELU_ALPHA * expm1_nonpositive(z)
                    }
            }
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

    /// a = act(z), elementwise over a batch buffer.
    pub fn forward(self, z: &[f64], a: &mut [f64]) {
        match self {
            // The sheet's case, branch-free so it vectorises: a branch on the
            // sign of z mispredicts half the time on fresh weights.
            Activation::Elu => dispatch(EluForward { z, a }),
            _ => {
                for (a, &z) in a.iter_mut().zip(z) {
                    *a = self.apply(z);
                }
            }
        }
    }

    /// dL/dz from dL/da, in place in `grad`.
    pub fn backward(self, z: &[f64], a: &[f64], grad: &mut [f64]) {
        match self {
            // ELU' is 1 for z > 0 and a + 1 ∈ (0, 1] otherwise: min(a + 1, 1).
            Activation::Elu => dispatch(EluBackward { a, grad }),
            _ => {
                for ((g, &z), &a) in grad.iter_mut().zip(z).zip(a) {
                    *g *= self.derivative(z, a);
                }
            }
        }
    }
}

/// ELU forward over a batch buffer.
struct EluForward<'a> {
    z: &'a [f64],
    a: &'a mut [f64],
}

impl Kernel for EluForward<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Lanes>(self) {
        for (a, &z) in self.a.iter_mut().zip(self.z) {
            *a = z.max(0.0) + expm1_nonpositive_in::<S>(z);
        }
    }
}

/// ELU backward: ELU' is 1 for z > 0 and a + 1 ∈ (0, 1] otherwise: min(a + 1, 1).
struct EluBackward<'a> {
    a: &'a [f64],
    grad: &'a mut [f64],
}

impl Kernel for EluBackward<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Lanes>(self) {
        for (g, &a) in self.grad.iter_mut().zip(self.a) {
            *g *= (a + 1.0).min(1.0);
        }
    }
}

/// expm1(x) for x ≤ 0 (positive x is clamped to 0) within a few ulps, with
/// no branches, so a loop over it vectorises; libm's expm1 is a call per
/// element and was a third of the training time.
#[inline(always)]
pub fn expm1_nonpositive(x: f64) -> f64 {
    expm1_nonpositive_in::<Portable>(x)
}

/// [`expm1_nonpositive`] inside a kernel for lanes `S` (fused
/// multiply-adds where `S` has them).
#[inline(always)]
pub(crate) fn expm1_nonpositive_in<S: Lanes>(x: f64) -> f64 {
    // Below −700 the result is −1 to the last bit, and 2^k stays normal.
    let (k, em1_r) = reduce::<S>(x.clamp(-700.0, 0.0));
    let two_k = pow2(k);
    // Exact in the k = 0 case that needs relative accuracy near 0.
    S::fma(two_k, em1_r, two_k - 1.0)
}

/// exp(x) for x ≤ 0 (positive x is clamped to 0) within a few ulps, down
/// to the subnormal results and 0 below −745, with no branches.
#[inline(always)]
pub fn exp_nonpositive(x: f64) -> f64 {
    exp_nonpositive_in::<Portable>(x)
}

/// [`exp_nonpositive`] inside a kernel for lanes `S`.
#[inline(always)]
fn exp_nonpositive_in<S: Lanes>(x: f64) -> f64 {
    // exp(−746) rounds to 0; −746 − ln 2 / 2 keeps 2^(k/2) normal.
    let (k, em1_r) = reduce::<S>(x.clamp(-746.0, 0.0));
    // 2^k in two normal halves: the last multiplication rounds a
    // subnormal result once.
    let k1 = (k * 0.5).floor();
    let two_k1 = pow2(k1);
    S::fma(two_k1, em1_r, two_k1) * pow2(k - k1)
}

/// 2^k for an integer-valued k in [−1022, 1023], built from its bits.
#[inline(always)]
fn pow2(k: f64) -> f64 {
    // 2^52: adding it puts a small integer in the low mantissa bits.
    const BIAS: f64 = 4_503_599_627_370_496.0;
    f64::from_bits((k + 1023.0 + BIAS).to_bits() << 52)
}

/// (k, expm1(r)) with x = k·ln2 + r and |r| ≤ ln2/2, for −746 ≤ x ≤ 0:
/// expm1(r) = r · q(r), q a polynomial of degree 10 fitted to expm1(r)/r
/// (`tools/expm1_coefficients.py`; error 1.8e-17, where the Taylor series
/// needs degree 12 for as little: two multiply-adds fewer per value, and
/// ELU's expm1 is a third of Problem 2's epoch).
#[inline(always)]
fn reduce<S: Lanes>(x: f64) -> (f64, f64) {
    // ln 2 split as fdlibm does: LN2_HI has trailing zero bits, so k · LN2_HI is exact.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    // 1.5 · 2^52: adding and subtracting it rounds to the nearest integer.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    let k = S::fma(x, std::f64::consts::LOG2_E, ROUND) - ROUND;
    let r = S::fma(-k, LN2_LO, S::fma(-k, LN2_HI, x));
    const C: [f64; 11] = [
        1.0,
        0.500_000_000_000_000_6,
        0.166_666_666_666_666_7,
        0.041_666_666_666_573_14,
        0.008_333_333_333_326_141,
        0.001_388_888_893_248_859_9,
        0.000_198_412_698_748_004_93,
        2.480_150_434_699_768_6e-5,
        2.755_725_542_574_643_5e-6,
        2.762_635_724_144_722_3e-7,
        2.510_520_637_395_701e-8,
    ];
    // By Estrin's scheme: independent pairs first, so the multiplications
    // overlap instead of chaining.
    let r2 = r * r;
    let r4 = r2 * r2;
    let r8 = r4 * r4;
    let pair = |i: usize| S::fma(C[i + 1], r, C[i]);
    let low = S::fma(
        S::fma(pair(6), r2, pair(4)),
        r4,
        S::fma(pair(2), r2, pair(0)),
    );
    let high = S::fma(C[10], r2, pair(8));
    (k, r * S::fma(high, r8, low))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::tests::on;
    use nabla_kernels::isa::Isa;

    /// The sheet's activation over a buffer whose length is no multiple of
    /// any vector width, on every instruction set this CPU has, against
    /// libm: ELU(z) = z or expm1(z), ELU'(z) = 1 or exp(z).
    #[test]
    fn elu_over_a_buffer_against_libm_on_every_instruction_set() {
        let z: Vec<f64> = (0..203).map(|i| (i as f64 * 0.731).sin() * 8.0).collect();
        for isa in Isa::available() {
            let (a, grad) = on(isa, || {
                let mut a = vec![0.0; z.len()];
                Activation::Elu.forward(&z, &mut a);
                let mut grad = vec![1.5; z.len()];
                Activation::Elu.backward(&z, &a, &mut grad);
                (a, grad)
            });
            for ((&z, &a), &g) in z.iter().zip(&a).zip(&grad) {
                let (want_a, want_g) = if z > 0.0 {
                    (z, 1.5)
                } else {
                    (z.exp_m1(), 1.5 * z.exp())
                };
                assert!(
                    (a - want_a).abs() <= 2.0 * f64::EPSILON * want_a.abs(),
                    "{}: elu({z}) = {a}, libm {want_a}",
                    isa.name()
                );
                // a + 1 carries a's absolute error, not a relative one.
                assert!(
                    (g - want_g).abs() <= 4.0 * f64::EPSILON,
                    "{}: elu'({z}) · 1.5 = {g}, libm {want_g}",
                    isa.name()
                );
            }
        }
    }

    /// A diverging run's NaN must reach the loss.
    #[test]
    fn elu_keeps_nan_on_every_instruction_set() {
        let mut z = vec![-0.5; 11];
        z[3] = f64::NAN;
        z[10] = f64::NAN;
        for isa in Isa::available() {
            let a = on(isa, || {
                let mut a = vec![0.0; z.len()];
                Activation::Elu.forward(&z, &mut a);
                a
            });
            for (i, (&a, &z)) in a.iter().zip(&z).enumerate() {
                assert_eq!(
                    a.is_nan(),
                    z.is_nan(),
                    "{}: elu(z[{i}] = {z}) = {a}",
                    isa.name()
                );
            }
        }
    }

    #[test]
    fn fast_expm1_is_within_two_ulps_of_libm() {
        let mut worst: f64 = 0.0;
        for i in 0..200_000 {
            // Dense near 0, then out to the clamp.
            let x = -((i as f64) * 1e-4).powi(2);
            let (got, want) = (expm1_nonpositive(x), x.exp_m1());
            if want != 0.0 {
                worst = worst.max(((got - want) / want).abs());
            }
        }
        for x in [
            -1e-300f64, -1e-30, -1e-16, -0.5, -0.3465, -0.3466, -1.0, -36.0, -40.0, -700.0, -1e6,
        ] {
            let want = x.exp_m1();
            worst = worst.max(((expm1_nonpositive(x) - want) / want).abs());
        }
        assert!(worst < 2.0 * f64::EPSILON, "worst relative error {worst:e}");
        assert_eq!(expm1_nonpositive(0.0), 0.0);
    }

    #[test]
    fn fast_exp_is_within_two_ulps_of_libm_down_to_subnormals() {
        let mut worst: f64 = 0.0;
        for i in 0..200_000 {
            let x = -((i as f64) * 1.36e-4).powi(2);
            let (got, want) = (exp_nonpositive(x), x.exp());
            if want > f64::MIN_POSITIVE {
                worst = worst.max(((got - want) / want).abs());
            } else {
                // Subnormal: within one unit of the last place of 2^-1074.
                assert!(
                    (got - want).abs() <= 5e-324,
                    "exp({x}) = {got}, libm {want}"
                );
            }
        }
        assert!(worst < 2.0 * f64::EPSILON, "worst relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        for x in [-746.0, -800.0, -1e300, f64::NEG_INFINITY] {
            assert_eq!(exp_nonpositive(x), 0.0, "exp({x})");
        }
        assert_eq!(exp_nonpositive(-745.0), (-745.0f64).exp());
    }
}
