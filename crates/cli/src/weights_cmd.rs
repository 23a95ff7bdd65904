//! `nabla weights`: pretrained weights for Problem 5 (iv).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use nabla_vision::fetch::{fetch_weights, RESNET34_URL};

use crate::InputError;

#[derive(Subcommand, Debug)]
pub enum WeightsCommand {
    /// Download torchvision's ImageNet weights and check their hash.
    #[command(
        after_help = "Example:\n  nabla weights download resnet34\n  nabla vision train --model resnet34 --pretrained ~/.cache/nabla/weights/resnet34-b627a593.pth"
    )]
    Download(DownloadArgs),
}

#[derive(Args, Debug)]
pub struct DownloadArgs {
    /// Which weights: resnet34 (torchvision's IMAGENET1K_V1).
    pub model: String,
    /// Where to put the file [default: ~/.cache/nabla/weights].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(cmd: &WeightsCommand) -> Result<()> {
    match cmd {
        WeightsCommand::Download(a) => download(a),
    }
}

fn download(a: &DownloadArgs) -> Result<()> {
    let url = match a.model.as_str() {
        "resnet34" => RESNET34_URL,
        other => {
            return Err(InputError(format!("unknown weights `{other}`; expected resnet34")).into())
        }
    };
    let dir = a.out.clone().unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".cache/nabla/weights")
    });
    let bar = crate::progress::bar(0, false, "downloading");
    let path = fetch_weights(url, &dir, &|bytes| bar.set_position(bytes))
        .map_err(|e| InputError(e.to_string()))?;
    bar.finish_and_clear();
    println!("{}", path.display());
    Ok(())
}
