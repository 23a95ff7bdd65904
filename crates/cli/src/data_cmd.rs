//! `nabla data`: image folders for Problem 5 — inspect them, fetch the face-mask set.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use nabla_vision::fetch::fetch_face_mask;
use nabla_vision::folder::ImageFolder;
use nabla_vision::inspect::inspect;

use crate::output::OutputArgs;

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Per-class counts, image sizes, formats, unreadable files and duplicate groups of an image folder.
    #[command(after_help = "Example:\n  nabla data inspect data/face-mask")]
    Inspect(InspectArgs),
    /// Download a public dataset and unpack it as an image folder.
    #[command(
        after_help = "Example:\n  nabla data fetch face-mask            # into data/face-mask/"
    )]
    Fetch(FetchArgs),
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// An image folder: one subfolder per class.
    pub dir: PathBuf,
    /// Print one JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Dataset {
    /// Faces with and without masks (GitHub: chandrikadeb7/Face-Mask-Detection, dataset/).
    FaceMask,
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    pub dataset: Dataset,
    /// Where the class folders go.
    #[arg(long, default_value = "data/face-mask")]
    pub out: PathBuf,
    /// Print {"path": …, "class_counts": […]} as JSON instead of a line.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: &DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Inspect(a) => inspect_cmd(a),
        DataCommand::Fetch(a) => fetch_cmd(a),
    }
}

fn inspect_cmd(a: &InspectArgs) -> Result<()> {
    let start = Instant::now();
    let folder = ImageFolder::scan(&a.dir)?;
    let report = inspect(&folder);
    if a.json {
        return OutputArgs::print_json(&report);
    }
    print!("{}", report.to_text(start.elapsed().as_secs_f64()));
    Ok(())
}

fn fetch_cmd(a: &FetchArgs) -> Result<()> {
    let Dataset::FaceMask = a.dataset;
    eprintln!(
        "downloading the face-mask dataset into {} …",
        a.out.display()
    );
    let progress = crate::progress::bar(0, a.json, "download");
    let folder = fetch_face_mask(&a.out, &|bytes| progress.set_position(bytes))
        .inspect_err(|_| progress.finish_and_clear())?;
    progress.finish_and_clear();
    let counts = folder.class_counts();
    if a.json {
        return OutputArgs::print_json(
            &serde_json::json!({ "path": a.out, "class_counts": counts }),
        );
    }
    println!(
        "{}: {} with_mask, {} without_mask ({} duplicates removed when training)",
        a.out.display(),
        counts[0],
        counts[1],
        folder
            .duplicate_groups
            .iter()
            .map(|g| g.len() - 1)
            .sum::<usize>()
    );
    Ok(())
}
