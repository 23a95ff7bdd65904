//! Problem 5: face-mask detection. This crate holds the image pipeline:
//!
//! - [`folder`]: `ImageFolder` scanning with duplicate removal.
//! - [`decode`]: decoding every format to square RGB, with a disk cache.
//! - [`inspect`]: what a folder holds (counts, sizes, formats, problems).
//! - [`fetch`]: downloading the public face-mask dataset.
//! - [`model`]: the four networks; [`train`]: the epoch loop;
//!   [`checkpoint`]: saving and resuming it.
//! - [`run`]: settings checked, the run directory, training into it, eval, predict.
//! - [`flex_kernels`]: nabla's CPU kernels inside Burn; [`profile`]: their time per layer.
//! - [`compare`]: Problem 5 (iv)'s runs, their resume rules, the comparison.
//! - [`export`]: a run's model as safetensors (PyTorch's names) or ONNX ([`onnx`]).
//! - [`report`]: what train/eval/predict report; [`section`]: Problem 5's report section.

pub mod augment;
pub mod checkpoint;
pub mod compare;
pub mod decode;
pub mod detect;
pub mod device;
pub mod efficientnet;
pub mod export;
pub mod faces;
pub mod fetch;
pub mod flex_kernels;
pub mod folder;
pub mod identity;
pub mod images;
pub mod inspect;
pub mod load;
pub mod lr_find;
pub mod metrics;
pub mod model;
pub mod mtcnn;
pub mod onnx;
pub mod optim;
pub mod pickle;
pub mod pretrained;
mod probe;
pub mod profile;
pub mod report;
pub mod resnet;
pub mod run;
pub mod scene;
pub mod schedule;
pub mod section;
pub mod settings;
pub mod train;
pub mod weights;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Layout { path: PathBuf, message: String },
    #[error("{0}")]
    Fetch(String),
    #[error(
        "training diverged: the loss became {loss} in epoch {epoch}, batch {batch}; lower --lr"
    )]
    Diverged {
        epoch: usize,
        batch: usize,
        loss: f64,
    },
    #[error("{0}")]
    Store(String),
    /// Burn could not save or load a record (weights, optimizer state).
    #[error("{}: {what}: {source}", path.display())]
    Record {
        path: PathBuf,
        what: &'static str,
        source: burn::store::RecordError,
    },
    /// A chart that could not be drawn.
    #[error("{}: {source}", path.display())]
    Plot {
        path: PathBuf,
        source: nabla_report::PlotError,
    },
    /// Settings that cannot work, named by their option.
    #[error("{0}")]
    Setup(String),
}
