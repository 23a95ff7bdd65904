//! `nabla vision lr-find`: fastai's learning-rate range test. One training
//! step at each of a few hundred learning rates growing exponentially from
//! `start` to `end`, the loss of each step smoothed (an exponential moving
//! average with β = 0.98, bias-corrected), stopped once the smoothed loss
//! exceeds four times its minimum, and a suggested rate by fastai's
//! "valley" rule (see [`suggest`]).

use nabla_report::{line_chart, number, LineChart, OutputFile, PlotError, Series, Table};
use serde::{Deserialize, Serialize};

use crate::device::Accelerator;
use crate::run::{run_data, Progress};
use crate::settings::TrainSettings;
use burn::tensor::Device;

use crate::images::ImageSet;
use crate::model::Network;
use crate::train::{augmented, train_pass, Pass, Trainer};
use crate::VisionError;

/// The moving average's weight of the past.
const BETA: f64 = 0.98;
/// The sweep stops once the smoothed loss exceeds this multiple of its minimum.
const DIVERGED: f64 = 4.0;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LrFindReport {
    pub model: String,
    pub start: f64,
    pub end: f64,
    /// The learning rate of each step taken.
    pub lrs: Vec<f64>,
    pub losses: Vec<f64>,
    pub smoothed: Vec<f64>,
    pub suggestion: f64,
    /// How the suggestion was picked, in words.
    pub rule: String,
    /// Why the sweep ended before its last step, if it did.
    pub stopped: Option<String>,
}

/// `steps` rates from `start` to `end`, evenly spaced on a log axis.
pub fn exponential(start: f64, end: f64, steps: usize) -> Vec<f64> {
    let ratio = end / start;
    (0..steps)
        .map(|i| start * ratio.powf(i as f64 / (steps.max(2) - 1) as f64))
        .collect()
}

/// The bias-corrected exponential moving average of `losses`.
pub fn smooth(losses: &[f64]) -> Vec<f64> {
    let mut average = 0.0;
    losses
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            average = BETA * average + (1.0 - BETA) * l;
            average / (1.0 - BETA.powi(i as i32 + 1))
        })
        .collect()
}

/// fastai's "valley" rule: the longest stretch over which the smoothed loss
/// keeps falling (its longest decreasing subsequence), and the rate half-way
/// into that stretch's middle third; the first tenth of the steps and the
/// last five are left out, as fastai does (the moving average is still
/// settling at the start, and the end is where it diverges).
pub fn suggest(lrs: &[f64], smoothed: &[f64]) -> (f64, String) {
    let first = smoothed.len() / 10;
    let last = smoothed.len().saturating_sub(5);
    if last <= first {
        return match lrs.first() {
            Some(&lr) => (lr, "too few steps to judge: the first rate".into()),
            None => (f64::NAN, "no steps were taken".into()),
        };
    }
    let window = &smoothed[first..last];
    let n = window.len();
    let mut longest = vec![1usize; n];
    let (mut start, mut end) = (0isize, 0usize);
    for i in 1..n {
        for j in 0..i {
            if window[i] < window[j] && longest[i] < longest[j] + 1 {
                longest[i] = longest[j] + 1;
            }
            if longest[end] < longest[i] {
                end = i;
                start = end as isize - longest[end] as isize;
            }
        }
    }
    let third = (end as isize - start) as f64 / 3.0;
    let at = (start + third as isize + (third / 2.0) as isize).clamp(0, n as isize - 1) as usize;
    (
        lrs[first + at],
        format!(
            "fastai's \"valley\": half-way into the middle third of the longest run over which the smoothed loss keeps falling ({} to {}), the first tenth and the last five steps left out",
            number(lrs[first + start.max(0) as usize]),
            number(lrs[first + end])
        ),
    )
}

impl LrFindReport {
    /// Sweeps `settings`' model from `start` to `end` over `steps` steps on
    /// its training split.
    pub fn run(
        settings: &TrainSettings,
        (start, end, steps): (f64, f64, usize),
        accelerator: Accelerator,
        progress: &dyn Progress,
    ) -> Result<Self, VisionError> {
        if !(start > 0.0 && end > start && end.is_finite()) || steps < 10 {
            return Err(VisionError::Setup(
                "--start-lr must be positive, --end-lr above it and --steps at least 10".into(),
            ));
        }
        if settings.freeze_backbone {
            return Err(VisionError::Setup(
                "lr-find sweeps the whole network; it does not take --freeze-backbone".into(),
            ));
        }
        let (mut config, spec) = settings.validate()?;
        let device = accelerator.device().map_err(VisionError::Setup)?.autodiff();
        let data = run_data(&spec, &config, progress)?;
        config.model.classes = data.folder.classes.len();
        let train_set = data.train;
        let mut trainer = Trainer::new(config.clone(), &device)?;
        let rates = exponential(start, end, steps);
        let mut losses = trainer.lr_sweep(&train_set, &rates, &device, &mut |done, total| {
            progress.batch(done, total)
        });
        let mut smoothed = smooth(&losses);
        let mut stopped = (losses.len() < rates.len()).then(|| {
            format!(
                "the loss stopped being finite at step {} (lr {})",
                losses.len() + 1,
                number(rates[losses.len()])
            )
        });
        let mut best = f64::INFINITY;
        if let Some(cut) = smoothed.iter().position(|&l| {
            best = best.min(l);
            l > DIVERGED * best
        }) {
            stopped = Some(format!(
                "the smoothed loss passed {DIVERGED} times its minimum at step {} (lr {})",
                cut + 1,
                number(rates[cut])
            ));
            losses.truncate(cut + 1);
            smoothed.truncate(cut + 1);
        }
        let lrs = rates[..losses.len()].to_vec();
        let (suggestion, rule) = suggest(&lrs, &smoothed);
        Ok(LrFindReport {
            model: config.model.architecture.name().to_string(),
            start,
            end,
            lrs,
            losses,
            smoothed,
            suggestion,
            rule,
            stopped,
        })
    }

