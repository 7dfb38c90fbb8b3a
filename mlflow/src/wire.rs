//! Small serde helpers for MLflow's JSON encoding of protobuf messages.
//!
//! MLflow turns its protobuf messages into JSON with a few habits that plain serde does not
//! expect: 64-bit integers may arrive as strings, doubles that are not finite travel as the
//! strings `"NaN"`, `"Infinity"` and `"-Infinity"`, and empty fields are left out altogether
//! (so every struct in this crate has `#[serde(default)]`). A training loss can be NaN, so the
//! metric value has to survive the round trip.

use serde::de::{self, Deserializer, Visitor};
use serde::Serializer;
use std::fmt;

/// Deserialises an `i64` from a JSON number or a string holding one.
pub(crate) fn i64_lenient<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer or a string holding one")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(E::custom)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
            if v.fract() == 0.0 && v.is_finite() {
                Ok(v as i64)
            } else {
                Err(E::custom(format!("{v} is not an integer")))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
            v.trim().parse().map_err(E::custom)
        }
        fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
            Ok(0)
        }
    }
    deserializer.deserialize_any(V)
}

/// Like [`i64_lenient`] for an optional field (`null` or absent gives `None`).
pub(crate) fn opt_i64_lenient<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    struct Wrapper(i64);
    impl<'de> serde::Deserialize<'de> for Wrapper {
        fn deserialize<D2: Deserializer<'de>>(d: D2) -> Result<Self, D2::Error> {
            i64_lenient(d).map(Wrapper)
        }
    }
    let value: Option<Wrapper> = serde::Deserialize::deserialize(deserializer)?;
    Ok(value.map(|w| w.0))
}

/// Deserialises an `f64` from a JSON number or one of `"NaN"`, `"Infinity"`, `"-Infinity"` (or a
/// string holding a number).
pub(crate) fn f64_lenient<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = f64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number, or \"NaN\", \"Infinity\", \"-Infinity\"")
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
            match v.trim() {
                "NaN" | "nan" => Ok(f64::NAN),
                "Infinity" | "inf" => Ok(f64::INFINITY),
                "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
                other => other.parse().map_err(E::custom),
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<f64, E> {
            Ok(f64::NAN)
        }
    }
    deserializer.deserialize_any(V)
}

/// Serialises an `f64` as a JSON number, or as MLflow's string for NaN and the infinities
/// (`serde_json` would write `null`, which MLflow rejects).
pub(crate) fn f64_mlflow<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_nan() {
        serializer.serialize_str("NaN")
    } else if *value == f64::INFINITY {
        serializer.serialize_str("Infinity")
    } else if *value == f64::NEG_INFINITY {
        serializer.serialize_str("-Infinity")
    } else {
        serializer.serialize_f64(*value)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize)]
    struct M {
        #[serde(
            serialize_with = "super::f64_mlflow",
            deserialize_with = "super::f64_lenient"
        )]
        value: f64,
        #[serde(deserialize_with = "super::i64_lenient")]
        step: i64,
        #[serde(default, deserialize_with = "super::opt_i64_lenient")]
        end: Option<i64>,
    }

    #[test]
    fn numbers_survive_mlflow_encodings() {
        let m: M =
            serde_json::from_str(r#"{"value": "NaN", "step": "12", "end": "1700000000000"}"#)
                .unwrap();
        assert!(m.value.is_nan());
        assert_eq!(m.step, 12);
        assert_eq!(m.end, Some(1_700_000_000_000));
        let m: M = serde_json::from_str(r#"{"value": -2.5, "step": 3}"#).unwrap();
        assert_eq!((m.value, m.step, m.end), (-2.5, 3, None));
        let m: M =
            serde_json::from_str(r#"{"value": "-Infinity", "step": 0, "end": null}"#).unwrap();
        assert_eq!(m.value, f64::NEG_INFINITY);
    }

    #[test]
    fn non_finite_values_serialise_as_mlflow_strings() {
        let json = serde_json::to_string(&M {
            value: f64::NAN,
            step: 1,
            end: None,
        })
        .unwrap();
        assert!(json.contains(r#""value":"NaN""#), "{json}");
        let json = serde_json::to_string(&M {
            value: f64::INFINITY,
            step: 1,
            end: None,
        })
        .unwrap();
        assert!(json.contains(r#""value":"Infinity""#), "{json}");
        let json = serde_json::to_string(&M {
            value: 0.25,
            step: 1,
            end: None,
        })
        .unwrap();
        assert!(json.contains(r#""value":0.25"#), "{json}");
    }
}
