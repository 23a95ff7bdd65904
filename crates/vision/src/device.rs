//! Where the tensors live: Burn's pure-Rust `flex` CPU backend always, and
//! CUDA or WGPU when nabla was built with the `cuda` or `wgpu` feature.

use burn::tensor::Device;

use crate::model::choices;

/// The values of `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Accelerator {
    Cpu,
    Cuda,
    Wgpu,
}

impl std::str::FromStr for Accelerator {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let names = Accelerator::ALL.map(Accelerator::name);
        Accelerator::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| format!("unknown device `{s}`; expected {}", choices(&names)))
    }
}

impl Accelerator {
    pub const ALL: [Accelerator; 3] = [Accelerator::Cpu, Accelerator::Cuda, Accelerator::Wgpu];

    pub fn name(self) -> &'static str {
        match self {
            Accelerator::Cpu => "cpu",
            Accelerator::Cuda => "cuda",
            Accelerator::Wgpu => "wgpu",
        }
    }

    /// The device, or why this build cannot offer it.
    pub fn device(self) -> Result<Device, String> {
        let missing = |feature: &str| {
            format!(
                "this nabla was built without the `{feature}` feature; rebuild it with \
                 `cargo build --release -p nabla-cli --features {feature}`"
            )
        };
        match self {
            Accelerator::Cpu => Ok(Device::flex()),
            #[cfg(feature = "cuda")]
            Accelerator::Cuda => Ok(Device::cuda(0)),
            #[cfg(not(feature = "cuda"))]
            Accelerator::Cuda => Err(missing("cuda")),
            // Burn panics on the first tensor when no adapter answers, so
            // nabla asks first and says what is missing.
            #[cfg(feature = "wgpu")]
            Accelerator::Wgpu => {
                if wgpu_adapters().is_empty() {
                    return Err("no wgpu adapter on this machine (no Vulkan, Metal, DirectX 12 or OpenGL driver answered); `nabla devices` lists what there is, and Mesa's lavapipe (Debian: mesa-vulkan-drivers) gives a software one".into());
                }
                Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
            }
            #[cfg(not(feature = "wgpu"))]
            Accelerator::Wgpu => Err(missing("wgpu")),
        }
    }
}

/// One graphics adapter wgpu can use.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Adapter {
    pub name: String,
    /// discrete-gpu, integrated-gpu, virtual-gpu, cpu (a software
    /// renderer such as lavapipe) or other.
    pub kind: String,
    /// The graphics API: vulkan, metal, dx12 or gl.
    pub api: String,
    pub driver: String,
}

/// A backend of `--device`: whether this build has it, and what it runs on.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Backend {
    pub device: Accelerator,
    pub compiled_in: bool,
    /// What it runs on (the CPU's instruction set for the kernels), or how
    /// to get it.
    pub detail: String,
    /// wgpu's adapters on this machine (empty for the others).
    pub adapters: Vec<Adapter>,
}

/// Every backend of `--device` (`nabla devices`).
pub fn inventory() -> Vec<Backend> {
    let rebuild = |feature: &str| {
        format!("not in this build: `cargo build --release -p nabla-cli --features {feature}`")
    };
    let cpu = Backend {
        device: Accelerator::Cpu,
        compiled_in: true,
        detail: format!(
            "Burn's flex backend with nabla's kernels ({}, {} threads)",
            nabla_kernels::isa::active().name(),
            rayon::current_num_threads()
        ),
        adapters: Vec::new(),
    };
    let cuda = Backend {
        device: Accelerator::Cuda,
        compiled_in: cfg!(feature = "cuda"),
        detail: if cfg!(feature = "cuda") {
            "CUDA device 0".into()
        } else {
            rebuild("cuda")
        },
        adapters: Vec::new(),
    };
    #[cfg(feature = "wgpu")]
    let wgpu = {
        let adapters = wgpu_adapters();
        Backend {
            device: Accelerator::Wgpu,
            compiled_in: true,
            detail: if adapters.is_empty() {
                "no adapter answered".into()
            } else {
                format!(
                    "{} adapter(s); --device wgpu takes the one wgpu prefers (a GPU before a software renderer)",
                    adapters.len()
                )
            },
            adapters,
        }
    };
    #[cfg(not(feature = "wgpu"))]
    let wgpu = Backend {
        device: Accelerator::Wgpu,
        compiled_in: false,
        detail: rebuild("wgpu"),
        adapters: Vec::new(),
    };
    vec![cpu, wgpu, cuda]
}

