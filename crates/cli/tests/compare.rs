//! `nabla vision compare` on a tiny generated image folder.

mod common;
use common::*;

#[test]
fn compare_runs_each_model_skips_missing_weights_and_resumes() {
    let root = temp_dir("compare");
    image_folder(&root.join("data"));
    let out = root.join("cmp");
    let no_weights = root.join("no-weights");
    let args = |epochs: &'static str, size: &'static str| {
        vec![
            "vision".to_string(),
            "compare".into(),
            "--data".into(),
            root.join("data").display().to_string(),
            "--out".into(),
            out.display().to_string(),
            "--models".into(),
            "cnn,resnet34-pretrained,efficientnet-lite0-probe".into(),
            "--epochs".into(),
            epochs.into(),
            "--image-size".into(),
            size.into(),
            "--weights".into(),
            no_weights.display().to_string(),
            "--json".into(),
        ]
    };
    let run = |epochs, size| {
        let a = args(epochs, size);
        nabla(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let first = json(&run("1", "32"));
    let typed: nabla_vision::compare::Comparison = serde_json::from_value(first.clone()).unwrap();
    assert!(typed.rows[0].status.ran());
    let rows = first["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["status"], "ran");
    assert_eq!(rows[0]["history"].as_array().unwrap().len(), 1);
    for (row, file) in [
        (&rows[1], "resnet34-b627a593.pth"),
        (&rows[2], "efficientnet-lite0.safetensors"),
    ] {
        assert_eq!(row["status"], "skipped");
        let reason = row["reason"].as_str().unwrap();
        assert!(
            reason.contains(&no_weights.join(file).display().to_string())
                && reason.contains("nabla weights download"),
            "{reason}"
        );
    }
    // The best run's highest-loss validation images, thumbnails inline.
    let gallery = typed.gallery.as_ref().expect("a gallery of the best run");
    assert_eq!(gallery.run, "cnn");
    let val_images = typed.rows[0]
        .per_class
        .as_ref()
        .unwrap()
        .weighted_avg
        .support;
    assert_eq!(gallery.top_losses.len(), val_images.min(16));
    for (t, next) in gallery
        .top_losses
        .iter()
        .zip(gallery.top_losses.iter().skip(1))
    {
        assert!(t.loss >= next.loss);
    }
    for t in &gallery.top_losses {
        assert!(t.file.is_file(), "{}", t.file.display());
        let thumb = image::load_from_memory(&t.thumbnail).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (32, 32));
    }
    for file in [
        "comparison.json",
        "comparison.csv",
        "loss.svg",
        "accuracy.svg",
        "top_losses.html",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let interpretation = first["interpretation"].as_array().unwrap();
    assert!(
        interpretation[0]
            .as_str()
            .unwrap()
            .starts_with("Only cnn ran: best validation accuracy"),
        "{interpretation:?}"
    );
    // Started again with a larger budget, the run continues from its checkpoint.
    let second = json(&run("2", "32"));
    let row = &second["rows"][0];
    assert!(row["command"].as_str().unwrap().contains("--resume"));
    let history = row["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0], rows[0]["history"][0]);
    // Other settings in the same folder: reported, not mixed in (exit 1,
    // the table still printed).
    let third = run("2", "48");
    assert_eq!(third.status.code(), Some(1), "{}", stderr(&third));
    let doc: serde_json::Value = serde_json::from_slice(&third.stdout).unwrap();
    assert_eq!(doc["rows"][0]["status"], "failed");
    let reason = doc["rows"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("started with other settings"), "{reason}");
}

#[test]
fn compare_passes_the_schedule_and_early_stopping_to_every_run() {
    let root = temp_dir("compare-schedule");
    image_folder(&root.join("data"));
    let out = root.join("cmp");
    let o = nabla(&[
        "vision",
        "compare",
        "--data",
        root.join("data").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--models",
        "cnn",
        "--epochs",
        "2",
        "--image-size",
        "32",
        "--lr-schedule",
        "one-cycle",
        "--warmup-epochs",
        "0.5",
        "--patience",
        "4",
        "--json",
    ]);
    let doc = json(&o);
    let row = &doc["rows"][0];
    let command = row["command"].as_str().unwrap();
    for arg in [
        "--lr-schedule one-cycle",
        "--warmup-epochs 0.5",
        "--patience 4",
    ] {
        assert!(command.contains(arg), "{arg} not in {command}");
    }
    // The run followed the schedule (its shape is checked in
    // crates/vision/tests/schedule.rs): annealed far below its peak.
    let train: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("cnn/train.json")).unwrap())
            .unwrap();
    let lrs: Vec<f64> = train["history"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| {
            e["lrs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
        })
        .collect();
    let peak = lrs.iter().cloned().fold(0.0, f64::max);
    assert!(*lrs.last().unwrap() < peak / 1000.0, "{lrs:?}");
    let o = nabla(&["vision", "compare", "--lr-schedule", "step"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn compare_refuses_unknown_runs_and_missing_data() {
    let o = nabla(&["vision", "compare", "--models", "cnn,vgg16"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown run `vgg16`"), "{}", stderr(&o));
    let o = nabla(&["vision", "compare", "--data", "/nonexistent/faces"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("/nonexistent/faces is not an image folder"),
        "{}",
        stderr(&o)
    );
}

/// With EfficientNet-Lite0's ImageNet weights (fetched by CI, which sets
/// NABLA_REQUIRE_PRETRAINED=1; skipped with a note elsewhere when missing),
/// the pretrained runs fine-tune and probe.
#[test]
fn compare_fine_tunes_and_probes_imagenet_weights() {
    if published_weights("efficientnet-lite0.safetensors", "efficientnet-lite0").is_none() {
        return;
    }
    let weights = nabla_vision::pretrained::default_dir();
    let root = temp_dir("compare-pretrained");
    image_folder(&root.join("data"));
    let o = nabla(&[
        "vision",
        "compare",
        "--data",
        root.join("data").to_str().unwrap(),
        "--out",
        root.join("cmp").to_str().unwrap(),
        "--models",
        "efficientnet-lite0-pretrained,efficientnet-lite0-probe",
        "--epochs",
        "2",
        "--image-size",
        "32",
        "--weights",
        weights.to_str().unwrap(),
        "--json",
    ]);
    let doc = json(&o);
    for row in doc["rows"].as_array().unwrap() {
        assert_eq!(row["status"], "ran", "{row}");
        assert_eq!(row["history"].as_array().unwrap().len(), 2);
    }
    let probe = doc["rows"][1]["command"].as_str().unwrap();
    assert!(probe.contains("--freeze-backbone"), "{probe}");
    let tuned = doc["rows"][0]["command"].as_str().unwrap();
    assert!(tuned.contains("--backbone-lr-mult 0.1"), "{tuned}");
    assert!(
        doc["interpretation"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().starts_with("Training the head alone")),
        "{doc}"
    );
}
