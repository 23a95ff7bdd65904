//! Faces in a whole photo: MTCNN's cascade as facenet-pytorch 2.6.0's
//! `detect_face` runs it, step for step, so that its boxes, scores and
//! landmarks are facenet's (`crates/vision/tests/mtcnn.rs` holds them to a
//! fixture). P-Net slides over an image pyramid (the smallest face
//! `min_face` pixels, each level `factor` times the last) and proposes
//! boxes; non-maximum suppression per level and over all levels, squaring
//! and clipping follow; R-Net rescores 24 × 24 crops and O-Net 48 × 48
//! ones, which also gives five landmarks. Images are resampled as
//! `interpolate(mode="area")` does (PyTorch's adaptive average pooling).

use crate::mtcnn::{Maps, Mtcnn, Net};
use crate::VisionError;

/// facenet-pytorch's defaults.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DetectConfig {
    /// Smallest face searched for, in pixels (20).
    pub min_face: f32,
    /// P-Net's, R-Net's and O-Net's face-probability thresholds (0.6, 0.7, 0.7).
    pub thresholds: [f32; 3],
    /// Scale from one pyramid level to the next (0.709).
    pub factor: f32,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            min_face: 20.0,
            thresholds: [0.6, 0.7, 0.7],
            factor: 0.709,
        }
    }
}

/// One face found: the box `[x1, y1, x2, y2]` in pixels, O-Net's face
/// probability, and the five landmarks (eyes, nose, mouth corners) `[x, y]`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Face {
    pub bbox: [f32; 4],
    pub score: f32,
    pub landmarks: [[f32; 2]; 5],
}

/// An RGB image as three planes of 0–255 values, `[3][h][w]`.
#[derive(Clone, Debug)]
pub struct Planes {
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
}

impl Planes {
    /// From interleaved 8-bit RGB, `[h][w][3]`.
    pub fn from_rgb(h: usize, w: usize, rgb: &[u8]) -> Planes {
        let mut data = vec![0f32; 3 * h * w];
        for (p, px) in rgb.chunks_exact(3).enumerate() {
            for c in 0..3 {
                data[c * h * w + p] = f32::from(px[c]);
            }
        }
        Planes { h, w, data }
    }
}

/// `[x1, y1, x2, y2, score]` and the network's four offsets.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    b: [f32; 4],
    score: f32,
    reg: [f32; 4],
}

/// Area resampling of rows `y0..y1` and columns `x0..x1` of `img` to
/// `oh × ow`, scaled to `(v − 127.5) · 0.0078125` for the networks.
fn resample(
    img: &Planes,
    (y0, y1, x0, x1): (usize, usize, usize, usize),
    oh: usize,
    ow: usize,
) -> Vec<f32> {
    let (ih, iw) = (y1 - y0, x1 - x0);
    let mut out = vec![0f32; 3 * oh * ow];
    for c in 0..3 {
        let plane = &img.data[c * img.h * img.w..(c + 1) * img.h * img.w];
        for oy in 0..oh {
            let (ys, ye) = (oy * ih / oh, ((oy + 1) * ih).div_ceil(oh));
            for ox in 0..ow {
                let (xs, xe) = (ox * iw / ow, ((ox + 1) * iw).div_ceil(ow));
                let mut sum = 0f32;
                for y in ys..ye {
                    for x in xs..xe {
                        sum += plane[(y0 + y) * img.w + x0 + x];
                    }
                }
                let v = sum / ((ye - ys) * (xe - xs)) as f32;
                out[(c * oh + oy) * ow + ox] = (v - 127.5) * 0.0078125;
            }
        }
    }
    out
}

