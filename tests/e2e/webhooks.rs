//! Event Grid webhooks through the real host and a real HTTP endpoint:
//! validation handshake, abuse protection, delivery headers, batching, the
//! retry policy, dead letters with Event Grid's metadata, and restarts.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Host, event};
use crate::webhook_receiver::{Behaviour, WebhookReceiver};

async fn subscribe_webhook(host: &Host, topic: &str, name: &str, spec: Value) -> reqwest::Response {
    host.put_json(&format!("/api/topics/{topic}/subscriptions/{name}"), spec)
        .await
}

fn webhook(url: &str) -> Value {
    json!({ "webhook": { "endpointUrl": url } })
}

/// Topic `orders` with subscription `name` to a fresh endpoint behaving as
/// told; `extra` adds to the subscription (e.g. a retry policy). Returns the
/// endpoint and the subscription as created.
async fn orders_webhook(
    host: &Host,
    name: &str,
    behaviour: Behaviour,
    extra: Value,
) -> (WebhookReceiver, Value) {
    let hook = WebhookReceiver::start(behaviour).await;
    host.create_topic("orders").await;
    let mut spec = json!({ "destination": webhook(&hook.url) });
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    let r = subscribe_webhook(host, "orders", name, spec).await;
    assert_eq!(r.status(), 201);
    (hook, r.json().await.expect("the subscription"))
}

async fn publish_order(host: &Host, id: &str) {
    let r = host
        .publish(
            "orders",
            json!([event(id, "orders.created", "/orders/x", json!({}))]),
        )
        .await;
    assert_eq!(r.status(), 200);
}

async fn dead_letters(host: &Host, subscription: &str) -> Vec<Value> {
    host.get_json(&format!(
        "/api/topics/orders/subscriptions/{subscription}/deadLetters"
    ))
    .await
    .as_array()
    .cloned()
    .expect("an array of dead letters")
}

#[tokio::test]
async fn validated_webhook_receives_events_with_event_grid_headers() {
    let host = Host::start().await;
    let (hook, created) = orders_webhook(&host, "audit", Behaviour::default(), json!({})).await;
    assert_eq!(created["provisioningState"], "Succeeded");

    let handshake = &hook.requests()[0];
    assert_eq!(
        handshake.header("aeg-event-type"),
        Some("SubscriptionValidation")
    );
    assert_eq!(
        handshake.body[0]["eventType"],
        "Microsoft.EventGrid.SubscriptionValidationEvent"
    );

    let r = host
        .publish(
            "orders",
            json!([event(
                "o-1",
                "orders.created",
                "/orders/1",
                json!({ "total": 5 })
            )]),
        )
        .await;
    assert_eq!(r.status(), 200);
    let delivered = hook.wait_for_notifications(1).await;
    let first = &delivered[0];
    assert_eq!(first.header("aeg-subscription-name"), Some("AUDIT"));
    assert_eq!(first.header("aeg-delivery-count"), Some("0"));
    assert_eq!(first.header("aeg-data-version"), Some("1.0"));
    assert_eq!(first.header("aeg-metadata-version"), Some("1"));
    assert!(
        first
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        first.headers
    );
    assert_eq!(first.body[0]["id"], "o-1");
    assert_eq!(first.body[0]["data"]["total"], 5);
}

#[tokio::test]
async fn webhook_ignoring_the_code_awaits_manual_validation_until_its_url_is_visited() {
    let host = Host::start().await;
    let ignores_code = Behaviour {
        echo_validation_code: false,
        ..Behaviour::default()
    };
    let (hook, created) = orders_webhook(&host, "manual", ignores_code, json!({})).await;
    assert_eq!(created["provisioningState"], "AwaitingManualAction");

    // Not validated yet: events are not routed to it.
    publish_order(&host, "early").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(hook.notifications().is_empty());

    let validation_url = hook.requests()[0].body[0]["data"]["validationUrl"]
        .as_str()
        .expect("validationUrl")
        .to_string();
    // The URL alone authorises: no SAS token.
    let wrong = reqwest::get(validation_url.replace("code=", "code=X"))
        .await
        .expect("GET");
    assert_eq!(wrong.status(), 400);
    let r = reqwest::get(&validation_url)
        .await
        .expect("GET validation URL");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let sub = host
        .get_json("/api/topics/orders/subscriptions/manual")
        .await;
    assert_eq!(sub["provisioningState"], "Succeeded");

    publish_order(&host, "late").await;
    let events = hook.wait_for_events(1).await;
    assert_eq!(events[0]["id"], "late");
}

