//! FerroLB controller library: the pure allocation core and its kube shell.
//!
//! The pure modules, `core` and `ipam`, are `#[deny(missing_docs)]`.

#![forbid(unsafe_code)]

#[deny(missing_docs)]
pub mod core;
#[deny(missing_docs)]
pub mod ipam;
pub mod leader;
pub mod memberlist;
pub mod metrics;
pub mod shell;
