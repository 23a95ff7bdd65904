//! `nabla vision train` and `eval` end to end on a tiny generated image folder.

mod common;
use common::*;

#[test]
fn train_writes_a_run_that_eval_reads() {
    let root = temp_dir("vision-train");
    image_folder(&root.join("data"));
    let (data, run, cache) = (root.join("data"), root.join("run"), root.join("cache"));
    let o = nabla(&[
        "vision",
        "train",
        "--data",
        data.to_str().unwrap(),
        "--image-size",
        "16",
        "--epochs",
        "2",
        "--channels",
        "4,4,4,4",
        "--hidden",
        "8",
        "--batch-size",
        "8",
        "--cache",
        cache.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["classes"], serde_json::json!(["dark", "light"]));
    assert_eq!(doc["history"].as_array().unwrap().len(), 2);
    assert_eq!(doc["skipped"].as_array().unwrap().len(), 1);
    assert!(String::from_utf8_lossy(&o.stderr).contains("skipped"));
    for file in [
        "model.json",
        "best.bpk",
        "run.json",
        "checkpoints/epoch-0002/state.json",
        "metrics.csv",
        "loss.svg",
        "accuracy.svg",
        "train.json",
    ] {
        assert!(run.join(file).exists(), "{file} missing");
    }
    let o = nabla(&[
        "vision",
        "eval",
        "--checkpoint",
        run.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let eval: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let total: u64 = eval["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 20);

    // Resuming to a longer run continues from epoch 2 with the same data.
    let o = nabla(&[
        "vision",
        "train",
        "--resume",
        run.to_str().unwrap(),
        "--epochs",
        "3",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["resumed_from_epoch"], 2);
    assert_eq!(doc["history"].as_array().unwrap().len(), 3);
    assert!(run.join("checkpoints/epoch-0003/model.bpk").exists());
    assert!(!run.join("checkpoints/epoch-0002").exists());

    let image = data.join("light/0.png");
    let o = nabla(&[
        "vision",
        "predict",
        "--checkpoint",
        run.to_str().unwrap(),
        image.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let predictions: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let p = &predictions[0];
    assert!(["dark", "light"].contains(&p["class"].as_str().unwrap()));
    let probs: Vec<f64> = p["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{probs:?}");
    assert_eq!(
        p["probability"].as_f64().unwrap(),
        probs.iter().cloned().fold(0.0, f64::max)
    );
    // An unreadable image is named, the others are still predicted.
    let broken = data.join("light/broken.png");
    let o = nabla(&[
        "vision",
        "predict",
        "--checkpoint",
        run.to_str().unwrap(),
        image.to_str().unwrap(),
        broken.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).contains("0.png"));
    assert!(stderr(&o).contains("broken.png"), "{}", stderr(&o));

    // The best epoch exported, in both formats; a bad format or run is exit 2.
    for (format, file) in [("onnx", "model.onnx"), ("safetensors", "model.safetensors")] {
        let out = root.join("export").join(file);
        let o = nabla(&[
            "vision",
            "export",
            "--checkpoint",
            run.to_str().unwrap(),
            "--format",
            format,
            "--out",
            out.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let doc = json(&o);
        assert_eq!(doc["format"], format);
        assert_eq!(doc["classes"], serde_json::json!(["dark", "light"]));
        // cnn-bn: four convolutions, each BatchNorm's γ, β, mean and
        // variance, and two dense layers' weights and biases.
        assert_eq!(doc["tensors"], 4 + 4 * 4 + 4);
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(doc["bytes"].as_u64(), Some(bytes.len() as u64));
    }
    let o = nabla(&[
        "vision",
        "export",
        "--checkpoint",
        run.to_str().unwrap(),
        "--format",
        "pt",
        "--out",
        root.join("x").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("expected onnx or safetensors"),
        "{}",
        stderr(&o)
    );
    let o = nabla(&[
        "vision",
        "export",
        "--checkpoint",
        root.join("no-run").to_str().unwrap(),
        "--format",
        "onnx",
        "--out",
        root.join("x.onnx").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no-run/model.json"), "{}", stderr(&o));
    // The cause once, not repeated by the error chain.
    assert_eq!(
        stderr(&o).matches("(os error 2)").count(),
        1,
        "{}",
        stderr(&o)
    );
    assert!(!root.join("x.onnx").exists());

    // A directory that holds a run is never trained into afresh by mistake:
    // refused, or replaced as a whole with --overwrite.
    let fresh = |extra: &[&str]| {
        let mut args = vec![
            "vision",
            "train",
            "--data",
            data.to_str().unwrap(),
            "--image-size",
            "16",
            "--epochs",
            "1",
            "--channels",
            "4,4,4,4",
            "--hidden",
            "8",
            "--model",
            "cnn",
            "--cache",
            cache.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        nabla(&args)
    };
    let o = fresh(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("already holds a run; continue it with `--resume"),
        "{}",
        stderr(&o)
    );
    assert!(run.join("checkpoints/epoch-0003").exists());
    // One writer at a time: while this process holds the lock, a resume is
    // refused and names it; a lock file left by a dead process is taken over.
    let lock = std::fs::File::create(run.join(".lock")).unwrap();
    lock.try_lock().unwrap();
    std::fs::write(run.join(".lock"), format!("{}\n", std::process::id())).unwrap();
    let o = nabla(&[
        "vision",
        "train",
        "--resume",
        run.to_str().unwrap(),
        "--epochs",
        "4",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!("is in use by process {}", std::process::id())),
        "{}",
        stderr(&o)
    );
    drop(lock);
    let o = fresh(&["--overwrite", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json(&o)["model"], "cnn");
    assert!(run.join("checkpoints/epoch-0001").exists());
    assert!(!run.join("checkpoints/epoch-0003").exists());
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("model.json")).unwrap()).unwrap();
    assert_eq!(card["model"]["architecture"], "cnn");
    assert!(!std::fs::read_dir(&root).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("replaced")));

    // A reachable target stops training after the first epoch.
    let early = root.join("early");
    let o = nabla(&[
        "vision",
        "train",
        "--data",
        data.to_str().unwrap(),
        "--image-size",
        "16",
        "--epochs",
        "5",
        "--channels",
        "4,4,4,4",
        "--hidden",
        "8",
        "--cache",
        cache.to_str().unwrap(),
        "--target-accuracy",
        "0",
        "--out",
        early.to_str().unwrap(),
        "--json",
    ]);
    let doc = json(&o);
    assert_eq!(doc["history"].as_array().unwrap().len(), 1);
    assert!(doc["wall_seconds"].as_f64().unwrap() > 0.0);

    // Every part of a run names the run: a part of another run (`early`),
    // copied in, is refused by name rather than used.
    let eval_run = || {
        nabla(&[
            "vision",
            "eval",
            "--checkpoint",
            run.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ])
    };
    let refused = |o: std::process::Output, names: &[&str]| {
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        for name in names {
            assert!(stderr(&o).contains(name), "{name} not in: {}", stderr(&o));
        }
    };
    let swap = |files: &[&str], check: &dyn Fn()| {
        let saved: Vec<Vec<u8>> = files
            .iter()
            .map(|f| std::fs::read(run.join(f)).unwrap())
            .collect();
        for f in files {
            std::fs::copy(early.join(f), run.join(f)).unwrap();
        }
        check();
        for (f, bytes) in files.iter().zip(saved) {
            std::fs::write(run.join(f), bytes).unwrap();
        }
    };
    swap(&["best.bpk"], &|| {
        refused(
            eval_run(),
            &["best.bpk", "is not the file best.json describes"],
        )
    });
    // Another run's weights with their own best.json: a consistent pair,
    // but of another run.
    swap(&["best.bpk", "best.json"], &|| {
        refused(
            eval_run(),
            &[
                "come from different runs",
                "best.json says run",
                "model.json says run",
            ],
        )
    });
    swap(&["model.json"], &|| {
        refused(eval_run(), &["model.json says run", "run.json says run"])
    });
    let state = "checkpoints/epoch-0001/state.json";
    swap(&[state], &|| {
        refused(
            nabla(&[
                "vision",
                "train",
                "--resume",
                run.to_str().unwrap(),
                "--epochs",
                "2",
            ]),
            &["epoch-0001/state.json says run"],
        );
        refused(eval_run(), &["epoch-0001/state.json says run"]);
    });
    let o = eval_run();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let o = nabla(&[
        "vision",
        "train",
        "--device",
        "cuda",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--features cuda"), "{}", stderr(&o));
    let o = nabla(&[
        "vision",
        "train",
        "--data",
        data.to_str().unwrap(),
        "--image-size",
        "20",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn schedules_and_patience_are_checked_and_logged() {
    let root = temp_dir("schedule");
    image_folder(&root.join("data"));
    let (data, run) = (root.join("data"), root.join("run"));
    let train = |extra: &[&str]| {
        let mut args = vec![
            "vision",
            "train",
            "--data",
            data.to_str().unwrap(),
            "--image-size",
            "16",
            "--channels",
            "4,4,4,4",
            "--hidden",
            "8",
            "--batch-size",
            "8",
            "--epochs",
            "2",
        ];
        args.extend_from_slice(extra);
        nabla(&args)
    };
    for (bad, says) in [
        (&["--lr-schedule", "step"][..], "unknown schedule `step`"),
        (&["--patience=-1"][..], "invalid value '-1' for '--patience"),
        (&["--patience", "0"][..], "--patience must be at least 1"),
        (&["--warmup-epochs", "2"][..], "--warmup-epochs must be"),
        (&["--zoom", "1.5"][..], "--zoom below 1"),
    ] {
        let o = train(bad);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{bad:?}: {}", stderr(&o));
    }
    let o = train(&[
        "--lr-schedule",
        "cosine",
        "--warmup-epochs",
        "1",
        "--patience",
        "3",
        "--out",
        run.to_str().unwrap(),
        "--json",
    ]);
    let doc = json(&o);
    // 16 training images in batches of 8: 2 steps an epoch, the first
    // epoch's two a linear warm-up, then half a cosine over the other two.
    let lrs: Vec<f64> = doc["history"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| serde_json::from_value::<Vec<f64>>(r["lrs"].clone()).unwrap())
        .collect();
    let expected = [5e-4, 1e-3, 1e-3, 5e-4];
    assert_eq!(lrs.len(), 4);
    assert!(
        lrs.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-15),
        "{lrs:?}"
    );
    let csv = std::fs::read_to_string(run.join("lr.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(run.join("lr.svg").is_file());
    assert!(doc["stopped_early"].is_null());
}

#[test]
fn lr_find_sweeps_plots_and_suggests() {
    let root = temp_dir("lr-find");
    image_folder(&root.join("data"));
    let (data, out) = (root.join("data"), root.join("sweep"));
    let args = |extra: &[&str]| {
        let mut args = vec![
            "vision",
            "lr-find",
            "--data",
            data.to_str().unwrap(),
            "--image-size",
            "16",
            "--batch-size",
            "4",
            "--model",
            "cnn",
        ];
        args.extend_from_slice(extra);
        nabla(&args)
    };
    let o = args(&["--steps", "3"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--steps at least 10"), "{}", stderr(&o));
    let doc = json(&args(&[
        "--steps",
        "12",
        "--start-lr",
        "1e-5",
        "--end-lr",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]));
    let report: nabla_vision::lr_find::LrFindReport = serde_json::from_value(doc).unwrap();
    // 16 training images in batches of 4: three epochs of the usual batches.
    assert!(report.lrs.len() > 1 && report.lrs.len() <= 12);
    assert_eq!(report.lrs[0], 1e-5);
    assert!(report.suggestion >= 1e-5 && report.suggestion <= 1.0);
    assert!(!report.rule.is_empty());
    for file in ["lr_find.svg", "lr_find.csv", "lr_find.json"] {
        assert!(out.join(file).is_file(), "{file}");
    }
}

#[test]
fn the_keras_recipe_trains_and_is_recorded() {
    let root = temp_dir("recipe");
    image_folder(&root.join("data"));
    let data = root.join("data");
    let doc = json(&nabla(&[
        "vision",
        "train",
        "--data",
        data.to_str().unwrap(),
        "--image-size",
        "16",
        "--channels",
        "4,4,4,4",
        "--hidden",
        "8",
        "--epochs",
        "1",
        "--keras-recipe",
        "--color-jitter",
        "0.2",
        "--json",
    ]));
    let aug = &doc["config"]["augmentation"];
    assert_eq!(aug["rotation"], 20.0);
    assert_eq!(aug["shear"], 0.15);
    assert_eq!(aug["color_jitter"], 0.2);
    assert_eq!(aug["flip"], true);
}
