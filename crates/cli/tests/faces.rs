//! `nabla vision detect` and `nabla vision scene`: faces found by MTCNN in
//! whole photos and labelled by a tiny model trained here. Skipped without
//! MTCNN's weights unless CI requires them (NABLA_REQUIRE_PRETRAINED).

mod common;
use common::*;

const ASTRONAUT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../vision/tests/fixtures/astronaut192.png"
);

fn have_detector() -> bool {
    published_weights(nabla_vision::mtcnn::MTCNN_FILE, "mtcnn").is_some()
}

/// `vision detect` on the astronaut (one face) and a plain picture (none),
/// with a tiny model trained here; skipped without MTCNN's weights unless
/// CI requires them.
#[test]
fn detect_finds_classifies_and_draws_faces() {
    if !have_detector() {
        return;
    }
    let root = temp_dir("vision-detect");
    image_folder(&root.join("data"));
    let run = tiny_run(&root, "cnn");
    let plain = root.join("plain.png");
    image::RgbImage::from_pixel(64, 48, image::Rgb([90, 140, 200]))
        .save(&plain)
        .unwrap();
    let out = root.join("drawn");
    let o = nabla(&[
        "vision",
        "detect",
        "--checkpoint",
        run.to_str().unwrap(),
        ASTRONAUT,
        plain.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc = json(&o);
    let photos = doc.as_array().unwrap();
    assert_eq!(photos.len(), 2);
    let faces = photos[0]["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 1, "{doc}");
    let bbox: Vec<f64> = faces[0]["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    // facenet-pytorch's box for this photo (tools/gen_mtcnn_fixtures.py).
    for (got, want) in bbox.iter().zip([68.484, 23.737, 100.292, 63.837]) {
        assert!((got - want).abs() < 0.01, "{bbox:?}");
    }
    assert!(["dark", "light"].contains(&faces[0]["class"].as_str().unwrap()));
    assert_eq!(faces[0]["landmarks"].as_array().unwrap().len(), 5);
    assert!(photos[1]["faces"].as_array().unwrap().is_empty());
    let svg = std::fs::read_to_string(out.join("astronaut192.svg")).unwrap();
    assert!(svg.contains("<rect") && svg.contains("data:image/png;base64,"));
    assert!(std::fs::read_to_string(out.join("plain.svg"))
        .unwrap()
        .contains("no face found"));
    // The table says so too.
    let o = nabla(&[
        "vision",
        "detect",
        "--checkpoint",
        run.to_str().unwrap(),
        plain.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("no face found"));
    // Bad input: an unreadable photo, missing detector weights, a directory that is no run.
    let junk = root.join("junk.jpg");
    std::fs::write(&junk, b"not an image").unwrap();
    let o = nabla(&[
        "vision",
        "detect",
        "--checkpoint",
        run.to_str().unwrap(),
        junk.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("junk.jpg"), "{}", stderr(&o));
    let o = nabla(&[
        "vision",
        "detect",
        "--checkpoint",
        run.to_str().unwrap(),
        ASTRONAUT,
        "--detector",
        root.join("none.safetensors").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("nabla weights download mtcnn"),
        "{}",
        stderr(&o)
    );
    let o = nabla(&[
        "vision",
        "detect",
        "--checkpoint",
        root.to_str().unwrap(),
        ASTRONAUT,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("model.json"), "{}", stderr(&o));
}

/// `vision scene` on a folder of astronaut photos (one face each, every
/// copy a pixel apart so none is a duplicate): each pasted photo counts as
/// found exactly when a reported face's centre lies inside it, the counts
/// add up, the files are written; bad settings and a folder without a
/// comparison are errors naming them.
#[test]
fn scene_pastes_validation_photos_and_counts_the_faces_found() {
    if !have_detector() {
        return;
    }
    let root = temp_dir("vision-scene");
    let astronaut = image::open(ASTRONAUT).unwrap().to_rgb8();
    for (class, shade) in [("dark", 0u8), ("light", 255)] {
        let dir = root.join("data").join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..10u8 {
            let mut copy = astronaut.clone();
            copy.put_pixel(0, 0, image::Rgb([shade, i, 0]));
            copy.save(dir.join(format!("{i}.png"))).unwrap();
        }
    }
    let run = tiny_run(&root, "cnn");
    let out = root.join("scenes");
    let o = nabla(&[
        "vision",
        "scene",
        "--checkpoint",
        run.to_str().unwrap(),
        "--scenes",
        "2",
        "--photos",
        "3",
        "--size",
        "640x360",
        "--sides",
        "170-192",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc = json(&o);
    let scenes = doc["scenes"].as_array().unwrap();
    assert_eq!(scenes.len(), 2);
    let (mut pasted, mut found, mut right, mut faces_seen) = (0, 0, 0, 0);
    for scene in scenes {
        let faces = scene["faces"].as_array().unwrap();
        faces_seen += faces.len();
        for p in scene["pasted"].as_array().unwrap() {
            pasted += 1;
            let r: Vec<f64> = p["rect"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert!(r[2] - r[0] >= 170.0 || r[3] - r[1] >= 170.0, "{r:?}");
            assert!(r[2] <= 640.0 && r[3] <= 360.0, "{r:?}");
            let inside = faces.iter().any(|f| {
                let b: Vec<f64> = f["bbox"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect();
                let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
                (r[0]..=r[2]).contains(&cx) && (r[1]..=r[3]).contains(&cy)
            });
            assert_eq!(inside, !p["predicted"].is_null(), "{p}");
            if inside {
                found += 1;
                right += usize::from(p["predicted"][0] == p["class"]);
            }
        }
    }
    assert_eq!(pasted, 2 * 3, "every photo placed");
    assert_eq!(doc["pasted"], pasted);
    assert_eq!(doc["found"], found);
    assert_eq!(doc["labelled_right"], right);
    assert_eq!(doc["detections"], faces_seen);
    // The astronaut's face at 170–192 pixels is well above MTCNN's
    // smallest face: every pasted copy is found.
    assert_eq!(found, pasted, "{doc}");
    for name in ["scene-1.png", "scene-1.svg", "scene-2.png", "scene-2.svg"] {
        assert!(out.join(name).is_file(), "{name}");
    }
    let svg = std::fs::read_to_string(out.join("scene-1.svg")).unwrap();
    assert!(svg.contains("stroke-dasharray") && svg.contains("data:image/png;base64,"));
    // Bad input: exit 2 with a message naming what is wrong.
    let refused = |extra: &[&str], needle: &str| {
        let mut args = vec!["vision", "scene"];
        args.extend(extra);
        let o = nabla(&args);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{extra:?}: {}", stderr(&o));
    };
    let run = run.to_str().unwrap();
    refused(&["--best-of", root.to_str().unwrap()], "comparison.json");
    refused(&["--checkpoint", run, "--sides", "600-700"], "do not fit");
    refused(&["--checkpoint", run, "--size", "640"], "WIDTHxHEIGHT");
    refused(
        &[
            "--checkpoint",
            run,
            "--photos",
            "50",
            "--size",
            "640x360",
            "--sides",
            "170-192",
        ],
        "no free place",
    );
}
