//! Speed of the convolution kernels on the layers of Problem 5's models,
//! against the machine's measured FMA peak (`nabla bench kernels`).

use crate::conv::{conv2d_backward, conv2d_forward, Conv2dShape, ConvGrads};
use crate::isa::{active, Isa};
use crate::peak::fma_peak_gflops;
use std::time::Instant;

/// One layer's times, best of the repetitions.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LayerTiming {
    pub layer: String,
    /// Multiply-adds × 2 of one pass (forward, or either gradient).
    pub gflop: f64,
    pub forward_ms: f64,
    pub input_grad_ms: f64,
    pub weight_grad_ms: f64,
    /// All three passes' FLOPs over their time, as a share of the FMA peak.
    pub share_of_peak: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelBench {
    pub cpu: String,
    pub isa: Isa,
    pub threads: usize,
    pub fma_peak_gflops: f64,
    pub batch: usize,
    pub layers: Vec<LayerTiming>,
}

/// The CPU's model name from /proc/cpuinfo (Linux), or "unknown".
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// `(name, in channels, side, out channels, kernel, stride, groups)` of the
/// layers timed: the cnn's four, ResNet34's stem, a convolution of each of
/// its stages and a strided 1 × 1 shortcut, EfficientNet-Lite0's first
/// expansion and its depthwise ones of every kind (along rows and across
/// channels, 3 and 5 wide, strided), at the sides a 128-pixel input gives them.
const LAYERS: &[(&str, usize, usize, usize, usize, usize, usize)] = &[
    ("cnn conv1 3→32 3×3 @128", 3, 128, 32, 3, 1, 1),
    ("cnn conv2 32→64 3×3 @64", 32, 64, 64, 3, 1, 1),
    ("cnn conv3 64→128 3×3 @32", 64, 32, 128, 3, 1, 1),
    ("cnn conv4 128→128 3×3 @16", 128, 16, 128, 3, 1, 1),
    ("resnet stem 3→64 7×7/2 @128", 3, 128, 64, 7, 2, 1),
    ("resnet layer1 64→64 3×3 @32", 64, 32, 64, 3, 1, 1),
    ("resnet layer2 128→128 3×3 @16", 128, 16, 128, 3, 1, 1),
    ("resnet layer3 256→256 3×3 @8", 256, 8, 256, 3, 1, 1),
    ("resnet layer4 512→512 3×3 @4", 512, 4, 512, 3, 1, 1),
    ("resnet down2 64→128 3×3/2 @32", 64, 32, 128, 3, 2, 1),
    ("resnet down3 128→256 3×3/2 @16", 128, 16, 256, 3, 2, 1),
    ("resnet down4 256→512 3×3/2 @8", 256, 8, 512, 3, 2, 1),
    ("resnet shortcut 256→512 1×1/2 @8", 256, 8, 512, 1, 2, 1),
    ("effnet expand 16→96 1×1 @64", 16, 64, 96, 1, 1, 1),
    ("effnet depthwise 32 3×3 @64", 32, 64, 32, 3, 1, 32),
    ("effnet depthwise 96 3×3/2 @64", 96, 64, 96, 3, 2, 96),
    ("effnet depthwise 144 3×3 @32", 144, 32, 144, 3, 1, 144),
    ("effnet depthwise 240 5×5 @16", 240, 16, 240, 5, 1, 240),
    ("effnet depthwise 480 3×3 @8", 480, 8, 480, 3, 1, 480),
    ("effnet depthwise 1152 5×5 @4", 1152, 4, 1152, 5, 1, 1152),
];

fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Times the layers of [`LAYERS`] whose name contains `only` (every one
/// when it is empty) at `batch` images, `reps` times each.
pub fn run(batch: usize, reps: usize, only: &str) -> KernelBench {
    let peak = fma_peak_gflops(0.5);
    let layers = LAYERS
        .iter()
        .filter(|l| l.0.contains(only))
        .map(|&(name, c, side, o, k, stride, groups)| {
            let s = Conv2dShape {
                batch,
                in_channels: c,
                in_h: side,
                in_w: side,
                out_channels: o,
                kernel: [k, k],
                stride: [stride, stride],
                padding: [k / 2, k / 2],
                padding_end: [k / 2, k / 2],
                groups,
            };
            let x: Vec<f32> = (0..s.input_len())
                .map(|i| (i % 17) as f32 / 17.0 - 0.5)
                .collect();
            let w: Vec<f32> = (0..s.weight_len())
                .map(|i| (i % 13) as f32 / 13.0 - 0.5)
                .collect();
            let mut y = vec![0f32; s.output_len()];
            let (mut dx, mut dw) = (vec![0f32; s.input_len()], vec![0f32; s.weight_len()]);
            let forward = best_of(reps, || conv2d_forward(&s, &x, &w, None, &mut y));
            let dy = y.clone();
            let grad = |input: Option<&mut [f32]>, weight: Option<&mut [f32]>| {
                conv2d_backward(
                    &s,
                    &x,
                    &w,
                    &dy,
                    ConvGrads {
                        input,
                        weight,
                        bias: None,
                    },
                )
            };
            let input_grad = best_of(reps, || grad(Some(&mut dx), None));
            let weight_grad = best_of(reps, || grad(None, Some(&mut dw)));
            let gflop = 2.0 * s.output_len() as f64 * s.patch() as f64 / 1e9;
            LayerTiming {
                layer: name.into(),
                gflop,
                forward_ms: forward * 1e3,
                input_grad_ms: input_grad * 1e3,
                weight_grad_ms: weight_grad * 1e3,
                share_of_peak: 3.0 * gflop / (forward + input_grad + weight_grad) / peak,
            }
        })
        .collect();
    KernelBench {
        cpu: cpu_name(),
        isa: active(),
        threads: rayon::current_num_threads(),
        fma_peak_gflops: peak,
        batch,
        layers,
    }
}
