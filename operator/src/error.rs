//! The one error type of the operator library.
//!
//! Reconcile returns it; the controller's error policy logs it, counts it in
//! `auralguard_operator_reconcile_errors_total{error}` (by [`Error::metric_label`]) and retries
//! with a backoff.

/// Everything that can make a reconcile (or the operator's runtime) fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The AudioDetector's spec is unusable (only possible when it bypassed the CRD schema).
    #[error(transparent)]
    Spec(#[from] auralguard_crds::Error),
    /// The object lacks a field the API server always sets (name, namespace, uid).
    #[error("the AudioDetector has no {0}")]
    MissingField(&'static str),
    /// The model source could not be resolved to a version.
    #[error("cannot resolve model {source_uri}: {message}")]
    Resolve {
        /// The source as written in the spec.
        source_uri: String,
        /// Why.
        message: String,
    },
    /// The canary (or, for the fake-share comparison, stable) pods' metrics could not be scraped
    /// or parsed.
    #[error("canary metrics: {0}")]
    Metrics(String),
    /// A value could not be converted to or from JSON.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Leader election could not proceed.
    #[error("leader election: {0}")]
    Lease(String),
    /// The operator cannot start (for example, its CRD is not installed).
    #[error("{0}")]
    Setup(String),
    /// The operator's HTTP endpoint could not start or failed.
    #[error("HTTP endpoint: {0}")]
    Http(String),
    /// The operator's own Prometheus registry refused a metric.
    #[error("operator metrics registry: {0}")]
    Prometheus(#[from] prometheus::Error),
}

impl Error {
    /// A short, fixed label for metrics (never the message, which would explode cardinality).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::Spec(_) => "spec",
            Self::MissingField(_) => "missing_field",
            Self::Resolve { .. } => "resolve",
            Self::Metrics(_) => "canary_metrics",
            Self::Json(_) => "json",
            Self::Lease(_) => "lease",
            Self::Setup(_) => "setup",
            Self::Http(_) => "http",
            Self::Prometheus(_) => "prometheus",
        }
    }
}

/// The operator library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
