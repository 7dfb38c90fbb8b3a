//! The one error type of this crate.

/// What can go wrong with the API types themselves.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `spec.model.source` is none of the accepted shapes (only possible when the object bypassed
    /// the CRD schema, which rejects these).
    #[error("invalid model source {source_uri:?}: {reason}")]
    InvalidModelSource {
        /// The string as written.
        source_uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CRD could not be rendered as YAML.
    #[error("cannot render the CRD as YAML: {0}")]
    Yaml(String),
}
