//! Test support shared by the integration tests: detectors from YAML, deterministic fakes of the
//! operator's collaborators, and [`ApiServer`], a scripted stand-in for the Kubernetes API
//! server built on kube's mockable client (`tower-test`), which asserts each request the
//! operator makes (method, path, query, body) and answers it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use auralguard_crds::{AudioDetector, MetricsSnapshot};
use auralguard_operator::builders::BuildConfig;
use auralguard_operator::clock::Clock;
use auralguard_operator::context::{Context, Settings};
use auralguard_operator::metrics::Metrics;
use auralguard_operator::mlflow::{ModelResolver, RegistryTarget};
use auralguard_operator::scrape::CanaryMetrics;
use auralguard_operator::{Error, Result};
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::client::Body;
use serde_json::{json, Value};

/// A detector from the YAML a user would apply.
pub fn detector(yaml: &str) -> AudioDetector {
    serde_saphyr::from_str(yaml).expect("test detector YAML")
}

/// Alias → version answers, changeable mid-test; `None` makes resolution fail.
#[derive(Default)]
pub struct FakeResolver {
    pub versions: Mutex<HashMap<String, Option<String>>>,
    pub calls: Mutex<usize>,
}

impl FakeResolver {
    pub fn set(&self, alias: &str, version: Option<&str>) {
        self.versions
            .lock()
            .unwrap()
            .insert(alias.to_string(), version.map(str::to_string));
    }
}

#[async_trait]
impl ModelResolver for FakeResolver {
    async fn alias_version(
        &self,
        _: RegistryTarget<'_>,
        model: &str,
        alias: &str,
    ) -> Result<String> {
        *self.calls.lock().unwrap() += 1;
        match self.versions.lock().unwrap().get(alias).cloned().flatten() {
            Some(v) => Ok(v),
            None => Err(Error::Resolve {
                source_uri: format!("models:/{model}@{alias}"),
                message: "MLflow answered 503".into(),
            }),
        }
    }
}

/// Canary and stable counters handed out on each scrape; counts the scrapes. While `failure`
/// is set, every scrape fails with that message instead.
#[derive(Default)]
pub struct FakeMetrics {
    pub snapshot: Mutex<MetricsSnapshot>,
    pub scrapes: Mutex<usize>,
    pub failure: Mutex<Option<String>>,
}

/// The entry of `pod` in `pods`, added with zero counters if missing.
fn pod_entry<'a>(
    pods: &'a mut Vec<auralguard_crds::PodCounters>,
    pod: &str,
) -> &'a mut auralguard_crds::PodCounters {
    if !pods.iter().any(|p| p.pod == pod) {
        pods.push(auralguard_crds::PodCounters {
            pod: pod.into(),
            // The production scraper always records restarts; a pod starts with none.
            restarts: Some(0),
            ..Default::default()
        });
    }
    pods.iter_mut().find(|p| p.pod == pod).unwrap()
}

impl FakeMetrics {
    /// Adds traffic to the one canary pod `pod`: `requests` answers, `errors` of them 5xx,
    /// all faster than 0.1 s.
    pub fn serve(&self, pod: &str, requests: i64, errors: i64) {
        let mut s = self.snapshot.lock().unwrap();
        let p = pod_entry(&mut s.pods, pod);
        p.requests += requests;
        p.errors += errors;
        p.latency_buckets = vec![
            auralguard_crds::BucketCount {
                le: "0.1".into(),
                count: p.requests,
            },
            auralguard_crds::BucketCount {
                le: "+Inf".into(),
                count: p.requests,
            },
        ];
    }

    /// Adds `fake` and `real` verdicts to pod `pod`, a stable one when `stable`, else a canary.
    pub fn verdicts(&self, stable: bool, pod: &str, fake: i64, real: i64) {
        let mut s = self.snapshot.lock().unwrap();
        let pods = if stable { &mut s.stable } else { &mut s.pods };
        let p = pod_entry(pods, pod);
        p.fake += fake;
        p.real += real;
    }

    /// Makes every scrape fail with `message` (`Some`), or succeed again (`None`).
    pub fn fail(&self, message: Option<&str>) {
        *self.failure.lock().unwrap() = message.map(str::to_string);
    }

    /// The canary pod `pod`'s containers restart `times` more times (its counters, like a
    /// restarted server's, start again from zero).
    pub fn restart(&self, pod: &str, times: i64) {
        let mut s = self.snapshot.lock().unwrap();
        let p = pod_entry(&mut s.pods, pod);
        let restarts = p.restarts.unwrap_or(0) + times;
        *p = auralguard_crds::PodCounters {
            pod: pod.into(),
            restarts: Some(restarts),
            ..Default::default()
        };
    }

    /// How many canary pods exist but are not ready.
    pub fn set_unready(&self, pods: i64) {
        self.snapshot.lock().unwrap().unready_pods = pods;
    }

    pub fn scrapes(&self) -> usize {
        *self.scrapes.lock().unwrap()
    }
}

