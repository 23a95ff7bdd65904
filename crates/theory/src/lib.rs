//! The sheet's proofs, checked by simulation.
//!
//! - [`sgd`]: Problem 3 — SGD on problems with known L, σ², f*; the
//!   measured min E‖∇f(w_k)‖² against the bound of 3(iii).
//! - [`dropout`]: Problem 4 — η's moments, the second-order dropout penalty
//!   against Monte Carlo on a trained MLP, and the exact linear case.
//! - [`sgd_experiment`], [`dropout_experiment`]: each problem's whole
//!   experiment as a typed report, with its text, files and report section.

pub mod dropout;
pub mod dropout_experiment;
pub mod sgd;
pub mod sgd_experiment;
