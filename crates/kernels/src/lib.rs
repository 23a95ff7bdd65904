//! nabla's own CPU kernels for training and running Problem 5's networks:
//! a cache-blocked GEMM, 2-D convolutions (dense and depthwise) forward and
//! backward, BatchNorm with its activation fused, max-pooling and the Adam
//! update — over plain `f32` slices, with no framework types, so
//! each is checked against a plain reference on its own.
//!
//! The instruction set (AVX-512, AVX2 + FMA, or portable Rust) is chosen at
//! run time ([`isa::active`]); every parallel kernel uses the rayon pool.

pub mod bench;
pub mod conv;
mod depthwise;
pub mod gemm;
pub mod isa;
mod lower;
pub mod norm;
pub mod optim;
pub mod peak;
pub mod pool;
mod shape;
mod transpose;
mod winograd;

pub use conv::{conv2d_backward, conv2d_forward, Conv2dShape, ConvGrads};
pub use gemm::{gemm, gemm_par, MatRef};
pub use isa::Isa;
