//! Pure-Rust numerical core of qtransformers.
//!
//! No Python here: the `qtransformers-python` crate wraps these functions for
//! `qtransformers._core`. Every public function validates its input and returns
//! [`Error`] instead of panicking.

pub mod channels;
pub mod error;
pub mod fftconv;
pub mod kvcache;
pub mod mps;
pub mod oscillators;
pub mod sampling;
pub mod simhash;
pub mod threads;

pub use error::{Error, Result};
