//! `ferrolb migrate`: MetalLB's configuration in, `ferrolb.io/v1beta1` objects out.
//!
//! The core is pure (text and JSON values in, values and a report out); the binaries
//! (`src/cli`) read files, stdin or the live cluster and write the result.
//!
//! * [`input`] splits YAML text into objects (multi-document, `kind: List`) and recognizes
//!   MetalLB's legacy ConfigMap, whole or as its `config` data alone.
//! * [`legacy`] turns the legacy configuration into the `metallb.io` objects MetalLB's own
//!   `configmaptocrs` would create, so both inputs share one conversion.
//! * [`convert`] maps each `metallb.io` object to its FerroLB twin: it walks the object
//!   against FerroLB's own CRD schema for that kind, keeps what the schema knows, and reports
//!   every other non-empty field as a [`Loss`]; explicit rules name why (BFD, VRFs, FRR-only
//!   fields) and carry BGP password Secrets over.
//! * [`output`] renders the result as YAML, as one stream or one file per object.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod convert;
pub mod error;
pub mod input;
pub mod kind;
pub mod legacy;
pub mod output;
pub mod report;

pub use convert::{Conversion, Options, convert, referenced_secrets};
pub use error::MigrateError;
pub use input::{InputObject, Origin, parse_yaml};
pub use kind::{Disposition, MetallbKind};
pub use report::{Loss, ObjectRef};

/// The namespace MetalLB is installed in by default.
pub const METALLB_NAMESPACE: &str = "metallb-system";
/// FerroLB's namespace by default: where converted objects and copied Secrets go.
pub const FERROLB_NAMESPACE: &str = "ferrolb-system";
/// The API group of MetalLB's kinds.
pub const METALLB_GROUP: &str = "metallb.io";
