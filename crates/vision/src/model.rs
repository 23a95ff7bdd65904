//! The sheet's models on Burn: (ii) four 3×3 convolutions with ReLU and 2×2
//! max-pooling, then two dense layers; (iii) the same with BatchNorm after
//! each convolution, dropout on the first dense layer and Kaiming (He)
//! initialisation; (iv) ResNet34 ([`crate::resnet`]) and, as an ImageNet
//! backbone that can be had offline, EfficientNet-Lite0
//! ([`crate::efficientnet`]).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Initializer, Linear, LinearConfig,
    PaddingConfig2d, Relu,
};
use burn::tensor::{Device, Tensor};
use nabla_kernels::norm::Activation;

use crate::flex_kernels;
use crate::onnx::{OnnxGraph, Value};

/// Which of the sheet's CNNs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// (ii): convolutions, ReLU, max-pooling, two dense layers.
    Cnn,
    /// (iii): plus BatchNorm, dropout and Kaiming initialisation.
    CnnBn,
    /// (iv): torchvision's ResNet34 with a new head.
    #[serde(rename = "resnet34")]
    ResNet34,
    /// (iv): EfficientNet-Lite0 with a new head.
    #[serde(rename = "efficientnet-lite0")]
    EfficientNetLite0,
}

impl std::str::FromStr for Architecture {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let names = Architecture::ALL.map(Architecture::name);
        Architecture::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| format!("unknown model `{s}`; expected {}", choices(&names)))
    }
}

/// `a, b, c or d`: the choices an error message lists.
pub fn choices(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

impl Architecture {
    pub const ALL: [Architecture; 4] = [
        Architecture::Cnn,
        Architecture::CnnBn,
        Architecture::ResNet34,
        Architecture::EfficientNetLite0,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Architecture::Cnn => "cnn",
            Architecture::CnnBn => "cnn-bn",
            Architecture::ResNet34 => "resnet34",
            Architecture::EfficientNetLite0 => "efficientnet-lite0",
        }
    }

    /// Whether pretrained weights and a frozen backbone make sense.
    pub fn has_backbone(self) -> bool {
        matches!(
            self,
            Architecture::ResNet34 | Architecture::EfficientNetLite0
        )
    }
}

/// Which model and its sizes (the sizes apply to the CNNs; ResNet34's and
/// EfficientNet-Lite0's are fixed).
#[derive(Config, Debug)]
pub struct ModelConfig {
    pub architecture: Architecture,
    /// Number of classes.
    pub classes: usize,
    /// Side of the square input images.
    #[config(default = 128)]
    pub image_size: usize,
    /// Output channels of the four convolutions.
    #[config(default = "[32, 64, 128, 128]")]
    pub channels: [usize; 4],
    /// Units of the hidden dense layer.
    #[config(default = 256)]
    pub hidden: usize,
    /// Dropout probability on the first dense layer (cnn-bn only).
    #[config(default = 0.5)]
    pub dropout: f64,
    /// Inputs normalised with ImageNet's channel statistics (pretrained
    /// torchvision weights expect them) instead of to [−1, 1].
    #[config(default = false)]
    pub imagenet_normalization: bool,
}

/// Convolution (3×3, same padding), optional BatchNorm, ReLU, 2×2 max-pool.
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv: Conv2d,
    norm: Option<BatchNorm>,
    pool: MaxPool2d,
}

impl ConvBlock {
    /// On `flex` the ReLU is fused into the BatchNorm, or into the pooling
    /// when there is none ([`crate::flex_kernels`]).
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match &self.norm {
            Some(norm) => {
                let x = flex_kernels::conv_bn(&self.conv, norm, x, Activation::Relu);
                flex_kernels::max_pool2d(&self.pool, x, false)
            }
            None => {
                let x = flex_kernels::conv2d(&self.conv, x);
                flex_kernels::max_pool2d(&self.pool, x, true)
            }
        }
    }
}

#[derive(Module, Debug)]
pub struct Cnn {
    blocks: Vec<ConvBlock>,
    hidden: Linear,
    dropout: Option<Dropout>,
    output: Linear,
    activation: Relu,
}

/// He initialisation for layers followed by ReLU: Var(w) = 2 / fan_in keeps
/// the activations' second moment constant from layer to layer, since ReLU
/// zeroes half of a symmetric input (Kaiming normal, gain √2).
fn kaiming() -> Initializer {
    Initializer::KaimingNormal {
        gain: std::f64::consts::SQRT_2,
        fan_out_only: false,
    }
}

