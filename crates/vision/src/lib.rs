//! Problem 5: face-mask detection. This crate holds the image pipeline:
//!
//! - [`folder`]: `ImageFolder` scanning with duplicate removal.
//! - [`decode`]: decoding every format to square RGB, with a disk cache.
//! - [`inspect`]: what a folder holds (counts, sizes, formats, problems).
//! - [`fetch`]: downloading the public face-mask dataset.

pub mod decode;
pub mod fetch;
pub mod folder;
pub mod inspect;

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
}
