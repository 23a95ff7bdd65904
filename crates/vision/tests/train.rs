//! The CNNs on tiny synthetic images: training lowers the loss, and
//! BatchNorm and dropout behave differently in training and evaluation.

mod common;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use common::{synthetic, tiny};
use nabla_vision::augment::Augmentation;
use nabla_vision::model::Architecture;
use nabla_vision::train::{evaluate, train, VisionOptimizer, VisionTrainConfig};

#[test]
fn training_lowers_the_loss_and_learns_the_task() {
    let device = Device::flex().autodiff();
    let (train_set, val_set) = (synthetic(64, 16, 1), synthetic(32, 16, 2));
    for architecture in [Architecture::Cnn, Architecture::CnnBn] {
        let config = VisionTrainConfig {
            model: tiny(architecture),
            epochs: 6,
            batch_size: 16,
            lr: 3e-3,
            optimizer: VisionOptimizer::Adam,
            momentum: 0.9,
            seed: 5,
            augmentation: Augmentation::NONE,
            pretrained: None,
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
