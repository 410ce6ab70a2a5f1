//! The one error type of the core, mapped onto Python exceptions by the binding crate.

use thiserror::Error as ThisError;

/// Errors raised by the core; each names the values or shapes at fault.
#[derive(Debug, Clone, PartialEq, Eq, ThisError)]
pub enum Error {
    /// An argument is outside its allowed range (maps to `InvalidArgumentError`, a ValueError).
    #[error("{0}")]
    InvalidArgument(String),
    /// Array shapes do not fit together (maps to `ShapeError`, a ValueError).
    #[error("{0}")]
    Shape(String),
}

/// Result alias used across the core.
pub type Result<T> = std::result::Result<T, Error>;
