//! Fuzzing of every reader of untrusted bytes, on stable Rust: each target
//! feeds an input to nabla's own entry point (the graph language, the CSV
//! reader, image decoding, the restricted pickle reader, the legacy and zip
//! `.pth` readers, the safetensors reader), and [`mutate`] makes the inputs
//! from real files (the seed corpus of each target, [`seeds`]).
//!
//! Without compiler coverage (`cargo fuzz` needs nightly) the search is
//! blind: stacked byte- and token-level mutations of the seeds and splices
//! between them. What it proves is what a run reports: how many inputs were
//! tried, that none panicked, none took over a second and none allocated
//! past the memory bound ([`main`](../nabla_fuzz/index.html) runs it).

pub mod mutate;
pub mod target;

pub use target::{seeds, Target};
