//! What `nabla vision train`, `eval` and `predict` report, as typed values
//! with their terminal text and charts.

use nabla_report::{history_series, line_chart, History, LineChart, PlotError, Table};
use serde::{Deserialize, Serialize};

use crate::decode::Skipped;
use crate::train::{EpochRecord, Evaluation, VisionTrainConfig};

/// The result of `nabla vision train` (also its run directory's `train.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainReport {
    /// The run's identity ([`crate::identity`]), as its other files say it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
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
    /// Why training ended before its last epoch (`--patience`, `--target-accuracy`).
    #[serde(default)]
    pub stopped_early: Option<String>,
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
        ) + &self
            .stopped_early
            .as_ref()
            .map_or(String::new(), |why| format!("{why}\n"))
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
        let mut s = format!(
            "{what}: loss {:.4}, accuracy {:.2}%\n{}",
            self.loss,
            100.0 * self.accuracy,
            Table::new("Confusion matrix", &headers, rows).to_text()
        );
        if let Some(per_class) = &self.per_class {
            s += &per_class.table().to_text();
        }
        s
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

/// One of the images a model got most wrong.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TopLoss {
    pub file: std::path::PathBuf,
    pub true_class: String,
    pub predicted: String,
    /// The predicted class's probability.
    pub probability: f32,
    /// Cross-entropy of the true class.
    pub loss: f64,
    /// The image as the model saw it, as PNG bytes (base64 in JSON, so a
    /// gallery survives the trip from a child process's stdout).
    #[serde(rename = "thumbnail_png_base64", with = "base64_bytes", default)]
    pub thumbnail: Vec<u8>,
}

mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    const BASE64: base64::engine::general_purpose::GeneralPurpose =
        base64::engine::general_purpose::STANDARD;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        BASE64
            .decode(String::deserialize(d)?)
            .map_err(serde::de::Error::custom)
    }
}

/// The highest-loss images as one SVG picture for the report: a grid of
/// thumbnails (inline PNG), each with its true and predicted class, the
/// probability and the loss.
pub fn gallery_svg(items: &[TopLoss]) -> String {
    use base64::Engine as _;
    use nabla_report::document::escape;
    const COLUMNS: usize = 4;
    const CELL_W: usize = 190;
    const CELL_H: usize = 200;
    const SIDE: usize = 128;
    let rows = items.len().div_ceil(COLUMNS).max(1);
    let (width, height) = (COLUMNS * CELL_W, rows * CELL_H);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n"
    );
    for (i, t) in items.iter().enumerate() {
        let (x, y) = (
            (i % COLUMNS) * CELL_W + (CELL_W - SIDE) / 2,
            (i / COLUMNS) * CELL_H + 6,
        );
        let image = base64::engine::general_purpose::STANDARD.encode(&t.thumbnail);
        let name = t
            .file
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned());
        let wrong = t.true_class != t.predicted;
        svg += &format!(
            "<image x=\"{x}\" y=\"{y}\" width=\"{SIDE}\" height=\"{SIDE}\" style=\"image-rendering:pixelated\" href=\"data:image/png;base64,{image}\"><title>{file}</title></image>\n\
             <text x=\"{x}\" y=\"{y1}\">true <tspan font-weight=\"bold\">{truth}</tspan></text>\n\
             <text x=\"{x}\" y=\"{y2}\" fill=\"{colour}\">predicted <tspan font-weight=\"bold\">{predicted}</tspan> {p:.1}%</text>\n\
             <text x=\"{x}\" y=\"{y3}\" fill=\"#666\">loss {loss:.3} · {name}</text>\n",
            file = escape(&t.file.display().to_string()),
            truth = escape(&t.true_class),
            predicted = escape(&t.predicted),
            colour = if wrong { "#b00020" } else { "#222" },
            p = 100.0 * t.probability,
            loss = t.loss,
            name = escape(&nabla_report::shorten(&name, 14)),
            y1 = y + SIDE + 16,
            y2 = y + SIDE + 31,
            y3 = y + SIDE + 46,
        );
    }
    svg + "</svg>\n"
}

/// A self-contained HTML page of the highest-loss images: each thumbnail
/// inline, with its true class, predicted class, probability and loss.
pub fn gallery_html(title: &str, items: &[TopLoss]) -> String {
    use base64::Engine as _;
    let mut cards = String::new();
    for t in items {
        let image = base64::engine::general_purpose::STANDARD.encode(&t.thumbnail);
        cards += &format!(
            "<figure><img src=\"data:image/png;base64,{image}\" width=\"128\" height=\"128\" alt=\"{file}\"><figcaption>true <b>{truth}</b>, predicted <b>{predicted}</b> ({p:.1}%)<br>loss {loss:.3}<br><small>{file}</small></figcaption></figure>\n",
            file = nabla_report::document::escape(&t.file.display().to_string()),
            truth = nabla_report::document::escape(&t.true_class),
            predicted = nabla_report::document::escape(&t.predicted),
            p = 100.0 * t.probability,
            loss = t.loss
        );
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>body{{font-family:system-ui,sans-serif;margin:1.5rem}}figure{{display:inline-block;width:170px;margin:.4rem;vertical-align:top}}img{{image-rendering:pixelated;border:1px solid #ccc}}figcaption{{font-size:.8rem}}small{{color:#666;word-break:break-all}}</style></head><body><h1>{t}</h1>\n{cards}</body></html>\n",
        t = nabla_report::document::escape(title)
    )
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

/// `metrics.csv`: one row per epoch.
pub(crate) fn metrics_table(history: &[EpochRecord]) -> Table {
    let rows = history
        .iter()
        .map(|r| {
            vec![
                r.epoch.to_string(),
                format!("{:e}", r.train_loss),
                format!("{:e}", r.train_accuracy),
                format!("{:e}", r.val_loss),
                format!("{:e}", r.val_accuracy),
                format!("{:.3}", r.seconds),
                r.lrs.first().map_or(String::new(), |v| format!("{v:e}")),
                r.lrs.last().map_or(String::new(), |v| format!("{v:e}")),
            ]
        })
        .collect();
    Table::new(
        "",
        &[
            "epoch",
            "train_loss",
            "train_accuracy",
            "val_loss",
            "val_accuracy",
            "seconds",
            "lr_first_step",
            "lr_last_step",
        ],
        rows,
    )
}

/// `lr.csv`: the head's learning rate at every training step.
pub(crate) fn lr_table(history: &[EpochRecord]) -> Table {
    let mut step = 0;
    let mut rows = Vec::new();
    for r in history {
        for lr in &r.lrs {
            step += 1;
            rows.push(vec![
                step.to_string(),
                r.epoch.to_string(),
                format!("{lr:e}"),
            ]);
        }
    }
    Table::new("", &["step", "epoch", "lr"], rows)
}

/// The head's learning rate at every step, over the run.
pub fn lr_chart(history: &[EpochRecord]) -> Result<String, PlotError> {
    let mut chart = LineChart::new(
        "Learning rate of every step (the head's; the backbone's is --backbone-lr-mult times it)",
        "training step",
        "learning rate",
    );
    let points: Vec<(f64, f64)> = history
        .iter()
        .flat_map(|r| r.lrs.iter())
        .enumerate()
        .map(|(i, &lr)| ((i + 1) as f64, lr))
        .collect();
    chart.series.push(nabla_report::Series {
        name: "learning rate".into(),
        points,
        color: 0,
        dashed: false,
    });
    line_chart(&chart)
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
