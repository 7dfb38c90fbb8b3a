//! Parsing and validating an Open Inference Protocol request before anything is sized by it.
//!
//! A request is hostile until proven otherwise: its `shape` may overflow, be zero or absurd, and
//! its `data` may be tens of megabytes of JSON. So the values are parsed straight into `f32`s
//! (4 bytes each, where a `serde_json::Value` tree costs ~32), every dimension is checked with
//! checked arithmetic against the served model's input and the batch bound, and only then is
//! the tensor handed on. Nothing here allocates from a declared size.

use std::fmt;

use axum::http::StatusCode;
use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::metrics::Limit;

/// Longest request `id` echoed back; ids are correlation keys, not payloads.
pub const MAX_ID_BYTES: usize = 256;

/// Longest tensor `name` accepted (the accepted names are short; this keeps messages short).
const MAX_NAME_BYTES: usize = 64;

/// Tensor values as sent, flattened while parsing: any nesting of arrays of numbers.
#[derive(Debug, Default)]
pub struct FlatF32(pub Vec<f32>);

/// Appends every number of a (nested) JSON array to its vector.
struct Append<'a>(&'a mut Vec<f32>);

impl<'de> DeserializeSeed<'de> for Append<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Append<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number or a (nested) array of numbers")
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        // Out-of-range values become ±inf here and are refused as non-finite later.
        self.0.push(v as f32);
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.0.push(v as f32);
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.0.push(v as f32);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Append(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

impl<'de> Deserialize<'de> for FlatF32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut values = Vec::new();
        d.deserialize_any(Append(&mut values))?;
        Ok(Self(values))
    }
}

/// One input tensor of a request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct InputTensor {
    /// `waveform` or `log_mel`.
    pub name: String,
    /// Shape; every entry must be positive.
    pub shape: Vec<i64>,
    /// Element type; only `FP32` is accepted.
    #[schema(example = "FP32")]
    pub datatype: String,
    /// Row-major values (nested arrays are flattened).
    #[schema(value_type = Vec<f32>)]
    pub data: FlatF32,
}

/// An inference request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct InferRequest {
    /// Echoed back (at most 256 bytes).
    #[serde(default)]
    pub id: Option<String>,
    /// Exactly one input tensor.
    pub inputs: Vec<InputTensor>,
}

/// What the served model accepts, from its manifest and the server's limits.
#[derive(Debug, Clone, Copy)]
pub struct InputBounds {
    /// Rows of one window's features.
    pub rows: usize,
    /// Columns of one window's features.
    pub columns: usize,
    /// Most windows one `log_mel` tensor may carry (the inference queue's size).
    pub max_batch: usize,
    /// Most samples one `waveform` may carry (`--max-audio-seconds` at the model's rate).
    pub max_samples: usize,
}

/// A validated input.
#[derive(Debug)]
pub enum Input {
    /// Mono samples at the model's rate.
    Waveform(Vec<f32>),
    /// `batch` windows of features laid end to end.
    Features {
        /// Windows.
        batch: usize,
        /// `batch × rows × columns` finite values.
        data: Vec<f32>,
    },
}

/// A parsed and validated request.
#[derive(Debug)]
pub struct Parsed {
    /// The request's id, to echo.
    pub id: Option<String>,
    /// Its one input.
    pub input: Input,
}

fn bad_tensor(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("bad_tensor", message).because(Limit::TensorShape)
}

/// Parses `body` and checks it against `bounds`.
pub fn parse(body: &[u8], bounds: &InputBounds) -> Result<Parsed, ApiError> {
    let req: InferRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("bad_request", format!("not an inference request: {e}"))
    })?;
    if req.id.as_ref().is_some_and(|id| id.len() > MAX_ID_BYTES) {
        return Err(ApiError::bad_request(
            "bad_request",
            format!("id: at most {MAX_ID_BYTES} bytes"),
        )
        .because(Limit::NameLength));
    }
    let [input]: [InputTensor; 1] = req.inputs.try_into().map_err(|v: Vec<InputTensor>| {
        ApiError::bad_request(
            "bad_request",
            format!("expected exactly one input, got {}", v.len()),
        )
    })?;
    let name = if input.name.len() > MAX_NAME_BYTES {
        return Err(bad_tensor(format!(
            "input name: at most {MAX_NAME_BYTES} bytes"
        )));
    } else {
        input.name.as_str()
    };
    if input.datatype != "FP32" {
        return Err(ApiError::bad_request(
            "bad_tensor",
            format!("input '{name}' must be FP32, got {:.16}", input.datatype),
        ));
    }
    let values = check_shape(name, &input.shape, bounds)?;
    let data = input.data.0;
    if data.len() != values {
        return Err(bad_tensor(format!(
            "shape {:?} needs {values} values, got {}",
            input.shape,
            data.len()
        )));
    }
    let input = if name == "waveform" {
        Input::Waveform(data)
    } else {
        if let Some(at) = data.iter().position(|v| !v.is_finite()) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "non_finite_values",
                format!("log_mel: value {at} is not a finite number"),
            )
            .because(Limit::NonFinite));
        }
        Input::Features {
            batch: values / (bounds.rows * bounds.columns),
            data,
        }
    };
    Ok(Parsed { id: req.id, input })
}

