//! The output convention every subcommand follows: a human-readable table on
//! stdout, or one JSON document with `--json`; files go to `--out DIR`, each
//! written to a temporary name and renamed into place so a crash never
//! leaves a half-written file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

/// `--json` and `--out`, flattened into every subcommand.
#[derive(Args, Debug, Clone, Default)]
pub struct OutputArgs {
    /// Print one JSON document on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Write files (plots, CSV, JSON) into this directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

impl OutputArgs {
    /// Writes `name` under `--out` (if given) and returns its path.
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> Result<Option<PathBuf>> {
        let Some(dir) = &self.out else {
            return Ok(None);
        };
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(name);
        write_atomic(&path, bytes)?;
        Ok(Some(path))
    }

    /// Prints `value` as pretty JSON.
    pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
        let text = serde_json::to_string_pretty(value).context("cannot encode JSON")?;
        println!("{text}");
        Ok(())
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it
/// over `path`: readers see the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// Columns padded to their widest cell; a rule under the header.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(cell);
            s.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&mut headers.iter().copied());
    let rules: Vec<String> = widths.iter().map(|w| "─".repeat(*w)).collect();
    out += &line(&mut rules.iter().map(String::as_str));
    for row in rows {
        out += &line(&mut row.iter().map(String::as_str));
    }
    out
}

/// A number for a table: up to 6 significant decimals, scientific when tiny or huge.
/// A fraction as a percentage with two decimals: 0.9644 → "96.44%".
pub fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

pub fn number(v: f64) -> String {
    if v == 0.0 {
        "0".to_string()
    } else if (1e-4..1e7).contains(&v.abs()) {
        let s = format!("{v:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.6e}")
    }
}

/// `text` trimmed, and cut to at most `width` characters, the last an
/// ellipsis, when it is longer.
pub fn shorten(text: &str, width: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= width {
        return text.to_string();
    }
    let kept: String = text.chars().take(width.saturating_sub(1)).collect();
    kept + "…"
}

/// A check's outcome for a table cell.
pub fn yes_no(passed: bool) -> String {
    if passed { "yes" } else { "NO" }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("nabla-out-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.txt");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        let err = write_atomic(&dir.join("missing/b.txt"), b"x").unwrap_err();
        assert!(format!("{err:#}").contains("missing/b.txt"), "{err:#}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(&["a", "bb"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "a    bb\n───  ──\nxyz  1\n");
    }

    #[test]
    fn shortened_text_fits_its_width() {
        assert_eq!(shorten("  abc  ", 3), "abc");
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("αβγδε", 2).chars().count(), 2);
        assert_eq!(shorten("abc", 0), "…");
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(0.952574126822433), "0.952574");
        assert_eq!(number(-2.0), "-2");
        assert_eq!(number(1.5e-9), "1.500000e-9");
    }
}
