//! The production canary scraper: lists the detector's canary pods through a scripted API server
//! and fetches `/metrics` over real HTTP from a local server speaking the detector's exposition
//! format; only ready pods are scraped.

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
auralguard_http_request_duration_seconds_bucket{route=\"/predict\",le=\"+Inf\"} 42\n";

fn pod(name: &str, ready: bool) -> serde_json::Value {
    json!({
        "metadata": {"name": name, "namespace": "voice"},
        "status": {
            "phase": "Running",
            "podIP": "127.0.0.1",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]
        }
    })
}

#[tokio::test]
async fn scrapes_ready_canary_pods_by_ip() {
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

    let list = api
        .expect(Method::GET, "/api/v1/namespaces/voice/pods")
        .await;
    assert!(
        list.query.contains("labelSelector=app.kubernetes.io%2Finstance%3Ddemo%2Capp.kubernetes.io%2Fname%3Dauralguard%2Cauralguard.io%2Frole%3Dcanary"),
        "{}",
        list.query
    );
    list.ok(&json!({
        "apiVersion": "v1", "kind": "PodList", "metadata": {},
        "items": [pod("demo-canary-b", true), pod("demo-canary-a", true), pod("demo-canary-starting", false)]
    }));

    let snapshot = task.await.unwrap().unwrap();
    let pods: Vec<&str> = snapshot.pods.iter().map(|p| p.pod.as_str()).collect();
    assert_eq!(pods, ["demo-canary-a", "demo-canary-b"]);
    let a = &snapshot.pods[0];
    assert_eq!((a.requests, a.errors), (42, 2));
    assert_eq!(a.latency_buckets.len(), 2);
    assert_eq!(a.latency_buckets[1].count, 42);
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
