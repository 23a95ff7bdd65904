//! What every part of nabla shows a person: plots in one style.
//!
//! - [`plot`]: line charts as SVG (titled, labelled, legend, log scales).

pub mod plot;

pub use plot::{line_chart, LineChart, PlotError, Series};
