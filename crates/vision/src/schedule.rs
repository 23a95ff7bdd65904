//! Learning-rate schedules stepped once per batch: constant, cosine and
//! one-cycle, each with an optional linear warm-up. The rate of a step is a
//! function of the step's index and the run's length alone, so a resumed
//! run follows the schedule an uninterrupted one would (a resume that
//! changes `--epochs` stretches the schedule to the new length).

use burn::lr_scheduler::module_lr_scheduler::{
    ModuleLearningRate, ModuleLrScheduler, ModuleLrSchedulerConfig,
};
use burn::lr_scheduler::LrSchedulerConfig;
use burn::module::ParamGroup;
use serde::{Deserialize, Serialize};

use crate::model::choices;

/// The values of `--lr-schedule`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// `--lr` at every step (after the warm-up).
    #[default]
    Constant,
    /// Half a cosine from `--lr` down to 0 over the steps after the warm-up
    /// (PyTorch's `CosineAnnealingLR` with `T_max` the remaining steps).
    Cosine,
    /// PyTorch's `OneCycleLR` (cosine annealing, `div_factor` 25,
    /// `final_div_factor` 10⁴): up from `--lr`/25 to `--lr` over the
    /// warm-up (a quarter of the steps when `--warmup-epochs` is 0, fastai's
    /// `pct_start`), then down to `--lr`/(25·10⁴).
    OneCycle,
}

impl LrSchedule {
    pub const ALL: [LrSchedule; 3] = [
        LrSchedule::Constant,
        LrSchedule::Cosine,
        LrSchedule::OneCycle,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LrSchedule::Constant => "constant",
            LrSchedule::Cosine => "cosine",
            LrSchedule::OneCycle => "one-cycle",
        }
    }
}

impl std::str::FromStr for LrSchedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let names = LrSchedule::ALL.map(LrSchedule::name);
        LrSchedule::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown schedule `{s}`; expected {}", choices(&names)))
    }
}

/// One-cycle's starting rate is the peak divided by this (PyTorch's default).
const DIV_FACTOR: f64 = 25.0;
/// …and its final rate the starting one divided by this.
const FINAL_DIV_FACTOR: f64 = 1e4;
/// One-cycle's rise as a fraction of the steps, without `--warmup-epochs`.
const PCT_START: f64 = 0.25;

/// A schedule and its warm-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScheduleConfig {
    pub kind: LrSchedule,
    /// Epochs (fractions allowed) of linear warm-up (for one-cycle: of the rise).
    pub warmup_epochs: f64,
}

/// PyTorch's `_annealing_cos`: from `start` at `pct` 0 to `end` at 1.
fn cos_between(start: f64, end: f64, pct: f64) -> f64 {
    end + (start - end) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0)
}

impl ScheduleConfig {
    /// The rate at `step` (0-based) of `total` steps, `per_epoch` to an
    /// epoch, peaking at `lr`.
    pub fn rate(&self, lr: f64, step: usize, total: usize, per_epoch: usize) -> f64 {
        let warmup = self.warmup_epochs * per_epoch as f64;
        let s = step as f64;
        match self.kind {
            LrSchedule::OneCycle => {
                let rise = if self.warmup_epochs > 0.0 {
                    warmup
                } else {
                    PCT_START * total as f64
                };
                let (initial, peak_at, end_at) = (lr / DIV_FACTOR, rise - 1.0, total as f64 - 1.0);
                if s <= peak_at && peak_at > 0.0 {
                    cos_between(initial, lr, s / peak_at)
                } else if end_at > peak_at.max(0.0) {
                    let from = peak_at.max(0.0);
                    cos_between(lr, initial / FINAL_DIV_FACTOR, (s - from) / (end_at - from))
                } else {
                    lr
                }
            }
            _ if s < warmup => lr * (s + 1.0) / warmup,
            LrSchedule::Constant => lr,
            LrSchedule::Cosine => {
                let warm = warmup.ceil();
                let span = (total as f64 - warm).max(1.0);
                lr * (1.0 + (std::f64::consts::PI * (s - warm) / span).cos()) / 2.0
            }
        }
    }
}

/// The learning rates of one step: the head's, and a multiple of it for the rest.
pub(crate) struct Rates {
    pub(crate) head: Option<ParamGroup>,
    pub(crate) backbone_mult: f64,
}

impl Rates {
    pub(crate) fn at(&self, head_lr: f64) -> ModuleLearningRate {
        let mut config =
            ModuleLrSchedulerConfig::new(LrSchedulerConfig::Constant(head_lr * self.backbone_mult));
        if let Some(head) = &self.head {
            config = config.with_group(head.clone(), LrSchedulerConfig::Constant(head_lr));
        }
        let mut scheduler: ModuleLrScheduler = config
            .init()
            .expect("constant learning rates are always valid");
        scheduler.step()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kind: LrSchedule, warmup_epochs: f64) -> ScheduleConfig {
        ScheduleConfig {
            kind,
            warmup_epochs,
        }
    }

    #[test]
    fn warm_up_is_linear_and_constant_is_exactly_the_rate() {
        let c = config(LrSchedule::Constant, 0.0);
        assert!((0..50).all(|s| c.rate(0.1, s, 50, 10) == 0.1));
        let w = config(LrSchedule::Constant, 0.5);
        let rates: Vec<f64> = (0..7).map(|s| w.rate(0.1, s, 50, 10)).collect();
        for (s, r) in rates.iter().enumerate().take(5) {
            assert!((r - 0.1 * (s + 1) as f64 / 5.0).abs() < 1e-15, "{rates:?}");
        }
        assert_eq!(rates[5], 0.1);
        let cos = config(LrSchedule::Cosine, 1.0);
        assert!((cos.rate(0.1, 9, 40, 10) - 0.1).abs() < 1e-15);
        assert_eq!(cos.rate(0.1, 10, 40, 10), 0.1);
        assert!(cos.rate(0.1, 39, 40, 10) < 0.001);
    }

    #[test]
    fn names_parse_back() {
        for k in LrSchedule::ALL {
            assert_eq!(k.name().parse::<LrSchedule>(), Ok(k));
        }
        assert_eq!(
            "step".parse::<LrSchedule>().unwrap_err(),
            "unknown schedule `step`; expected constant, cosine or one-cycle"
        );
    }
}
