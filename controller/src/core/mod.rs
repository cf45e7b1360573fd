//! The controller's pure core: reading Services, resolving pools, allocating,
//! and the loop's state machine that ties them together. No I/O here; the
//! shell in `crate::shell` drives it.

pub mod allocation_error;
pub mod allocator;
pub mod desired;
pub mod effect;
pub mod event_budget;
#[cfg(test)]
mod fixtures;
pub mod ip_users;
pub use ferrolb_crds::labels;
pub mod pool_object;
pub mod pool_writes;
pub mod pools;
pub mod reconcile;
pub mod service;

pub use allocation_error::AllocationError;
pub use allocator::{Allocator, Assignment, PoolUsage};
/// Which Services we serve: the API's rule, shared with the speakers.
pub use ferrolb_crds::class::{ClassFilter, Interest};
pub use pools::{AllocationScope, Conflict, Pool, PoolConfig};
pub use reconcile::{Input, Kind, Reconciler, ReconcilerConfig, WriteSettled};
pub use service::{RequestError, ServiceKey, ServiceRequest, read_request};
