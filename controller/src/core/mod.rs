//! The controller's pure core: reading Services, resolving pools, allocating.
//! No I/O here; the shell in `crate::shell` drives it.

pub mod allocator;
#[cfg(test)]
mod allocator_tests;
pub mod desired;
pub use ferrolb_crds::labels;
pub mod pools;
pub mod service;

pub use allocator::{AllocationError, Allocator, Assignment, PoolUsage};
/// Which Services we serve: the API's rule, shared with the speakers.
pub use ferrolb_crds::class::{ClassFilter, Interest};
pub use pools::{AllocationScope, Conflict, Pool, PoolConfig};
pub use service::{RequestError, ServiceKey, ServiceRequest, read_request};
