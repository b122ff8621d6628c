//! Host capabilities through test guests: the function's durable key-value
//! state (compare-and-swap under concurrency, expiry, per-function
//! namespaces, survival across a crash, cleared on delete), config and
//! secrets from the function's settings (secrets never shown or logged)
//! (`stateful`), and outbound HTTP to allowed hosts only (`fetcher`).

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{FETCHER, Host, STATEFUL, component};
use crate::webhook_receiver::{Behaviour, WebhookReceiver};

/// Deploys `stateful` as `name` on queue `commands-<name>` (results go to
/// `results`).
async fn deploy_stateful(host: &Host, name: &str, query: &str) {
    let queue = format!("commands-{name}");
    host.create_queue(&queue, json!({})).await;
    let r = host
        .deploy(name, &component(STATEFUL), &format!("queue={queue}{query}"))
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
}

/// Sends `command` to function `name` and returns the reply it sent to `results`.
async fn ask(host: &Host, name: &str, command: &str) -> String {
    let before = host.peek("results").await.len();
    assert_eq!(
        host.send(&format!("commands-{name}"), command)
            .await
            .status(),
        201
    );
    let results = host.wait_for_messages("results", before + 1).await;
    results[before]["body"]
        .as_str()
        .expect("a text reply")
        .to_string()
}

#[tokio::test]
async fn concurrent_invocations_never_lose_a_counter_increment_and_the_count_survives_a_crash() {
    let mut host = Host::start().await;
    host.create_queue("results", json!({})).await;
    deploy_stateful(&host, "counter", "&maxConcurrency=8").await;
    for _ in 0..20 {
        assert_eq!(host.send("commands-counter", "count").await.status(), 201);
    }
    let results = host.wait_for_messages("results", 20).await;
    let mut seen: Vec<u64> = results
        .iter()
        .map(|m| {
            m["body"]
                .as_str()
                .and_then(|b| b.parse().ok())
                .expect("a count")
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=20).collect::<Vec<u64>>(),
        "every increment counted once"
    );

    host.crash_and_restart().await;
    assert_eq!(ask(&host, "counter", "count").await, "21");
}

#[tokio::test]
async fn state_expires_after_its_ttl_is_private_to_its_function_and_is_cleared_on_delete() {
    let host = Host::start().await;
    host.create_queue("results", json!({})).await;
    deploy_stateful(&host, "keeper", "").await;
    deploy_stateful(&host, "stranger", "").await;

    assert_eq!(ask(&host, "keeper", "remember:lease=held:300").await, "ok");
    assert_eq!(ask(&host, "keeper", "remember:owner=ada:0").await, "ok");
    assert_eq!(ask(&host, "keeper", "recall:lease").await, "held");
    assert_eq!(ask(&host, "stranger", "recall:owner").await, "(unset)");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        ask(&host, "keeper", "recall:lease").await,
        "(unset)",
        "expired"
    );
    assert_eq!(ask(&host, "keeper", "forget:owner").await, "true");
    assert_eq!(ask(&host, "keeper", "forget:owner").await, "false");

    assert_eq!(ask(&host, "keeper", "remember:owner=grace:0").await, "ok");
    let r = host
        .http
        .delete(host.at("/api/functions/keeper"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 200);
    let r = host
        .deploy("keeper", &component(STATEFUL), "queue=commands-keeper")
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(ask(&host, "keeper", "recall:owner").await, "(unset)");
}

#[tokio::test]
async fn config_and_secrets_reach_the_handler_and_secret_values_are_never_shown_or_logged() {
    let host = Host::start().await;
    host.create_queue("results", json!({})).await;
    let secret = "s3cr3t-value-0451";
    let r = host
        .put_json(
            "/api/functions/configured/settings",
            json!({ "config": { "greeting": "hello", "region": "eu" }, "secrets": { "api-key": secret } }),
        )
        .await;
    assert_eq!(r.status(), 200);
    let shown: Value = r.json().await.expect("json");
    assert_eq!(shown["secrets"], json!(["api-key"]));
    assert_eq!(shown["config"]["greeting"], "hello");

    deploy_stateful(&host, "configured", "").await;
    assert_eq!(
        ask(&host, "configured", "settings").await,
        format!(
            "greeting=hello;config_entries=2;secret_len={}",
            secret.len()
        )
    );
    let settings = host.get_json("/api/functions/configured/settings").await;
    assert!(!settings.to_string().contains(secret));
    assert!(!host.log().contains(secret), "the host log shows a secret");

    let r = host
        .put_json(
            "/api/functions/configured/settings",
            json!({ "config": { "": "empty key" } }),
        )
        .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn outbound_http_reaches_allowed_hosts_only_and_is_denied_by_default() {
    let host = Host::start().await;
    let server = WebhookReceiver::start(Behaviour::default()).await;
    let authority = server
        .url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host:port")
        .to_string();
    host.create_queue("results", json!({})).await;
    let r = host
        .put_json(
            "/api/functions/allowed/settings",
            json!({ "allowedHosts": [authority] }),
        )
        .await;
    assert_eq!(r.status(), 200);
    for name in ["allowed", "denied"] {
        let queue = format!("commands-{name}");
        host.create_queue(&queue, json!({})).await;
        let r = host
            .deploy(name, &component(FETCHER), &format!("queue={queue}"))
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    }

    assert_eq!(ask(&host, "allowed", &server.url).await, "status=200");
    assert_eq!(
        ask(&host, "denied", &server.url).await,
        "error=ErrorCode::HttpRequestDenied"
    );
    // The allowed function reaches only its own hosts, too.
    assert_eq!(
        ask(&host, "allowed", "http://localhost:9/elsewhere").await,
        "error=ErrorCode::HttpRequestDenied"
    );
    let got: Vec<String> = server.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(got, ["GET"], "only the allowed request left the host");

    let r = host
        .put_json(
            "/api/functions/allowed/settings",
            json!({ "allowedHosts": ["https://example.com/path"] }),
        )
        .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn a_handler_can_send_scheduled_messages_and_messages_in_a_session() {
    let host = Host::start().await;
    host.create_queue("results", json!({})).await;
    host.create_queue("session-results", json!({ "requiresSession": true }))
        .await;
    deploy_stateful(&host, "sender", "").await;

    assert_eq!(
        host.send("commands-sender", "schedule:1500").await.status(),
        201
    );
    let pending = host.wait_for_messages("results", 1).await;
    assert_eq!(pending[0]["state"], "scheduled", "{pending:#?}");
    assert!(pending[0]["scheduledEnqueueTime"].as_str().is_some());
    // Not receivable before its time, receivable after.
    assert!(host.receive_locked("results", 0).await.is_none());
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (_, _, body) = host.receive_locked("results", 5).await.expect("due now");
    assert_eq!(body, "later");

    assert_eq!(
        host.send("commands-sender", "session:order-7")
            .await
            .status(),
        201
    );
    let in_session = host.wait_for_messages("session-results", 1).await;
    assert_eq!(in_session[0]["sessionId"], "order-7");
    assert_eq!(in_session[0]["body"], "in session");
}
