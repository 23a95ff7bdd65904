//! `nabla bench vision --profile`'s numbers: every kernel call of a training
//! step is counted once, under its layer and pass, and the times are parts
//! of the wall time they were measured in.

mod common;

use burn::tensor::Device;
use nabla_vision::flex_kernels::use_burn_ops;
use nabla_vision::model::Architecture;
use nabla_vision::profile::{record, KernelTime};
use nabla_vision::train::{ImageSet, Trainer, VisionTrainConfig};
use std::time::Instant;

const STEPS: u64 = 2;

/// `STEPS` Adam steps of the tiny cnn-bn under the profile: the kernel
/// times, and the wall time of the whole recording.
fn profiled_steps(burn_ops: bool) -> (Vec<KernelTime>, f64) {
    let device = Device::flex().autodiff();
    let config = VisionTrainConfig {
        batch_size: 4,
        seed: 3,
        ..VisionTrainConfig::plain(common::tiny(Architecture::CnnBn))
    };
    let train = common::synthetic(4 * STEPS as usize, 16, 1);
    let none = ImageSet {
        size: 16,
        ..ImageSet::default()
    };
    let mut trainer = Trainer::new(config, &device).unwrap();
    let previous = use_burn_ops(burn_ops);
    let start = Instant::now();
    let (done, times) = record(|| trainer.run_epoch(&train, &none, &device, &mut |_, _| {}));
    let wall = start.elapsed().as_secs_f64();
    use_burn_ops(previous);
    done.unwrap();
    (times, wall)
}

#[test]
fn a_training_step_is_profiled_layer_by_layer() {
    let (times, wall) = profiled_steps(false);
    let calls = |op: &str, pass: &str| {
        times
            .iter()
            .find(|t| t.op == op && t.pass == pass)
            .unwrap_or_else(|| panic!("no {op:?} {pass:?} in {times:#?}"))
            .calls
    };
    // The four convolutions (channels 4, 8, 8, 8 on 16, 8, 4, 2 pixels),
    // each once forward and once backward a step; the images take no
    // gradient, so the first convolution computes none for its input.
    let convs = [
        ("conv 3→4 3×3 @16×16", "backward, no input gradient"),
        ("conv 4→8 3×3 @8×8", "backward"),
        ("conv 8→8 3×3 @4×4", "backward"),
        ("conv 8→8 3×3 @2×2", "backward"),
    ];
    for (op, backward) in convs {
        assert_eq!(calls(op, "forward"), STEPS, "{op}");
        assert_eq!(calls(op, backward), STEPS, "{op}");
    }
    for (c, px) in [(4, 16), (8, 8), (8, 4), (8, 2)] {
        let norm = format!("batch norm {c} @{px}×{px}");
        assert_eq!(calls(&norm, "forward"), STEPS, "{norm}");
        assert_eq!(calls(&norm, "backward"), STEPS, "{norm}");
    }
    let pools = times
        .iter()
        .filter(|t| t.op.starts_with("max-pool"))
        .count();
    assert_eq!(pools, 8, "four poolings, forward and backward: {times:#?}");
    // Adam runs once per parameter tensor and step.
    assert_eq!(calls("adam, every parameter", "update") % STEPS, 0);
    assert!(calls("adam, every parameter", "update") >= 8 * STEPS);
    let kernels: f64 = times.iter().map(|t| t.seconds).sum();
    assert!(
        times.iter().all(|t| t.seconds > 0.0) && kernels <= wall,
        "kernel times {kernels} s in {wall} s of wall time: {times:#?}"
    );
    // Longest first.
    assert!(times.windows(2).all(|w| w[0].seconds >= w[1].seconds));
}

#[test]
fn burns_own_ops_are_not_counted_as_kernel_calls() {
    let (times, _) = profiled_steps(true);
    assert!(
        times.iter().all(|t| t.op.starts_with("adam")),
        "only the fused Adam step runs on nabla's kernels here: {times:#?}"
    );
}
