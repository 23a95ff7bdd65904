//! Beyond the sheet: faces found in whole scenes. Validation photos of a
//! trained run (photos it never trained on) are pasted at known places on
//! plain grey; MTCNN finds the faces ([`crate::detect`]) and the run's model
//! labels each ([`crate::faces`]); each pasted photo counts as found when a
//! face's centre lies inside it, and as labelled right when the most
//! confident such face gets the photo's folder as its class.

use std::path::{Path, PathBuf};
use std::time::Instant;

use base64::Engine as _;
use burn::tensor::Device;
use image::imageops::FilterType;
use image::RgbImage;
use nabla_dense::NumpyRandom;
use nabla_report::OutputFile;
use serde::{Deserialize, Serialize};

use crate::compare::Comparison;
use crate::decode::decode;
use crate::faces::{drawn_svg, faces_in, ClassifiedFace};
use crate::identity::read_json;
use crate::images::png_bytes;
use crate::mtcnn::Mtcnn;
use crate::report::TrainReport;
use crate::run::{run_data, RunDir, Silent};
use crate::VisionError;

/// How the scenes are composed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SceneSettings {
    /// How many scenes (3).
    pub scenes: usize,
    /// Photos pasted into each scene (6).
    pub photos_per_scene: usize,
    /// The scene's width in pixels (960).
    pub width: u32,
    /// The scene's height in pixels (540).
    pub height: u32,
    /// Each photo's longer side, drawn uniformly from this range (100–200
    /// pixels: faces of 50–150 pixels, above MTCNN's smallest of 20).
    pub sides: [u32; 2],
    /// Which photos, their sizes and places (0).
    pub seed: u32,
    /// Each face's crop: its box grown by this fraction on every side
    /// (0.25, as `vision detect`).
    pub margin: f32,
}

impl Default for SceneSettings {
    fn default() -> Self {
        SceneSettings {
            scenes: 3,
            photos_per_scene: 6,
            width: 960,
            height: 540,
            sides: [100, 200],
            seed: 0,
            margin: 0.25,
        }
    }
}

/// A photo pasted into a scene and what became of it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pasted {
    pub file: PathBuf,
    /// Its folder's class.
    pub class: String,
    /// Where it was pasted, `[x1, y1, x2, y2]`.
    pub rect: [u32; 4],
    /// The class and probability of the most confident face found inside
    /// it; `None` when no face was found there.
    pub predicted: Option<(String, f32)>,
}

/// One composed scene: where each photo went and every face found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Scene {
    pub pasted: Vec<Pasted>,
    pub faces: Vec<ClassifiedFace>,
}

/// The scenes, their counts, and the first one as a PNG for the report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SceneReport {
    /// The trained run whose model labelled the faces.
    pub run: PathBuf,
    /// Its model's name (`efficientnet-lite0`, …) and classes.
    pub model: String,
    pub classes: Vec<String>,
    pub settings: SceneSettings,
    pub scenes: Vec<Scene>,
    pub pasted: usize,
    pub found: usize,
    pub labelled_right: usize,
    /// Faces found anywhere, including any outside the pasted photos.
    pub detections: usize,
    /// Detection and classification time per megapixel of scene.
    pub seconds_per_megapixel: f64,
    /// The first scene, base64 PNG.
    pub first_png: String,
}

impl Scene {
    /// `png` (this scene, `w × h`) with its faces (coloured by class) and
    /// dashed outlines where the photos were pasted.
    fn drawn(&self, png: &[u8], w: u32, h: u32, classes: &[String]) -> String {
        let outlines: Vec<[u32; 4]> = self.pasted.iter().map(|p| p.rect).collect();
        drawn_svg(png, w, h, &self.faces, classes, &outlines)
    }
}

