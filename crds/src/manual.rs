//! Manual control of model rollouts: the annotations a user sets on an `AudioDetector`.
//!
//! Commands are annotations rather than spec fields so that `kubectl annotate` is all a user
//! needs (no spec edit, no new `generation`, nothing for GitOps tooling to fight over), as with
//! Argo Rollouts' `promote`/`abort`/`retry` and its pause.
//!
//! * [`PROMOTE`], [`ABORT`] and [`RETRY`] are **one-shot**: the annotation's value is a token
//!   (any string; a timestamp is handy) and the operator acts once per token. Status remembers
//!   the last token handled for each command ([`crate::HandledCommands`]), so the repeated
//!   reconciles of one annotation do nothing more, and a new value is a new command:
//!   `kubectl annotate adet NAME auralguard.io/promote="$(date +%s)" --overwrite`.
//! * [`PAUSE`] is a **level**: while present (with any value except `false`), the rollout holds
//!   where it is; removing it (`kubectl annotate adet NAME auralguard.io/pause-`) resumes.
//!
//! What each one does is decided by the operator's rollout state machine; what came of the last
//! one is in `status.lastCommand` and in an Event.

use std::collections::BTreeMap;

/// Skip the remaining canary steps and their analysis and promote the canary now.
pub const PROMOTE: &str = "auralguard.io/promote";
/// Roll the running canary back now; the version stays blocked as after a failed analysis.
pub const ABORT: &str = "auralguard.io/abort";
/// Lift the block on a rolled-back or aborted version, so that it is rolled out again.
pub const RETRY: &str = "auralguard.io/retry";
/// While present, no rollout starts, no step advances, no analysis is judged and no deadline
/// runs; a running canary keeps its pods.
pub const PAUSE: &str = "auralguard.io/pause";

/// The manual commands found in a detector's annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Commands {
    /// The token of [`PROMOTE`], if the annotation is set.
    pub promote: Option<String>,
    /// The token of [`ABORT`], if the annotation is set.
    pub abort: Option<String>,
    /// The token of [`RETRY`], if the annotation is set.
    pub retry: Option<String>,
    /// Whether [`PAUSE`] is set to anything but `false`.
    pub pause: bool,
}

impl Commands {
    /// Reads the command annotations. Other annotations are ignored; `pause: "false"` (any case,
    /// surrounding blanks ignored) counts as absent so that the obvious way to write "not
    /// paused" does not pause.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Self {
        Self {
            promote: annotations.get(PROMOTE).cloned(),
            abort: annotations.get(ABORT).cloned(),
            retry: annotations.get(RETRY).cloned(),
            pause: annotations
                .get(PAUSE)
                .is_some_and(|v| !v.trim().eq_ignore_ascii_case("false")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_tokens_and_pause() {
        let c = Commands::from_annotations(&annotations(&[
            (PROMOTE, "1712000000"),
            (RETRY, ""),
            (PAUSE, "true"),
            ("auralguard.io/other", "x"),
        ]));
        assert_eq!(
            c,
            Commands {
                promote: Some("1712000000".into()),
                abort: None,
                retry: Some(String::new()),
                pause: true,
            }
        );
        assert_eq!(
            Commands::from_annotations(&BTreeMap::new()),
            Commands::default()
        );
    }

    #[test]
    fn pause_false_is_not_a_pause() {
        for value in ["false", "False", " FALSE "] {
            assert!(!Commands::from_annotations(&annotations(&[(PAUSE, value)])).pause);
        }
        for value in ["", "true", "yes", "investigating p99"] {
            assert!(Commands::from_annotations(&annotations(&[(PAUSE, value)])).pause);
        }
    }
}
