//! Hidden-layer activations: forward and backward over whole arrays.

use std::fmt;
use std::str::FromStr;

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
            Activation::Elu => {
                for (a, &z) in a.iter_mut().zip(z) {
                    *a = z.max(0.0) + expm1_nonpositive(z);
                }
            }
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
            Activation::Elu => {
                for (g, &a) in grad.iter_mut().zip(a) {
                    *g *= (a + 1.0).min(1.0);
                }
            }
            _ => {
                for ((g, &z), &a) in grad.iter_mut().zip(z).zip(a) {
                    *g *= self.derivative(z, a);
                }
            }
        }
    }
}

/// expm1(x) for x ≤ 0 (positive x is clamped to 0) within a few ulps, with
/// no branches, so a loop over it vectorises; libm's expm1 is a call per
/// element and was a third of the training time.
#[inline(always)]
pub fn expm1_nonpositive(x: f64) -> f64 {
    // Below −700 the result is −1 to the last bit, and 2^k stays normal.
    let (k, em1_r) = reduce(x.clamp(-700.0, 0.0));
    let two_k = pow2(k);
    // Exact in the k = 0 case that needs relative accuracy near 0.
    fma(two_k, em1_r, two_k - 1.0)
}

/// exp(x) for x ≤ 0 (positive x is clamped to 0) within a few ulps, down
/// to the subnormal results and 0 below −745, with no branches.
#[inline(always)]
pub fn exp_nonpositive(x: f64) -> f64 {
    // exp(−746) rounds to 0; −746 − ln 2 / 2 keeps 2^(k/2) normal.
    let (k, em1_r) = reduce(x.clamp(-746.0, 0.0));
    // 2^k in two normal halves: the last multiplication rounds a
    // subnormal result once.
    let k1 = (k * 0.5).floor();
    let two_k1 = pow2(k1);
    fma(two_k1, em1_r, two_k1) * pow2(k - k1)
}

/// 2^k for an integer-valued k in [−1022, 1023], built from its bits.
#[inline(always)]
fn pow2(k: f64) -> f64 {
    // 2^52: adding it puts a small integer in the low mantissa bits.
    const BIAS: f64 = 4_503_599_627_370_496.0;
    f64::from_bits((k + 1023.0 + BIAS).to_bits() << 52)
}

/// (k, expm1(r)) with x = k·ln2 + r and |r| ≤ ln2/2, for −746 ≤ x ≤ 0:
/// expm1(r) by its Taylor series to r¹³/13! (remainder < 1e-17 relative).
#[inline(always)]
fn reduce(x: f64) -> (f64, f64) {
    // ln 2 split as fdlibm does: LN2_HI has trailing zero bits, so k · LN2_HI is exact.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    // 1.5 · 2^52: adding and subtracting it rounds to the nearest integer.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    let k = fma(x, std::f64::consts::LOG2_E, ROUND) - ROUND;
    let r = fma(-k, LN2_LO, fma(-k, LN2_HI, x));
    // q(r) = Σ_{i=0}^{12} r^i / (i+1)!, by Estrin's scheme: independent
    // pairs first, so the multiplications overlap instead of chaining.
    const C: [f64; 13] = [
        1.0,
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5_040.0,
        1.0 / 40_320.0,
        1.0 / 362_880.0,
        1.0 / 3_628_800.0,
        1.0 / 39_916_800.0,
        1.0 / 479_001_600.0,
        1.0 / 6_227_020_800.0,
    ];
    let r2 = r * r;
    let r4 = r2 * r2;
    let r8 = r4 * r4;
    let pair = |i: usize| fma(C[i + 1], r, C[i]);
    let low = fma(fma(pair(6), r2, pair(4)), r4, fma(pair(2), r2, pair(0)));
    let high = fma(C[12], r4, fma(pair(10), r2, pair(8)));
    (k, r * fma(high, r8, low))
}

/// a · b + c, fused into one instruction (and one rounding) where the CPU
/// has FMA; elsewhere a multiply and an add, since a software fma would be
/// far slower.
#[inline(always)]
fn fma(a: f64, b: f64, c: f64) -> f64 {
    if cfg!(target_feature = "fma") {
        a.mul_add(b, c)
    } else {
        a * b + c
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

#[cfg(test)]
mod tests {
    use super::*;

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
