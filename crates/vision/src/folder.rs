//! Image folders laid out as torchvision's `ImageFolder`: one subfolder per
//! class, class names sorted. Scanning finds the files, removes byte-identical
//! duplicates (so no image can sit in both train and validation) and splits
//! the rest stratified by class.

use std::collections::HashMap;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use crate::VisionError;

/// One image file of the folder.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ImageFile {
    pub path: PathBuf,
    pub class: usize,
    pub bytes: u64,
    /// Modification time in nanoseconds since the epoch (0 if unknown), for the cache key.
    pub modified: u128,
}

/// A scanned image folder.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ImageFolder {
    pub root: PathBuf,
    pub classes: Vec<String>,
    /// Unique files, sorted by class then path.
    pub files: Vec<ImageFile>,
    /// Groups of byte-identical files; the first of each group is kept.
    pub duplicate_groups: Vec<Vec<PathBuf>>,
}

impl ImageFolder {
    /// Lists `root`'s class subfolders and their files (hidden files are
    /// ignored), and drops byte-identical duplicates.
    pub fn scan(root: &Path) -> Result<Self, VisionError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| VisionError::Io { path, source }
        };
        let mut classes: Vec<String> = Vec::new();
        for entry in fs::read_dir(root).map_err(io(root))? {
            let entry = entry.map_err(io(root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if fs::metadata(entry.path())
                .map_err(io(&entry.path()))?
                .is_dir()
                && !name.starts_with('.')
            {
                classes.push(name);
            }
        }
        classes.sort();
        if classes.len() < 2 {
            return Err(VisionError::Layout {
                path: root.to_path_buf(),
                message: format!(
                    "expected one subfolder per class (at least two), found {}",
                    if classes.is_empty() {
                        "none".to_string()
                    } else {
                        classes.join(", ")
                    }
                ),
            });
        }
        let mut all = Vec::new();
        for (class, name) in classes.iter().enumerate() {
            let dir = root.join(name);
            let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
                .map_err(io(&dir))?
                .filter_map(Result::ok)
                // metadata follows symbolic links, so a folder of links works too.
                .filter(|e| fs::metadata(e.path()).is_ok_and(|m| m.is_file()))
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.path())
                .collect();
            paths.sort();
            for path in paths {
                let meta = fs::metadata(&path).map_err(io(&path))?;
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                all.push(ImageFile {
                    path,
                    class,
                    bytes: meta.len(),
                    modified,
                });
            }
        }
        let (files, duplicate_groups) = dedupe(all)?;
        Ok(Self {
            root: root.to_path_buf(),
            classes,
            files,
            duplicate_groups,
        })
    }

    /// Per-class counts of the unique files.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for f in &self.files {
            counts[f.class] += 1;
        }
        counts
    }
}

/// Keeps the first of every group of byte-identical files. Files are first
/// grouped by size, then by a hash of their bytes, then compared byte for byte.
fn dedupe(files: Vec<ImageFile>) -> Result<(Vec<ImageFile>, Vec<Vec<PathBuf>>), VisionError> {
    let mut by_size: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, f) in files.iter().enumerate() {
        by_size.entry(f.bytes).or_default().push(i);
    }
    let mut dropped = vec![false; files.len()];
    let mut groups = Vec::new();
    let mut sizes: Vec<&Vec<usize>> = by_size.values().filter(|v| v.len() > 1).collect();
    sizes.sort();
    for same_size in sizes {
        let mut contents: Vec<(u64, Vec<u8>, usize)> = Vec::new();
        for &i in same_size {
            let bytes = fs::read(&files[i].path).map_err(|source| VisionError::Io {
                path: files[i].path.clone(),
                source,
            })?;
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            contents.push((h.finish(), bytes, i));
        }
        let mut seen: Vec<(u64, usize, Vec<PathBuf>)> = Vec::new();
        for (hash, bytes, i) in &contents {
            let twin = seen.iter_mut().find(|(h, first, _)| {
                h == hash
                    && contents
                        .iter()
                        .find(|c| c.2 == *first)
                        .is_some_and(|c| &c.1 == bytes)
            });
            match twin {
                Some((_, _, group)) => {
                    dropped[*i] = true;
                    group.push(files[*i].path.clone());
                }
                None => seen.push((*hash, *i, vec![files[*i].path.clone()])),
            }
        }
        groups.extend(seen.into_iter().map(|s| s.2).filter(|g| g.len() > 1));
    }
    groups.sort();
    let kept = files
        .into_iter()
        .zip(dropped)
        .filter(|(_, d)| !d)
        .map(|(f, _)| f)
        .collect();
    Ok((kept, groups))
}
