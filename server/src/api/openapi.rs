//! The OpenAPI document's frame: title, description, tags and the API-key security schemes.
//! Operations and schemas are not listed here: each handler's `#[utoipa::path]` contributes its
//! own when the router registers it (see [`super::routes::router`]).

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, SecurityRequirement};
use utoipa::Modify;

/// The document's static part.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "AuralGuard detector",
        description = "Detects AI-generated (deepfake) speech. `POST /predict` judges an audio file \
            (the original service's API); `/v2/...` is the KServe Open Inference Protocol v2. \
            When the server runs with `--api-key`, every operation marked with a lock needs \
            `Authorization: Bearer <key>` or `X-API-Key: <key>`; probes and metrics never do.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    tags(
        (name = "detector", description = "Judging audio and reading the prediction log"),
        (name = "oip", description = "KServe Open Inference Protocol v2"),
        (name = "operations", description = "Probes and metrics (never need a key)"),
    ),
    modifiers(&ApiKeySecurity)
)]
pub struct ApiDoc;

/// Declares both accepted key headers and requires one of them on every operation that does not
/// opt out with `security(())`.
struct ApiKeySecurity;

impl Modify for ApiKeySecurity {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        doc.security = Some(vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("api_key", Vec::<String>::new()),
        ]);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The full document, as the router builds it.
    fn document() -> serde_json::Value {
        let (_, doc) = super::super::routes::api_router().split_for_parts();
        serde_json::to_value(&doc).unwrap()
    }

    #[test]
    fn every_route_is_documented_with_its_responses() {
        let doc = document();
        let paths: BTreeSet<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let want: BTreeSet<&str> = [
            "/health",
            "/ready",
            "/metrics",
            "/predict",
            "/statistics",
            "/predictions",
            "/v2",
            "/v2/health/live",
            "/v2/health/ready",
            "/v2/models/{name}",
            "/v2/models/{name}/ready",
            "/v2/models/{name}/infer",
        ]
        .into();
        assert_eq!(paths, want);
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap_or_default();
                assert!(
                    ids.insert(id.to_string()),
                    "{method} {path}: operationId {id} again"
                );
                assert!(
                    op["responses"]["200"].is_object(),
                    "{method} {path} documents no 200"
                );
            }
        }
    }

    #[test]
    fn probes_opt_out_of_the_key_and_the_api_does_not() {
        let doc = document();
        let op = |path: &str, method: &str| doc["paths"][path][method].clone();
        for (path, method) in [
            ("/health", "get"),
            ("/metrics", "get"),
            ("/v2/health/ready", "get"),
        ] {
            assert_eq!(
                op(path, method)["security"],
                serde_json::json!([{}]),
                "{path}"
            );
        }
        assert!(
            op("/predict", "post")["security"].is_null(),
            "inherits the global key"
        );
        assert_eq!(doc["security"].as_array().unwrap().len(), 2);
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["api_key"]["name"], "X-API-Key");
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
    }

    #[test]
    fn the_verdict_and_error_schemas_are_complete() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        let verdict = &schemas["Verdict"]["properties"];
        for field in [
            "prediction",
            "probability",
            "confidence",
            "fake_probability",
            "windows",
            "model",
        ] {
            assert!(verdict[field].is_object(), "Verdict.{field}");
        }
        assert!(schemas["ErrorBody"].is_object() && schemas["ErrorDetail"].is_object());
        let upload = &doc["paths"]["/predict"]["post"]["requestBody"]["content"];
        assert!(upload["multipart/form-data"].is_object());
        assert!(upload["audio/wav"].is_object());
    }
}
