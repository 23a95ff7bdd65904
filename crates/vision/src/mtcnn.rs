//! MTCNN's three networks (Zhang et al., "Joint Face Detection and
//! Alignment using Multi-task Cascaded Convolutional Networks", 2016) as
//! facenet-pytorch 2.6.0 defines them, inference only, over plain `f32`
//! arrays with nabla's convolution kernels: P-Net proposes faces over an
//! image pyramid, R-Net (24 × 24 crops) and O-Net (48 × 48, with five
//! landmarks) refine them. Their weights are facenet-pytorch's state dicts
//! (`pnet.pt`, `rnet.pt`, `onet.pt` in the PyPI wheel), read by the
//! restricted pickle reader and checked name by name and shape by shape.
//!
//! Two details of facenet-pytorch's modules that decide the numbers: every
//! max-pool rounds its output size up (`ceil_mode=True`: a last, partial
//! window), and R-Net and O-Net flatten their last feature map in
//! `(x, y, channel)` order (`permute(0, 3, 2, 1)`) before the dense layers.

use std::fs;
use std::path::{Path, PathBuf};

use nabla_kernels::{conv2d_forward, Conv2dShape};

use crate::load::store;
use crate::pretrained::{download_and_import, PinnedWheel};
use crate::weights::{
    read_archive_member, read_state_dict, safetensors_bytes, NamedTensor, StateDict,
};
use crate::VisionError;

/// facenet-pytorch 2.6.0's wheel on PyPI (MIT licence), pinned by the
/// registry's SHA-256.
pub const MTCNN_WHEEL_URL: &str = "https://files.pythonhosted.org/packages/ed/2e/2d56386bc2f834cdc683743903852cf1428b4e5ee119f16cf808b589d3cd/facenet_pytorch-2.6.0-py3-none-any.whl";
pub const MTCNN_WHEEL_SHA256: &str =
    "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca";
pub const MTCNN_REQUIREMENT: &str = "facenet-pytorch==2.6.0";
/// What `nabla weights import mtcnn` writes: the three networks' tensors,
/// named `pnet.…`, `rnet.…`, `onet.…`.
pub const MTCNN_FILE: &str = "mtcnn.safetensors";

const MTCNN_WHEEL: PinnedWheel = PinnedWheel {
    url: MTCNN_WHEEL_URL,
    sha256: MTCNN_WHEEL_SHA256,
    requirement: MTCNN_REQUIREMENT,
    import_as: "mtcnn",
};

/// The three networks.
#[derive(Clone, Debug)]
pub struct Mtcnn {
    pub pnet: Net,
    pub rnet: Net,
    pub onet: Net,
}

impl Mtcnn {
    /// Reads the networks from `mtcnn.safetensors` (what the import writes).
    pub fn load(path: &Path) -> Result<Mtcnn, VisionError> {
        let dict = read_state_dict(path).map_err(store)?;
        let source = path.display().to_string();
        let net = |stage: Stage| {
            let prefix = format!("{}.", stage.name());
            let part: StateDict = dict
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_string(), v.clone())))
                .collect();
            Net::from_dict(stage, part, &source)
        };
        let mtcnn = Mtcnn {
            pnet: net(Stage::P)?,
            rnet: net(Stage::R)?,
            onet: net(Stage::O)?,
        };
        if let Some(extra) = dict.keys().find(|k| {
            !Stage::ALL
                .iter()
                .any(|s| k.starts_with(&format!("{}.", s.name())))
        }) {
            return Err(VisionError::Layout {
                path: path.to_path_buf(),
                message: format!("unexpected tensor `{extra}`"),
            });
        }
        Ok(mtcnn)
    }
}