impl SceneReport {
    /// The first scene drawn ([`Scene::drawn`]).
    pub fn first_svg(&self) -> Option<String> {
        let scene = self.scenes.first()?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(&self.first_png)
            .ok()?;
        let (w, h) = (self.settings.width, self.settings.height);
        Some(scene.drawn(&png, w, h, &self.classes))
    }

    /// scene-N.png (as composed) and scene-N.svg (drawn), for `--out`;
    /// `pngs` are [`scenes`]'s.
    pub fn files(&self, pngs: &[Vec<u8>]) -> Vec<OutputFile> {
        let (w, h) = (self.settings.width, self.settings.height);
        let mut files = Vec::new();
        for (i, (scene, png)) in self.scenes.iter().zip(pngs).enumerate() {
            files.push(OutputFile {
                name: format!("scene-{}.svg", i + 1),
                bytes: scene.drawn(png, w, h, &self.classes).into_bytes(),
            });
            files.push(OutputFile {
                name: format!("scene-{}.png", i + 1),
                bytes: png.clone(),
            });
        }
        files
    }
}

/// The best run of the comparison written into `dir` (highest validation
/// accuracy).
pub fn best_of_comparison(dir: &Path) -> Result<RunDir, VisionError> {
    let c: Comparison = read_json(&dir.join("comparison.json"))?;
    let best = c.best().ok_or_else(|| {
        VisionError::Setup(format!(
            "{}: the comparison has no run that finished",
            dir.display()
        ))
    })?;
    Ok(RunDir::new(dir.join(&best.name)))
}

