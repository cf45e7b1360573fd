//! What stops a conversion: input that cannot be read as MetalLB configuration.

use crate::input::Origin;

/// A conversion error. Each names the file (or source) and document it comes from.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The text is not YAML, or a document is not a mapping.
    #[error("{origin}: not valid YAML: {message}")]
    Yaml {
        /// Where.
        origin: Origin,
        /// The parser's message.
        message: String,
    },
    /// A document is a mapping but not a Kubernetes object or a legacy MetalLB config.
    #[error("{origin}: {message}")]
    Malformed {
        /// Where.
        origin: Origin,
        /// What is wrong.
        message: String,
    },
    /// The legacy configuration (a ConfigMap's `config` key) is malformed.
    #[error("{origin}: legacy MetalLB configuration: {message}")]
    Legacy {
        /// Where.
        origin: Origin,
        /// What is wrong, naming the key.
        message: String,
    },
    /// Two inputs produce the same FerroLB object.
    #[error("{object} comes from both {first} and {second}; keep one of them")]
    Duplicate {
        /// `Kind namespace/name` of the output object.
        object: String,
        /// The first input.
        first: Box<Origin>,
        /// The second input.
        second: Box<Origin>,
    },
}
