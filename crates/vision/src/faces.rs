//! `nabla vision detect`: every face MTCNN finds in a photo ([`crate::detect`]),
//! cropped with a margin (the face-mask photos show the whole head, not the
//! tight box MTCNN draws) and classified by a trained run's best model, and
//! each photo drawn with its boxes as a self-contained SVG.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use image::imageops::FilterType;
use image::RgbImage;

use crate::decode::decode;
use crate::detect::{detect, DetectConfig, Face, Planes};
use crate::images::png_bytes;
use crate::model::Network;
use crate::mtcnn::{Mtcnn, MTCNN_FILE};
use crate::run::RunDir;
use crate::train::{most_probable, predict, ImageSet, ModelCard};
use crate::VisionError;

/// One face found and classified.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ClassifiedFace {
    #[serde(flatten)]
    pub face: Face,
    pub class: String,
    pub probability: f32,
    /// The crop the classifier saw, `[x1, y1, x2, y2]` in pixels.
    pub crop: [u32; 4],
}

/// A photo's faces.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PhotoFaces {
    pub photo: PathBuf,
    pub width: u32,
    pub height: u32,
    pub faces: Vec<ClassifiedFace>,
}

/// The detector's weights at `path`, or an error saying how to get them.
pub fn load_detector(path: &Path) -> Result<Mtcnn, VisionError> {
    if !path.is_file() {
        return Err(VisionError::Setup(format!(
            "no MTCNN weights at {}; `nabla weights download mtcnn` fetches them ({MTCNN_FILE})",
            path.display()
        )));
    }
    Mtcnn::load(path)
}

/// The crop around a face: its box grown by `margin` of its size on every
/// side, clipped to the image.
fn crop_box(face: &Face, margin: f32, w: u32, h: u32) -> [u32; 4] {
    let [x1, y1, x2, y2] = face.bbox;
    let (mw, mh) = (margin * (x2 - x1), margin * (y2 - y1));
    let clip = |v: f32, hi: u32| v.round().clamp(0.0, hi as f32) as u32;
    [
        clip(x1 - mw, w),
        clip(y1 - mh, h),
        clip(x2 + mw, w),
        clip(y2 + mh, h),
    ]
}

/// Finds, crops and classifies the faces of each photo with the best model
/// of `run`. An unreadable photo is an error naming it.
pub fn classify_faces(
    run: &RunDir,
    detector: &Mtcnn,
    photos: &[PathBuf],
    margin: f32,
    device: &Device,
) -> Result<(Vec<PhotoFaces>, Vec<RgbImage>), VisionError> {
    let (card, model) = run.load_best(device)?;
    let mut found = Vec::new();
    let mut images = Vec::new();
    for photo in photos {
        let rgb = decode(photo)
            .map_err(|message| VisionError::Layout {
                path: photo.clone(),
                message,
            })?
            .to_rgb8();
        let faces = faces_in(&rgb, detector, (&card, &model), margin, device)?;
        found.push(PhotoFaces {
            photo: photo.clone(),
            width: rgb.width(),
            height: rgb.height(),
            faces,
        });
        images.push(rgb);
    }
    Ok((found, images))
}

/// The faces of one image, each crop classified by the run's model (`card`, `model`).
pub(crate) fn faces_in(
    rgb: &RgbImage,
    detector: &Mtcnn,
    (card, model): (&ModelCard, &Network),
    margin: f32,
    device: &Device,
) -> Result<Vec<ClassifiedFace>, VisionError> {
    let size = card.model.image_size as u32;
    let (w, h) = rgb.dimensions();
    let faces = detect(
        detector,
        &Planes::from_rgb(h as usize, w as usize, rgb.as_raw()),
        &DetectConfig::default(),
    )?;
    let mut set = ImageSet {
        size: size as usize,
        normalization: card.model.normalization(),
        ..ImageSet::default()
    };
    let mut crops = Vec::new();
    for face in &faces {
        let c = crop_box(face, margin, w, h);
        let (cw, ch) = ((c[2] - c[0]).max(1), (c[3] - c[1]).max(1));
        let piece = image::imageops::crop_imm(rgb, c[0], c[1], cw, ch).to_image();
        let resized = image::imageops::resize(&piece, size, size, FilterType::Triangle);
        set.pixels.push(resized.into_raw());
        set.labels.push(0);
        crops.push(c);
    }
    let probs = if faces.is_empty() {
        Vec::new()
    } else {
        predict(model, &set, 32, device)
    };
    Ok(faces
        .into_iter()
        .zip(probs)
        .zip(crops)
        .map(|((face, p), crop)| {
            let best = most_probable(&p);
            ClassifiedFace {
                face,
                class: card.classes[best].clone(),
                probability: p[best],
                crop,
            }
        })
        .collect())
}