impl ModelConfig {
    pub fn normalization(&self) -> Normalization {
        if self.architecture == Architecture::EfficientNetLite0 {
            Normalization::Tf
        } else if self.imagenet_normalization {
            Normalization::ImageNet
        } else {
            Normalization::Symmetric
        }
    }

    /// Spatial side after the four 2×2 poolings.
    pub fn final_side(&self) -> usize {
        self.image_size / 16
    }

    /// The model with its initial weights.
    pub fn init(&self, device: &Device) -> Network {
        match self.architecture {
            Architecture::ResNet34 => {
                Network::ResNet(crate::resnet::ResNetConfig::new(self.classes).init(device))
            }
            Architecture::EfficientNetLite0 => Network::EfficientNet(
                crate::efficientnet::EfficientNetConfig::new(self.classes).init(device),
            ),
            Architecture::Cnn | Architecture::CnnBn => Network::Cnn(self.init_cnn(device)),
        }
    }

    fn init_cnn(&self, device: &Device) -> Cnn {
        let bn = self.architecture == Architecture::CnnBn;
        let mut in_channels = 3;
        let blocks = self
            .channels
            .iter()
            .map(|&out| {
                let mut conv = Conv2dConfig::new([in_channels, out], [3, 3])
                    .with_padding(PaddingConfig2d::Same);
                if bn {
                    // BatchNorm's shift makes the convolution's bias redundant.
                    conv = conv.with_initializer(kaiming()).with_bias(false);
                }
                in_channels = out;
                ConvBlock {
                    conv: conv.init(device),
                    norm: bn.then(|| BatchNormConfig::new(out).init(device)),
                    pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
                }
            })
            .collect();
        let flat = in_channels * self.final_side() * self.final_side();
        let mut hidden = LinearConfig::new(flat, self.hidden);
        if bn {
            hidden = hidden.with_initializer(kaiming());
        }
        Cnn {
            blocks,
            hidden: hidden.init(device),
            dropout: bn.then(|| DropoutConfig::new(self.dropout).init()),
            output: LinearConfig::new(self.hidden, self.classes).init(device),
            activation: Relu::new(),
        }
    }
}

impl Cnn {
    /// [`Cnn::forward`] as an ONNX graph, evaluation mode.
    pub fn onnx(&self, g: &mut OnnxGraph, images: &Value) -> Value {
        let mut x = images.clone();
        for (i, block) in self.blocks.iter().enumerate() {
            x = match &block.norm {
                Some(norm) => g.conv_bn(
                    &x,
                    (&block.conv, &format!("blocks.{i}.conv")),
                    (norm, &format!("blocks.{i}.norm")),
                    Activation::Relu,
                ),
                None => {
                    let y = g.conv(&x, &block.conv, &format!("blocks.{i}.conv"));
                    g.relu(y)
                }
            };
            x = g.max_pool(&x, &block.pool);
        }
        let x = g.flatten(&x);
        let x = g.linear(&x, &self.hidden, "hidden");
        let x = g.relu(x);
        g.linear(&x, &self.output, "output")
    }

    /// Logits for a batch `[n, 3, side, side]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = images;
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x: Tensor<2> = x.flatten(1, 3);
        let x = self.activation.forward(self.hidden.forward(x));
        let x = match &self.dropout {
            Some(d) => d.forward(x),
            None => x,
        };
        self.output.forward(x)
    }
}

/// Any of the models, behind one type for training, checkpoints and prediction.
// A run holds one or two of these, so the unboxed ResNet variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Network {
    Cnn(Cnn),
    ResNet(crate::resnet::ResNet),
    EfficientNet(crate::efficientnet::EfficientNet),
}

