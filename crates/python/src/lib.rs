//! # stratadb._stratadb
//!
//! The Python extension module behind the `stratadb` package: the [`strata_engine`] data API and the
//! [`strata_sync`] operations as Python classes and functions. The pure-Python package beside it
//! (`crates/python/python/stratadb`) re-exports them with type stubs.
//!
//! - Every call into Rust releases the GIL, so other Python threads run meanwhile.
//! - Handles ([`db::PyStrata`], [`tx::PyTransaction`], the iterators) are `Send + Sync` and may be
//!   shared between threads; their mutable state sits behind a mutex that is only waited on with the
//!   GIL released.
//! - One tokio runtime per process ([`runtime`]), rebuilt in a forked child.
//! - Errors become a `StrataError` hierarchy ([`errors`]), never a bare `RuntimeError`.
//!
//! ## Layout
//! - `convert`: Python objects to and from [`strata_engine::Value`], and report dicts.
//! - `errors`: the exception classes and the mapping of engine and sync errors.
//! - `runtime`: the per-process runtime.
//! - `db`: the `Strata` class (data API, branches, bundles, sync).
//! - `tx`: the `Transaction` context manager.
//! - `client`: `connect()`, the `Client` class and its `ClientTransaction` (the same API over a
//!   `stratadb-server`).
//! - `iter`: streaming iterators (lists, change sets) and the `Diff` result.

use std::sync::Arc;

use pyo3::prelude::*;

mod client;
mod convert;
mod db;
mod errors;
mod fork;
mod iter;
mod runtime;
mod tx;

/// Forgets the parent's async runtime in a forked child (registered with `os.register_at_fork`).
#[pyfunction]
fn _after_fork_in_child() {
    runtime::after_fork_in_child();
}

/// The extension module.
#[pymodule]
fn _stratadb(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Once per process: which backends remotes can be opened with (folders, s3://, gs://, az://).
    strata_sync::set_connector(Arc::new(strata_remotes::Remotes::new()));
    errors::register(m)?;
    m.add_class::<db::PyStrata>()?;
    m.add_class::<tx::PyTransaction>()?;
    m.add_class::<iter::ListIter>()?;
    m.add_class::<iter::ChangeIter>()?;
    m.add_class::<iter::Diff>()?;
    m.add_class::<iter::DiffIter>()?;
    m.add_class::<iter::DiffStream>()?;
    m.add_class::<client::PyClient>()?;
    m.add_class::<client::PyClientTransaction>()?;
    m.add_function(wrap_pyfunction!(client::connect, m)?)?;
    m.add_function(wrap_pyfunction!(db::clone, m)?)?;
    m.add_function(wrap_pyfunction!(_after_fork_in_child, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
