//! What a run is started with: the settings `nabla vision train` takes,
//! checked into a training configuration and the run's data spec.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::augment::Augmentation;
use crate::model::{Architecture, ModelConfig};
use crate::schedule::{LrSchedule, ScheduleConfig};
use crate::train::{VisionOptimizer, VisionTrainConfig};
use crate::VisionError;

/// What a run directory needs besides its checkpoint to be resumed: where
/// the data is and how it was split.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSpec {
    pub data: PathBuf,
    pub val_fraction: f64,
    pub cache: Option<PathBuf>,
    /// The run's identity ([`crate::identity`]); none in runs from before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

/// Everything a new run is started with, as `nabla vision train` takes it.
#[derive(Clone, Debug)]
pub struct TrainSettings {
    pub data: PathBuf,
    pub model: Architecture,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub optimizer: VisionOptimizer,
    pub momentum: f64,
    pub image_size: usize,
    pub val_fraction: f64,
    /// Output channels of the four convolutions (the CNNs).
    pub channels: Vec<usize>,
    pub hidden: usize,
    pub dropout: f64,
    pub flip: bool,
    pub random_crop: Option<f64>,
    /// Rotation, zoom, shift, shear and colour jitter (its flip and crop
    /// fields are ignored: `flip` and `random_crop` say those).
    pub augmentation: Augmentation,
    pub pretrained: Option<PathBuf>,
    pub freeze_backbone: bool,
    pub backbone_lr_mult: f64,
    pub schedule: LrSchedule,
    /// Epochs (fractions allowed) of warm-up.
    pub warmup_epochs: f64,
    /// Stop once the validation loss has not improved for this many epochs.
    pub patience: Option<usize>,
    /// Epochs with the backbone frozen before every layer trains.
    pub fine_tune: Option<usize>,
    pub seed: u32,
    pub cache: Option<PathBuf>,
}

impl TrainSettings {
    /// `vision train`'s defaults for `model` on the folder `data`: 10 epochs
    /// of Adam at 1e-3, batch 32, 128 pixels, a fifth held out, the sheet's
    /// CNN sizes, flips, seed 42.
    pub fn new(data: PathBuf, model: Architecture) -> Self {
        TrainSettings {
            data,
            model,
            epochs: 10,
            batch_size: 32,
            lr: 1e-3,
            optimizer: VisionOptimizer::Adam,
            momentum: 0.9,
            image_size: 128,
            val_fraction: 0.2,
            channels: vec![32, 64, 128, 128],
            hidden: 256,
            dropout: 0.5,
            flip: true,
            random_crop: None,
            augmentation: Augmentation::NONE,
            pretrained: None,
            freeze_backbone: false,
            backbone_lr_mult: 1.0,
            schedule: LrSchedule::Constant,
            warmup_epochs: 0.0,
            patience: None,
            fine_tune: None,
            seed: 42,
            cache: None,
        }
    }
}

fn setup(message: &str) -> VisionError {
    VisionError::Setup(message.to_string())
}

impl TrainSettings {
    /// The training configuration and the run's data spec, or the first
    /// setting that cannot work, named by its option.
    pub fn validate(&self) -> Result<(VisionTrainConfig, RunSpec), VisionError> {
        let a = self;
        let backbone = a.model.has_backbone();
        if !backbone && (a.image_size < 16 || !a.image_size.is_multiple_of(16)) {
            return Err(setup(
                "--image-size must be a multiple of 16 (four 2×2 poolings)",
            ));
        }
        if backbone && a.image_size < 32 {
            return Err(setup(&format!(
                "--image-size must be at least 32 for {}",
                a.model.name()
            )));
        }
        if !backbone && (a.pretrained.is_some() || a.freeze_backbone || a.backbone_lr_mult != 1.0) {
            return Err(setup("--pretrained, --freeze-backbone and --backbone-lr-mult need --model resnet34 or efficientnet-lite0"));
        }
        let g = &a.augmentation;
        let ranges = [g.rotation, g.zoom, g.shift, g.shear, g.color_jitter];
        if ranges.iter().any(|v| !(*v >= 0.0 && v.is_finite()))
            || g.zoom >= 1.0
            || g.color_jitter > 1.0
        {
            return Err(setup("--rotate, --zoom, --shift, --shear and --color-jitter must be ≥ 0 (--zoom below 1, --color-jitter at most 1)"));
        }
        if a.freeze_backbone && (a.random_crop.is_some() || a.backbone_lr_mult != 1.0) {
            return Err(setup("--freeze-backbone trains the head on features computed once: it takes neither --random-crop nor --backbone-lr-mult"));
        }
        if a.freeze_backbone && a.pretrained.is_none() {
            return Err(setup(
                "--freeze-backbone needs --pretrained: a random backbone's features are no use",
            ));
        }
        if !(a.backbone_lr_mult >= 0.0 && a.backbone_lr_mult.is_finite()) {
            return Err(setup("--backbone-lr-mult must be a number ≥ 0"));
        }
        if !(a.warmup_epochs >= 0.0 && a.warmup_epochs < a.epochs as f64) {
            return Err(setup(
                "--warmup-epochs must be at least 0 and less than --epochs",
            ));
        }
        if let Some(n) = a.fine_tune {
            if a.pretrained.is_none() || a.freeze_backbone {
                return Err(setup("--fine-tune needs --pretrained weights and trains the backbone after its frozen epochs: it does not take --freeze-backbone"));
            }
            if n == 0 || n >= a.epochs {
                return Err(setup("--fine-tune N needs 1 ≤ N < --epochs"));
            }
        }
        if a.patience == Some(0) {
            return Err(setup("--patience must be at least 1 epoch"));
        }
        let channels: [usize; 4] = a
            .channels
            .clone()
            .try_into()
            .map_err(|_| setup("--channels takes four numbers, e.g. 32,64,128,128"))?;
        let valid = a.val_fraction > 0.0
            && a.val_fraction < 1.0
            && a.lr > 0.0
            && a.lr.is_finite()
            && a.epochs > 0
            && a.random_crop.is_none_or(|s| s > 0.0 && s <= 1.0);
        if !valid {
            return Err(setup("--val-fraction must be in (0, 1), --lr positive, --epochs at least 1, --random-crop in (0, 1]"));
        }
        let config = VisionTrainConfig {
            model: ModelConfig::new(a.model, 0)
                .with_image_size(a.image_size)
                .with_channels(channels)
                .with_hidden(a.hidden)
                .with_dropout(a.dropout)
                .with_imagenet_normalization(a.pretrained.is_some()),
            epochs: a.epochs,
            batch_size: a.batch_size,
            lr: a.lr,
            optimizer: a.optimizer,
            momentum: a.momentum,
            seed: a.seed,
            augmentation: if a.freeze_backbone {
                Augmentation::NONE
            } else {
                Augmentation {
                    flip: a.flip,
                    crop_min_scale: a.random_crop,
                    ..a.augmentation
                }
            },
            pretrained: a.pretrained.clone(),
            freeze_backbone: a.freeze_backbone,
            backbone_lr_mult: a.backbone_lr_mult,
            schedule: ScheduleConfig {
                kind: a.schedule,
                warmup_epochs: a.warmup_epochs,
            },
            patience: a.patience,
            fine_tune: a.fine_tune,
        };
        let spec = RunSpec {
            data: a.data.clone(),
            val_fraction: a.val_fraction,
            cache: a.cache.clone(),
            run: Some(crate::identity::new_run_id()),
        };
        Ok((config, spec))
    }
}
