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
            #[cfg(feature = "wgpu")]
            Accelerator::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(not(feature = "wgpu"))]
            Accelerator::Wgpu => Err(missing("wgpu")),
        }
    }
}
