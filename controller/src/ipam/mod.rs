//! Address sets and allocation: the pure core of IP address management.
//!
//! Nothing here does I/O. The controller's shell rebuilds a [`UsedAddresses`]
//! from the Services it sees, describes each pool as an [`AddressSet`], and asks
//! for [`UsedAddresses::lowest_free`] when it needs a new address.
//!
//! Everything is sized by the number of *allocations*, never by the size of a
//! pool: a pool may be an IPv4 /8 or all of `::/0`, and both are described by a
//! handful of ranges. Used addresses are kept as merged runs in a `BTreeMap`, so
//! allocating, freeing and looking up cost `O(log n)` per range of the pool.
//!
//! MetalLB's `avoidBuggyIPs` (never hand out IPv4 addresses ending in `.0` or
//! `.255`) is supported without scanning: see [`buggy_count`] and the
//! renumbering in `usable`.

mod runs;
mod set;
mod usable;
mod used;

#[cfg(test)]
mod proptests;

pub use ferrolb_crds::address::{Family, IpRange};
pub use set::AddressSet;
pub use usable::buggy_count;
pub use used::UsedAddresses;
