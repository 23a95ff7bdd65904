//! fastai's fine_tune: frozen epochs, then every layer; resumed across the
//! switch to the same numbers. Alone in its own test binary because Burn's
//! `flex` random generator is global to the process.

mod common;

use burn::tensor::Device;
use common::{lite0, snapshot, synthetic};
use nabla_vision::train::{Trainer, VisionOptimizer};

#[test]
fn fine_tune_freezes_the_backbone_first_then_trains_it_and_resumes_across_the_switch() {
    let device = Device::flex().autodiff();
    let (train_set, val_set) = (synthetic(32, 32, 5), synthetic(8, 32, 6));
    let mut config = lite0(false, 0.1, VisionOptimizer::Adam);
    config.fine_tune = Some(1);
    config.epochs = 2;
    let run = std::env::temp_dir().join(format!("nabla-fine-tune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run);
    let mut trainer = Trainer::new(config.clone(), &device).unwrap();
    let [conv, mean, head] = snapshot(trainer.model());
    trainer
        .run_epoch(&train_set, &val_set, &device, &mut |_, _| {})
        .unwrap();
    let [conv1, mean1, head1] = snapshot(trainer.model());
    assert_eq!(
        (&conv, &mean),
        (&conv1, &mean1),
        "the backbone moved while frozen"
    );
    assert_ne!(head, head1, "the head did not train");
    trainer.save_checkpoint(&run, None).unwrap();
    trainer
        .run_epoch(&train_set, &val_set, &device, &mut |_, _| {})
        .unwrap();
    let [conv2, _, _] = snapshot(trainer.model());
    assert_ne!(conv1, conv2, "the backbone did not train after the switch");
    // Each phase runs its own schedule: 2 steps an epoch, both at the full
    // constant rate.
    assert_eq!(trainer.history[1].lrs, [1e-2, 1e-2]);

    let mut resumed = Trainer::resume(&run, &device).unwrap();
    resumed
        .run_epoch(&train_set, &val_set, &device, &mut |_, _| {})
        .unwrap();
    assert_eq!(snapshot(resumed.model()), snapshot(trainer.model()));
    assert_eq!(resumed.history[1].train_loss, trainer.history[1].train_loss);
    std::fs::remove_dir_all(&run).unwrap();
}
