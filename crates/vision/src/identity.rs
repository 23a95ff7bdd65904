//! A run's identity, stamped in every file that says what the run is —
//! `model.json`, `run.json`, each checkpoint's `state.json` and `best.json`
//! (which also holds the CRC-32 of `best.bpk`) — so that resuming,
//! evaluating, predicting or exporting a directory whose parts come from
//! different runs is refused with the parts named, instead of loading
//! another run's weights or failing later on a shape mismatch. Runs written
//! before identities existed carry none and are read as before.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::VisionError;

/// A fresh identity: 16 hex digits from the clock, the process and the
/// standard library's per-process random hash keys.
pub fn new_run_id() -> String {
    let mut h = RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// `best.json`: which run and epoch `best.bpk` holds, and its checksum.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BestRecord {
    pub run: Option<String>,
    pub epoch: usize,
    pub crc32: u32,
}

pub(crate) const BEST_WEIGHTS: &str = "best.bpk";
pub(crate) const BEST_RECORD: &str = "best.json";

/// The CRC-32 of a file's bytes.
pub(crate) fn file_crc(path: &Path) -> Result<u32, VisionError> {
    let bytes = std::fs::read(path).map_err(|source| VisionError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(crc32fast::hash(&bytes))
}

/// Checks that every part of the run in `dir` that says which run it
/// belongs to says the same: `parts` are `(file, identity)` pairs. All
/// without an identity is a run from before identities; any other
/// disagreement is an error naming each part and what it says.
pub(crate) fn check_parts(
    dir: &Path,
    parts: &[(PathBuf, Option<String>)],
) -> Result<(), VisionError> {
    if parts.iter().all(|(_, id)| id.is_none()) {
        return Ok(());
    }
    let first = parts.iter().find_map(|(_, id)| id.as_ref());
    if parts.iter().all(|(_, id)| id.as_ref() == first) {
        return Ok(());
    }
    let listed: Vec<String> = parts
        .iter()
        .map(|(file, id)| {
            let name = file.strip_prefix(dir).unwrap_or(file).display();
            match id {
                Some(id) => format!("{name} says run {id}"),
                None => format!("{name} names no run"),
            }
        })
        .collect();
    Err(VisionError::Layout {
        path: dir.to_path_buf(),
        message: format!(
            "its parts come from different runs ({}); train into a new directory, or replace this one with --overwrite",
            listed.join(", ")
        ),
    })
}

/// The `best.json` part, after checking that `best.bpk` is the file it
/// describes.
pub(crate) fn best_part(dir: &Path) -> Result<Option<(PathBuf, Option<String>)>, VisionError> {
    let record_path = dir.join(BEST_RECORD);
    if !record_path.exists() {
        return Ok(None);
    }
    let record: BestRecord = read_json(&record_path)?;
    let weights = dir.join(BEST_WEIGHTS);
    if weights.exists() && file_crc(&weights)? != record.crc32 {
        return Err(VisionError::Layout {
            path: weights,
            message: format!(
                "is not the file {BEST_RECORD} describes (epoch {}'s weights, CRC-32 {:08x}): it was replaced, or the run was stopped while saving it; `nabla vision train --resume {}` writes both again",
                record.epoch,
                record.crc32,
                dir.display()
            ),
        });
    }
    Ok(Some((record_path, record.run)))
}

/// A JSON file read as `T`; an error names the file.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, VisionError> {
    let text = std::fs::read_to_string(path).map_err(|source| VisionError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| VisionError::Layout {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_fresh_and_parts_must_agree() {
        let (a, b) = (new_run_id(), new_run_id());
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        let dir = Path::new("/runs/r");
        let part = |f: &str, id: Option<&str>| (dir.join(f), id.map(String::from));
        assert!(check_parts(dir, &[part("model.json", None), part("run.json", None)]).is_ok());
        assert!(check_parts(
            dir,
            &[part("model.json", Some(&a)), part("run.json", Some(&a))]
        )
        .is_ok());
        let e = check_parts(
            dir,
            &[
                part("model.json", Some(&a)),
                part("run.json", Some(&b)),
                part("best.json", None),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(&format!("model.json says run {a}")), "{e}");
        assert!(e.contains(&format!("run.json says run {b}")), "{e}");
        assert!(e.contains("best.json names no run"), "{e}");
    }
}