    /// The loss against the learning rate (log axis), raw and smoothed.
    pub fn chart(&self) -> Result<String, PlotError> {
        let mut chart = LineChart::new(
            &format!(
                "{}: loss against learning rate (suggested {})",
                self.model,
                number(self.suggestion)
            ),
            "learning rate (log scale)",
            "training loss",
        );
        chart.log_x = true;
        for (i, (name, values)) in [("loss", &self.losses), ("smoothed", &self.smoothed)]
            .into_iter()
            .enumerate()
        {
            chart.series.push(Series {
                name: name.into(),
                points: self
                    .lrs
                    .iter()
                    .copied()
                    .zip(values.iter().copied())
                    .collect(),
                color: i,
                dashed: i == 0,
            });
        }
        line_chart(&chart)
    }

    /// `lr_find.svg`, `lr_find.csv` and `lr_find.json`.
    pub fn files(&self) -> Result<Vec<OutputFile>, PlotError> {
        let rows = (0..self.lrs.len())
            .map(|i| {
                vec![
                    (i + 1).to_string(),
                    format!("{:e}", self.lrs[i]),
                    format!("{:e}", self.losses[i]),
                    format!("{:e}", self.smoothed[i]),
                ]
            })
            .collect();
        Ok(vec![
            OutputFile::new("lr_find.svg", self.chart()?),
            OutputFile::new(
                "lr_find.csv",
                Table::new("", &["step", "lr", "loss", "smoothed"], rows).to_csv(),
            ),
            OutputFile::json("lr_find.json", self),
        ])
    }

    pub fn to_text(&self) -> String {
        format!(
            "{}: {} steps from {} to {}{}\nsuggested learning rate: {} ({})\n",
            self.model,
            self.lrs.len(),
            number(self.start),
            number(self.end),
            self.stopped
                .as_ref()
                .map_or(String::new(), |why| format!("; {why}")),
            number(self.suggestion),
            self.rule
        )
    }
}

impl Trainer {
    /// One training step at each of `rates` (the head's; the backbone's is
    /// `backbone_lr_mult` times it), epoch after epoch of the usual batches,
    /// and the loss of each step; a loss that is not finite ends the sweep
    /// early. The model is trained by it: a sweep is for `lr-find`, not a run.
    pub fn lr_sweep(
        &mut self,
        train_set: &ImageSet,
        rates: &[f64],
        device: &Device,
        on_batch: &mut dyn FnMut(usize, usize),
    ) -> Vec<f64> {
        let batch = self.config.batch_size.max(1);
        let group_rates = self.learning_rates();
        let augmentation = self.config.augmentation;
        let mut losses: Vec<f64> = Vec::new();
        let mut epoch = 1;
        while losses.len() < rates.len() && !train_set.is_empty() {
            device.seed((u64::from(self.config.seed) << 32) | epoch as u64);
            let (mut rng, order) = self.shuffled(epoch, train_set.len());
            let done = losses.len();
            let take = ((rates.len() - done) * batch).min(order.len());
            let model = self.model.take().expect("model present between epochs");
            let (model, tally, finished) = train_pass(
                &mut self.optim,
                model,
                &Pass {
                    order: &order[..take],
                    batch,
                    epoch,
                },
                device,
                &mut |i| group_rates.at(rates[done + i]),
                &mut |model: &Network, rows| {
                    let (images, labels) =
                        augmented(&augmentation, &mut rng, train_set, rows, device);
                    (model.forward(images), labels)
                },
                &mut |i, _| on_batch(done + i, rates.len()),
            );
            self.model = Some(model);
            losses.extend(tally.losses);
            if finished.is_err() {
                break;
            }
            epoch += 1;
        }
        losses
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_exponential_and_the_suggestion_is_fastais_valley() {
        let lrs = exponential(1e-5, 1.0, 11);
        assert!((lrs[0] - 1e-5).abs() < 1e-20 && (lrs[10] - 1.0).abs() < 1e-12);
        for w in lrs.windows(2) {
            assert!((w[1] / w[0] - 10f64.powf(0.5)).abs() < 1e-9);
        }
        // Noisy and flat, twenty falling steps, a rise: fastai's valley()
        // on the same numbers picks index 9 of the window that starts at 3.
        let mut loss = vec![1.0, 1.02, 0.98, 1.01];
        loss.extend((0..20).map(|k| 0.95 - 0.03 * f64::from(k)));
        loss.extend([0.5, 0.8, 1.5, 3.0, 6.0, 9.0]);
        let lrs30 = exponential(1e-5, 1.0, 30);
        let (lr, rule) = suggest(&lrs30, &loss);
        assert_eq!(lr, lrs30[3 + 9], "{rule}");
        let s = smooth(&[2.0, 2.0, 2.0]);
        assert!(
            s.iter().all(|&v| (v - 2.0).abs() < 1e-12),
            "bias-corrected: {s:?}"
        );
    }
}
