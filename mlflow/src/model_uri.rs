//! `models:/NAME/VERSION` and `models:/NAME@ALIAS`: how users, the CLI and the `AudioDetector`
//! resource name a registered model.
//!
//! A version pins exact bytes (it can be served from the local cache without asking MLflow); an
//! alias such as `champion` is a pointer that moves, so it is resolved on every check
//! ([`crate::MlflowClient::resolve`]). Parsing is strict: anything else (`models:/x`, a stage
//! name like `models:/x/Production`, an empty alias) is refused with a message that shows the two
//! accepted forms.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The scheme prefix of registered-model URIs.
const PREFIX: &str = "models:/";

/// A registered model version, named by number or by alias.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelUri {
    /// `models:/NAME/VERSION`: one exact version.
    Version {
        /// Registered model name.
        name: String,
        /// Version number (1 or more).
        version: u64,
    },
    /// `models:/NAME@ALIAS`: whatever version the alias points at when resolved.
    Alias {
        /// Registered model name.
        name: String,
        /// Alias (letters, digits, `_`, `-`).
        alias: String,
    },
}

impl ModelUri {
    /// `models:/name/version`.
    pub fn version(name: impl Into<String>, version: u64) -> Self {
        ModelUri::Version {
            name: name.into(),
            version,
        }
    }

    /// `models:/name@alias`.
    pub fn alias(name: impl Into<String>, alias: impl Into<String>) -> Self {
        ModelUri::Alias {
            name: name.into(),
            alias: alias.into(),
        }
    }

    /// The registered model's name.
    pub fn name(&self) -> &str {
        match self {
            ModelUri::Version { name, .. } | ModelUri::Alias { name, .. } => name,
        }
    }

    /// True when `s` looks like a registered-model URI (starts with `models:/`), whether or not
    /// it is a valid one. Lets a CLI tell a URI from a local folder before parsing.
    pub fn is_model_uri(s: &str) -> bool {
        s.trim_start().starts_with(PREFIX)
    }
}

impl fmt::Display for ModelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelUri::Version { name, version } => write!(f, "{PREFIX}{name}/{version}"),
            ModelUri::Alias { name, alias } => write!(f, "{PREFIX}{name}@{alias}"),
        }
    }
}

impl FromStr for ModelUri {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let uri = s.trim();
        let invalid = |reason: &str| {
            Error::InvalidUri {
            uri: s.to_string(),
            reason: format!("{reason}; expected models:/NAME/VERSION (e.g. models:/detector/3) or models:/NAME@ALIAS (e.g. models:/detector@champion)"),
        }
        };
        let rest = uri
            .strip_prefix(PREFIX)
            .ok_or_else(|| invalid("not a models:/ URI"))?;
        if rest.starts_with('/') {
            return Err(invalid("a models:/ URI has no host part (models://...)"));
        }
        if rest.is_empty() {
            return Err(invalid("no model name"));
        }

        if let Some((name, version)) = rest.split_once('/') {
            check_name(name).map_err(|r| invalid(&r))?;
            if version.is_empty() {
                return Err(invalid("no version after '/'"));
            }
            if version.contains('/') {
                return Err(invalid("too many '/'"));
            }
            let number: u64 = version
                .parse()
                .ok()
                .filter(|v| *v > 0 && version.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    invalid(&format!(
                        "bad version '{version}': a version is a positive integer (stages such as Production and 'latest' are not supported; use an alias)"
                    ))
                })?;
            return Ok(ModelUri::Version {
                name: name.to_string(),
                version: number,
            });
        }

        if let Some((name, alias)) = rest.rsplit_once('@') {
            check_name(name).map_err(|r| invalid(&r))?;
            check_alias(alias).map_err(|r| invalid(&r))?;
            return Ok(ModelUri::Alias {
                name: name.to_string(),
                alias: alias.to_string(),
            });
        }

        Err(invalid(&format!(
            "'{rest}' names a model but no version or alias"
        )))
    }
}

/// A registered model name as it can appear in a URI.
fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.trim().is_empty() {
        return Err("no model name".into());
    }
    if name.contains('@') {
        return Err(format!("model name '{name}' contains '@'"));
    }
    Ok(())
}

/// MLflow's alias rule: letters, digits, `_` and `-`, not empty.
pub(crate) fn check_alias(alias: &str) -> std::result::Result<(), String> {
    if alias.is_empty() {
        return Err("no alias after '@'".into());
    }
    if !alias
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "bad alias '{alias}': aliases hold only letters, digits, '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions_and_aliases() {
        assert_eq!(
            "models:/detector/3".parse::<ModelUri>().unwrap(),
            ModelUri::version("detector", 3)
        );
        assert_eq!(
            " models:/detector@champion ".parse::<ModelUri>().unwrap(),
            ModelUri::alias("detector", "champion")
        );
        assert_eq!(
            "models:/my model.v2/12".parse::<ModelUri>().unwrap(),
            ModelUri::version("my model.v2", 12)
        );
        assert_eq!(
            "models:/det@canary-2_b".parse::<ModelUri>().unwrap(),
            ModelUri::alias("det", "canary-2_b")
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "models:/detector/3",
            "models:/detector@champion",
            "models:/a b/1",
        ] {
            assert_eq!(s.parse::<ModelUri>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn refuses_everything_else_with_a_clear_message() {
        for bad in [
            "models:/",
            "models:/x",
            "models:/x@",
            "models:/x/",
            "models:/@champion",
            "models:/x/0",
            "models:/x/-1",
            "models:/x/+1",
            "models:/x/1.0",
            "models:/x/Production",
            "models:/x/latest",
            "models:/x/1/extra",
            "models:/x@bad alias",
            "models://host/x/1",
            "models:x/1",
            "runs:/abc/model",
            "./models/demo",
            "",
        ] {
            match bad.parse::<ModelUri>() {
                Err(Error::InvalidUri { uri, reason }) => {
                    assert_eq!(uri, bad);
                    assert!(reason.contains("models:/NAME/VERSION"), "{bad}: {reason}");
                }
                other => panic!("{bad:?} should be refused, got {other:?}"),
            }
        }
        let err = "models:/x/Production"
            .parse::<ModelUri>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad version 'Production'"), "{err}");
    }

    #[test]
    fn tells_uris_from_paths() {
        assert!(ModelUri::is_model_uri("models:/x/1"));
        assert!(!ModelUri::is_model_uri("models/demo"));
    }
}
