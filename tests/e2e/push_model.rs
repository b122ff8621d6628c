//! The push model (examples/push-model): a queue nobody listens to raises
//! `Microsoft.ServiceBus.ActiveMessagesAvailableWithNoListeners` on a system
//! topic, and a handler subscribed to it drains the queue itself.

use serde_json::{Value, json};

use crate::support::{DRAIN_BACKLOG, Host, component};

const NO_LISTENERS: &str = "Microsoft.ServiceBus.ActiveMessagesAvailableWithNoListeners";

/// A system topic whose queue subscription `watch` keeps the raw events
/// that pass `filter`.
async fn system_topic_watched(host: &Host, filter: Value) {
    host.create_queue("watch", json!({})).await;
    host.create_topic_with(
        "servicebus-events",
        json!({ "topicType": "Microsoft.ServiceBus.Namespaces" }),
    )
    .await;
    host.subscribe_queue("servicebus-events", "watch", "watch", filter)
        .await;
}

/// The first system event `watch` holds.
async fn first_watched(host: &Host) -> Value {
    let raised = host.wait_for_messages("watch", 1).await;
    serde_json::from_str(raised[0]["body"].as_str().expect("body")).expect("an event")
}

#[tokio::test]
async fn waiting_messages_with_no_listeners_wake_a_handler_that_drains_them() {
    let drain = component(DRAIN_BACKLOG);
    let host = Host::start().await;
    host.create_queue("backlog", json!({})).await;
    host.create_queue("processed", json!({})).await;
    system_topic_watched(&host, json!({ "subjectBeginsWith": "queues/backlog" })).await;
    let r = host
        .deploy(
            "drain-backlog",
            &drain,
            &format!("topic=servicebus-events&eventTypes={NO_LISTENERS}"),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    // Only the backlog: `processed` holds messages nobody receives either.
    let r = host
        .put_json(
            "/api/topics/servicebus-events/subscriptions/drain-backlog",
            json!({
                "destination": { "function": "drain-backlog" },
                "filter": { "includedEventTypes": [NO_LISTENERS], "subjectBeginsWith": "queues/backlog" },
            }),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());

    for i in 0..5 {
        assert_eq!(
            host.send("backlog", &format!("job {i}")).await.status(),
            201
        );
    }
    let processed = host.wait_for_messages("processed", 5).await;
    let mut bodies: Vec<&str> = processed
        .iter()
        .map(|m| m["body"].as_str().expect("body"))
        .collect();
    bodies.sort_unstable();
    assert_eq!(bodies, ["job 0", "job 1", "job 2", "job 3", "job 4"]);
    assert!(
        processed
            .iter()
            .all(|m| m["userProperties"]["drained-from"] == "backlog"),
        "{processed:#?}"
    );
    host.wait_for_messages("backlog", 0).await;

    let event = first_watched(&host).await;
    assert_eq!(event["eventType"], NO_LISTENERS);
    assert_eq!(event["subject"], "queues/backlog");
    assert_eq!(event["data"]["entityType"], "queue");
    assert_eq!(event["data"]["queueName"], "backlog");
    assert_eq!(event["data"]["namespaceName"], "sluice");
    assert!(
        event["data"]["requestUri"]
            .as_str()
            .is_some_and(|u| u.ends_with("/backlog/messages/head")),
        "{event}"
    );
}

#[tokio::test]
async fn dead_letters_with_no_listeners_raise_their_own_event_at_most_once_per_interval() {
    let host = Host::start_with(&["--push-interval-secs", "1"]).await;
    host.create_queue("fragile", json!({ "maxDeliveryCount": 1 }))
        .await;
    system_topic_watched(
        &host,
        json!({ "includedEventTypes": ["Microsoft.ServiceBus.DeadletterMessagesAvailableWithNoListeners"] }),
    )
    .await;
    assert_eq!(host.send("fragile", "poison").await.status(), 201);
    let (_, settle, _) = host.receive_locked("fragile", 5).await.expect("a message");
    let r = host
        .http
        .put(host.at(&settle))
        .send()
        .await
        .expect("abandon");
    assert_eq!(r.status(), 200);
    host.wait_for_messages("fragile/$DeadLetterQueue", 1).await;

    let event = first_watched(&host).await;
    assert_eq!(event["data"]["queueName"], "fragile");
    assert!(
        event["data"]["requestUri"]
            .as_str()
            .is_some_and(|u| u.ends_with("/fragile/$deadletterqueue/messages/head")),
        "{event}"
    );
    // Within one interval of the first event, no second one.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(host.peek("watch").await.len(), 1);
}
