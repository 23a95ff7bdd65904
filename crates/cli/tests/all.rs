//! `nabla all --quick` end to end: every problem's section is written, with
//! its numbers, figures and commands; without image data Problem 5 says
//! how to get it and the rest still runs.

mod common;
use common::*;

fn sections(html: &str) -> Vec<String> {
    html.split("<h2>")
        .skip(1)
        .map(|s| s.split("</h2>").next().unwrap().to_string())
        .collect()
}

/// Runs `nabla all --quick` and returns its index.html.
fn quick_report(data: &std::path::Path, out: &std::path::Path) -> String {
    let o = nabla(&[
        "all",
        "--quick",
        "--quiet",
        "--offline",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    std::fs::read_to_string(out.join("index.html")).unwrap()
}

#[test]
fn all_writes_every_section_with_numbers_and_figures() {
    let root = temp_dir("all");
    image_folder(&root.join("data"));
    let out = root.join("report");
    let html = quick_report(&root.join("data"), &out);
    let heads = sections(&html);
    for n in 1..=5 {
        assert!(
            heads
                .iter()
                .any(|h| h.starts_with(&format!("Problem {n}:"))),
            "Problem {n} missing from {heads:?}"
        );
    }
    assert!(
        !html.contains("class=\"failure\""),
        "a section failed:\n{html}"
    );
    // Numbers the sheet asks for, as the parts computed them.
    assert!(html.contains("0.583055"), "Problem 2 (i) output");
    assert!(html.contains("(iii) With BatchNorm"));
    assert!(html.contains("nabla vision train --data"));
    assert!(html.contains("(iv) ResNet34 and transfer learning"));
    assert!(html.contains("nabla vision compare --data"));
    assert!(html.contains("best validation accuracy"));
    // The best run's highest-loss images, inline in the report.
    assert!(html.contains("got most wrong"));
    // Beyond the sheet: faces in scenes of validation photos, or (offline
    // without MTCNN's weights) how to get them.
    assert!(html.contains("(v) Beyond the sheet"));
    let detector = nabla_vision::pretrained::default_dir().join(nabla_vision::mtcnn::MTCNN_FILE);
    if detector.is_file() {
        assert!(html.contains("pasted faces") && html.contains("dashed outlines"));
    } else {
        assert!(html.contains("nabla weights download mtcnn"));
    }
    assert!(html.contains("href=\"data:image/png;base64,"));
    let figures = html.matches("<figure>").count();
    assert!(figures >= 16, "{figures} figures");
    assert_eq!(html.matches("<svg").count(), figures);
    // Self-contained: no scripts, nothing fetched from elsewhere.
    assert!(!html.contains("<script"));
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Problem 3: Stochastic Gradient Descent"));
    let linked: Vec<&str> = md
        .split("](figures/")
        .skip(1)
        .map(|s| s.split(')').next().unwrap())
        .collect();
    assert_eq!(linked.len(), figures);
    for file in linked {
        assert!(out.join("figures").join(file).is_file(), "{file}");
    }
}

#[test]
fn all_without_images_explains_how_to_get_them() {
    let root = temp_dir("all-nodata");
    let html = quick_report(&root.join("missing"), &root.join("report"));
    assert!(html.contains("nabla data fetch face-mask"));
    assert_eq!(sections(&html).len(), 6);
    assert!(html.contains("Problem 4: Dropout"));
}

#[test]
fn all_fetches_missing_photos_and_still_runs_when_that_fails() {
    let root = temp_dir("all-fetch");
    let out = root.join("report");
    // Nothing listens on port 9 here: the download fails at once.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_nabla"))
        .args(["all", "--quick", "--quiet", "--data"])
        .arg(root.join("photos"))
        .arg("--out")
        .arg(&out)
        .env("NABLA_FACE_MASK_URL", "http://127.0.0.1:9/face-mask.zip")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("nabla tried to download them"), "{html}");
    assert!(html.contains("nabla data fetch face-mask --out"));
    assert!(html.contains("Problem 4: Dropout"));
}
