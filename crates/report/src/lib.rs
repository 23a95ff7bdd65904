//! What every part of nabla shows a person: plots in one style.
//!
//! - [`plot`]: line charts as SVG (titled, labelled, legend, log scales).
//! - [`document`]: the report of `nabla all` as self-contained HTML and Markdown.

pub mod document;
pub mod plot;

pub use document::{Block, Document, Section};
pub use plot::{history_series, line_chart, History, LineChart, PlotError, Series};
