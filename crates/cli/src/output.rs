//! The output convention every subcommand follows: a human-readable table on
//! stdout, or one JSON document with `--json`; files go to `--out DIR`, each
//! written to a temporary name and renamed into place so a crash never
//! leaves a half-written file.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
pub use nabla_report::{number, shorten};
use nabla_report::{OutputFile, Table};

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

    /// Writes each of `files` under `--out` (if given).
    pub fn write_files(&self, files: &[OutputFile]) -> Result<()> {
        for f in files {
            self.write_file(&f.name, &f.bytes)?;
        }
        Ok(())
    }

    /// The end of every command that has a typed report: its files under
    /// `--out` (made only when there is one), then the report as JSON with
    /// `--json` or as `text` otherwise.
    pub fn emit<T: serde::Serialize>(
        &self,
        report: &T,
        files: impl FnOnce() -> Result<Vec<OutputFile>, nabla_report::PlotError>,
        text: impl FnOnce() -> String,
    ) -> Result<()> {
        if self.out.is_some() {
            self.write_files(&files()?)?;
        }
        if self.json {
            Self::print_json(report)
        } else {
            print!("{}", text());
            Ok(())
        }
    }

    /// Prints `value` as pretty JSON.
    pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
        let text = serde_json::to_string_pretty(value).context("cannot encode JSON")?;
        println!("{text}");
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically (see [`nabla_report::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    nabla_report::write_atomic(path, bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Columns padded to their widest cell; a rule under the header.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    Table::new("", headers, rows.to_vec()).to_text()
}