/// The number of values `shape` declares, if it is one the model accepts.
fn check_shape(name: &str, shape: &[i64], b: &InputBounds) -> Result<usize, ApiError> {
    if shape.iter().any(|&d| d <= 0) {
        return Err(bad_tensor(format!(
            "shape {shape:?}: every dimension must be positive"
        )));
    }
    let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let expected = || {
        format!(
            "send 'waveform' [1, N] (N ≤ {}) or 'log_mel' [B, {}, {}] (B ≤ {})",
            b.max_samples, b.rows, b.columns, b.max_batch
        )
    };
    match (name, dims.as_slice()) {
        ("waveform", [1, n]) => {
            if *n > b.max_samples as u64 {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "audio_too_long",
                    format!(
                        "waveform: {n} samples is more than the allowed {}",
                        b.max_samples
                    ),
                )
                .because(Limit::TensorShape));
            }
            Ok(*n as usize)
        }
        ("log_mel", [batch, r, c]) if (*r, *c) == (b.rows as u64, b.columns as u64) => {
            if *batch > b.max_batch as u64 {
                return Err(bad_tensor(format!(
                    "log_mel: a batch of {batch} windows is more than the allowed {}",
                    b.max_batch
                )));
            }
            batch
                .checked_mul(*r)
                .and_then(|v| v.checked_mul(*c))
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| bad_tensor(format!("shape {shape:?} is too large")))
        }
        _ => Err(bad_tensor(format!(
            "unsupported input '{name}' with shape {shape:?}: {}",
            expected()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: InputBounds = InputBounds {
        rows: 2,
        columns: 3,
        max_batch: 4,
        max_samples: 10,
    };

    fn req(name: &str, shape: &str, data: &str) -> String {
        format!(
            r#"{{"id":"a","inputs":[{{"name":"{name}","shape":{shape},"datatype":"FP32","data":{data}}}]}}"#
        )
    }

    fn refusal(body: &str) -> ApiError {
        parse(body.as_bytes(), &BOUNDS).expect_err(body)
    }

    #[test]
    fn nested_and_flat_data_parse_to_the_same_values() {
        let flat = parse(
            req("log_mel", "[1,2,3]", "[1,2,3,4,5,6.5]").as_bytes(),
            &BOUNDS,
        )
        .unwrap();
        let nested = parse(
            req("log_mel", "[1,2,3]", "[[[1,2,3],[4,5,6.5]]]").as_bytes(),
            &BOUNDS,
        )
        .unwrap();
        for p in [flat, nested] {
            assert_eq!(p.id.as_deref(), Some("a"));
            match p.input {
                Input::Features { batch, data } => {
                    assert_eq!(batch, 1);
                    assert_eq!(data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
                }
                other => panic!("{other:?}"),
            }
        }
        let w = parse(req("waveform", "[1,3]", "[0.5,-1,0]").as_bytes(), &BOUNDS).unwrap();
        assert!(matches!(w.input, Input::Waveform(v) if v.len() == 3));
    }

    #[test]
    fn overflowing_zero_negative_and_oversized_shapes_are_400_before_the_data_counts() {
        for shape in [
            "[144115188075855872,2,3]",
            "[9223372036854775807,9223372036854775807,9223372036854775807]",
            "[0,2,3]",
            "[-1,2,3]",
            "[5,2,3]",
            "[1,2,4]",
            "[1,2]",
        ] {
            let e = refusal(&req("log_mel", shape, "[]"));
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{shape}");
            assert_eq!(e.code, "bad_tensor", "{shape}");
            assert_eq!(e.limit, Some(Limit::TensorShape), "{shape}");
        }
        let e = refusal(&req("waveform", "[1,18446744073709551615]", "[]"));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = refusal(&req("waveform", "[1,11]", "[]"));
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.code, "audio_too_long");
        let e = refusal(&req("waveform", "[2,3]", "[1,2,3,4,5,6]"));
        assert_eq!(e.code, "bad_tensor");
    }

    #[test]
    fn data_must_match_the_shape_and_be_numbers() {
        assert_eq!(
            refusal(&req("log_mel", "[1,2,3]", "[1,2]")).code,
            "bad_tensor"
        );
        assert_eq!(
            refusal(&req("log_mel", "[1,2,3]", r#"["a",2,3,4,5,6]"#)).code,
            "bad_request"
        );
        let e = refusal(&req("log_mel", "[1,2,3]", "[1,2,3,4,5,1e300]"));
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.code, "non_finite_values");
    }

    #[test]
    fn long_ids_names_and_wrong_types_are_refused_with_short_messages() {
        let long = "x".repeat(MAX_ID_BYTES + 1);
        let body = format!(
            r#"{{"id":"{long}","inputs":[{{"name":"waveform","shape":[1,1],"datatype":"FP32","data":[0]}}]}}"#
        );
        let e = refusal(&body);
        assert_eq!(e.limit, Some(Limit::NameLength));
        let e = refusal(&req(&"n".repeat(10_000), "[1,1]", "[0]"));
        assert!(e.message.len() < 200, "{}", e.message);
        let body = req("waveform", "[1,1]", "[0]").replace("FP32", &"T".repeat(10_000));
        let e = refusal(&body);
        assert!(e.message.len() < 200, "{}", e.message);
        assert_eq!(
            refusal(r#"{"inputs":[]}"#).message,
            "expected exactly one input, got 0"
        );
    }
}
