//! Faults injected into `nabla vision train`: killed with SIGKILL at
//! pseudo-random moments (inside epochs and checkpoint writes alike) and
//! resumed each time, a run ends with exactly the metrics of a run never
//! interrupted; a checkpoint that cannot be written (the file-size limit
//! lowered) is a clear error that leaves the previous checkpoint usable.

mod common;
use common::*;

use std::path::Path;
use std::process::{Command, Stdio};

const EPOCHS: &str = "12";

fn train(data: &Path, cache: &Path, out: &Path, epochs: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nabla"));
    c.args(["vision", "train", "--data"])
        .arg(data)
        .args([
            "--image-size",
            "16",
            "--channels",
            "4,4,4,4",
            "--hidden",
            "8",
            "--batch-size",
            "2",
            "--epochs",
            epochs,
            "--lr-schedule",
            "one-cycle",
            "--random-crop",
            "0.5",
            "--cache",
        ])
        .arg(cache)
        .arg("--out")
        .arg(out)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn resume(run: &Path, epochs: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nabla"));
    c.args(["vision", "train", "--resume"])
        .arg(run)
        .args(["--epochs", epochs])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Every epoch's numbers but its wall time, and every step's learning rate.
fn metrics(run: &Path) -> (Vec<Vec<String>>, String) {
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let rows = csv
        .lines()
        .map(|l| {
            l.split(',')
                .enumerate()
                .filter(|(i, _)| *i != 5)
                .map(|(_, v)| v.to_string())
                .collect()
        })
        .collect();
    (rows, std::fs::read_to_string(run.join("lr.csv")).unwrap())
}

/// The epoch of the run's latest complete checkpoint (0 when none).
fn latest_epoch(run: &Path) -> usize {
    std::fs::read_dir(run.join("checkpoints"))
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let epoch = name.strip_prefix("epoch-")?.parse().ok()?;
            e.path().join("state.json").is_file().then_some(epoch)
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn runs_killed_at_random_moments_resume_to_the_same_metrics() {
    let root = temp_dir("faults-kill");
    image_folder(&root.join("data"));
    let (data, cache) = (root.join("data"), root.join("cache"));
    let reference = root.join("reference");
    let started = std::time::Instant::now();
    let o = train(&data, &cache, &reference, EPOCHS, &[])
        .output()
        .unwrap();
    // The kills land at fractions of what a whole run takes on this machine.
    let whole = started.elapsed();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = metrics(&reference);
    assert_eq!(want.0.len(), 13, "a header and twelve epochs");

    let run = root.join("killed");
    // xorshift: the kill times are the same on every run of the test.
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut kills = 0;
    // The latest complete checkpoint after each kill: the kills must land
    // at several stages of the run, not all before its first epoch.
    let mut stages = std::collections::BTreeSet::new();
    let mut finished = false;
    for _ in 0..40 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Between a twentieth and three tenths of a whole run after the start.
        let delay = whole.mul_f64(0.05 + 0.25 * (state % 1000) as f64 / 1000.0);
        let mut child = if latest_epoch(&run) > 0 {
            resume(&run, EPOCHS).spawn().unwrap()
        } else {
            // Killed before its first checkpoint: start again, replacing
            // what the first start left.
            train(&data, &cache, &run, EPOCHS, &["--overwrite"])
                .spawn()
                .unwrap()
        };
        std::thread::sleep(delay);
        match child.try_wait().unwrap() {
            Some(status) => {
                assert!(status.success(), "the run failed: {status}");
                finished = true;
                break;
            }
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
                stages.insert(latest_epoch(&run));
            }
        }
    }
    eprintln!("{kills} kills, after epochs {stages:?}; finished between kills: {finished}");
    assert!(stages.len() >= 3, "kills after epochs {stages:?} only");
    assert!(
        kills >= 3,
        "only {kills} kills landed before the run finished"
    );
    if !finished {
        let o = resume(&run, EPOCHS).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(metrics(&run), want, "after {kills} kills");
}

#[test]
fn a_checkpoint_that_cannot_be_written_is_an_error_and_the_last_one_stays() {
    let root = temp_dir("faults-fsize");
    image_folder(&root.join("data"));
    let (data, cache, run) = (root.join("data"), root.join("cache"), root.join("run"));
    let o = train(&data, &cache, &run, "2", &[]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Files over 8 KiB cannot be written (the model's weights are 9.7 KB);
    // SIGXFSZ ignored so that the write fails with EFBIG as on a full disk
    // instead of killing the process.
    let nabla = env!("CARGO_BIN_EXE_nabla");
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f 8; exec '{nabla}' vision train --resume '{}' --epochs 3",
            run.display()
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    // Exit 3: the work could not be completed (not a problem with the input).
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("File too large") && err.contains(".bpk"),
        "{err}"
    );
    // The epoch-2 checkpoint is still the latest, whole, with nothing half
    // written beside it, and resuming from it gives the same run as one
    // that was never stopped.
    assert_eq!(latest_epoch(&run), 2);
    let leftovers: Vec<_> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["epoch-0002"], "{leftovers:?}");
    assert!(!std::fs::read_dir(&run).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("partial")));
    let o = resume(&run, "3").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The same as a run stopped after 2 epochs and extended to 3 without a fault.
    let twice = root.join("twice");
    assert!(train(&data, &cache, &twice, "2", &[])
        .status()
        .unwrap()
        .success());
    assert!(resume(&twice, "3").status().unwrap().success());
    assert_eq!(metrics(&run), metrics(&twice));
}
