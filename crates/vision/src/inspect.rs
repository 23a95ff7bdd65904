//! `nabla data inspect`: what an image folder holds before anything trains on it.

use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::decode::{decode, sniff_format, Skipped};
use crate::folder::ImageFolder;

/// Smallest, median and largest of a list.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Spread {
    pub min: u32,
    pub median: u32,
    pub max: u32,
}

fn spread(mut v: Vec<u32>) -> Spread {
    if v.is_empty() {
        return Spread::default();
    }
    v.sort_unstable();
    Spread {
        min: v[0],
        median: v[v.len() / 2],
        max: v[v.len() - 1],
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ClassSummary {
    pub name: String,
    pub images: usize,
    pub width: Spread,
    pub height: Spread,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Inspection {
    pub root: String,
    pub classes: Vec<ClassSummary>,
    /// Count of decodable images per detected format (by content, not extension).
    pub formats: BTreeMap<String, usize>,
    /// Colour types before conversion to RGB (Rgb8, Rgba8, L8, …).
    pub color_types: BTreeMap<String, usize>,
    pub unreadable: Vec<Skipped>,
    pub duplicate_groups: Vec<Vec<String>>,
    pub duplicates_removed: usize,
}

/// Decodes every unique file once (in parallel) to find its size, format,
/// colour type, or why it cannot be read.
pub fn inspect(folder: &ImageFolder) -> Inspection {
    type Info = Result<(u32, u32, String, String), String>;
    let infos: Vec<Info> = folder
        .files
        .par_iter()
        .map(|f| {
            let image = decode(&f.path)?;
            let format = sniff_format(&f.path).map_or("unknown".to_string(), |x| format!("{x:?}"));
            // Sizes after EXIF rotation: what training sees.
            Ok((
                image.width(),
                image.height(),
                format,
                format!("{:?}", image.color()),
            ))
        })
        .collect();
    let mut per_class: Vec<(Vec<u32>, Vec<u32>)> =
        vec![(Vec::new(), Vec::new()); folder.classes.len()];
    let mut formats = BTreeMap::new();
    let mut color_types = BTreeMap::new();
    let mut unreadable = Vec::new();
    for (f, info) in folder.files.iter().zip(infos) {
        match info {
            Ok((w, h, format, color)) => {
                per_class[f.class].0.push(w);
                per_class[f.class].1.push(h);
                *formats.entry(format).or_insert(0) += 1;
                *color_types.entry(color).or_insert(0) += 1;
            }
            Err(reason) => unreadable.push(Skipped {
                path: f.path.clone(),
                reason,
            }),
        }
    }
    Inspection {
        root: folder.root.display().to_string(),
        classes: folder
            .classes
            .iter()
            .zip(per_class)
            .map(|(name, (w, h))| ClassSummary {
                name: name.clone(),
                images: w.len(),
                width: spread(w),
                height: spread(h),
            })
            .collect(),
        formats,
        color_types,
        unreadable,
        duplicates_removed: folder.duplicate_groups.iter().map(|g| g.len() - 1).sum(),
        duplicate_groups: folder
            .duplicate_groups
            .iter()
            .map(|g| g.iter().map(|p| p.display().to_string()).collect())
            .collect(),
    }
}

/// Duplicate groups listed in the terminal text.
const SHOWN_GROUPS: usize = 8;

impl Inspection {
    /// Per class: readable images, median size, extremes.
    pub fn classes_table(&self) -> nabla_report::Table {
        let rows = self
            .classes
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.images.to_string(),
                    format!("{} × {}", c.width.median, c.height.median),
                    format!(
                        "{} × {} … {} × {}",
                        c.width.min, c.height.min, c.width.max, c.height.max
                    ),
                ]
            })
            .collect();
        nabla_report::Table::new(
            "Classes",
            &["class", "images", "median size", "smallest … largest"],
            rows,
        )
    }

    /// What `nabla data inspect` prints; `seconds` is how long the scan took.
    pub fn to_text(&self, seconds: f64) -> String {
        let unique: usize =
            self.classes.iter().map(|c| c.images).sum::<usize>() + self.unreadable.len();
        let counts = |m: &BTreeMap<String, usize>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut s = format!(
            "{}: {} classes, {unique} unique files ({} byte-identical duplicates removed), {seconds:.1} s\n{}",
            self.root,
            self.classes.len(),
            self.duplicates_removed,
            self.classes_table().to_text()
        );
        s += &format!("formats: {}\n", counts(&self.formats));
        s += &format!(
            "colour types (converted to RGB): {}\n",
            counts(&self.color_types)
        );
        s += &format!(
            "unreadable (skipped in training): {}\n",
            self.unreadable.len()
        );
        for u in &self.unreadable {
            s += &format!("  {}: {}\n", u.path.display(), u.reason);
        }
        s += &format!(
            "byte-identical duplicate groups: {} (the first of each is kept)\n",
            self.duplicate_groups.len()
        );
        let relative = |p: &String| {
            p.strip_prefix(&self.root)
                .unwrap_or(p)
                .trim_start_matches('/')
                .to_string()
        };
        for g in self.duplicate_groups.iter().take(SHOWN_GROUPS) {
            s += &format!(
                "  {}\n",
                g.iter().map(relative).collect::<Vec<_>>().join(" = ")
            );
        }
        if self.duplicate_groups.len() > SHOWN_GROUPS {
            s += &format!(
                "  … and {} more (--json lists them all)\n",
                self.duplicate_groups.len() - SHOWN_GROUPS
            );
        }
        s
    }
}