/// The colour of a class's boxes: the first class (`with_mask` in the
/// face-mask photos) green, the second red, others from a short palette.
fn colour(classes: &[String], class: &str) -> &'static str {
    const PALETTE: [&str; 5] = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e"];
    let i = classes.iter().position(|c| c == class).unwrap_or(0);
    PALETTE[i % PALETTE.len()]
}

/// Each photo annotated as `DIR/STEM.svg` ([`annotated_svg`]), written
/// atomically; `images` are [`classify_faces`]'s.
pub fn write_annotated(
    out: &Path,
    found: &[PhotoFaces],
    images: &[RgbImage],
    classes: &[String],
) -> Result<(), VisionError> {
    std::fs::create_dir_all(out).map_err(|source| VisionError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    for (photo, image) in found.iter().zip(images) {
        let stem = photo
            .photo
            .file_stem()
            .map_or("photo".into(), |s| s.to_string_lossy().into_owned());
        let path = out.join(format!("{stem}.svg"));
        nabla_report::write_atomic(&path, annotated_svg(photo, image, classes).as_bytes())
            .map_err(|source| VisionError::Io { path, source })?;
    }
    Ok(())
}

/// The photo with each face's box, landmarks and label, as an SVG that
/// embeds the photo (PNG), so a browser opens it as it is.
pub fn annotated_svg(found: &PhotoFaces, image: &RgbImage, classes: &[String]) -> String {
    drawn_svg(
        &png_bytes(image),
        found.width,
        found.height,
        &found.faces,
        classes,
        &[],
    )
}

/// A `w × h` PNG with `faces` drawn on it, and `outlines` (where photos
/// were pasted into a composed scene) as dashed grey rectangles.
pub(crate) fn drawn_svg(
    png: &[u8],
    w: u32,
    h: u32,
    faces: &[ClassifiedFace],
    classes: &[String],
    outlines: &[[u32; 4]],
) -> String {
    use base64::Engine as _;
    use nabla_report::document::escape;
    let stroke = (w.max(h) as f32 / 300.0).max(1.5);
    let font = (w.max(h) as f32 / 40.0).max(10.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\">\n\
         <image x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" href=\"data:image/png;base64,{}\"/>\n",
        base64::engine::general_purpose::STANDARD.encode(png)
    );
    for [x1, y1, x2, y2] in outlines {
        svg += &format!(
            "<rect x=\"{x1}\" y=\"{y1}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#555\" stroke-width=\"{:.1}\" stroke-dasharray=\"6 4\"/>\n",
            x2 - x1,
            y2 - y1,
            stroke / 2.0
        );
    }
    if faces.is_empty() {
        svg += &format!(
            "<text x=\"8\" y=\"{font}\" font-size=\"{font}\" fill=\"#fff\" stroke=\"#000\" stroke-width=\"0.5\">no face found</text>\n"
        );
    }
    for f in faces {
        let [x1, y1, x2, y2] = f.face.bbox;
        let c = colour(classes, &f.class);
        let label = format!("{} {:.0}%", f.class, 100.0 * f.probability);
        // A label that would run past the right edge ends at the box's
        // right side instead (0.6 em: a bold sans-serif letter's width).
        let (tx, anchor) = if x1 + 0.6 * font * label.chars().count() as f32 > w as f32 {
            (x2.min(w as f32), "end")
        } else {
            (x1, "start")
        };
        svg += &format!(
            "<rect x=\"{x1:.1}\" y=\"{y1:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"{stroke:.1}\"/>\n\
             <text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" font-size=\"{font:.0}\" fill=\"{c}\" stroke=\"#fff\" stroke-width=\"0.4\" font-weight=\"bold\">{}</text>\n",
            x2 - x1,
            y2 - y1,
            (y1 - 4.0).max(font),
            escape(&label),
        );
        for [x, y] in f.face.landmarks {
            svg += &format!(
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{:.1}\" fill=\"{c}\"/>\n",
                stroke
            );
        }
    }
    svg + "</svg>\n"
}
