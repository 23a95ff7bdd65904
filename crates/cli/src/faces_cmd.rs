//! `nabla vision detect` and `nabla vision scene`: faces found in whole
//! photos by MTCNN and labelled by a trained run (`nabla_vision::faces`,
//! `nabla_vision::scene`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use nabla_vision::device::Accelerator;
use nabla_vision::faces::{classify_faces, load_detector, write_annotated};
use nabla_vision::mtcnn::Mtcnn;
use nabla_vision::run::RunDir;
use nabla_vision::scene::{best_of_comparison, scenes, SceneReport, SceneSettings};

use crate::output::OutputArgs;
use crate::InputError;

#[derive(Args, Debug)]
pub struct DetectArgs {
    /// A run directory written by `nabla vision train --out`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Photos (any format `data inspect` reads).
    #[arg(required = true)]
    pub photos: Vec<PathBuf>,
    /// MTCNN's weights [default: $NABLA_WEIGHTS or ~/.cache/nabla/weights, mtcnn.safetensors].
    #[arg(long)]
    pub detector: Option<PathBuf>,
    /// Margin around each face's box for the classifier, as a fraction of the box.
    #[arg(long, default_value_t = 0.25)]
    pub margin: f32,
    /// Write each photo annotated, as PHOTO.svg, into this folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// cpu, cuda or wgpu (the classifier's device; the detector runs on the CPU).
    #[arg(long, default_value = "cpu")]
    pub device: Accelerator,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SceneArgs {
    /// A run directory written by `nabla vision train --out`.
    #[arg(long, required_unless_present = "best_of", conflicts_with = "best_of")]
    pub checkpoint: Option<PathBuf>,
    /// A `nabla vision compare --out` folder: its best run (highest
    /// validation accuracy) labels the faces.
    #[arg(long, value_name = "DIR")]
    pub best_of: Option<PathBuf>,
    /// How many scenes to compose.
    #[arg(long, default_value_t = SceneSettings::default().scenes)]
    pub scenes: usize,
    /// Photos pasted into each scene.
    #[arg(long, default_value_t = SceneSettings::default().photos_per_scene)]
    pub photos: usize,
    /// The scene's size, WIDTHxHEIGHT.
    #[arg(long, default_value = "960x540", value_parser = parse_size)]
    pub size: (u32, u32),
    /// The pasted photos' longer sides, MIN-MAX pixels.
    #[arg(long, default_value = "100-200", value_parser = parse_range)]
    pub sides: (u32, u32),
    /// Which photos are pasted, their sizes and places.
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
    /// MTCNN's weights [default: $NABLA_WEIGHTS or ~/.cache/nabla/weights, mtcnn.safetensors].
    #[arg(long)]
    pub detector: Option<PathBuf>,
    /// cpu, cuda or wgpu (the classifier's device; the detector runs on the CPU).
    #[arg(long, default_value = "cpu")]
    pub device: Accelerator,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn parse_pair(s: &str, sep: char, what: &str) -> Result<(u32, u32), String> {
    let bad = || format!("expected {what}, got `{s}`");
    let (a, b) = s.split_once(sep).ok_or_else(bad)?;
    Ok((
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    ))
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    parse_pair(s, 'x', "WIDTHxHEIGHT, e.g. 960x540")
}

fn parse_range(s: &str) -> Result<(u32, u32), String> {
    parse_pair(s, '-', "MIN-MAX, e.g. 100-200")
}

/// MTCNN's weights from `path`, or from the weights folder.
fn detector(path: Option<&PathBuf>) -> Result<Mtcnn> {
    let path = path.cloned().unwrap_or_else(|| {
        nabla_vision::pretrained::default_dir().join(nabla_vision::mtcnn::MTCNN_FILE)
    });
    Ok(load_detector(&path)?)
}

pub fn scene(a: &SceneArgs) -> Result<()> {
    let settings = SceneSettings {
        scenes: a.scenes,
        photos_per_scene: a.photos,
        width: a.size.0,
        height: a.size.1,
        sides: [a.sides.0, a.sides.1],
        seed: a.seed,
        ..SceneSettings::default()
    };
    let run = match (&a.checkpoint, &a.best_of) {
        (Some(dir), _) => RunDir::new(dir),
        (None, Some(dir)) => best_of_comparison(dir)?,
        (None, None) => return Err(InputError("--checkpoint or --best-of is needed".into()).into()),
    };
    let detector = detector(a.detector.as_ref())?;
    let device = a.device.device().map_err(InputError)?;
    let (report, pngs) = scenes(&run, &detector, &settings, &device)?;
    a.output
        .emit(&report, || Ok(report.files(&pngs)), || scene_text(&report))
}

fn scene_text(r: &SceneReport) -> String {
    let mut rows = Vec::new();
    for (i, scene) in r.scenes.iter().enumerate() {
        for p in &scene.pasted {
            let (found, label) = match &p.predicted {
                Some((c, prob)) => ("yes".to_string(), format!("{c} ({prob:.3})")),
                None => ("no".to_string(), "—".to_string()),
            };
            rows.push(vec![
                (i + 1).to_string(),
                p.file
                    .file_name()
                    .map_or(String::new(), |f| f.to_string_lossy().into_owned()),
                p.class.clone(),
                found,
                label,
            ]);
        }
    }
    let mut text = crate::output::table(&["scene", "photo", "class", "found", "labelled"], &rows);
    text += &format!(
        "\n{} of {} pasted faces found ({:.1} %), {} of those labelled right ({:.1} %), {} detections in all; {} from {}; {:.2} s per megapixel\n",
        r.found,
        r.pasted,
        100.0 * r.found as f64 / r.pasted.max(1) as f64,
        r.labelled_right,
        100.0 * r.labelled_right as f64 / r.found.max(1) as f64,
        r.detections,
        r.model,
        r.run.display(),
        r.seconds_per_megapixel
    );
    text
}

pub fn detect(a: &DetectArgs) -> Result<()> {
    if !(0.0..=2.0).contains(&a.margin) {
        return Err(InputError("--margin must be between 0 and 2".into()).into());
    }
    let detector = detector(a.detector.as_ref())?;
    let run = RunDir::new(&a.checkpoint);
    let device = a.device.device().map_err(InputError)?;
    let (found, images) = classify_faces(&run, &detector, &a.photos, a.margin, &device)?;
    if let Some(out) = &a.out {
        write_annotated(out, &found, &images, &run.card()?.classes)?;
    }
    if a.json {
        return OutputArgs::print_json(&found);
    }
    let mut rows = Vec::new();
    for photo in &found {
        let name = photo.photo.display().to_string();
        if photo.faces.is_empty() {
            rows.push(vec![
                name.clone(),
                "—".into(),
                "no face found".into(),
                String::new(),
                String::new(),
            ]);
        }
        for (i, f) in photo.faces.iter().enumerate() {
            let [x1, y1, x2, y2] = f.face.bbox;
            rows.push(vec![
                if i == 0 { name.clone() } else { String::new() },
                format!("{:.0},{:.0} – {:.0},{:.0}", x1, y1, x2, y2),
                format!("{:.4}", f.face.score),
                f.class.clone(),
                format!("{:.4}", f.probability),
            ]);
        }
    }
    print!(
        "{}",
        crate::output::table(
            &[
                "photo",
                "box (x1,y1 – x2,y2)",
                "face score",
                "class",
                "probability"
            ],
            &rows
        )
    );
    Ok(())
}