/// Composes `settings.scenes` scenes from `run`'s validation photos, finds
/// and labels their faces, and counts them against where photos were
/// pasted; with each scene as a PNG file's bytes (encoded once, for the
/// report and for `--out`).
pub fn scenes(
    run: &RunDir,
    detector: &Mtcnn,
    settings: &SceneSettings,
    device: &Device,
) -> Result<(SceneReport, Vec<Vec<u8>>), VisionError> {
    let s = settings;
    if s.scenes == 0 || s.photos_per_scene == 0 || s.sides[0] == 0 || s.sides[0] > s.sides[1] {
        return Err(VisionError::Setup(
            "scenes: need at least one scene and photo, and sides MIN ≤ MAX, MIN > 0".into(),
        ));
    }
    if u64::from(s.width) * u64::from(s.height) > crate::decode::MAX_PIXELS || s.scenes > 1000 {
        return Err(VisionError::Setup(format!(
            "scenes: at most 1000 scenes of at most {} pixels each (asked for {} of {} × {})",
            crate::decode::MAX_PIXELS,
            s.scenes,
            s.width,
            s.height
        )));
    }
    if s.sides[1] > s.width.min(s.height) {
        return Err(VisionError::Setup(format!(
            "scenes: photos of {} pixels do not fit a {} × {} scene",
            s.sides[1], s.width, s.height
        )));
    }
    let (card, model) = run.load_best(device)?;
    let report: TrainReport = read_json(&run.path.join("train.json"))?;
    let spec = run.spec()?;
    let data = run_data(&spec, &report.config, &Silent)?;
    // The split is drawn again from the folder: with other classes it is
    // not the run's (and its labels would index the wrong names).
    if data.folder.classes != card.classes {
        return Err(VisionError::Layout {
            path: spec.data.clone(),
            message: format!(
                "classes {:?}, the model was trained on {:?}",
                data.folder.classes, card.classes
            ),
        });
    }
    let mut photos: Vec<(PathBuf, usize)> = data
        .val_files
        .iter()
        .cloned()
        .zip(data.val.labels.iter().copied())
        .collect();
    if photos.is_empty() {
        return Err(VisionError::Setup(format!(
            "{}: the run has no validation photos",
            run.path.display()
        )));
    }
    let mut rng = NumpyRandom::new(s.seed);
    rng.shuffle(&mut photos);
    let mut next = photos.iter().cycle();
    let mut out = Vec::new();
    let mut pngs = Vec::new();
    let mut seconds = 0.0;
    for _ in 0..s.scenes {
        let mut canvas = RgbImage::from_pixel(s.width, s.height, image::Rgb([128; 3]));
        let mut pasted: Vec<Pasted> = Vec::new();
        for _ in 0..s.photos_per_scene {
            let (file, label) = next.next().expect("a cycle of a non-empty list");
            let photo = decode(file)
                .map_err(|message| VisionError::Layout {
                    path: file.clone(),
                    message,
                })?
                .to_rgb8();
            let side = s.sides[0] + rng.below((s.sides[1] - s.sides[0] + 1) as usize) as u32;
            let scale = side as f32 / photo.width().max(photo.height()) as f32;
            let (w, h) = (
                ((photo.width() as f32 * scale) as u32).max(1),
                ((photo.height() as f32 * scale) as u32).max(1),
            );
            let resized = image::imageops::resize(&photo, w, h, FilterType::Triangle);
            // A free place by trial; a scene too crowded for one is an error.
            let before = pasted.len();
            for _ in 0..200 {
                let x = rng.below((s.width - w + 1) as usize) as u32;
                let y = rng.below((s.height - h + 1) as usize) as u32;
                let rect = [x, y, x + w, y + h];
                let apart = |o: &Pasted| {
                    rect[2] <= o.rect[0]
                        || rect[0] >= o.rect[2]
                        || rect[3] <= o.rect[1]
                        || rect[1] >= o.rect[3]
                };
                if pasted.iter().all(apart) {
                    image::imageops::replace(&mut canvas, &resized, x.into(), y.into());
                    pasted.push(Pasted {
                        file: file.clone(),
                        class: card.classes[*label].clone(),
                        rect,
                        predicted: None,
                    });
                    break;
                }
            }
            if pasted.len() == before {
                return Err(VisionError::Setup(format!(
                    "scenes: no free place for photo {} of {} in a {} × {} scene after 200 tries; lower --photos or --sides",
                    before + 1,
                    s.photos_per_scene,
                    s.width,
                    s.height
                )));
            }
        }
        let t = Instant::now();
        let faces = faces_in(&canvas, detector, (&card, &model), s.margin, device)?;
        seconds += t.elapsed().as_secs_f64();
        for p in &mut pasted {
            let [x1, y1, x2, y2] = p.rect.map(|v| v as f32);
            p.predicted = faces
                .iter()
                .filter(|f| {
                    let cx = (f.face.bbox[0] + f.face.bbox[2]) / 2.0;
                    let cy = (f.face.bbox[1] + f.face.bbox[3]) / 2.0;
                    // Half-open, as the rectangles touch but never overlap.
                    (x1..x2).contains(&cx) && (y1..y2).contains(&cy)
                })
                .max_by(|a, b| a.face.score.total_cmp(&b.face.score))
                .map(|f| (f.class.clone(), f.probability));
        }
        out.push(Scene { pasted, faces });
        pngs.push(png_bytes(&canvas));
    }
    let all = || out.iter().flat_map(|s| &s.pasted);
    let found = all().filter(|p| p.predicted.is_some()).count();
    let labelled_right = all()
        .filter(|p| p.predicted.as_ref().is_some_and(|(c, _)| *c == p.class))
        .count();
    let megapixels = (s.scenes as f64) * f64::from(s.width) * f64::from(s.height) / 1e6;
    let report = SceneReport {
        run: run.path.clone(),
        model: card.model.architecture.name().to_string(),
        classes: card.classes.clone(),
        settings: s.clone(),
        pasted: all().count(),
        found,
        labelled_right,
        detections: out.iter().map(|s| s.faces.len()).sum(),
        seconds_per_megapixel: seconds / megapixels,
        first_png: base64::engine::general_purpose::STANDARD.encode(&pngs[0]),
        scenes: out,
    };
    Ok((report, pngs))
}
