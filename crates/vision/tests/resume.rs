//! A run stopped after an epoch and resumed from its checkpoint gives the
//! same numbers as an uninterrupted run. Alone in its own test binary
//! because Burn's `flex` random generator is global to the process.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::{synthetic, tiny};
use nabla_vision::augment::Augmentation;
use nabla_vision::model::Architecture;
use nabla_vision::schedule::{LrSchedule, ScheduleConfig};
use nabla_vision::train::{Trainer, VisionTrainConfig};

fn logits(trainer: &Trainer, device: &Device) -> Vec<f32> {
    use burn::module::Module;
    let set = synthetic(4, 16, 9);
    let data: Vec<f32> = set.pixels.concat().iter().map(|&v| f32::from(v)).collect();
    let x =
        Tensor::<4>::from_data(TensorData::new(data, [4, 16, 16, 3]), device).permute([0, 3, 1, 2]);
    trainer
        .model()
        .valid()
        .forward(x)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap()
}

#[test]
fn resuming_from_a_checkpoint_repeats_the_uninterrupted_run() {
    let device = Device::flex().autodiff();
    let (train_set, val_set) = (synthetic(48, 16, 1), synthetic(16, 16, 2));
    // BatchNorm, dropout, flips, crops, Adam's moments and a one-cycle
    // schedule with warm-up: every piece of state a checkpoint must carry.
    let config = VisionTrainConfig {
        epochs: 4,
        batch_size: 8,
        lr: 3e-3,
        seed: 11,
        augmentation: Augmentation {
            flip: true,
            crop_min_scale: Some(0.6),
            ..Augmentation::NONE
        },
        schedule: ScheduleConfig {
            kind: LrSchedule::OneCycle,
            warmup_epochs: 0.5,
        },
        ..VisionTrainConfig::plain(tiny(Architecture::CnnBn))
    };
    let root = std::env::temp_dir().join(format!("nabla-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut whole = Trainer::new(config.clone(), &device).unwrap();
    for _ in 0..4 {
        whole
            .run_epoch(&train_set, &val_set, &device, &mut |_, _| {})
            .unwrap();
    }

    let run = root.join("run");
    let mut first = Trainer::new(config, &device).unwrap();
    for _ in 0..2 {
        first
            .run_epoch(&train_set, &val_set, &device, &mut |_, _| {})
            .unwrap();
        first.save_checkpoint(&run, None).unwrap();
    }
    let only: Vec<_> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(only, ["epoch-0002"], "older checkpoints are removed");
    // A torn write of a later checkpoint (no state file) is ignored.
    std::fs::create_dir_all(run.join("checkpoints/epoch-0003")).unwrap();
    std::fs::write(run.join("checkpoints/epoch-0003/model.bpk"), b"torn").unwrap();
    drop(first);

    let mut resumed = Trainer::resume(&run, &device).unwrap();
    assert_eq!(resumed.epochs_done(), 2);
    for _ in 0..2 {
        resumed
            .run_epoch(&train_set, &val_set, &device, &mut |_, _| {})
            .unwrap();
    }
    let strip = |t: &Trainer| -> Vec<[f64; 4]> {
        t.history
            .iter()
            .map(|r| [r.train_loss, r.train_accuracy, r.val_loss, r.val_accuracy])
            .collect()
    };
    assert_eq!(strip(&resumed), strip(&whole));
    assert_eq!(logits(&resumed, &device), logits(&whole, &device));
    let lrs = |t: &Trainer| -> Vec<f64> { t.history.iter().flat_map(|r| r.lrs.clone()).collect() };
    assert_eq!(lrs(&resumed), lrs(&whole));
    // 6 batches an epoch, 24 steps: up for 3 steps to the peak, then down.
    let all = lrs(&whole);
    assert_eq!(all.len(), 24);
    assert!(
        (all[2] - 3e-3).abs() < 1e-15 && all[0] < all[1] && all[23] < 1e-6,
        "{all:?}"
    );
    // Different epochs did see different data orders and views.
    assert_ne!(whole.history[2].train_loss, whole.history[3].train_loss);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn resuming_without_a_checkpoint_is_a_clear_error() {
    let device = Device::flex().autodiff();
    let dir = std::env::temp_dir().join(format!("nabla-resume-none-{}", std::process::id()));
    let message = match Trainer::resume(&dir, &device) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("resumed from nothing"),
    };
    assert!(message.contains("no checkpoint"), "{message}");
}