/// Reads `facenet_pytorch/data/{pnet,rnet,onet}.pt` from facenet-pytorch's
/// wheel, checks every name and shape, and writes them to
/// `out_dir/mtcnn.safetensors` atomically.
pub fn import_mtcnn(wheel: &Path, out_dir: &Path) -> Result<PathBuf, VisionError> {
    let mut all = StateDict::new();
    for stage in Stage::ALL {
        let member = format!("facenet_pytorch/data/{}.pt", stage.name());
        let dict = read_archive_member(wheel, &member).map_err(|e| VisionError::Layout {
            path: wheel.to_path_buf(),
            message: format!(
                "{e}; expected facenet-pytorch 2.6.0's wheel, which holds {member} \
                 (`pip download --no-deps {MTCNN_REQUIREMENT}`)"
            ),
        })?;
        let net = Net::from_dict(stage, dict, &format!("{}!{member}", wheel.display()))?;
        all.extend(
            net.dict
                .into_iter()
                .map(|(k, v)| (format!("{}.{k}", stage.name()), v)),
        );
    }
    let io = |path: &Path, source: std::io::Error| VisionError::Io {
        path: path.to_path_buf(),
        source,
    };
    fs::create_dir_all(out_dir).map_err(|e| io(out_dir, e))?;
    let metadata = std::collections::HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("source".to_string(), MTCNN_REQUIREMENT.to_string()),
        (
            "model".to_string(),
            "MTCNN P-Net, R-Net, O-Net; input (pixel - 127.5) / 128".to_string(),
        ),
    ]);
    let bytes = safetensors_bytes(&all, metadata).map_err(store)?;
    let dest = out_dir.join(MTCNN_FILE);
    nabla_report::write_atomic(&dest, &bytes).map_err(|e| io(&dest, e))?;
    Ok(dest)
}

/// Downloads facenet-pytorch's wheel, checks its SHA-256 and imports the
/// three networks into `out_dir`; the wheel is removed afterwards.
pub fn download_mtcnn(out_dir: &Path, on_bytes: &dyn Fn(u64)) -> Result<PathBuf, VisionError> {
    download_and_import(&MTCNN_WHEEL, out_dir, on_bytes, import_mtcnn)
}

/// Which of the three networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    P,
    R,
    O,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::P, Stage::R, Stage::O];

    /// The state dict's file in the wheel and its prefix in nabla's import.
    pub fn name(self) -> &'static str {
        match self {
            Stage::P => "pnet",
            Stage::R => "rnet",
            Stage::O => "onet",
        }
    }

    /// Every parameter the network has, with its shape, in name order.
    pub fn parameters(self) -> Vec<(String, Vec<usize>)> {
        let mut p: Vec<(String, Vec<usize>)> = Vec::new();
        let mut conv = |name: &str, o: usize, i: usize, k: usize| {
            p.push((format!("{name}.weight"), vec![o, i, k, k]));
            p.push((format!("{name}.bias"), vec![o]));
        };
        match self {
            Stage::P => {
                conv("conv1", 10, 3, 3);
                conv("conv2", 16, 10, 3);
                conv("conv3", 32, 16, 3);
                conv("conv4_1", 2, 32, 1);
                conv("conv4_2", 4, 32, 1);
            }
            Stage::R => {
                conv("conv1", 28, 3, 3);
                conv("conv2", 48, 28, 3);
                conv("conv3", 64, 48, 2);
            }
            Stage::O => {
                conv("conv1", 32, 3, 3);
                conv("conv2", 64, 32, 3);
                conv("conv3", 64, 64, 3);
                conv("conv4", 128, 64, 2);
            }
        }
        let dense: &[(&str, usize, usize)] = match self {
            Stage::P => &[],
            Stage::R => &[
                ("dense4", 128, 576),
                ("dense5_1", 2, 128),
                ("dense5_2", 4, 128),
            ],
            Stage::O => &[
                ("dense5", 256, 1152),
                ("dense6_1", 2, 256),
                ("dense6_2", 4, 256),
                ("dense6_3", 10, 256),
            ],
        };
        for &(name, o, i) in dense {
            p.push((format!("{name}.weight"), vec![o, i]));
            p.push((format!("{name}.bias"), vec![o]));
        }
        let slopes: &[usize] = match self {
            Stage::P => &[10, 16, 32],
            Stage::R => &[28, 48, 64, 128],
            Stage::O => &[32, 64, 64, 128, 256],
        };
        for (i, &c) in slopes.iter().enumerate() {
            p.push((format!("prelu{}.weight", i + 1), vec![c]));
        }
        p.sort();
        p
    }
}

