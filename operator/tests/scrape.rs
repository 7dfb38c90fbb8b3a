//! The production scraper: lists the detector's canary and stable pods through a scripted API
//! server and fetches `/metrics` over real HTTP from a local server speaking the detector's
//! exposition format; only ready pods are scraped, and stable pods land in `stable`. Each scraped
//! pod's containers' restarts are recorded, and canary pods that are not ready (but not on their
//! way out) are counted.

mod support;

use std::time::Duration;

use auralguard_operator::scrape::{CanaryMetrics, PodScraper};
use axum::routing::get;
use axum::Router;
use http::Method;
use serde_json::json;
use support::mock_client;

const EXPOSITION: &str = "# TYPE auralguard_http_requests_total counter\n\
auralguard_http_requests_total{route=\"/predict\",status=\"200\"} 40\n\
auralguard_http_requests_total{route=\"/predict\",status=\"500\"} 2\n\
auralguard_http_requests_total{route=\"/ready\",status=\"200\"} 900\n\
# TYPE auralguard_http_request_duration_seconds histogram\n\
auralguard_http_request_duration_seconds_bucket{route=\"/predict\",le=\"0.5\"} 41\n\
auralguard_http_request_duration_seconds_bucket{route=\"/predict\",le=\"+Inf\"} 42\n\
# HELP auralguard_verdicts_total Verdicts by predicted label.\n\
# TYPE auralguard_verdicts_total counter\n\
auralguard_verdicts_total{label=\"fake\"} 12\n\
auralguard_verdicts_total{label=\"real\"} 28\n";

/// The label selector of one role's pods, as it appears in the list call's query.
fn selector(role: &str) -> String {
    format!(
        "labelSelector=app.kubernetes.io%2Finstance%3Ddemo%2Capp.kubernetes.io%2Fname%3Dauralguard%2Cauralguard.io%2Frole%3D{role}"
    )
}

fn pod(name: &str, ready: bool) -> serde_json::Value {
    pod_with_restarts(name, ready, [0, 0])
}

/// A running pod with two containers that restarted `restarts` times each.
fn pod_with_restarts(name: &str, ready: bool, restarts: [i32; 2]) -> serde_json::Value {
    let container = |name: &str, restarts: i32| json!({"name": name, "image": "x", "imageID": "", "ready": ready, "restartCount": restarts});
    json!({
        "metadata": {"name": name, "namespace": "voice"},
        "status": {
            "phase": "Running",
            "podIP": "127.0.0.1",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "containerStatuses": [container("server", restarts[0]), container("sidecar", restarts[1])]
        }
    })
}

/// A pod on its way out: being deleted, or evicted (phase Failed).
fn leaving(name: &str, evicted: bool) -> serde_json::Value {
    let mut p = pod(name, false);
    if evicted {
        p["status"]["phase"] = json!("Failed");
    } else {
        p["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
    }
    p
}

#[tokio::test]
async fn scrapes_ready_canary_and_stable_pods_by_ip() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new().route("/metrics", get(|| async { EXPOSITION }));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (client, mut api) = mock_client();
    let scraper = PodScraper::new(client, Duration::from_secs(5))
        .unwrap()
        .with_port(port);
    let routes = vec!["/predict".to_string()];
    let task = tokio::spawn(async move { scraper.scrape("voice", "demo", &routes).await });

    for (role, items) in [
        (
            "canary",
            json!([
                pod_with_restarts("demo-canary-b", true, [2, 1]),
                pod("demo-canary-a", true),
                pod("demo-canary-starting", false),
                leaving("demo-canary-terminating", false),
                leaving("demo-canary-evicted", true)
            ]),
        ),
        (
            "stable",
            json!([
                pod("demo-stable-y", true),
                pod("demo-stable-x", true),
                pod("demo-stable-old", false)
            ]),
        ),
    ] {
        let list = api
            .expect(Method::GET, "/api/v1/namespaces/voice/pods")
            .await;
        assert!(list.query.contains(&selector(role)), "{}", list.query);
        list.ok(&json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}));
    }

    let snapshot = task.await.unwrap().unwrap();
    let names = |pods: &[auralguard_crds::PodCounters]| -> Vec<String> {
        pods.iter().map(|p| p.pod.clone()).collect()
    };
    assert_eq!(names(&snapshot.pods), ["demo-canary-a", "demo-canary-b"]);
    assert_eq!(names(&snapshot.stable), ["demo-stable-x", "demo-stable-y"]);
    let a = &snapshot.pods[0];
    assert_eq!((a.requests, a.errors), (42, 2));
    assert_eq!((a.fake, a.real), (12, 28));
    assert_eq!(a.latency_buckets.len(), 2);
    assert_eq!(a.latency_buckets[1].count, 42);
    assert_eq!(a.restarts, Some(0));
    assert_eq!(
        snapshot.pods[1].restarts,
        Some(3),
        "summed over the containers"
    );
    assert_eq!(
        snapshot.unready_pods, 1,
        "the starting pod; not the terminating or evicted one"
    );
    let x = &snapshot.stable[0];
    assert_eq!((x.requests, x.errors, x.fake, x.real), (42, 2, 12, 28));
    assert!(
        x.latency_buckets.is_empty(),
        "stable latency is not judged and not kept in status"
    );
    api.expect_silence().await;
}

#[tokio::test]
async fn an_unreachable_pod_is_an_error_naming_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // closed again: nothing listens there
    let (client, mut api) = mock_client();
    let scraper = PodScraper::new(client, Duration::from_secs(2))
        .unwrap()
        .with_port(port);
    let task = tokio::spawn(async move { scraper.scrape("voice", "demo", &[]).await });
    api.expect(Method::GET, "/api/v1/namespaces/voice/pods")
        .await
        .ok(&json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [pod("demo-canary-x", true)]}));
    let err = task.await.unwrap().unwrap_err().to_string();
    assert!(
        err.starts_with("canary metrics: scraping pod demo-canary-x at http://127.0.0.1:"),
        "{err}"
    );
}
