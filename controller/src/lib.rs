//! FerroLB controller library: the pure allocation core and its kube shell.

#![forbid(unsafe_code)]

pub mod core;
pub mod ipam;
pub mod leader;
pub mod memberlist;
pub mod metrics;
pub mod shell;
