//! What every part of nabla shows a person, in one style.
//!
//! - [`plot`]: line charts as SVG (titled, labelled, legend, log scales).
//! - [`format`]: numbers and [`Table`]s, rendered for the terminal, the
//!   report and CSV from the same cells.
//! - [`document`]: the report of `nabla all` as self-contained HTML and Markdown.
//! - [`status`]: whether a step ran, was skipped or failed.
//! - [`files`]: atomic writes.
//!
//! Each part's crate owns its typed result and the function that turns it
//! into its [`Section`]; this crate owns only the shapes they share.

pub mod document;
pub mod files;
pub mod format;
pub mod plot;
pub mod status;

use std::path::PathBuf;

pub use document::{Block, Document, Section};
pub use files::write_atomic;
pub use format::{number, pct, shorten, yes_no, Table};
pub use plot::{history_series, line_chart, History, LineChart, PlotError, Series};
pub use status::Status;

/// A file a part writes into its `--out` folder.
pub struct OutputFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl OutputFile {
    pub fn new(name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        OutputFile {
            name: name.into(),
            bytes: bytes.into(),
        }
    }

    /// `value` as pretty JSON.
    pub fn json(name: &str, value: &impl serde::Serialize) -> Self {
        let text = serde_json::to_string_pretty(value).expect("plain data serialises");
        OutputFile::new(name, text)
    }
}

/// Where a part's numbers came from, for its report section: the command
/// that reproduces them and the folder it wrote its files to.
#[derive(Clone, Debug, Default)]
pub struct Provenance {
    pub command: String,
    pub dir: PathBuf,
}

/// A part's typed result as `nabla all` has it — the report and where it
/// came from — or why it has none.
pub type Outcome<T> = Result<(T, Provenance), String>;

impl Section {
    /// Adds a [`Table`] with its caption.
    pub fn push_table(&mut self, table: Table) -> &mut Self {
        self.blocks.push(Block::Table {
            caption: table.caption,
            headers: table.headers,
            rows: table.rows,
        });
        self
    }

    /// Adds an SVG figure, or the reason it could not be drawn.
    pub fn chart(
        &mut self,
        caption: &str,
        file: &str,
        svg: Result<String, impl std::fmt::Display>,
    ) -> &mut Self {
        match svg {
            Ok(svg) => self.figure(caption, file, svg),
            Err(e) => self.failure(format!("{caption}: the figure could not be drawn: {e}")),
        }
    }
}
