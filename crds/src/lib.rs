//! The `ferrolb.io/v1beta1` API: MetalLB's kinds and field names under our group.

pub mod address;
