//! Deploying components: validation against the world, clear refusals,
//! versions and rollback.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{ALWAYS_FAILS, Host, STATEFUL, VALIDATE_ORDER, component};

async fn upload(host: &Host, bytes: Vec<u8>, trigger: &str) -> (StatusCode, Value) {
    let r = host
        .http
        .put(host.at(&format!("/api/functions/f?{trigger}")))
        .body(bytes)
        .send()
        .await
        .expect("deploy");
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn uploads_that_are_not_handler_components_are_refused_with_the_reason() {
    let host = Host::start().await;
    host.create_queue("q", json!({})).await;

    // A valid but empty component: it exports nothing the world requires.
    let (status, body) = upload(&host, b"\0asm\x0d\0\x01\0".to_vec(), "queue=q").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "InvalidComponent");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("does not match the sluice:handler@0.1.0 world"),
        "{message}"
    );
    assert!(message.contains("handle-event"), "{message}");

    let (status, body) = upload(&host, b"\0asm\x01\0\0\0".to_vec(), "queue=q").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("not a component")
    );

    let (status, _) = upload(&host, b"hello".to_vec(), "queue=q").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        host.http
            .get(host.at("/api/functions"))
            .send()
            .await
            .expect("list")
            .json::<Vec<Value>>()
            .await
            .expect("json")
            .is_empty()
    );
}

#[tokio::test]
async fn deploy_needs_an_existing_trigger_and_redeploy_makes_a_new_version() {
    let host = Host::start().await;
    let wasm = std::fs::read(component(VALIDATE_ORDER)).expect("component");

    let (status, body) = upload(&host, wasm.clone(), "topic=orders").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("trigger topic `orders` does not exist")
    );
    let (status, _) = upload(&host, wasm.clone(), "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    host.create_topic("orders").await;
    let (status, first) = upload(&host, wasm.clone(), "topic=orders").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(first["version"], 1);
    assert_eq!(first["componentSize"], wasm.len());
    let (status, second) = upload(&host, wasm, "topic=orders&eventTypes=orders.created").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second["version"], 2);
    assert_eq!(second["componentHash"], first["componentHash"]);

    let subs: Vec<Value> = host
        .http
        .get(host.at("/api/topics/orders/subscriptions"))
        .send()
        .await
        .expect("subs")
        .json()
        .await
        .expect("json");
    assert_eq!(subs.len(), 1);
    assert_eq!(
        subs[0]["filter"]["includedEventTypes"],
        json!(["orders.created"])
    );

    let r = host
        .http
        .delete(host.at("/api/functions/f"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::OK);
    let subs: Vec<Value> = host
        .http
        .get(host.at("/api/topics/orders/subscriptions"))
        .send()
        .await
        .expect("subs")
        .json()
        .await
        .expect("json");
    assert!(
        subs.is_empty(),
        "the trigger's subscription goes with the function"
    );
    let r = host
        .http
        .delete(host.at("/api/functions/f"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_version_is_listed_and_a_rollback_redeploys_an_earlier_one_as_a_new_version() {
    let host = Host::start().await;
    host.create_queue("jobs", json!({ "maxDeliveryCount": 1 }))
        .await;
    host.create_queue("results", json!({})).await;
    // v1 answers `count` on `results`; v2 fails everything.
    let r = host
        .deploy("worker", &component(STATEFUL), "queue=jobs")
        .await;
    assert_eq!(r.status(), 201);
    let r = host
        .deploy(
            "worker",
            &component(ALWAYS_FAILS),
            "queue=jobs&timeoutSecs=5",
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(host.send("jobs", "count").await.status(), 201);
    host.wait_for_messages("jobs/$DeadLetterQueue", 1).await;

    let versions = host.get_json("/api/functions/worker/versions").await;
    let versions = versions.as_array().expect("an array");
    assert_eq!(versions.len(), 2);
    assert_ne!(versions[0]["componentHash"], versions[1]["componentHash"]);
    assert_eq!(versions[1]["limits"]["timeoutSecs"], 5);
    for v in versions {
        assert!(v["componentSize"].as_u64().is_some_and(|n| n > 0), "{v}");
        assert!(
            v["deployedAt"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{v}"
        );
        assert_eq!(v["trigger"]["queue"], "jobs");
    }

    let r = host
        .http
        .post(host.at("/api/functions/worker/rollback"))
        .send()
        .await
        .expect("rollback");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let rolled: Value = r.json().await.expect("json");
    assert_eq!(rolled["version"], 3);
    assert_eq!(rolled["rolledBackFrom"], 1);
    assert_eq!(rolled["componentHash"], versions[0]["componentHash"]);
    assert_eq!(rolled["limits"]["timeoutSecs"], 30, "v1's limits came back");

    // The first version's behaviour is back.
    assert_eq!(host.send("jobs", "count").await.status(), 201);
    let results = host.wait_for_messages("results", 1).await;
    assert_eq!(results[0]["body"], "1");

    let r = host
        .http
        .post(host.at("/api/functions/worker/rollback?version=9"))
        .send()
        .await
        .expect("rollback");
    assert_eq!(r.status(), 404);
}
