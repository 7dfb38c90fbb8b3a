//! Leader election rounds against a scripted API server: create, wait, take over an expired
//! lease, lose a race, renew, and release on shutdown.

mod support;

use std::sync::Arc;

use auralguard_operator::leader::{LeaderElector, LeaseConfig};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use support::{mock_client, FakeClock};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/auralguard-operator";

fn elector() -> (Arc<LeaderElector>, support::ApiServer, Arc<FakeClock>) {
    let (client, api) = mock_client();
    let clock = Arc::new(FakeClock::new()); // 2030-01-01T00:00:00Z
    let cfg = LeaseConfig::new("auralguard-operator".into(), "ops".into(), "pod-a".into());
    (
        Arc::new(LeaderElector::new(client, cfg, clock.clone())),
        api,
        clock,
    )
}

fn lease(holder: Option<&str>, renewed: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "auralguard-operator", "namespace": "ops", "resourceVersion": "41"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "acquireTime": "2029-12-31T23:00:00.000000Z", "renewTime": renewed, "leaseTransitions": 3}
    })
}

#[tokio::test]
async fn creates_the_lease_when_there_is_none() {
    let (e, mut api, _) = elector();
    let round = tokio::spawn({
        let e = e.clone();
        async move { e.round().await }
    });
    api.expect(Method::GET, LEASE).await.not_found();
    let create = api.expect(Method::POST, LEASES).await;
    assert_eq!(create.body["spec"]["holderIdentity"], "pod-a");
    assert_eq!(create.body["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(
        create.body["spec"]["renewTime"],
        "2030-01-01T00:00:00.000000Z"
    );
    let body = create.body.clone();
    create.respond(StatusCode::CREATED, &body);
    assert!(round.await.unwrap().unwrap());
    api.expect_silence().await;
}

#[tokio::test]
async fn waits_while_another_replica_holds_a_fresh_lease() {
    let (e, mut api, _) = elector();
    let round = tokio::spawn(async move { e.round().await });
    api.expect(Method::GET, LEASE)
        .await
        .ok(&lease(Some("pod-b"), "2029-12-31T23:59:55.000000Z"));
    assert!(!round.await.unwrap().unwrap());
    api.expect_silence().await;
}

#[tokio::test]
async fn takes_over_an_expired_lease_with_optimistic_concurrency() {
    let (e, mut api, _) = elector();
    let round = tokio::spawn(async move { e.round().await });
    api.expect(Method::GET, LEASE)
        .await
        .ok(&lease(Some("pod-b"), "2029-12-31T23:59:40.000000Z"));
    let put = api.expect(Method::PUT, LEASE).await;
    assert_eq!(put.body["metadata"]["resourceVersion"], "41");
    assert_eq!(put.body["spec"]["holderIdentity"], "pod-a");
    assert_eq!(put.body["spec"]["leaseTransitions"], 4);
    assert_eq!(
        put.body["spec"]["acquireTime"],
        "2030-01-01T00:00:00.000000Z"
    );
    put.echo();
    assert!(round.await.unwrap().unwrap());
}

#[tokio::test]
async fn losing_the_race_is_not_an_error() {
    let (e, mut api, _) = elector();
    let round = tokio::spawn(async move { e.round().await });
    api.expect(Method::GET, LEASE)
        .await
        .ok(&lease(None, "2029-12-31T23:59:59.000000Z"));
    api.expect(Method::PUT, LEASE).await.respond(
        StatusCode::CONFLICT,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "reason": "Conflict", "message": "the object has been modified", "code": 409}),
    );
    assert!(!round.await.unwrap().unwrap());
}

#[tokio::test]
async fn renews_its_own_lease_and_releases_it_on_shutdown() {
    let (e, mut api, clock) = elector();
    clock.advance(3);
    let round = tokio::spawn({
        let e = e.clone();
        async move { e.round().await }
    });
    api.expect(Method::GET, LEASE)
        .await
        .ok(&lease(Some("pod-a"), "2030-01-01T00:00:00.000000Z"));
    let put = api.expect(Method::PUT, LEASE).await;
    assert_eq!(put.body["spec"]["renewTime"], "2030-01-01T00:00:03.000000Z");
    assert_eq!(
        put.body["spec"]["acquireTime"],
        "2029-12-31T23:00:00.000000Z"
    );
    assert_eq!(put.body["spec"]["leaseTransitions"], 3);
    put.echo();
    assert!(round.await.unwrap().unwrap());

    let release = tokio::spawn(async move { e.release().await });
    api.expect(Method::GET, LEASE)
        .await
        .ok(&lease(Some("pod-a"), "2030-01-01T00:00:03.000000Z"));
    let put = api.expect(Method::PUT, LEASE).await;
    assert!(put.body["spec"]
        .get("holderIdentity")
        .is_none_or(Value::is_null));
    assert_eq!(put.body["spec"]["leaseDurationSeconds"], 1);
    put.echo();
    release.await.unwrap().unwrap();
    api.expect_silence().await;
}
