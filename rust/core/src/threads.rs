//! The size of the thread pool that every parallel function of the core runs on (rayon's global pool).

use crate::error::{Error, Result};

/// Creates the global pool with `threads` threads. Returns false, changing nothing, when the pool
/// already exists (it is created once per process: by this call or by the first parallel call).
pub fn init_threads(threads: usize) -> Result<bool> {
    if threads == 0 {
        return Err(Error::InvalidArgument(
            "the core needs at least one thread, got 0".into(),
        ));
    }
    Ok(rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .is_ok())
}

/// Number of threads of the pool the core's parallel functions run on.
pub fn num_threads() -> usize {
    rayon::current_num_threads()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_threads_is_an_error() {
        assert!(init_threads(0).is_err());
    }
}
