//! FerroLB controller library: the pure allocation core and its kube shell.

pub mod ipam;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod core;
pub mod shell;