/// torchvision's `nms`: by descending score (stable), dropping every box
/// whose IoU with a kept one exceeds `threshold`; areas without the +1.
fn nms_union(c: &[Candidate], threshold: f32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..c.len()).collect();
    order.sort_by(|&a, &b| c[b].score.total_cmp(&c[a].score));
    let area = |b: &[f32; 4]| (b[2] - b[0]) * (b[3] - b[1]);
    let mut suppressed = vec![false; c.len()];
    let mut keep = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        for &j in &order[k + 1..] {
            let (a, b) = (&c[i].b, &c[j].b);
            let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
            let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
            let inter = w * h;
            if inter / (area(a) + area(b) - inter) > threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// facenet's `nms_numpy` with the "Min" overlap: intersection over the
/// smaller area, areas with the +1, the highest score first.
fn nms_min(c: &[Candidate], threshold: f32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..c.len()).collect();
    order.sort_by(|&a, &b| c[a].score.total_cmp(&c[b].score));
    let area = |b: &[f32; 4]| (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0);
    let mut keep = Vec::new();
    while let Some(i) = order.pop() {
        keep.push(i);
        order.retain(|&j| {
            let (a, b) = (&c[i].b, &c[j].b);
            let w = (a[2].min(b[2]) - a[0].max(b[0]) + 1.0).max(0.0);
            let h = (a[3].min(b[3]) - a[1].max(b[1]) + 1.0).max(0.0);
            w * h / area(a).min(area(b)) <= threshold
        });
    }
    keep
}

/// Squares each box about its centre, on its longer side.
fn rerec(c: &mut Candidate) {
    let (h, w) = (c.b[3] - c.b[1], c.b[2] - c.b[0]);
    let l = w.max(h);
    c.b[0] += w * 0.5 - l * 0.5;
    c.b[1] += h * 0.5 - l * 0.5;
    c.b[2] = c.b[0] + l;
    c.b[3] = c.b[1] + l;
}

/// Moves a box by the offsets, in units of its size (+1, as facenet's `bbreg`).
fn bbreg(c: &mut Candidate, reg: [f32; 4]) {
    let (w, h) = (c.b[2] - c.b[0] + 1.0, c.b[3] - c.b[1] + 1.0);
    c.b = [
        c.b[0] + reg[0] * w,
        c.b[1] + reg[1] * h,
        c.b[2] + reg[2] * w,
        c.b[3] + reg[3] * h,
    ];
}

/// The pixels `(y0, y1, x0, x1)` a box covers, clipped to the image, as
/// facenet's `pad` and its crop `[y − 1 : ey, x − 1 : ex]` take them;
/// `None` when nothing is left.
fn crop(c: &Candidate, img: &Planes) -> Option<(usize, usize, usize, usize)> {
    let t = |v: f32| v.trunc() as i64;
    let (x, y) = (t(c.b[0]).max(1), t(c.b[1]).max(1));
    let (ex, ey) = (t(c.b[2]).min(img.w as i64), t(c.b[3]).min(img.h as i64));
    (ey > y - 1 && ex > x - 1)
        .then(|| ((y - 1) as usize, ey as usize, (x - 1) as usize, ex as usize))
}

/// Crops every candidate to `size × size` and runs `net` on them; the
/// candidates whose crops are empty are dropped.
fn refine(
    net: &Net,
    img: &Planes,
    cands: Vec<Candidate>,
    size: usize,
) -> Result<(Vec<Candidate>, crate::mtcnn::Outputs), VisionError> {
    let mut kept = Vec::new();
    let mut data = Vec::new();
    for c in cands {
        if let Some(window) = crop(&c, img) {
            data.extend(resample(img, window, size, size));
            kept.push(c);
        }
    }
    let x = Maps {
        n: kept.len(),
        c: 3,
        h: size,
        w: size,
        data,
    };
    let out = if kept.is_empty() {
        Default::default()
    } else {
        net.forward(&x)?
    };
    Ok((kept, out))
}