/// The adapters wgpu finds, on every graphics API it has.
#[cfg(feature = "wgpu")]
pub fn wgpu_adapters() -> Vec<Adapter> {
    use burn_wgpu::wgpu;
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::all(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    futures_lite::future::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
        .iter()
        .map(|a| {
            let info = a.get_info();
            let kind = match info.device_type {
                wgpu::DeviceType::DiscreteGpu => "discrete-gpu",
                wgpu::DeviceType::IntegratedGpu => "integrated-gpu",
                wgpu::DeviceType::VirtualGpu => "virtual-gpu",
                wgpu::DeviceType::Cpu => "cpu",
                wgpu::DeviceType::Other => "other",
            };
            Adapter {
                name: info.name,
                kind: kind.into(),
                api: format!("{:?}", info.backend).to_lowercase(),
                driver: format!("{} {}", info.driver, info.driver_info)
                    .trim()
                    .to_string(),
            }
        })
        .collect()
}

/// Refuses a GPU device that would get the gradients of training at this
/// batch and image size wrong ([`check_training_sums`]); the CPU needs no
/// asking.
pub(crate) fn check_training_device(
    device: &Device,
    batch_size: usize,
    image_size: usize,
) -> Result<(), crate::VisionError> {
    if device.clone().inner() == Device::flex() {
        return Ok(());
    }
    check_training_sums(device, batch_size, image_size).map_err(crate::VisionError::Setup)
}

/// Whether `device` computes the long sums a training step needs, for
/// batches of `batch` images of `size` × `size`: a convolution's weight and
/// bias gradients and BatchNorm's statistics each sum over every pixel of
/// every image (N·H·W values). On Mesa's lavapipe, Burn 0.22.1's wgpu drops
/// values past a limit: a row of 1,000,000 ones sums to 262,128, and a 3×3
/// convolution's weight gradient is already 0.6 % off at 8 images of
/// 128 × 128 (README, "GPU"), so a cnn-bn would train on wrong gradients.
/// This asks the device for sums whose exact values are known, first: the
/// gradients of a 3×3 convolution (padding 1) over a batch of ones, whose
/// weight gradient counts the pixels each tap sees, N·(H − [kh ≠ 1])·(W −
/// [kw ≠ 1]), and whose bias gradient is N·H·W; and one row of N·H·W ones.
/// It does not probe every kernel a model uses: on lavapipe a reduction
/// along a middle axis stops at 65,531 values, and is not asked here.
pub fn check_training_sums(device: &Device, batch: usize, size: usize) -> Result<(), String> {
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::Tensor;
    if batch == 0 || size == 0 {
        return Err(format!(
            "batch size {batch} and image size {size}: both must be at least 1"
        ));
    }
    let values = |t: Tensor<1>| -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default()
    };
    let len = batch * size * size;
    let grad = device.clone().inner().autodiff();
    let x = Tensor::<4>::ones([batch, 1, size, size], &grad);
    let w = Tensor::<4>::ones([1, 1, 3, 3], &grad).require_grad();
    let b = Tensor::<1>::zeros([1], &grad).require_grad();
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let y = burn::tensor::module::conv2d(x, w.clone(), Some(b.clone()), options);
    let grads = y.sum().backward();
    let edge = |k: usize| (size - usize::from(k != 1)) as f64;
    let taps: Vec<f64> = (0..9)
        .map(|t| batch as f64 * edge(t / 3) * edge(t % 3))
        .collect();
    let probes = [
        (
            "a 3×3 convolution's weight gradient over a batch of ones",
            w.grad(&grads).map(|g| values(g.reshape([9]))),
            taps,
        ),
        (
            "a 3×3 convolution's bias gradient over a batch of ones",
            b.grad(&grads).map(values),
            vec![len as f64],
        ),
        (
            "the sum of one row of ones",
            Some(values(
                Tensor::<2>::ones([1, len], &device.clone().inner())
                    .sum_dim(1)
                    .reshape([1]),
            )),
            vec![len as f64],
        ),
    ];
    for (what, got, want) in probes {
        let got = got.unwrap_or_default();
        // Relative: above 2²⁴ a right f32 sum may round; lavapipe's wrong
        // ones are off by 0.6 % and more.
        let wrong = (0..want.len()).find(|&i| {
            got.get(i)
                .is_none_or(|&g| (f64::from(g) - want[i]).abs() > 1e-5 * want[i])
        });
        if let Some(i) = wrong {
            let came = got.get(i).map_or("nothing".to_string(), |g| g.to_string());
            return Err(format!(
                "this device gets the long sums of a training step wrong for batches of {batch} images of {size} × {size}: {what} came out {came} instead of {} (Burn's reductions on it drop values past a limit); lower --batch-size or --image-size, or train with --device cpu (evaluation and prediction need far shorter sums)",
                want[i]
            ));
        }
    }
    Ok(())
}
