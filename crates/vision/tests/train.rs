//! The models on tiny synthetic images: training lowers the loss, BatchNorm
//! and dropout behave differently in training and evaluation, a frozen
//! backbone stays frozen and the backbone's learning rate multiplier applies
//! to the backbone alone.

mod common;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use common::{lite0, snapshot, synthetic, tiny};
use nabla_vision::model::Architecture;
use nabla_vision::train::{evaluate, train, Trainer, VisionOptimizer, VisionTrainConfig};

#[test]
fn training_lowers_the_loss_and_learns_the_task() {
    let device = Device::flex().autodiff();
    let (train_set, val_set) = (synthetic(64, 16, 1), synthetic(32, 16, 2));
    for architecture in [Architecture::Cnn, Architecture::CnnBn] {
        let config = VisionTrainConfig {
            epochs: 6,
            batch_size: 16,
            lr: 3e-3,
            seed: 5,
            ..VisionTrainConfig::plain(tiny(architecture))
        };
        let trainer = train(&config, &train_set, &val_set, &device, &mut |_| {}).unwrap();
        let (model, history) = (trainer.model(), &trainer.history);
        assert_eq!(history.len(), 6);
        let (first, last) = (&history[0], &history[5]);
        assert!(
            last.train_loss < first.train_loss,
            "{architecture:?}: {history:?}"
        );
        let eval = evaluate(model, &val_set, 2, 8, &device);
        assert!(eval.accuracy >= 0.9, "{architecture:?}: {eval:?}");
        assert_eq!(eval.confusion.iter().flatten().sum::<usize>(), 32);
        assert!((eval.accuracy - last.val_accuracy).abs() < 1e-12);
    }
}

#[test]
fn batchnorm_and_dropout_switch_between_training_and_evaluation() {
    let device = Device::flex().autodiff();
    device.seed(3);
    let model = tiny(Architecture::CnnBn).init(&device);
    let set = synthetic(8, 16, 4);
    let data: Vec<f32> = set
        .pixels
        .concat()
        .iter()
        .map(|&v| f32::from(v) / 255.0)
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(data, [8, 16, 16, 3]), &device)
        .permute([0, 3, 1, 2]);
    let values = |t: Tensor<2>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    // Evaluation mode: running statistics, no dropout, so repeated passes agree.
    let eval = model.valid();
    assert_eq!(
        values(eval.forward(x.clone())),
        values(eval.forward(x.clone()))
    );
    // Training mode: dropout draws new masks, so two passes differ.
    let (a, b) = (
        values(model.forward(x.clone())),
        values(model.forward(x.clone())),
    );
    assert_ne!(a, b);
    // A training pass updated the running statistics, which evaluation then uses.
    let after = model.valid();
    assert_ne!(values(eval.forward(x.clone())), values(after.forward(x)));
}

#[test]
fn a_frozen_backbone_trains_the_head_alone_on_cached_features() {
    let device = Device::flex().autodiff();
    let (train_set, val_set) = (synthetic(48, 32, 1), synthetic(24, 32, 2));
    let mut trainer = Trainer::new(lite0(true, 1.0, VisionOptimizer::Adam), &device).unwrap();
    let [conv, mean, head] = snapshot(trainer.model());
    for _ in 0..3 {
        trainer
            .run_epoch(&train_set, &val_set, &device, &mut |_, _| {})
            .unwrap();
    }
    let [conv_after, mean_after, head_after] = snapshot(trainer.model());
    assert_eq!(conv, conv_after, "a backbone weight moved");
    assert_eq!(mean, mean_after, "a BatchNorm statistic moved");
    assert_ne!(head, head_after, "the head did not train");
    let history = &trainer.history;
    assert!(history[2].train_loss < history[0].train_loss, "{history:?}");
    // The probe's validation numbers, from cached features, are the whole
    // network's on the images.
    let eval = evaluate(trainer.model(), &val_set, 2, 8, &device);
    assert_eq!(eval.accuracy, history[2].val_accuracy);
    assert!(
        (eval.loss - history[2].val_loss).abs() < 1e-4,
        "{} vs {}",
        eval.loss,
        history[2].val_loss
    );
}

#[test]
fn the_backbone_learning_rate_multiplier_leaves_the_head_at_the_full_rate() {
    let device = Device::flex().autodiff();
    let (train_set, val_set) = (synthetic(32, 32, 3), synthetic(8, 32, 4));
    let mut moved = Vec::new();
    for mult in [0.0, 1.0] {
        let mut trainer = Trainer::new(lite0(false, mult, VisionOptimizer::Sgd), &device).unwrap();
        let [conv, _, head] = snapshot(trainer.model());
        trainer
            .run_epoch(&train_set, &val_set, &device, &mut |_, _| {})
            .unwrap();
        let [conv_after, _, head_after] = snapshot(trainer.model());
        assert_ne!(
            head, head_after,
            "multiplier {mult}: the head did not train"
        );
        moved.push(conv != conv_after);
    }
    assert_eq!(moved, [false, true], "backbone moved with multiplier 0 / 1");
}

#[test]
fn test_time_augmentation_averages_the_image_and_its_mirror() {
    let device = Device::flex();
    device.seed(9);
    let model = tiny(Architecture::Cnn).init(&device);
    let set = synthetic(6, 16, 8);
    let mut mirrored = set.clone();
    for pixels in &mut mirrored.pixels {
        for row in pixels.chunks_mut(16 * 3) {
            let flipped: Vec<u8> = row.chunks(3).rev().flatten().copied().collect();
            row.copy_from_slice(&flipped);
        }
    }
    let (plain, mirror) = (
        nabla_vision::train::predict(&model, &set, 4, &device),
        nabla_vision::train::predict(&model, &mirrored, 4, &device),
    );
    let tta = nabla_vision::train::predict_tta(&model, &set, 4, &device);
    for ((a, b), t) in plain.iter().zip(&mirror).zip(&tta) {
        for ((a, b), t) in a.iter().zip(b).zip(t) {
            assert!((0.5 * (a + b) - t).abs() < 1e-6, "{a} {b} {t}");
        }
        assert!(a != b, "a mirror that changes nothing proves nothing");
    }
}
