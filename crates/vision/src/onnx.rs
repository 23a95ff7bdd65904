//! An ONNX graph of a trained network, in evaluation mode (BatchNorm on its
//! running statistics, no dropout), for deployment in any ONNX runtime.
//!
//! The messages are the few parts of `onnx.proto` an inference graph needs,
//! declared with `prost` under their field numbers (no code generation, no
//! `protoc`). Each model writes its own graph beside its `forward`
//! (`Cnn::onnx`, `ResNet::onnx`, `EfficientNet::onnx`) through
//! [`OnnxGraph`]'s layer calls, so a change to a model's forward is next to
//! the graph that must follow it; the export test runs the file in an
//! independent runtime and compares the logits.
//!
//! Weights are initializers under PyTorch's names ([`crate::load::torch_names`]),
//! laid out as PyTorch stores them, so the ONNX file and the safetensors
//! export hold the same tensors.

use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::tensor::Tensor;
use nabla_kernels::norm::Activation;
use prost::Message;

use crate::weights::{transpose, TorchNames};

/// The operator set the graph is written for: every operator used here has
/// had its current form since 13, which every maintained runtime reads.
pub const OPSET: i64 = 13;
/// ONNX's IR version that goes with opset 13.
const IR_VERSION: i64 = 7;
/// `TensorProto.DataType.FLOAT`.
const FLOAT: i32 = 1;

