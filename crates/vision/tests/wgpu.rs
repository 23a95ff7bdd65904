//! The wgpu backend trains as the CPU does: a tiny cnn-bn from the same
//! seed, on the same batches (dropout 0, no flips), on `--device wgpu` and
//! on `cpu` (Burn's flex backend with nabla's kernels). Built only with
//! `--features wgpu`; `.ci/run` runs it on Mesa's lavapipe, a software
//! Vulkan device, so it needs no GPU. Alone in its own binary: Burn's
//! random generators are global to the process.
#![cfg(feature = "wgpu")]

mod common;

use burn::module::Module;
use burn::tensor::Device;
use common::{synthetic, tiny};
use nabla_vision::device::Accelerator;
use nabla_vision::model::Architecture;
use nabla_vision::train::{most_probable, predict, Trainer, VisionTrainConfig};

fn config() -> VisionTrainConfig {
    VisionTrainConfig {
        epochs: 3,
        batch_size: 8,
        seed: 3,
        ..VisionTrainConfig::plain(tiny(Architecture::CnnBn).with_dropout(0.0))
    }
}

/// One test at a time: Burn's generators are global to the process, and
/// the Vulkan loader dislikes instances made on several threads at once.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Whether every adapter is Mesa's lavapipe (the CI machine), whose long
/// sums are known to be wrong.
fn only_lavapipe() -> bool {
    let adapters = nabla_vision::device::wgpu_adapters();
    !adapters.is_empty() && adapters.iter().all(|a| a.name.starts_with("llvmpipe"))
}

fn worst(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn wgpu_trains_as_the_cpu_does() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let adapters = nabla_vision::device::wgpu_adapters();
    eprintln!("wgpu adapters: {adapters:?}");
    let gpu = Accelerator::Wgpu
        .device()
        .expect("a wgpu adapter (CI installs Mesa's lavapipe)");
    let cpu = Device::flex();
    let (train_set, val_set) = (synthetic(40, 16, 1), synthetic(16, 16, 2));
    let mut on_cpu = Trainer::new(config(), &cpu.clone().autodiff()).unwrap();
    let mut on_gpu = Trainer::new(config(), &gpu.clone().autodiff()).unwrap();
    // The same initial weights: the same outputs before any step.
    let before = (
        predict(on_cpu.model(), &val_set, 8, &cpu),
        predict(on_gpu.model(), &val_set, 8, &gpu),
    );
    let d = worst(&before.0, &before.1);
    eprintln!("initial probabilities: worst difference {d:e}");
    // The weights themselves: wgpu's, brought to the CPU, give the CPU's
    // outputs exactly (Burn draws a parameter lazily, on whatever device
    // it is on by then; nabla draws them on the CPU first).
    let back = predict(
        &on_gpu.model().clone().to_device(&cpu.clone().autodiff()),
        &val_set,
        8,
        &cpu,
    );
    assert_eq!(worst(&before.0, &back), 0.0, "the initial weights differ");
    assert!(d <= 1e-5, "initial probabilities differ by {d}");
    for _ in 0..config().epochs {
        let a = on_cpu
            .run_epoch(
                &train_set,
                &val_set,
                &cpu.clone().autodiff(),
                &mut |_, _| {},
            )
            .unwrap();
        let b = on_gpu
            .run_epoch(
                &train_set,
                &val_set,
                &gpu.clone().autodiff(),
                &mut |_, _| {},
            )
            .unwrap();
        eprintln!(
            "epoch {}: train loss {} / {}, val loss {} / {}, val acc {} / {}",
            a.epoch,
            a.train_loss,
            b.train_loss,
            a.val_loss,
            b.val_loss,
            a.val_accuracy,
            b.val_accuracy
        );
        assert!(
            (a.train_loss - b.train_loss).abs() <= 1e-3,
            "{a:?} against {b:?}"
        );
        assert!(
            (a.val_loss - b.val_loss).abs() <= 1e-3,
            "{a:?} against {b:?}"
        );
        assert_eq!(a.val_accuracy, b.val_accuracy);
    }
    let after = (
        predict(on_cpu.model(), &val_set, 8, &cpu),
        predict(on_gpu.model(), &val_set, 8, &gpu),
    );
    let d = worst(&after.0, &after.1);
    eprintln!("final probabilities: worst difference {d:e}");
    assert!(d <= 1e-3, "final probabilities differ by {d}");
    let classes = |p: &[Vec<f32>]| p.iter().map(|v| most_probable(v)).collect::<Vec<_>>();
    assert_eq!(classes(&after.0), classes(&after.1), "predicted classes");
}

/// Training refuses a device whose long sums are wrong, before a step:
/// on lavapipe, Burn 0.22.1's wgpu convolution weight gradient is off for
/// 8 images of 128 × 128, and a row of 1,048,576 ones sums to 262,128.
#[test]
fn training_refuses_a_device_whose_long_sums_are_wrong() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    use nabla_vision::device::check_training_sums;
    let gpu = Accelerator::Wgpu.device().unwrap();
    // The sizes the other test trains at are within every device's limits.
    assert_eq!(check_training_sums(&gpu, 8, 16), Ok(()));
    assert_eq!(check_training_sums(&Device::flex(), 64, 128), Ok(()));
    let mut c = config();
    c.model = nabla_vision::model::ModelConfig::new(Architecture::CnnBn, 2);
    c.batch_size = 64;
    let outcome = Trainer::new(c, &gpu.clone().autodiff());
    let lavapipe = only_lavapipe();
    match outcome {
        Err(e) => {
            let e = e.to_string();
            eprintln!("{e}");
            assert!(
                e.contains("batches of 64 images of 128 × 128") && e.contains("--batch-size"),
                "{e}"
            );
        }
        Ok(_) => assert!(
            !lavapipe,
            "lavapipe's long sums are wrong, yet training started"
        ),
    }
    if lavapipe {
        assert!(check_training_sums(&gpu, 8, 128).is_err());
        assert_eq!(check_training_sums(&gpu, 4, 128), Ok(()));
    }
}