impl Network {
    /// Logits for a batch `[n, 3, side, side]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Network::Cnn(m) => m.forward(images),
            Network::ResNet(m) => m.forward(images),
            Network::EfficientNet(m) => m.forward(images),
        }
    }

    /// [`Network::forward`] as an ONNX graph (see [`crate::onnx`]).
    pub fn onnx(&self, g: &mut OnnxGraph, images: &Value) -> Value {
        match self {
            Network::Cnn(m) => m.onnx(g, images),
            Network::ResNet(m) => m.onnx(g, images),
            Network::EfficientNet(m) => m.onnx(g, images),
        }
    }

    /// What the backbone hands its linear head, `[n, features]`, for the
    /// models that have one (ResNet34, EfficientNet-Lite0).
    pub fn features(&self, images: Tensor<4>) -> Option<Tensor<2>> {
        match self {
            Network::Cnn(_) => None,
            Network::ResNet(m) => Some(m.features(images)),
            Network::EfficientNet(m) => Some(m.features(images)),
        }
    }

    /// The linear head on top of [`Network::features`].
    pub fn head(&self) -> Option<&Linear> {
        match self {
            Network::Cnn(_) => None,
            Network::ResNet(m) => Some(&m.fc),
            Network::EfficientNet(m) => Some(&m.fc),
        }
    }

    /// The same network with another head (from [`Network::head`], trained).
    pub fn with_head(self, head: Linear) -> Self {
        match self {
            Network::Cnn(m) => Network::Cnn(m),
            Network::ResNet(m) => Network::ResNet(m.with_head(head)),
            Network::EfficientNet(m) => Network::EfficientNet(m.with_head(head)),
        }
    }
}

/// The model's input convention.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Normalization {
    /// x/127.5 − 1, in [−1, 1]: nabla's models from scratch.
    #[default]
    Symmetric,
    /// (x/255 − mean)/std with ImageNet's channel statistics, as torchvision's
    /// pretrained models expect.
    ImageNet,
    /// (x − 127)/128, as TensorFlow's EfficientNet-Lite expects.
    Tf,
}

impl Normalization {
    /// Maps a value of [−1, 1] (from [`crate::augment::render`]) to this
    /// convention, in place.
    pub(crate) fn apply(self, planes: &mut [f32], plane: usize) {
        const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
        const STD: [f32; 3] = [0.229, 0.224, 0.225];
        match self {
            Normalization::Symmetric => {}
            Normalization::ImageNet => {
                for (c, p) in planes.chunks_mut(plane).enumerate() {
                    for v in p {
                        *v = ((*v + 1.0) * 0.5 - MEAN[c % 3]) / STD[c % 3];
                    }
                }
            }
            Normalization::Tf => {
                for v in planes {
                    *v = ((*v + 1.0) * 127.5 - 127.0) / 128.0;
                }
            }
        }
    }
}

impl ModelConfig {
    /// The network drawn on the CPU from `seed`, every parameter now: Burn
    /// draws one lazily, on whatever device the network has been moved to
    /// by then and from that backend's own generator, so a network drawn
    /// here and then forked starts from the same weights on every device.
    pub(crate) fn init_on_cpu(&self, seed: u32, autodiff: bool) -> Network {
        struct DrawNow;
        impl burn::module::ModuleVisitor for DrawNow {
            fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
                let _ = param.val();
            }
        }
        let cpu = if autodiff {
            Device::flex().autodiff()
        } else {
            Device::flex()
        };
        cpu.seed(u64::from(seed));
        let network = self.init(&cpu);
        network.visit(&mut DrawNow);
        network
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::VisionOptimizer;

    /// One name per choice, the same for parsing, printing and serde.
    #[test]
    fn names_parse_back_and_match_serde() {
        for a in Architecture::ALL {
            assert_eq!(a.name().parse::<Architecture>(), Ok(a));
            assert_eq!(
                serde_json::to_string(&a).unwrap(),
                format!("\"{}\"", a.name())
            );
        }
        for o in VisionOptimizer::ALL {
            assert_eq!(o.name().parse::<VisionOptimizer>(), Ok(o));
            assert_eq!(
                serde_json::to_string(&o).unwrap(),
                format!("\"{}\"", o.name())
            );
        }
        for d in crate::device::Accelerator::ALL {
            assert_eq!(d.name().parse::<crate::device::Accelerator>(), Ok(d));
            assert_eq!(
                serde_json::to_string(&d).unwrap(),
                format!("\"{}\"", d.name())
            );
        }
        let err = "vgg".parse::<Architecture>().unwrap_err();
        assert_eq!(
            err,
            "unknown model `vgg`; expected cnn, cnn-bn, resnet34 or efficientnet-lite0"
        );
        assert_eq!(choices(&["a"]), "a");
    }
}
