//! Maps core errors onto the exception classes defined in `qtransformers.exceptions`.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use qtransformers_core::Error;

/// Builds the Python exception for a core error (falls back to ValueError if the
/// Python package cannot be imported, which only happens when `_core` is used alone).
pub fn to_py(err: Error) -> PyErr {
    let (class, msg) = match err {
        Error::InvalidArgument(m) => ("InvalidArgumentError", m),
        Error::Shape(m) => ("ShapeError", m),
    };
    Python::attach(|py| {
        py.import("qtransformers.exceptions")
            .and_then(|module| module.getattr(class))
            .and_then(|cls| cls.call1((msg.clone(),)))
            .map(|exc| PyErr::from_value(exc))
            .unwrap_or_else(|_| PyValueError::new_err(msg))
    })
}