#[async_trait]
impl CanaryMetrics for FakeMetrics {
    async fn scrape(&self, _: &str, _: &str, _: &[String]) -> Result<MetricsSnapshot> {
        *self.scrapes.lock().unwrap() += 1;
        if let Some(message) = self.failure.lock().unwrap().clone() {
            return Err(Error::Metrics(message));
        }
        Ok(self.snapshot.lock().unwrap().clone())
    }
}

/// A clock that only moves when told.
pub struct FakeClock(pub Mutex<Timestamp>);

impl FakeClock {
    pub fn new() -> Self {
        Self(Mutex::new("2030-01-01T00:00:00Z".parse().unwrap()))
    }
    pub fn advance(&self, secs: i64) {
        let mut t = self.0.lock().unwrap();
        *t += SignedDuration::from_secs(secs);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}

/// The fakes of one test, kept so the test can steer them.
pub struct Fakes {
    pub resolver: Arc<FakeResolver>,
    pub metrics: Arc<FakeMetrics>,
    pub clock: Arc<FakeClock>,
}

impl Fakes {
    pub fn new() -> Self {
        Self {
            resolver: Arc::new(FakeResolver::default()),
            metrics: Arc::new(FakeMetrics::default()),
            clock: Arc::new(FakeClock::new()),
        }
    }

    /// A fresh operator context (as after a restart) over a mocked API server.
    pub fn context(&self) -> (Arc<Context>, ApiServer) {
        let (client, api) = mock_client();
        let settings = Settings {
            build: BuildConfig::for_version("0.1.0"),
            poll_interval: Duration::from_secs(60),
            check_interval: Duration::from_secs(10),
        };
        let ctx = Context::new(
            client,
            settings,
            self.resolver.clone(),
            self.metrics.clone(),
            self.clock.clone(),
            Arc::new(Metrics::new().unwrap()),
            Some("test".into()),
        );
        (Arc::new(ctx), api)
    }
}

/// A kube client whose every request goes to the returned scripted server.
pub fn mock_client() -> (kube::Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), ApiServer { handle })
}

/// One request the operator made, waiting for its answer.
pub struct Exchange {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
    send: tower_test::mock::SendResponse<Response<Body>>,
}

impl Exchange {
    /// Answers with `status` and a JSON body.
    pub fn respond(self, status: StatusCode, body: &Value) {
        let bytes = serde_json::to_vec(body).unwrap();
        self.send.send_response(
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(bytes))
                .unwrap(),
        );
    }

    /// Answers 200 with `body`.
    pub fn ok(self, body: &Value) {
        self.respond(StatusCode::OK, body);
    }

    /// Answers 404 with a Kubernetes Status.
    pub fn not_found(self) {
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "not found", "reason": "NotFound", "code": 404
        });
        self.respond(StatusCode::NOT_FOUND, &status);
    }

    /// Answers with the request body itself (what create and apply return, near enough).
    pub fn echo(self) {
        let body = self.body.clone();
        self.ok(&body);
    }

    /// Answers `Some(obj)` with 200 and `None` with 404.
    pub fn answer(self, obj: Option<&Value>) {
        match obj {
            Some(o) => self.ok(o),
            None => self.not_found(),
        }
    }
}

/// The scripted API server.
pub struct ApiServer {
    handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
}

impl ApiServer {
    /// The next request, which must be `method` on `path` (query string aside).
    pub async fn expect(&mut self, method: Method, path: &str) -> Exchange {
        let next = tokio::time::timeout(Duration::from_secs(10), self.handle.next_request()).await;
        let (request, send) = match next {
            Ok(Some(r)) => r,
            Ok(None) => panic!("expected {method} {path}, but the client is gone"),
            Err(_) => panic!(
                "expected {method} {path}, but no request came (did reconcile return early?)"
            ),
        };
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        let exchange = Exchange {
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            content_type: parts
                .headers
                .get("content-type")
                .map(|v| v.to_str().unwrap_or_default().to_string())
                .unwrap_or_default(),
            body,
            send,
        };
        assert_eq!(
            (exchange.method.as_str(), exchange.path.as_str()),
            (method.as_str(), path),
            "unexpected request (body: {})",
            exchange.body
        );
        exchange
    }

    /// The next request must be a server-side apply of `path` by the operator's field manager;
    /// returns it for the caller to inspect and answer.
    pub async fn expect_apply(&mut self, path: &str) -> Exchange {
        let e = self.expect(Method::PATCH, path).await;
        assert_eq!(e.content_type, "application/apply-patch+yaml", "{path}");
        assert!(
            e.query.contains("fieldManager=auralguard-operator"),
            "{}",
            e.query
        );
        assert!(e.query.contains("force=true"), "{}", e.query);
        e
    }

    /// No further request arrives.
    pub async fn expect_silence(&mut self) {
        if let Ok(Some((r, _))) =
            tokio::time::timeout(Duration::from_millis(100), self.handle.next_request()).await
        {
            panic!("unexpected extra request {} {}", r.method(), r.uri());
        }
    }
}