#[tokio::test]
async fn unreachable_webhook_fails_the_handshake_and_is_not_created() {
    let host = Host::start().await;
    host.create_topic("orders").await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let url = format!("http://{closed}/nobody-home");
    let r = subscribe_webhook(
        &host,
        "orders",
        "ghost",
        json!({ "destination": webhook(&url) }),
    )
    .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "WebhookValidationFailed");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&url)),
        "{body}"
    );
    let r = host
        .http
        .get(host.at("/api/topics/orders/subscriptions/ghost"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 404);

    let r = subscribe_webhook(
        &host,
        "orders",
        "bad-url",
        json!({ "destination": webhook("ftp://example.com/x") }),
    )
    .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn cloud_events_webhook_passes_abuse_protection_and_gets_structured_cloud_events() {
    let host = Host::start().await;
    let hook = WebhookReceiver::start(Behaviour::default()).await;
    host.create_topic_with("devices", json!({ "inputSchema": "CloudEventSchemaV1_0" }))
        .await;
    let r = subscribe_webhook(
        &host,
        "devices",
        "ce",
        json!({ "destination": webhook(&hook.url) }),
    )
    .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let options = &hook.requests()[0];
    assert_eq!(options.method, "OPTIONS");
    assert!(options.header("webhook-request-origin").is_some());

    let r = host
        .http
        .post(host.at("/topics/devices/api/events"))
        .header("content-type", "application/cloudevents+json; charset=utf-8")
        .body(
            json!({ "specversion": "1.0", "id": "d-1", "source": "/devices/7", "type": "device.heartbeat", "data": { "ok": true } })
                .to_string(),
        )
        .send()
        .await
        .expect("publish");
    assert_eq!(r.status(), 200);
    let delivered = hook.wait_for_notifications(1).await;
    assert!(
        delivered[0]
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/cloudevents+json")),
        "{:?}",
        delivered[0].headers
    );
    assert_eq!(delivered[0].body["specversion"], "1.0");
    assert_eq!(delivered[0].body["id"], "d-1");

    let refusing = WebhookReceiver::start(Behaviour {
        allow_origin: false,
        ..Behaviour::default()
    })
    .await;
    let r = subscribe_webhook(
        &host,
        "devices",
        "refused",
        json!({ "destination": webhook(&refusing.url) }),
    )
    .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn event_grid_topic_can_deliver_cloud_events_per_subscription() {
    let host = Host::start().await;
    host.create_topic("orders").await;
    host.create_queue("ce-sink", json!({})).await;
    let r = host
        .put_json(
            "/api/topics/orders/subscriptions/as-ce",
            json!({ "destination": { "queue": "ce-sink" }, "eventDeliverySchema": "CloudEventSchemaV1_0" }),
        )
        .await;
    assert_eq!(r.status(), 201);
    host.publish(
        "orders",
        json!([event(
            "o-9",
            "orders.created",
            "/orders/9",
            json!({ "n": 9 })
        )]),
    )
    .await;
    let messages = host.wait_for_messages("ce-sink", 1).await;
    let body: Value =
        serde_json::from_str(messages[0]["body"].as_str().expect("body")).expect("json");
    assert_eq!(body["specversion"], "1.0");
    assert_eq!(body["type"], "orders.created");
    assert_eq!(body["source"], "orders");
    assert_eq!(body["subject"], "/orders/9");
    assert_eq!(body["data"]["n"], 9);
}

#[tokio::test]
async fn webhook_answering_400_is_dead_lettered_at_once_with_event_grid_metadata_and_can_be_resubmitted()
 {
    let host = Host::start().await;
    let always_400 = Behaviour {
        always: Some(400),
        ..Behaviour::default()
    };
    let (hook, _) = orders_webhook(&host, "strict", always_400, json!({})).await;
    publish_order(&host, "bad-1").await;
    host.wait_for_messages("orders/subscriptions/strict/$DeadLetterQueue", 1)
        .await;
    assert_eq!(hook.notifications().len(), 1, "400 is never retried");

    let dead = dead_letters(&host, "strict").await;
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d["id"], "bad-1");
    assert_eq!(d["deliveryAttempts"], 1);
    assert_eq!(d["lastDeliveryOutcome"], "BadRequest");
    assert_eq!(d["lastHttpStatusCode"], 400);
    assert!(
        d["deadLetterReason"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    assert!(d["publishTime"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(
        d["lastDeliveryAttemptTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );

    hook.answer_always(None);
    let r = host
        .http
        .post(host.at("/api/topics/orders/subscriptions/strict/deadLetters/resubmit"))
        .send()
        .await
        .expect("resubmit");
    assert_eq!(r.status(), 200);
    let resubmitted: Value = r.json().await.expect("json");
    assert_eq!(resubmitted["resubmitted"], 1);
    hook.wait_for_notifications(2).await;
    host.wait_for_messages("orders/subscriptions/strict/$DeadLetterQueue", 0)
        .await;
}

#[tokio::test]
async fn failing_webhook_is_retried_with_increasing_delivery_count_then_dead_lettered() {
    let host = Host::start().await;
    let always_500 = Behaviour {
        always: Some(500),
        ..Behaviour::default()
    };
    let retry = json!({ "retryPolicy": { "maxDeliveryAttempts": 3 } });
    let (hook, _) = orders_webhook(&host, "flaky", always_500, retry).await;
    publish_order(&host, "e-1").await;
    host.wait_for_messages("orders/subscriptions/flaky/$DeadLetterQueue", 1)
        .await;
    let counts: Vec<String> = hook
        .notifications()
        .iter()
        .map(|n| {
            n.header("aeg-delivery-count")
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(counts, ["0", "1", "2"]);
    let dead = dead_letters(&host, "flaky").await;
    assert_eq!(dead[0]["deadLetterReason"], "MaxDeliveryAttemptsExceeded");
    assert_eq!(dead[0]["deliveryAttempts"], 3);
    assert_eq!(dead[0]["lastHttpStatusCode"], 500);
    assert_eq!(dead[0]["lastDeliveryOutcome"], "GenericError");
}

#[tokio::test]
async fn batching_webhook_gets_at_most_max_events_per_post() {
    let host = Host::start().await;
    let batched = json!({ "destination": { "webhook": { "maxEventsPerBatch": 5 } } });
    let hook = WebhookReceiver::start(Behaviour::default()).await;
    host.create_topic("orders").await;
    let mut spec = batched.clone();
    spec["destination"]["webhook"]["endpointUrl"] = json!(hook.url);
    assert_eq!(
        subscribe_webhook(&host, "orders", "batched", spec)
            .await
            .status(),
        201
    );
    let events: Vec<Value> = (0..12)
        .map(|i| event(&format!("m-{i}"), "metric", "s", json!({ "i": i })))
        .collect();
    assert_eq!(
        host.publish("orders", Value::Array(events)).await.status(),
        200
    );
    let delivered = hook.wait_for_events(12).await;
    assert_eq!(delivered.len(), 12);
    let sizes: Vec<usize> = hook
        .notifications()
        .iter()
        .map(|n| n.events().len())
        .collect();
    assert!(sizes.iter().all(|&n| n <= 5), "{sizes:?}");
    assert!(
        sizes.iter().any(|&n| n > 1),
        "events were batched: {sizes:?}"
    );

    // A 1 KB preferred size sends ~700-byte events one per POST.
    let small = WebhookReceiver::start(Behaviour::default()).await;
    let spec = json!({ "destination": { "webhook": {
        "endpointUrl": small.url, "maxEventsPerBatch": 10, "preferredBatchSizeInKilobytes": 1 } } });
    assert_eq!(
        subscribe_webhook(&host, "orders", "small", spec)
            .await
            .status(),
        201
    );
    let padding = "p".repeat(600);
    let events: Vec<Value> = (0..4)
        .map(|i| {
            event(
                &format!("big-{i}"),
                "metric",
                "s",
                json!({ "pad": padding }),
            )
        })
        .collect();
    host.publish("orders", Value::Array(events)).await;
    small.wait_for_events(4).await;
    assert!(small.notifications().iter().all(|n| n.events().len() == 1));
}

#[tokio::test]
async fn pending_webhook_retry_survives_a_host_crash() {
    // Retries at 0.2 x Event Grid's schedule: the first retry waits ~2 s.
    let mut host = Host::start_with(&["--event-retry-time-scale", "0.2"]).await;
    let fails_once = Behaviour {
        statuses: VecDeque::from([500]),
        ..Behaviour::default()
    };
    let (hook, _) = orders_webhook(&host, "durable", fails_once, json!({})).await;
    publish_order(&host, "keep-me").await;
    hook.wait_for_notifications(1).await;
    // Let the failed attempt's backoff reach the disk, then crash mid-schedule.
    tokio::time::sleep(Duration::from_millis(300)).await;
    host.crash_and_restart().await;

    let delivered = hook.wait_for_notifications(2).await;
    assert_eq!(delivered[1].body[0]["id"], "keep-me");
    assert_eq!(delivered[1].header("aeg-delivery-count"), Some("1"));
}