/// One network's weights, checked against [`Stage::parameters`].
#[derive(Clone, Debug)]
pub struct Net {
    pub stage: Stage,
    dict: StateDict,
}

/// A batch of feature maps, `[n][c][h][w]`.
#[derive(Clone, Debug)]
pub struct Maps {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
}

/// What a network gives per window: box offsets (4 per window), the face
/// probability, and O-Net's landmarks (5 x then 5 y, relative to the box).
#[derive(Clone, Debug, Default)]
pub struct Outputs {
    /// P-Net: `[4][h][w]` per image; R-/O-Net: 4 per crop.
    pub offsets: Vec<f32>,
    /// Softmax of the two classes, `[2]` per window (background, face).
    pub probabilities: Vec<f32>,
    pub landmarks: Vec<f32>,
    /// P-Net's output map size `(h, w)`.
    pub map: (usize, usize),
}

impl Net {
    /// Takes the network's parameters out of `dict` (names as in
    /// facenet-pytorch's state dict), refusing any missing, extra or
    /// misshapen tensor by name; `source` names the file in errors.
    pub fn from_dict(stage: Stage, dict: StateDict, source: &str) -> Result<Net, VisionError> {
        let want = stage.parameters();
        let bad = |message: String| VisionError::Layout {
            path: source.into(),
            message,
        };
        for (name, shape) in &want {
            match dict.get(name) {
                None => return Err(bad(format!("{}: no tensor `{name}`", stage.name()))),
                Some(t) if &t.shape != shape => {
                    return Err(bad(format!(
                        "{}: `{name}` has shape {:?}, expected {shape:?}",
                        stage.name(),
                        t.shape
                    )))
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = dict.keys().find(|k| !want.iter().any(|(n, _)| n == *k)) {
            return Err(bad(format!(
                "{}: unexpected tensor `{extra}`",
                stage.name()
            )));
        }
        Ok(Net { stage, dict })
    }

    fn tensor(&self, name: &str) -> &NamedTensor {
        &self.dict[name]
    }

    fn conv(&self, x: &Maps, name: &str) -> Maps {
        let w = self.tensor(&format!("{name}.weight"));
        let b = self.tensor(&format!("{name}.bias"));
        let (o, k) = (w.shape[0], w.shape[2]);
        let s = Conv2dShape {
            batch: x.n,
            in_channels: x.c,
            in_h: x.h,
            in_w: x.w,
            out_channels: o,
            kernel: [k, k],
            stride: [1, 1],
            padding: [0, 0],
            padding_end: [0, 0],
            groups: 1,
        };
        let mut out = vec![0f32; s.output_len()];
        conv2d_forward(&s, &x.data, &w.data, Some(&b.data), &mut out);
        Maps {
            n: x.n,
            c: o,
            h: s.out_h(),
            w: s.out_w(),
            data: out,
        }
    }

    /// Convolution `conv{i}`, then PReLU `prelu{i}`.
    fn conv_prelu(&self, x: &Maps, i: usize) -> Maps {
        let mut y = self.conv(x, &format!("conv{i}"));
        prelu(
            &mut y.data,
            &self.tensor(&format!("prelu{i}.weight")).data,
            y.h * y.w,
        );
        y
    }

    /// `y = W x + b` for each row of `x` (`n × in`).
    fn dense(&self, x: &[f32], n: usize, name: &str) -> Vec<f32> {
        let w = self.tensor(&format!("{name}.weight"));
        let b = &self.tensor(&format!("{name}.bias")).data;
        let (o, i) = (w.shape[0], w.shape[1]);
        let mut y = vec![0f32; n * o];
        for (row, out) in x.chunks_exact(i).zip(y.chunks_exact_mut(o)) {
            for (j, v) in out.iter_mut().enumerate() {
                let wr = &w.data[j * i..(j + 1) * i];
                *v = b[j] + wr.iter().zip(row).map(|(a, b)| a * b).sum::<f32>();
            }
        }
        y
    }

    /// The network on a batch: `[n][3][h][w]` for P-Net (any size ≥ 12),
    /// 24 × 24 crops for R-Net, 48 × 48 for O-Net, each already scaled to
    /// `(pixel − 127.5) / 128`.
    pub fn forward(&self, x: &Maps) -> Result<Outputs, VisionError> {
        let need = match self.stage {
            Stage::P => (12, 12),
            Stage::R => (24, 24),
            Stage::O => (48, 48),
        };
        let fits = match self.stage {
            Stage::P => x.h >= need.0 && x.w >= need.1,
            _ => (x.h, x.w) == need,
        };
        if x.c != 3 || !fits {
            return Err(VisionError::Setup(format!(
                "{} takes 3 × {} × {} inputs, not {} × {} × {}",
                self.stage.name(),
                need.0,
                need.1,
                x.c,
                x.h,
                x.w
            )));
        }
        Ok(match self.stage {
            Stage::P => self.pnet(x),
            Stage::R => self.rnet(x),
            Stage::O => self.onet(x),
        })
    }

    fn pnet(&self, x: &Maps) -> Outputs {
        let y = self.conv_prelu(x, 1);
        let y = self.conv_prelu(&max_pool_ceil(&y, 2, 2), 2);
        let y = self.conv_prelu(&y, 3);
        let logits = self.conv(&y, "conv4_1");
        let offsets = self.conv(&y, "conv4_2");
        // Softmax over the two class maps of each image, position by position.
        let plane = logits.h * logits.w;
        let mut probabilities = vec![0f32; logits.data.len()];
        for (src, dst) in logits
            .data
            .chunks_exact(2 * plane)
            .zip(probabilities.chunks_exact_mut(2 * plane))
        {
            for p in 0..plane {
                let [a, b] = softmax2(src[p], src[plane + p]);
                dst[p] = a;
                dst[plane + p] = b;
            }
        }
        Outputs {
            offsets: offsets.data,
            probabilities,
            landmarks: Vec::new(),
            map: (logits.h, logits.w),
        }
    }

    fn rnet(&self, x: &Maps) -> Outputs {
        let y = self.conv_prelu(x, 1);
        let y = self.conv_prelu(&max_pool_ceil(&y, 3, 2), 2);
        let y = self.conv_prelu(&max_pool_ceil(&y, 3, 2), 3);
        let mut h = self.dense(&flatten_xyc(&y), y.n, "dense4");
        prelu(&mut h, &self.tensor("prelu4.weight").data, 1);
        Outputs {
            offsets: self.dense(&h, y.n, "dense5_2"),
            probabilities: softmax_rows(&self.dense(&h, y.n, "dense5_1")),
            landmarks: Vec::new(),
            map: (1, 1),
        }
    }

    fn onet(&self, x: &Maps) -> Outputs {
        let y = self.conv_prelu(x, 1);
        let y = self.conv_prelu(&max_pool_ceil(&y, 3, 2), 2);
        let y = self.conv_prelu(&max_pool_ceil(&y, 3, 2), 3);
        let y = self.conv_prelu(&max_pool_ceil(&y, 2, 2), 4);
        let mut h = self.dense(&flatten_xyc(&y), y.n, "dense5");
        prelu(&mut h, &self.tensor("prelu5.weight").data, 1);
        Outputs {
            offsets: self.dense(&h, y.n, "dense6_2"),
            probabilities: softmax_rows(&self.dense(&h, y.n, "dense6_1")),
            landmarks: self.dense(&h, y.n, "dense6_3"),
            map: (1, 1),
        }
    }
}

fn softmax2(a: f32, b: f32) -> [f32; 2] {
    let m = a.max(b);
    let (ea, eb) = ((a - m).exp(), (b - m).exp());
    [ea / (ea + eb), eb / (ea + eb)]
}

fn softmax_rows(logits: &[f32]) -> Vec<f32> {
    logits
        .chunks_exact(2)
        .flat_map(|r| softmax2(r[0], r[1]))
        .collect()
}

/// PReLU in place over runs of `run` values that share a slope, the slopes
/// taken in turn: feature maps (`run` = plane) and dense rows (`run` = 1).
fn prelu(x: &mut [f32], slopes: &[f32], run: usize) {
    for (i, chunk) in x.chunks_exact_mut(run).enumerate() {
        let a = slopes[i % slopes.len()];
        chunk.iter_mut().for_each(|v| {
            if *v < 0.0 {
                *v *= a;
            }
        });
    }
}

/// Each map flattened as `[x][y][channel]`, as `permute(0, 3, 2, 1)` then
/// `view(n, -1)` does.
fn flatten_xyc(x: &Maps) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.data.len());
    for n in 0..x.n {
        for col in 0..x.w {
            for row in 0..x.h {
                for c in 0..x.c {
                    out.push(x.data[((n * x.c + c) * x.h + row) * x.w + col]);
                }
            }
        }
    }
    out
}

/// PyTorch's output size of a ceil-mode pooling window without padding:
/// rounded up, but a window must start inside the input.
fn ceil_out(size: usize, k: usize, s: usize) -> usize {
    let out = (size.saturating_sub(k)).div_ceil(s) + 1;
    if (out - 1) * s >= size {
        out - 1
    } else {
        out
    }
}

/// Max-pooling `k × k` by `s`, rounding the output size up; the last
/// window is clipped to the input.
fn max_pool_ceil(x: &Maps, k: usize, s: usize) -> Maps {
    let (oh, ow) = (ceil_out(x.h, k, s), ceil_out(x.w, k, s));
    let mut data = vec![f32::NEG_INFINITY; x.n * x.c * oh * ow];
    for (src, dst) in x
        .data
        .chunks_exact(x.h * x.w)
        .zip(data.chunks_exact_mut(oh * ow))
    {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut m = f32::NEG_INFINITY;
                for iy in oy * s..(oy * s + k).min(x.h) {
                    for ix in ox * s..(ox * s + k).min(x.w) {
                        m = m.max(src[iy * x.w + ix]);
                    }
                }
                dst[oy * ow + ox] = m;
            }
        }
    }
    Maps {
        n: x.n,
        c: x.c,
        h: oh,
        w: ow,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceil_mode_sizes_are_pytorchs() {
        // nn.MaxPool2d(k, s, ceil_mode=True) on these sizes, from PyTorch.
        assert_eq!(ceil_out(29, 2, 2), 15);
        assert_eq!(ceil_out(28, 2, 2), 14);
        assert_eq!(ceil_out(22, 3, 2), 11);
        assert_eq!(ceil_out(10, 3, 2), 5);
        assert_eq!(ceil_out(46, 3, 2), 23);
        assert_eq!(ceil_out(3, 2, 2), 2);
    }

    #[test]
    fn every_stage_lists_facenets_tensors() {
        // 13, 16 and 21 tensors, as in facenet-pytorch's pnet.pt, rnet.pt, onet.pt.
        let counts: Vec<usize> = Stage::ALL.iter().map(|s| s.parameters().len()).collect();
        assert_eq!(counts, [13, 16, 21]);
    }
}
