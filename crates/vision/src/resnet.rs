//! ResNet34 exactly as torchvision builds it (`torchvision.models.resnet34`):
//! a 7×7 stride-2 stem with max-pooling, four stages of 3, 4, 6 and 3 basic
//! blocks (64, 128, 256, 512 channels, stride 2 and a 1×1 projection at the
//! start of stages 2–4), global average pooling and a linear head. Field
//! names follow torchvision's parameter names (`conv1`, `bn1`,
//! `layer1.0.conv1`, …, `fc`), so a torchvision state dict maps onto it by
//! the renames in [`crate::weights`] alone.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use nabla_kernels::norm::Activation;

use crate::flex_kernels::{conv_bn, conv_bn_add, max_pool2d};
use crate::onnx::{OnnxGraph, Value};

/// ResNet34's head size; the backbone is fixed.
#[derive(Config, Debug)]
pub struct ResNetConfig {
    /// Outputs of the linear head (1000 for ImageNet).
    pub classes: usize,
}

/// torchvision's `downsample`: a 1×1 strided convolution and BatchNorm that
/// project the shortcut when a block changes shape. torchvision names them
/// `downsample.0` and `downsample.1`; here they are `conv` and `bn`.
#[derive(Module, Debug)]
pub struct Downsample {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

/// torchvision's `BasicBlock`: two 3×3 convolutions with BatchNorm, and the
/// shortcut added before the last ReLU.
#[derive(Module, Debug)]
pub struct BasicBlock {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub downsample: Option<Downsample>,
}

impl BasicBlock {
    fn new(input: usize, output: usize, stride: usize, device: &Device) -> Self {
        let conv3 = |i: usize, o: usize, s: usize| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_stride([s, s])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .with_initializer(kaiming_fan_out())
                .init(device)
        };
        let downsample = (stride != 1 || input != output).then(|| Downsample {
            conv: Conv2dConfig::new([input, output], [1, 1])
                .with_stride([stride, stride])
                .with_bias(false)
                .with_initializer(kaiming_fan_out())
                .init(device),
            bn: BatchNormConfig::new(output).init(device),
        });
        BasicBlock {
            conv1: conv3(input, output, stride),
            bn1: BatchNormConfig::new(output).init(device),
            conv2: conv3(output, output, 1),
            bn2: BatchNormConfig::new(output).init(device),
            downsample,
        }
    }

    fn onnx(&self, g: &mut OnnxGraph, x: &Value, path: &str) -> Value {
        let identity = match &self.downsample {
            Some(d) => g.conv_bn(
                x,
                (&d.conv, &format!("{path}.downsample.conv")),
                (&d.bn, &format!("{path}.downsample.bn")),
                Activation::Identity,
            ),
            None => x.clone(),
        };
        let out = g.conv_bn(
            x,
            (&self.conv1, &format!("{path}.conv1")),
            (&self.bn1, &format!("{path}.bn1")),
            Activation::Relu,
        );
        let out = g.conv_bn(
            &out,
            (&self.conv2, &format!("{path}.conv2")),
            (&self.bn2, &format!("{path}.bn2")),
            Activation::Identity,
        );
        let sum = g.add(&out, &identity);
        g.relu(sum)
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(d) => conv_bn(&d.conv, &d.bn, x.clone(), Activation::Identity),
            None => x.clone(),
        };
        let out = conv_bn(&self.conv1, &self.bn1, x, Activation::Relu);
        conv_bn_add(
            &self.conv2,
            &self.bn2,
            out,
            Some(identity),
            Activation::Relu,
        )
    }
}

/// torchvision's initialisation of ResNet convolutions:
/// `kaiming_normal_(mode="fan_out", nonlinearity="relu")`.
fn kaiming_fan_out() -> Initializer {
    Initializer::KaimingNormal {
        gain: std::f64::consts::SQRT_2,
        fan_out_only: true,
    }
}

#[derive(Module, Debug)]
pub struct ResNet {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub layer1: Vec<BasicBlock>,
    pub layer2: Vec<BasicBlock>,
    pub layer3: Vec<BasicBlock>,
    pub layer4: Vec<BasicBlock>,
    pub fc: Linear,
    maxpool: MaxPool2d,
    avgpool: AdaptiveAvgPool2d,
}

impl ResNetConfig {
    /// ResNet34 with torchvision's initialisation (BatchNorm γ = 1, β = 0;
    /// the head as PyTorch's `Linear` default).
    pub fn init(&self, device: &Device) -> ResNet {
        let stage = |input: usize, output: usize, blocks: usize, stride: usize| {
            (0..blocks)
                .map(|i| {
                    if i == 0 {
                        BasicBlock::new(input, output, stride, device)
                    } else {
                        BasicBlock::new(output, output, 1, device)
                    }
                })
                .collect::<Vec<_>>()
        };
        ResNet {
            conv1: Conv2dConfig::new([3, 64], [7, 7])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3))
                .with_bias(false)
                .with_initializer(kaiming_fan_out())
                .init(device),
            bn1: BatchNormConfig::new(64).init(device),
            layer1: stage(64, 64, 3, 1),
            layer2: stage(64, 128, 4, 2),
            layer3: stage(128, 256, 6, 2),
            layer4: stage(256, 512, 3, 2),
            fc: LinearConfig::new(512, self.classes).init(device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
        }
    }
}

impl ResNet {
    /// Logits for a batch `[n, 3, h, w]` (any size ≥ 32 pixels).
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.fc.forward(self.features(images))
    }

    /// The same network with another classifier.
    pub fn with_head(self, fc: Linear) -> Self {
        Self { fc, ..self }
    }

    /// [`ResNet::forward`] as an ONNX graph, evaluation mode.
    pub fn onnx(&self, g: &mut OnnxGraph, images: &Value) -> Value {
        let x = g.conv_bn(
            images,
            (&self.conv1, "conv1"),
            (&self.bn1, "bn1"),
            Activation::Relu,
        );
        let mut x = g.max_pool(&x, &self.maxpool);
        for (stage, blocks) in [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
            .into_iter()
            .enumerate()
        {
            for (i, block) in blocks.iter().enumerate() {
                x = block.onnx(g, &x, &format!("layer{}.{i}", stage + 1));
            }
        }
        let x = g.global_average_pool(&x);
        g.linear(&x, &self.fc, "fc")
    }

    /// Pooled features `[n, 512]`, what the head sees.
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        let x = conv_bn(&self.conv1, &self.bn1, images, Activation::Relu);
        let mut x = max_pool2d(&self.maxpool, x, false);
        for block in self
            .layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
        {
            x = block.forward(x);
        }
        self.avgpool.forward(x).flatten(1, 3)
    }
}
