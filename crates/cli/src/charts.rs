//! The training-history charts of `nabla vision train` and `compare`.

use anyhow::Result;
use nabla_report::{history_series, line_chart, History, LineChart};
use nabla_vision::train::EpochRecord;

/// `loss.svg` and `accuracy.svg` over epochs for one run or several
/// overlaid, one colour per run: train solid, validation dashed.
pub fn history_charts(
    title: &str,
    runs: &[(&str, &[EpochRecord])],
) -> Result<[(&'static str, String); 2]> {
    type Pick = fn(&EpochRecord) -> (f64, f64);
    let chart = |what: &str, pick: Pick| -> Result<String> {
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
        Ok(line_chart(&chart)?)
    };
    Ok([
        (
            "loss.svg",
            chart("cross-entropy", |r| (r.train_loss, r.val_loss))?,
        ),
        (
            "accuracy.svg",
            chart("accuracy", |r| (r.train_accuracy, r.val_accuracy))?,
        ),
    ])
}
