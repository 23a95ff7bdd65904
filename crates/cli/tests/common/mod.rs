//! Helpers shared by the CLI tests: run the binary from the repository root.

#![allow(dead_code)] // each test file uses its own subset

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn nabla(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nabla"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .unwrap()
}

/// The JSON document on stdout of a run that must succeed.
pub fn json(o: &Output) -> serde_json::Value {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A fresh directory under the system's temporary folder, removed with
/// everything in it when dropped (a full `nabla all` leaves 100 MB there;
/// CI machines keep /tmp).
pub fn temp_dir(tag: &str) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("nabla-cli-{tag}-"))
        .tempdir()
        .unwrap();
    TempDir(dir)
}

/// [`tempfile::TempDir`] read as its path, so tests write `root.join(…)`.
pub struct TempDir(tempfile::TempDir);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        self.0.path()
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Two classes of ten 20×20 PNGs each (`dark`, `light`), plus a broken
/// file, under `dir`: a tiny image folder for the vision commands.
pub fn image_folder(dir: &std::path::Path) {
    for (class, base) in [("dark", 40u8), ("light", 200u8)] {
        let dir = dir.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..10u8 {
            let img = image::RgbImage::from_fn(20, 20, |x, y| {
                let v = base.saturating_add(((x + y) as u8 + 3 * i) % 30);
                image::Rgb([v, v, v])
            });
            img.save(dir.join(format!("{i}.png"))).unwrap();
        }
    }
    std::fs::write(dir.join("light/broken.png"), b"not a png").unwrap();
}

/// Published weights as `nabla weights download MODEL` leaves them in the
/// weights folder. CI downloads them and sets NABLA_REQUIRE_PRETRAINED=1, so
/// there a missing file fails the test; elsewhere it is skipped with a note.
pub fn published_weights(file: &str, model: &str) -> Option<std::path::PathBuf> {
    let path = nabla_vision::pretrained::default_dir().join(file);
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var_os("NABLA_REQUIRE_PRETRAINED").is_none(),
        "{} is missing; run `nabla weights download {model}`",
        path.display()
    );
    eprintln!(
        "skipped: {} is missing (nabla weights download {model})",
        path.display()
    );
    None
}

/// A 1-epoch tiny `model` (cnn or cnn-bn; 16 px, 4-channel convolutions)
/// trained on the CPU on `root/data` into `root/run`.
pub fn tiny_run(root: &std::path::Path, model: &str) -> PathBuf {
    let run = root.join("run");
    let o = nabla(&[
        "vision",
        "train",
        "--data",
        root.join("data").to_str().unwrap(),
        "--image-size",
        "16",
        "--epochs",
        "1",
        "--channels",
        "4,4,4,4",
        "--hidden",
        "8",
        "--model",
        model,
        "--cache",
        root.join("cache").to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    run
}
