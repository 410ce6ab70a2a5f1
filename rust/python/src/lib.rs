//! `qtransformers._core`: thin PyO3 bindings over `qtransformers-core`.
//!
//! Only argument conversion lives here; the math is in the core crate. Core errors
//! become the Python exceptions of `qtransformers.exceptions`, and heavy work runs
//! with the GIL released.

use pyo3::prelude::*;

mod errors;
mod fftconv;
mod kvcache;
mod oscillators;
mod quantum;
mod sampling;
mod threads;

/// The extension module.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    sampling::register(m)?;
    fftconv::register(m)?;
    quantum::register(m)?;
    kvcache::register(m)?;
    oscillators::register(m)?;
    threads::register(m)?;
    Ok(())
}
