//! `nabla vision`: the sheet's Problem 5 — train the CNNs (ii, iii), ResNet34
//! and EfficientNet-Lite0 (iv) on an image folder, evaluate a trained model on
//! another, predict, and compare them all.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use nabla_report::OutputFile;
use nabla_vision::augment::Augmentation;
use nabla_vision::decode::Skipped;
use nabla_vision::device::Accelerator;
use nabla_vision::export::{export_run, ExportFormat};
use nabla_vision::lr_find::LrFindReport;
use nabla_vision::model::Architecture;
use nabla_vision::report::{gallery_html, predictions_text};
use nabla_vision::run::{
    evaluate_run, predict_images, train_run, Progress, RunDir, Start, TrainSettings,
};
use nabla_vision::schedule::LrSchedule;
use nabla_vision::train::{EpochRecord, VisionOptimizer};

use crate::output::OutputArgs;
use crate::InputError;

#[derive(Subcommand, Debug)]
pub enum VisionCommand {
    /// Train `cnn` (the sheet's ii), `cnn-bn` (iii), `resnet34` or
    /// `efficientnet-lite0` (iv) on an image folder.
    #[command(
        after_help = "Examples:\n  nabla vision train --data data/face-mask --model cnn-bn --epochs 10 --out runs/cnn-bn\n  nabla vision train --resume runs/cnn-bn --epochs 15\n  nabla vision train --model efficientnet-lite0 --pretrained ~/.cache/nabla/weights/efficientnet-lite0.safetensors --freeze-backbone --out runs/probe"
    )]
    Train(Box<TrainArgs>),
    /// Loss, accuracy and confusion matrix of a trained model on an image folder.
    #[command(
        after_help = "Example:\n  nabla vision eval --checkpoint runs/cnn-bn --data data/face-mask"
    )]
    Eval(EvalArgs),
    /// Class and probability for each image, from a trained model.
    #[command(
        after_help = "Example:\n  nabla vision predict --checkpoint runs/cnn-bn photo1.jpg photo2.png"
    )]
    Predict(PredictArgs),
    /// Every face in whole photos (MTCNN), each classified by a trained model.
    #[command(
        after_help = "Example:\n  nabla weights download mtcnn\n  nabla vision detect --checkpoint runs/cnn-bn street.jpg class.png --out runs/detected\n\nEach face's crop is its box grown by --margin of its size on every side (the\nface-mask photos show whole heads). --out writes PHOTO.svg per photo: the photo\nwith each box coloured by class, labelled with class and probability."
    )]
    Detect(crate::faces_cmd::DetectArgs),
    /// Beyond the sheet: a trained run's validation photos pasted into
    /// scenes at known places, the faces found and labelled, and counted.
    #[command(
        after_help = "Examples:\n  nabla vision scene --checkpoint runs/cnn-bn --out runs/scene\n  nabla vision scene --best-of runs/compare --scenes 20 --json\n\nA pasted photo counts as found when a face's centre lies inside it, and as\nlabelled right when the most confident such face gets its folder's class.\n--out writes scene-N.png and scene-N.svg (faces drawn, pasted photos outlined)."
    )]
    Scene(crate::faces_cmd::SceneArgs),
    /// fastai's learning-rate range test: one step at each rate of an
    /// exponential sweep, the loss against the rate, a suggested rate.
    #[command(
        name = "lr-find",
        after_help = "Example:\n  nabla vision lr-find --data data/face-mask --model cnn-bn --out runs/lr-find\n  nabla vision train --data data/face-mask --model cnn-bn --lr SUGGESTED --lr-schedule one-cycle"
    )]
    LrFind(LrFindArgs),
    /// A trained model for use elsewhere: safetensors under PyTorch's
    /// parameter names (`load_state_dict` takes it) or ONNX (opset 13).
    #[command(
        after_help = "Examples:\n  nabla vision export --checkpoint runs/cnn-bn --format onnx --out cnn-bn.onnx\n  nabla vision export --checkpoint runs/resnet34 --format safetensors --out resnet34.safetensors\n\nThe file holds the best epoch's weights (evaluation mode for ONNX: BatchNorm on its\nrunning statistics, no dropout) and names the model, the classes in order, the image\nsize and the input normalisation in its metadata."
    )]
    Export(ExportArgs),
    /// Problem 5 (iv): every model from scratch and from ImageNet weights on
    /// the same split, image size and epoch budget; a table, overlaid curves
    /// and a reading of the numbers.
    Compare(crate::compare_cmd::CompareArgs),
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// An image folder: one subfolder per class.
    #[arg(long, default_value = "data/face-mask")]
    pub data: PathBuf,
    /// cnn, cnn-bn, resnet34 or efficientnet-lite0.
    #[arg(long, default_value = "cnn-bn")]
    pub model: Architecture,
    /// Epochs in all [default: 10]; with --resume, the new total.
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// sgd, momentum, nesterov or adam.
    #[arg(long, default_value = "adam")]
    pub optimizer: VisionOptimizer,
    /// ρ for momentum and Nesterov.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Side of the square images the photos are resized to.
    #[arg(long, default_value_t = 128)]
    pub image_size: usize,
    /// Fraction held out for validation, stratified by class.
    #[arg(long, default_value_t = 0.2)]
    pub val_fraction: f64,
    /// Output channels of the four convolutions.
    #[arg(long, value_delimiter = ',', default_value = "32,64,128,128")]
    pub channels: Vec<usize>,
    /// Units of the hidden dense layer.
    #[arg(long, default_value_t = 256)]
    pub hidden: usize,
    /// Dropout on the first dense layer (cnn-bn).
    #[arg(long, default_value_t = 0.5)]
    pub dropout: f64,
    /// No random horizontal flips of training images.
    #[arg(long)]
    pub no_flip: bool,
    /// Random resized crops of training images keeping at least this
    /// fraction of the area (e.g. 0.5); off by default.
    #[arg(long, value_name = "MIN_SCALE")]
    pub random_crop: Option<f64>,
    /// Random rotations up to this many degrees either way.
    #[arg(long, value_name = "DEGREES")]
    pub rotate: Option<f64>,
    /// Random zoom by a factor in [1 − F, 1 + F] per axis.
    #[arg(long, value_name = "F")]
    pub zoom: Option<f64>,
    /// Random shifts up to this fraction of the side, per axis.
    #[arg(long, value_name = "F")]
    pub shift: Option<f64>,
    /// Random shear up to this many degrees either way (as Keras reads its shear_range).
    #[arg(long, value_name = "DEGREES")]
    pub shear: Option<f64>,
    /// Random brightness, contrast and saturation factors in [1 − F, 1 + F].
    #[arg(long, value_name = "F")]
    pub color_jitter: Option<f64>,
    /// The face-mask dataset repository's Keras recipe: --rotate 20
    /// --zoom 0.15 --shift 0.2 --shear 0.15 with flips (each overridable).
    #[arg(long)]
    pub keras_recipe: bool,
    /// ImageNet weights (.pth or .safetensors) for resnet34 or
    /// efficientnet-lite0 (`nabla weights download`): every layer but the new
    /// head starts from them; resnet34's inputs then use ImageNet normalisation.
    #[arg(long, value_name = "FILE")]
    pub pretrained: Option<PathBuf>,
    /// Train the new head only (a linear probe) on backbone features
    /// computed once; augmentation does not apply.
    #[arg(long)]
    pub freeze_backbone: bool,
    /// The backbone's learning rate as a multiple of --lr (e.g. 0.1), for
    /// fine-tuning pretrained weights more gently than the new head.
    #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
    pub backbone_lr_mult: f64,
    /// The learning rate's course, stepped per batch: constant, cosine
    /// (down to 0) or one-cycle (up from --lr/25 to --lr, then down).
    #[arg(long, default_value = "constant")]
    pub lr_schedule: LrSchedule,
    /// Epochs (fractions allowed) of linear warm-up; for one-cycle, of the
    /// rise (default: a quarter of the steps).
    #[arg(long, default_value_t = 0.0, value_name = "EPOCHS")]
    pub warmup_epochs: f64,
    /// fastai's fine_tune: N epochs with the backbone frozen (the probe on
    /// cached features), then every layer with the backbone at
    /// --backbone-lr-mult and the schedule restarted; needs --pretrained.
    #[arg(long, value_name = "N")]
    pub fine_tune: Option<usize>,
    /// Stop once the validation loss has not improved for this many epochs
    /// (best.bpk stays the best epoch's model).
    #[arg(long, value_name = "EPOCHS")]
    pub patience: Option<usize>,
    /// Stop after the first epoch whose validation accuracy reaches this
    /// fraction (e.g. 0.95), before --epochs.
    #[arg(long, value_name = "FRACTION")]
    pub target_accuracy: Option<f64>,
    #[arg(long, default_value_t = 42)]
    pub seed: u32,
    /// Decoded-image cache [default: ~/.cache/nabla/images].
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Continue the run in this directory from its latest checkpoint (its
    /// model, data and settings; only --epochs may change).
    #[arg(long, value_name = "RUN", conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// With --out: replace the run that directory holds, as a whole
    /// (without it, a directory that holds a run is refused).
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// cpu, cuda or wgpu (the last two need a build with that feature).
    #[arg(long, default_value = "cpu")]
    pub device: Accelerator,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct LrFindArgs {
    /// An image folder: one subfolder per class.
    #[arg(long, default_value = "data/face-mask")]
    pub data: PathBuf,
    /// cnn, cnn-bn, resnet34 or efficientnet-lite0.
    #[arg(long, default_value = "cnn-bn")]
    pub model: Architecture,
    /// The first learning rate of the sweep.
    #[arg(long, default_value_t = 1e-7)]
    pub start_lr: f64,
    /// The last.
    #[arg(long, default_value_t = 10.0)]
    pub end_lr: f64,
    /// Steps (one learning rate each).
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// sgd, momentum, nesterov or adam.
    #[arg(long, default_value = "adam")]
    pub optimizer: VisionOptimizer,
    #[arg(long, default_value_t = 128)]
    pub image_size: usize,
    /// ImageNet weights for resnet34 or efficientnet-lite0.
    #[arg(long, value_name = "FILE")]
    pub pretrained: Option<PathBuf>,
    /// The backbone's learning rate as a multiple of the swept one.
    #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
    pub backbone_lr_mult: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u32,
    /// Decoded-image cache [default: ~/.cache/nabla/images].
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// cpu, cuda or wgpu.
    #[arg(long, default_value = "cpu")]
    pub device: Accelerator,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A run directory written by `nabla vision train --out`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// An image folder with the same classes.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Test-time augmentation: average each image's and its mirror's probabilities.
    #[arg(long)]
    pub tta: bool,
    /// cpu, cuda or wgpu.
    #[arg(long, default_value = "cpu")]
    pub device: Accelerator,
    /// Print one JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Write eval.json and the highest-loss images (top_losses.html, a
    /// self-contained gallery, and top_losses.json) into this directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A run directory written by `nabla vision train --out`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// onnx or safetensors.
    #[arg(long)]
    pub format: ExportFormat,
    /// The file to write (replaced atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A run directory written by `nabla vision train --out`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Image files (any format `data inspect` reads).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Test-time augmentation: average each image's and its mirror's probabilities.
    #[arg(long)]
    pub tta: bool,
    /// cpu, cuda or wgpu.
    #[arg(long, default_value = "cpu")]
    pub device: Accelerator,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: &VisionCommand) -> Result<()> {
    match cmd {
        VisionCommand::Train(a) => train_cmd(a),
        VisionCommand::Eval(a) => eval_cmd(a),
        VisionCommand::Predict(a) => predict_cmd(a),
        VisionCommand::Detect(a) => crate::faces_cmd::detect(a),
        VisionCommand::Scene(a) => crate::faces_cmd::scene(a),
        VisionCommand::LrFind(a) => lr_find_cmd(a),
        VisionCommand::Export(a) => export_cmd(a),
        VisionCommand::Compare(a) => crate::compare_cmd::run(a),
    }
}

/// Progress on stderr: a bar on a terminal, plain epoch lines otherwise,
/// nothing with `--json`.
struct Bars {
    decoding: ProgressBar,
    training: ProgressBar,
    quiet: bool,
}

impl Bars {
    fn new(name: &str, quiet: bool) -> Self {
        Bars {
            decoding: crate::progress::bar(0, quiet, "decoding"),
            training: crate::progress::bar(0, quiet, name),
            quiet,
        }
    }
}

impl Progress for Bars {
    fn decoded(&self, total: usize) {
        self.decoding.set_length(total as u64);
        self.decoding.inc(1);
        if self.decoding.position() == total as u64 {
            self.decoding.finish_and_clear();
        }
    }

    fn batch(&self, done: usize, total: usize) {
        self.training.set_length(total as u64);
        self.training.set_position(done as u64);
    }

    fn epoch(&self, r: &EpochRecord, epochs: usize) {
        let line = format!(
            "epoch {:>3}/{epochs}: train loss {:.4} acc {:.2}% | val loss {:.4} acc {:.2}% ({:.0} s)",
            r.epoch,
            r.train_loss,
            100.0 * r.train_accuracy,
            r.val_loss,
            100.0 * r.val_accuracy,
            r.seconds
        );
        crate::progress::line(&self.training, self.quiet, &line);
    }

    fn skipped(&self, file: &Skipped) {
        eprintln!("warning: skipped {}: {}", file.path.display(), file.reason);
    }
}

/// The affine and colour options, over the recipe when asked for.
fn augmentation(a: &TrainArgs) -> Augmentation {
    let base = if a.keras_recipe {
        Augmentation::FACE_MASK
    } else {
        Augmentation::NONE
    };
    Augmentation {
        rotation: a.rotate.unwrap_or(base.rotation),
        zoom: a.zoom.unwrap_or(base.zoom),
        shift: a.shift.unwrap_or(base.shift),
        shear: a.shear.unwrap_or(base.shear),
        color_jitter: a.color_jitter.unwrap_or(base.color_jitter),
        ..base
    }
}

fn train_cmd(a: &TrainArgs) -> Result<()> {
    let (start, out) = match &a.resume {
        Some(run) => (Start::Resume { epochs: a.epochs }, Some(RunDir::new(run))),
        None => {
            let settings = TrainSettings {
                data: a.data.clone(),
                model: a.model,
                epochs: a.epochs.unwrap_or(10),
                batch_size: a.batch_size,
                lr: a.lr,
                optimizer: a.optimizer,
                momentum: a.momentum,
                image_size: a.image_size,
                val_fraction: a.val_fraction,
                channels: a.channels.clone(),
                hidden: a.hidden,
                dropout: a.dropout,
                flip: !a.no_flip,
                random_crop: a.random_crop,
                augmentation: augmentation(a),
                pretrained: a.pretrained.clone(),
                freeze_backbone: a.freeze_backbone,
                backbone_lr_mult: a.backbone_lr_mult,
                schedule: a.lr_schedule,
                warmup_epochs: a.warmup_epochs,
                patience: a.patience,
                fine_tune: a.fine_tune,
                seed: a.seed,
                cache: a.cache.clone(),
            };
            let settings = Box::new(settings);
            let start = if a.overwrite {
                Start::Replace(settings)
            } else {
                Start::New(settings)
            };
            (start, a.output.out.as_ref().map(RunDir::new))
        }
    };
    let bars = Bars::new(a.model.name(), a.output.json);
    let report = train_run(start, out.as_ref(), a.device, a.target_accuracy, &bars)?;
    bars.training.finish_and_clear();
    if a.output.json {
        return OutputArgs::print_json(&report);
    }
    print!("{}", report.to_text());
    Ok(())
}

fn eval_cmd(a: &EvalArgs) -> Result<()> {
    let bars = Bars::new("eval", a.json);
    let run = evaluate_run(
        &RunDir::new(&a.checkpoint),
        &a.data,
        a.batch_size,
        a.device,
        a.tta,
        &bars,
    )?;
    if let Some(dir) = &a.out {
        let out = OutputArgs {
            json: a.json,
            out: Some(dir.clone()),
        };
        let title = format!(
            "The {} highest-loss images of {} ({})",
            run.top_losses.len(),
            a.data.display(),
            run.card.model.architecture.name()
        );
        out.write_files(&[
            OutputFile::new("top_losses.html", gallery_html(&title, &run.top_losses)),
            OutputFile::json("top_losses.json", &run.top_losses),
            OutputFile::json("eval.json", &run.evaluation),
        ])?;
    }
    if a.json {
        return OutputArgs::print_json(&run.evaluation);
    }
    println!("{} images of {}", run.images, a.data.display());
    print!(
        "{}",
        run.evaluation.to_text("validation", &run.card.classes)
    );
    Ok(())
}

fn predict_cmd(a: &PredictArgs) -> Result<()> {
    let (predictions, failed) =
        predict_images(&RunDir::new(&a.checkpoint), &a.images, a.device, a.tta)?;
    if a.json {
        OutputArgs::print_json(&predictions)?;
    } else {
        print!("{}", predictions_text(&predictions));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(InputError(format!("cannot read {}", failed.join("; "))).into())
    }
}

fn export_cmd(a: &ExportArgs) -> Result<()> {
    let report = export_run(&RunDir::new(&a.checkpoint), a.format, &a.out)?;
    if a.json {
        return OutputArgs::print_json(&report);
    }
    print!("{}", report.to_text());
    Ok(())
}

fn lr_find_cmd(a: &LrFindArgs) -> Result<()> {
    let settings = TrainSettings {
        batch_size: a.batch_size,
        lr: a.end_lr,
        optimizer: a.optimizer,
        image_size: a.image_size,
        pretrained: a.pretrained.clone(),
        backbone_lr_mult: a.backbone_lr_mult,
        seed: a.seed,
        cache: a.cache.clone(),
        ..TrainSettings::new(a.data.clone(), a.model)
    };
    let bars = Bars::new("lr-find", a.output.json);
    let report = LrFindReport::run(&settings, (a.start_lr, a.end_lr, a.steps), a.device, &bars)?;
    bars.training.finish_and_clear();
    a.output
        .emit(&report, || report.files(), || report.to_text())
}
