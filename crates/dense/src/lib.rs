//! Dense networks from scratch for the sheet's Problem 2, on ndarray in f64.
//!
//! - [`rng`]: numpy's legacy generator, bit for bit (`np.random.seed`, `randn`).
//! - [`activation`], [`layers`]: forward/backward pairs over plain arrays (eight-lane registers in `simd`).
//! - [`network`]: the sheet's MLP, its `initialize_weights`, backprop.
//! - [`optim`]: SGD, momentum, Nesterov. [`train`]: the training loop.
//! - [`gradnorms`]: per-layer gradient norms of a deep net, described.
//! - [`data`]: CSV loading, the bundled penguins, split, standardisation.
//! - [`report`]: (i)–(iii) as typed results, with their text, files and report section.

pub mod activation;
pub mod data;
pub mod gradnorms;
pub mod layers;
pub mod network;
pub mod optim;
pub mod report;
pub mod rng;
mod simd;
pub mod train;

pub use activation::Activation;
pub use network::{Grads, Init, Mlp};
pub use optim::{Optimizer, OptimizerState};
pub use rng::NumpyRandom;