/// Every face MTCNN finds in `img`, highest score first.
pub fn detect(m: &Mtcnn, img: &Planes, cfg: &DetectConfig) -> Result<Vec<Face>, VisionError> {
    let (h, w) = (img.h, img.w);
    // The pyramid, in double precision as Python computes it.
    let mut scales = Vec::new();
    let scale0 = 12.0 / f64::from(cfg.min_face);
    let (mut s, mut minl) = (scale0, h.min(w) as f64 * scale0);
    while minl >= 12.0 {
        scales.push(s);
        s *= f64::from(cfg.factor);
        minl *= f64::from(cfg.factor);
    }
    let mut cands: Vec<Candidate> = Vec::new();
    for &scale in &scales {
        let (sh, sw) = (
            (h as f64 * scale + 1.0) as usize,
            (w as f64 * scale + 1.0) as usize,
        );
        if sh < 12 || sw < 12 {
            continue;
        }
        let x = Maps {
            n: 1,
            c: 3,
            h: sh,
            w: sw,
            data: resample(img, (0, h, 0, w), sh, sw),
        };
        let out = m.pnet.forward(&x)?;
        let (mh, mw) = out.map;
        let plane = mh * mw;
        let sc = scale as f32;
        let mut level = Vec::new();
        for y in 0..mh {
            for xx in 0..mw {
                let p = out.probabilities[plane + y * mw + xx];
                if p >= cfg.thresholds[0] {
                    let (bx, by) = (xx as f32, y as f32);
                    level.push(Candidate {
                        b: [
                            ((2.0 * bx + 1.0) / sc).floor(),
                            ((2.0 * by + 1.0) / sc).floor(),
                            ((2.0 * bx + 12.0) / sc).floor(),
                            ((2.0 * by + 12.0) / sc).floor(),
                        ],
                        score: p,
                        reg: std::array::from_fn(|k| out.offsets[k * plane + y * mw + xx]),
                    });
                }
            }
        }
        let keep = nms_union(&level, 0.5);
        cands.extend(keep.into_iter().map(|i| level[i]));
    }
    let keep = nms_union(&cands, 0.7);
    let mut cands: Vec<Candidate> = keep
        .into_iter()
        .map(|i| {
            let mut c = cands[i];
            let (rw, rh) = (c.b[2] - c.b[0], c.b[3] - c.b[1]);
            c.b = [
                c.b[0] + c.reg[0] * rw,
                c.b[1] + c.reg[1] * rh,
                c.b[2] + c.reg[2] * rw,
                c.b[3] + c.reg[3] * rh,
            ];
            rerec(&mut c);
            c
        })
        .collect();
    // R-Net.
    if !cands.is_empty() {
        let (kept, out) = refine(&m.rnet, img, cands, 24)?;
        let passed: Vec<Candidate> = kept
            .iter()
            .enumerate()
            .filter_map(|(k, c)| {
                let score = out.probabilities[2 * k + 1];
                (score > cfg.thresholds[1]).then(|| Candidate {
                    b: c.b,
                    score,
                    reg: std::array::from_fn(|j| out.offsets[4 * k + j]),
                })
            })
            .collect();
        cands = nms_union(&passed, 0.7)
            .into_iter()
            .map(|i| {
                let mut c = passed[i];
                let reg = c.reg;
                bbreg(&mut c, reg);
                rerec(&mut c);
                c
            })
            .collect();
    }
    // O-Net.
    let mut faces: Vec<(Candidate, [[f32; 2]; 5])> = Vec::new();
    if !cands.is_empty() {
        let (kept, out) = refine(&m.onet, img, cands, 48)?;
        for (k, c) in kept.iter().enumerate() {
            let score = out.probabilities[2 * k + 1];
            if score <= cfg.thresholds[2] {
                continue;
            }
            let mut c = Candidate {
                b: c.b,
                score,
                reg: std::array::from_fn(|j| out.offsets[4 * k + j]),
            };
            let (wi, hi) = (c.b[2] - c.b[0] + 1.0, c.b[3] - c.b[1] + 1.0);
            let p = &out.landmarks[10 * k..10 * k + 10];
            let marks =
                std::array::from_fn(|i| [wi * p[i] + c.b[0] - 1.0, hi * p[5 + i] + c.b[1] - 1.0]);
            let reg = c.reg;
            bbreg(&mut c, reg);
            faces.push((c, marks));
        }
    }
    let cands: Vec<Candidate> = faces.iter().map(|f| f.0).collect();
    Ok(nms_min(&cands, 0.7)
        .into_iter()
        .map(|i| Face {
            bbox: faces[i].0.b,
            score: faces[i].0.score,
            landmarks: faces[i].1,
        })
        .collect())
}