mod proto {
    //! `onnx.proto` (proto2): the messages and fields an inference graph uses.
    //! Repeated integers are unpacked, as proto2 writes them.

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Model {
        #[prost(int64, tag = "1")]
        pub ir_version: i64,
        #[prost(string, tag = "2")]
        pub producer_name: String,
        #[prost(string, tag = "3")]
        pub producer_version: String,
        #[prost(string, tag = "6")]
        pub doc_string: String,
        #[prost(message, optional, tag = "7")]
        pub graph: Option<Graph>,
        #[prost(message, repeated, tag = "8")]
        pub opset_import: Vec<OperatorSet>,
        #[prost(message, repeated, tag = "14")]
        pub metadata_props: Vec<StringPair>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OperatorSet {
        #[prost(string, tag = "1")]
        pub domain: String,
        #[prost(int64, tag = "2")]
        pub version: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StringPair {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Graph {
        #[prost(message, repeated, tag = "1")]
        pub node: Vec<Node>,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(message, repeated, tag = "5")]
        pub initializer: Vec<TensorData>,
        #[prost(message, repeated, tag = "11")]
        pub input: Vec<ValueInfo>,
        #[prost(message, repeated, tag = "12")]
        pub output: Vec<ValueInfo>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Node {
        #[prost(string, repeated, tag = "1")]
        pub input: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub output: Vec<String>,
        #[prost(string, tag = "3")]
        pub name: String,
        #[prost(string, tag = "4")]
        pub op_type: String,
        #[prost(message, repeated, tag = "5")]
        pub attribute: Vec<Attribute>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Attribute {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(float, optional, tag = "2")]
        pub f: Option<f32>,
        #[prost(int64, optional, tag = "3")]
        pub i: Option<i64>,
        #[prost(int64, repeated, packed = "false", tag = "8")]
        pub ints: Vec<i64>,
        /// `AttributeType`: FLOAT 1, INT 2, INTS 7.
        #[prost(int32, tag = "20")]
        pub r#type: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorData {
        #[prost(int64, repeated, packed = "false", tag = "1")]
        pub dims: Vec<i64>,
        #[prost(int32, tag = "2")]
        pub data_type: i32,
        #[prost(string, tag = "8")]
        pub name: String,
        #[prost(bytes = "vec", tag = "9")]
        pub raw_data: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueInfo {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub r#type: Option<Type>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Type {
        #[prost(message, optional, tag = "1")]
        pub tensor_type: Option<TensorType>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorType {
        #[prost(int32, tag = "1")]
        pub elem_type: i32,
        #[prost(message, optional, tag = "2")]
        pub shape: Option<Shape>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Shape {
        #[prost(message, repeated, tag = "1")]
        pub dim: Vec<Dimension>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        #[prost(int64, optional, tag = "1")]
        pub dim_value: Option<i64>,
        #[prost(string, optional, tag = "2")]
        pub dim_param: Option<String>,
    }
}

/// A tensor of the graph: its name and its shape without the batch axis.
#[derive(Clone, Debug)]
pub struct Value {
    name: String,
    pub shape: Vec<usize>,
}

/// The graph being written: nodes in order, weights as initializers.
pub struct OnnxGraph {
    nodes: Vec<proto::Node>,
    initializers: Vec<proto::TensorData>,
    names: &'static dyn TorchNames,
    /// Weight tensors and their scalars (the initializers less constants).
    weights: usize,
    parameters: usize,
}

fn ints(name: &str, values: &[usize]) -> proto::Attribute {
    proto::Attribute {
        name: name.into(),
        ints: values.iter().map(|&v| v as i64).collect(),
        r#type: 7,
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> proto::Attribute {
    proto::Attribute {
        name: name.into(),
        i: Some(value),
        r#type: 2,
        ..Default::default()
    }
}

fn float(name: &str, value: f32) -> proto::Attribute {
    proto::Attribute {
        name: name.into(),
        f: Some(value),
        r#type: 1,
        ..Default::default()
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("converted to f32 just before")
}

/// `[top, left, bottom, right]` padding of a window over `h × w`, as the
/// kernels compute it ([`crate::flex_kernels`]), in ONNX's order.
fn pads(
    p: &PaddingConfig2d,
    kernel: [usize; 2],
    stride: [usize; 2],
    h: usize,
    w: usize,
) -> [usize; 4] {
    let ([t, l], [b, r]) = crate::flex_kernels::padding_pairs(p, h, w, kernel, stride);
    [t, l, b, r]
}

/// Output side of a window of `k` with `stride` over `n` padded by `pad`.
fn out_side(n: usize, pad: usize, k: usize, stride: usize) -> usize {
    (n + pad - k) / stride + 1
}

impl OnnxGraph {
    /// A graph whose initializers take PyTorch's names from `names`.
    pub fn new(names: &'static dyn TorchNames) -> Self {
        OnnxGraph {
            nodes: Vec::new(),
            initializers: Vec::new(),
            names,
            weights: 0,
            parameters: 0,
        }
    }

    /// The graph's input, `[batch, 3, side, side]`.
    pub fn input(side: usize) -> Value {
        Value {
            name: "images".into(),
            shape: vec![3, side, side],
        }
    }

    fn initializer(&mut self, name: String, dims: &[usize], data: &[f32]) -> String {
        self.initializers.push(proto::TensorData {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: FLOAT,
            name: name.clone(),
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name
    }

    /// A weight of the module at `path` (Burn's parameter path, e.g.
    /// `layer1.0.conv1`), under PyTorch's name.
    fn weight(&mut self, path: &str, leaf: &str, dims: &[usize], data: &[f32]) -> String {
        let name = self.names.torch_name(&format!("{path}.{leaf}"));
        self.weights += 1;
        self.parameters += data.len();
        self.initializer(name, dims, data)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Weight tensors written so far and the scalars in them.
    pub fn weight_count(&self) -> (usize, usize) {
        (self.weights, self.parameters)
    }

    fn node(
        &mut self,
        op: &str,
        inputs: Vec<String>,
        attributes: Vec<proto::Attribute>,
        shape: Vec<usize>,
    ) -> Value {
        let name = format!("{}_{}", op.to_lowercase(), self.nodes.len());
        self.nodes.push(proto::Node {
            input: inputs,
            output: vec![name.clone()],
            name: name.clone(),
            op_type: op.into(),
            attribute: attributes,
        });
        Value { name, shape }
    }

    pub fn conv(&mut self, x: &Value, conv: &Conv2d, path: &str) -> Value {
        let [out, per_group, kh, kw] = conv.weight.dims();
        let [_, h, w] = [x.shape[0], x.shape[1], x.shape[2]];
        let p = pads(&conv.padding, [kh, kw], conv.stride, h, w);
        let mut inputs = vec![
            x.name.clone(),
            self.weight(
                path,
                "weight",
                &[out, per_group, kh, kw],
                &values(conv.weight.val()),
            ),
        ];
        if let Some(bias) = &conv.bias {
            inputs.push(self.weight(path, "bias", &[out], &values(bias.val())));
        }
        let shape = vec![
            out,
            out_side(
                h,
                p[0] + p[2],
                (kh - 1) * conv.dilation[0] + 1,
                conv.stride[0],
            ),
            out_side(
                w,
                p[1] + p[3],
                (kw - 1) * conv.dilation[1] + 1,
                conv.stride[1],
            ),
        ];
        let attributes = vec![
            ints("kernel_shape", &[kh, kw]),
            ints("strides", &conv.stride),
            ints("dilations", &conv.dilation),
            ints("pads", &p),
            int("group", conv.groups as i64),
        ];
        self.node("Conv", inputs, attributes, shape)
    }

    pub fn batch_norm(&mut self, x: &Value, norm: &BatchNorm, path: &str) -> Value {
        let c = [x.shape[0]];
        let inputs = vec![
            x.name.clone(),
            self.weight(path, "gamma", &c, &values(norm.gamma.val())),
            self.weight(path, "beta", &c, &values(norm.beta.val())),
            self.weight(path, "running_mean", &c, &values(norm.running_mean.value())),
            self.weight(path, "running_var", &c, &values(norm.running_var.value())),
        ];
        let attributes = vec![float("epsilon", norm.epsilon as f32)];
        self.node("BatchNormalization", inputs, attributes, x.shape.clone())
    }

    pub fn activation(&mut self, x: Value, activation: Activation) -> Value {
        match activation {
            Activation::Identity => x,
            Activation::Relu => self.node("Relu", vec![x.name], vec![], x.shape),
            Activation::Relu6 => {
                let min = self.initializer(format!("clip_{}.min", self.nodes.len()), &[], &[0.0]);
                let max = self.initializer(format!("clip_{}.max", self.nodes.len()), &[], &[6.0]);
                self.node("Clip", vec![x.name, min, max], vec![], x.shape)
            }
        }
    }

    /// A convolution, its BatchNorm and activation, as
    /// [`crate::flex_kernels::conv_bn`] computes them.
    pub fn conv_bn(
        &mut self,
        x: &Value,
        (conv, conv_path): (&Conv2d, &str),
        (norm, norm_path): (&BatchNorm, &str),
        activation: Activation,
    ) -> Value {
        let y = self.conv(x, conv, conv_path);
        let y = self.batch_norm(&y, norm, norm_path);
        self.activation(y, activation)
    }

    pub fn max_pool(&mut self, x: &Value, pool: &MaxPool2d) -> Value {
        let [h, w] = [x.shape[1], x.shape[2]];
        let p = pads(&pool.padding, pool.kernel_size, pool.stride, h, w);
        let shape = vec![
            x.shape[0],
            out_side(h, p[0] + p[2], pool.kernel_size[0], pool.stride[0]),
            out_side(w, p[1] + p[3], pool.kernel_size[1], pool.stride[1]),
        ];
        let attributes = vec![
            ints("kernel_shape", &pool.kernel_size),
            ints("strides", &pool.stride),
            ints("pads", &p),
        ];
        self.node("MaxPool", vec![x.name.clone()], attributes, shape)
    }

    pub fn add(&mut self, a: &Value, b: &Value) -> Value {
        self.node(
            "Add",
            vec![a.name.clone(), b.name.clone()],
            vec![],
            a.shape.clone(),
        )
    }

    /// Every axis after the batch's into one, `[n, c·h·w]`.
    pub fn flatten(&mut self, x: &Value) -> Value {
        let features = x.shape.iter().product();
        self.node(
            "Flatten",
            vec![x.name.clone()],
            vec![int("axis", 1)],
            vec![features],
        )
    }

    /// The mean over each channel, `[n, c]`.
    pub fn global_average_pool(&mut self, x: &Value) -> Value {
        let pooled = self.node(
            "GlobalAveragePool",
            vec![x.name.clone()],
            vec![],
            vec![x.shape[0], 1, 1],
        );
        self.flatten(&pooled)
    }

    /// `x Wᵀ + b` with W stored `[out, in]`, as PyTorch's `Linear` keeps it.
    pub fn linear(&mut self, x: &Value, linear: &Linear, path: &str) -> Value {
        let [inputs, outputs] = linear.weight.dims();
        let transposed = transpose(inputs, outputs, &values(linear.weight.val()));
        let mut args = vec![
            x.name.clone(),
            self.weight(path, "weight", &[outputs, inputs], &transposed),
        ];
        if let Some(bias) = &linear.bias {
            args.push(self.weight(path, "bias", &[outputs], &values(bias.val())));
        }
        self.node("Gemm", args, vec![int("transB", 1)], vec![outputs])
    }

    pub fn relu(&mut self, x: Value) -> Value {
        self.activation(x, Activation::Relu)
    }

    /// The model file's bytes: `input` in, `logits` out (`[batch, classes]`),
    /// `metadata` as the model's properties.
    pub fn finish(self, input: &Value, logits: Value, metadata: &[(&str, String)]) -> Vec<u8> {
        let info = |name: &str, shape: &[usize]| {
            let dim = std::iter::once(proto::Dimension {
                dim_value: None,
                dim_param: Some("batch".into()),
            })
            .chain(shape.iter().map(|&d| proto::Dimension {
                dim_value: Some(d as i64),
                dim_param: None,
            }))
            .collect();
            proto::ValueInfo {
                name: name.into(),
                r#type: Some(proto::Type {
                    tensor_type: Some(proto::TensorType {
                        elem_type: FLOAT,
                        shape: Some(proto::Shape { dim }),
                    }),
                }),
            }
        };
        let mut nodes = self.nodes;
        // The last node writes the graph's output under a stable name.
        let output = "logits".to_string();
        match nodes.last_mut() {
            Some(last) if last.output[0] == logits.name => last.output[0] = output.clone(),
            _ => nodes.push(proto::Node {
                input: vec![logits.name.clone()],
                output: vec![output.clone()],
                name: "output".into(),
                op_type: "Identity".into(),
                attribute: vec![],
            }),
        }
        let graph = proto::Graph {
            node: nodes,
            name: "nabla".into(),
            initializer: self.initializers,
            input: vec![info(&input.name, &input.shape)],
            output: vec![info(&output, &logits.shape)],
        };
        proto::Model {
            ir_version: IR_VERSION,
            producer_name: "nabla".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: "logits of a nabla vision model, evaluation mode".into(),
            graph: Some(graph),
            opset_import: vec![proto::OperatorSet {
                domain: String::new(),
                version: OPSET,
            }],
            metadata_props: metadata
                .iter()
                .map(|(key, value)| proto::StringPair {
                    key: key.to_string(),
                    value: value.clone(),
                })
                .collect(),
        }
        .encode_to_vec()
    }
}
