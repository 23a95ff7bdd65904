//! `nabla vision export`: a run's best model in a file other tools read.
//!
//! - **safetensors** under PyTorch's names ([`crate::load::torch_names`]):
//!   torchvision's `resnet34`, the EfficientNet-Lite0 wheel's module and, for
//!   the sheet's CNNs, the reference module in `tools/gen_export_fixtures.py`
//!   take it with `load_state_dict(strict=True)`.
//! - **ONNX** (opset [`crate::onnx::OPSET`]), evaluation mode, input
//!   `images [batch, 3, side, side]` already normalised, output `logits`.
//!
//! Both carry the model, the class names in order, the image size and the
//! input normalisation in their metadata, since a deployed model is useless
//! without them.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::load::{store, torch_names};
use crate::model::{choices, Architecture, Network, Normalization};
use crate::onnx::{OnnxGraph, OPSET};
use crate::run::RunDir;
use crate::train::ModelCard;
use crate::weights::{safetensors_bytes, state_dict_of};
use crate::VisionError;

/// The file formats `vision export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExportFormat {
    Onnx,
    Safetensors,
}

impl ExportFormat {
    pub const ALL: [ExportFormat; 2] = [ExportFormat::Onnx, ExportFormat::Safetensors];

    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Onnx => "onnx",
            ExportFormat::Safetensors => "safetensors",
        }
    }
}

impl std::str::FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ExportFormat::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names = ExportFormat::ALL.map(ExportFormat::name);
                format!("unknown format `{s}`; expected {}", choices(&names))
            })
    }
}

/// What was exported, where, and what a user of the file must know.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExportReport {
    pub format: ExportFormat,
    pub file: PathBuf,
    pub model: Architecture,
    pub classes: Vec<String>,
    pub image_size: usize,
    pub normalization: Normalization,
    /// How to turn 8-bit RGB into the model's input.
    pub preprocessing: String,
    /// Weight tensors written.
    pub tensors: usize,
    /// Numbers in them (BatchNorm's running statistics included).
    pub parameters: usize,
    /// ONNX nodes (ONNX only).
    pub nodes: Option<usize>,
    pub bytes: usize,
}

impl ExportReport {
    pub fn to_text(&self) -> String {
        let graph = self
            .nodes
            .map(|n| format!(", {n} nodes, opset {OPSET}"))
            .unwrap_or_default();
        format!(
            "{}: {} as {} ({} tensors, {} numbers{graph}, {} bytes)\n\
             input: [batch, 3, {s}, {s}] RGB, {}\n\
             output: logits of {}\n",
            self.file.display(),
            self.model.name(),
            self.format.name(),
            self.tensors,
            self.parameters,
            self.bytes,
            self.preprocessing,
            self.classes.join(", "),
            s = self.image_size,
        )
    }
}

/// The input convention in words.
pub fn preprocessing(normalization: Normalization) -> &'static str {
    match normalization {
        Normalization::Symmetric => "x / 127.5 - 1 for 8-bit x",
        Normalization::ImageNet => {
            "(x / 255 - mean) / std, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)"
        }
        Normalization::Tf => "(x - 127) / 128 for 8-bit x",
    }
}

fn metadata(card: &ModelCard) -> Vec<(&'static str, String)> {
    let normalization = card.model.normalization();
    vec![
        ("model", card.model.architecture.name().to_string()),
        (
            "classes",
            serde_json::to_string(&card.classes).expect("strings serialise"),
        ),
        ("image_size", card.model.image_size.to_string()),
        (
            "normalization",
            serde_json::to_value(normalization)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
        ),
        ("preprocessing", preprocessing(normalization).to_string()),
        ("producer", format!("nabla {}", env!("CARGO_PKG_VERSION"))),
    ]
}

/// An exported file's bytes and what they hold.
pub struct Exported {
    pub bytes: Vec<u8>,
    pub tensors: usize,
    pub parameters: usize,
    pub nodes: Option<usize>,
}

/// `network` with its `card` as a file of `format`.
pub fn export_bytes(
    network: &Network,
    card: &ModelCard,
    format: ExportFormat,
) -> Result<Exported, VisionError> {
    let names = torch_names(network);
    match format {
        ExportFormat::Safetensors => {
            let dict = match network {
                Network::Cnn(m) => state_dict_of(m, names),
                Network::ResNet(m) => state_dict_of(m, names),
                Network::EfficientNet(m) => state_dict_of(m, names),
            }
            .map_err(store)?;
            let meta = metadata(card)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .chain([("format".to_string(), "pt".to_string())])
                .collect();
            Ok(Exported {
                tensors: dict.len(),
                parameters: dict.values().map(|t| t.data.len()).sum(),
                bytes: safetensors_bytes(&dict, meta).map_err(store)?,
                nodes: None,
            })
        }
        ExportFormat::Onnx => {
            let mut graph = OnnxGraph::new(names);
            let input = OnnxGraph::input(card.model.image_size);
            let logits = network.onnx(&mut graph, &input);
            let ((tensors, parameters), nodes) = (graph.weight_count(), graph.node_count());
            Ok(Exported {
                bytes: graph.finish(&input, logits, &metadata(card)),
                tensors,
                parameters,
                nodes: Some(nodes),
            })
        }
    }
}

/// Writes the best epoch's model of `run` to `out` (atomically).
pub fn export_run(
    run: &RunDir,
    format: ExportFormat,
    out: &Path,
) -> Result<ExportReport, VisionError> {
    let (card, network) = run.load_best(&Device::flex())?;
    let exported = export_bytes(&network, &card, format)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| VisionError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    nabla_report::write_atomic(out, &exported.bytes).map_err(|source| VisionError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let normalization = card.model.normalization();
    Ok(ExportReport {
        format,
        file: out.to_path_buf(),
        model: card.model.architecture,
        image_size: card.model.image_size,
        normalization,
        preprocessing: preprocessing(normalization).to_string(),
        classes: card.classes,
        tensors: exported.tensors,
        parameters: exported.parameters,
        nodes: exported.nodes,
        bytes: exported.bytes.len(),
    })
}
