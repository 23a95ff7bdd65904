//! Adam with nabla's fused update on the `flex` device: Burn's `Adam`
//! (same hyperparameters, same state, so checkpoints and resumed runs are
//! unchanged) whose step runs as one pass per parameter
//! ([`nabla_kernels::optim::adam_step`]) instead of a dozen tensor
//! operations. Elsewhere it is Burn's step.

use crate::flex_kernels;
use burn::optim::{
    Adam, AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer,
};
use burn::tensor::{Device, Tensor};
use nabla_kernels::optim::AdamStep;

/// Burn's Adam (no weight decay, no AMSGrad) with the fused step.
#[derive(Clone)]
pub struct FusedAdam {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    burn: Adam,
}

impl Default for FusedAdam {
    /// Burn's defaults: β₁ 0.9, β₂ 0.999, ε 1e-5.
    fn default() -> Self {
        Self::new(0.9, 0.999, 1e-5)
    }
}

impl FusedAdam {
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32) -> Self {
        let burn = AdamConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .build();
        FusedAdam {
            beta_1,
            beta_2,
            epsilon,
            burn,
        }
    }

    /// As a whole-module optimizer (what `AdamConfig::init` gives for Burn's).
    pub fn init(self) -> ModuleOptimizer {
        ModuleOptimizer::from(self)
    }
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if !flex_kernels::on_kernels(&tensor) {
            return self.burn.step(lr, tensor, grad, state);
        }
        let (time, moments) = match state {
            Some(s) => (
                s.momentum.time + 1,
                [s.momentum.moment_1, s.momentum.moment_2],
            ),
            None => (1, [tensor.zeros_like(), tensor.zeros_like()]),
        };
        let step = AdamStep {
            lr: lr as f32,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            time: time as i32,
        };
        let [p, m1, m2] = flex_kernels::adam(tensor, grad, moments, step);
        let momentum = AdaptiveMomentumState::new(time, m1, m2);
        (p, Some(AdamState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        Adam::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    /// Three steps of the fused Adam and of Burn's on the same values: the
    /// same bits, parameter and moments (the kernel follows Burn's order of
    /// operations).
    #[test]
    fn fused_steps_are_burns_steps() {
        let device = Device::flex();
        let n = 70_001;
        let values = |seed: usize| -> Tensor<1> {
            let v: Vec<f32> = (0..n)
                .map(|i| ((i * 31 + seed * 17) % 97) as f32 / 97.0 - 0.45)
                .collect();
            Tensor::from_data(TensorData::new(v, [n]), &device)
        };
        assert!(
            flex_kernels::on_kernels(&values(0)),
            "the fused kernel would not run"
        );
        let fused = FusedAdam::default();
        let burn = AdamConfig::new().build();
        let (mut p1, mut p2) = (values(0), values(0));
        let (mut s1, mut s2) = (None, None);
        for t in 1..=3 {
            let g = values(t);
            (p1, s1) = fused.step(1e-2, p1, g.clone(), s1);
            (p2, s2) = burn.step(1e-2, p2, g, s2);
        }
        let bits = |t: Tensor<1>| -> Vec<u32> {
            t.into_data()
                .try_into_vec::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        let (s1, s2) = (s1.unwrap().momentum, s2.unwrap().momentum);
        assert_eq!(s1.time, s2.time);
        assert!(bits(p1) == bits(p2), "parameters differ");
        assert!(
            bits(s1.moment_1) == bits(s2.moment_1),
            "first moments differ"
        );
        assert!(
            bits(s1.moment_2) == bits(s2.moment_2),
            "second moments differ"
        );
    }
}
