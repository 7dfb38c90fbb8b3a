//! Placeholder, being written by the operator work.
