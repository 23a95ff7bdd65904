//! `nabla vision compare`: the sheet's Problem 5 (iv) (the runs and their
//! rules are `nabla_vision::compare`); each run is a `nabla vision train`
//! child process.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use nabla_report::{pct, shorten};
use nabla_vision::compare::{CompareSettings, DEFAULT_MODELS};
use nabla_vision::pretrained::default_dir;
use nabla_vision::schedule::LrSchedule;

use crate::child::run_child;
use crate::CheckFailed;

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Examples:\n  nabla weights download efficientnet-lite0\n  nabla vision compare --data data/face-mask --out runs/compare\n  nabla vision compare --models cnn-bn,efficientnet-lite0-probe --epochs 3 --image-size 64"
)]
pub struct CompareArgs {
    /// An image folder: one subfolder per class.
    #[arg(long, default_value = "data/face-mask")]
    pub data: PathBuf,
    /// Where every run and the comparison go.
    #[arg(long, default_value = "runs/compare")]
    pub out: PathBuf,
    /// Which runs, in order (see the list below).
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_MODELS)]
    pub models: Vec<String>,
    /// Epochs for every run (three are enough for the pretrained backbones
    /// and keep the full comparison affordable on 2 cores at 128 pixels).
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Side of the square images for every run.
    #[arg(long, default_value_t = 128)]
    pub image_size: usize,
    /// The backbone's learning rate relative to the head's when fine-tuning
    /// pretrained weights.
    #[arg(long, default_value_t = 0.1)]
    pub backbone_lr_mult: f64,
    /// Folder of the ImageNet weights [default: $NABLA_WEIGHTS or ~/.cache/nabla/weights].
    #[arg(long)]
    pub weights: Option<PathBuf>,
    #[arg(long, default_value_t = 42)]
    pub seed: u32,
    /// Every run's learning-rate schedule: constant, cosine or one-cycle.
    #[arg(long, default_value = "constant")]
    pub lr_schedule: LrSchedule,
    /// Every run's warm-up, in epochs (fractions allowed).
    #[arg(long, default_value_t = 0.0, value_name = "EPOCHS")]
    pub warmup_epochs: f64,
    /// Every run stops once its validation loss has not improved for this
    /// many epochs.
    #[arg(long, value_name = "EPOCHS")]
    pub patience: Option<usize>,
    /// Print one JSON document on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// No progress display.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(a: &CompareArgs) -> Result<()> {
    let settings = CompareSettings {
        data: a.data.clone(),
        out: a.out.clone(),
        models: a.models.clone(),
        epochs: a.epochs,
        image_size: a.image_size,
        backbone_lr_mult: a.backbone_lr_mult,
        weights: a.weights.clone().unwrap_or_else(default_dir),
        seed: a.seed,
        lr_schedule: a.lr_schedule,
        warmup_epochs: a.warmup_epochs,
        patience: a.patience,
    };
    let runs = settings.variants()?.len();
    let exe = std::env::current_exe().context("cannot find the nabla executable")?;
    let quiet = a.quiet || a.json;
    let bar = crate::progress::weighted(runs as f64, quiet);
    let mut done = 0;
    let comparison = settings.run(
        &mut |v, launch| {
            done += 1;
            let head = format!("[{done}/{runs}] {}", v.name);
            bar.set_message(head.clone());
            let child = run_child(&exe, &launch.args, launch.out.as_deref(), &|line| {
                bar.set_message(format!("{head}: {}", shorten(line, 60)))
            });
            (
                child.provenance.command.clone(),
                child.parse().map(|(report, _)| report),
            )
        },
        &mut |i, n, row| {
            bar.set_position(i as u64 + 1);
            let status = match row.best_val_accuracy {
                Some(best) if row.status.ran() => format!("best validation accuracy {}", pct(best)),
                _ => row.status.to_string(),
            };
            crate::progress::line(
                &bar,
                quiet,
                &format!("[{}/{n}] {} {status}", i + 1, row.name),
            );
        },
    )?;
    bar.finish_and_clear();
    if a.json {
        crate::output::OutputArgs::print_json(&comparison)?;
    } else {
        print!("{}", comparison.to_text());
        println!("written to {}", a.out.display());
    }
    let failed = comparison.failures();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CheckFailed(format!("some runs failed:\n{}", failed.join("\n"))).into())
    }
}
