//! One test per test guest in tests/guests/.

use serde_json::json;

use crate::support::{ALWAYS_FAILS, BATCH, BUSY, FULFIL_ORDER, Host, PANICS, component};

#[tokio::test]
async fn always_fails() {
    let host = Host::start().await;
    host.create_queue("jobs", json!({ "maxDeliveryCount": 3 }))
        .await;
    let r = host
        .deploy("always-fails", &component(ALWAYS_FAILS), "queue=jobs")
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    assert_eq!(host.send("jobs", "job-1").await.status(), 201);

    let dead = host.wait_for_messages("jobs/$DeadLetterQueue", 1).await;
    assert_eq!(dead[0]["deadLetterReason"], "MaxDeliveryCountExceeded");
    assert_eq!(dead[0]["deliveryCount"], 3);
    let description = dead[0]["deadLetterDescription"]
        .as_str()
        .expect("description");
    assert!(
        description.contains("downstream unavailable"),
        "{description}"
    );
    assert_eq!(dead[0]["body"], "job-1");
    host.wait_for_messages("jobs", 0).await;
}

#[tokio::test]
async fn panics() {
    let host = Host::start().await;
    host.create_queue("risky", json!({ "maxDeliveryCount": 2 }))
        .await;
    host.create_queue("fulfil", json!({})).await;
    host.create_topic("fulfilled").await;
    host.create_queue("fulfilled-orders", json!({})).await;
    host.subscribe_queue("fulfilled", "to-queue", "fulfilled-orders", json!({}))
        .await;
    assert_eq!(
        host.deploy("panics", &component(PANICS), "queue=risky")
            .await
            .status(),
        201
    );
    // A healthy function keeps being served while its neighbour traps.
    assert_eq!(
        host.deploy("fulfil-order", &component(FULFIL_ORDER), "queue=fulfil")
            .await
            .status(),
        201
    );

    assert_eq!(host.send("risky", "boom").await.status(), 201);
    assert_eq!(host.send("risky", "fine").await.status(), 201);
    let r = host
        .http
        .post(host.at("/fulfil/messages"))
        .header("content-type", "application/json")
        .body(json!({ "id": "P-1", "customer": "c", "lines": [], "total_cents": 5 }).to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201);

    let dead = host.wait_for_messages("risky/$DeadLetterQueue", 1).await;
    assert_eq!(dead[0]["body"], "boom");
    assert_eq!(dead[0]["deadLetterReason"], "MaxDeliveryCountExceeded");
    let description = dead[0]["deadLetterDescription"]
        .as_str()
        .expect("description");
    assert!(description.contains("trapped"), "{description}");
    host.wait_for_messages("risky", 0).await;
    host.wait_for_messages("fulfilled-orders", 1).await;
}

#[tokio::test]
async fn busy() {
    let host = Host::start().await;
    // A one-second lock, and a handler that computes for longer than that:
    // the host renews the lock while the handler runs, so the message is
    // delivered exactly once.
    host.create_queue("slow", json!({ "lockDurationSecs": 1 }))
        .await;
    assert_eq!(
        host.deploy("busy", &component(BUSY), "queue=slow")
            .await
            .status(),
        201
    );
    assert_eq!(host.send("slow", "6000").await.status(), 201);

    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let during = host.peek("slow").await;
    if let Some(message) = during.first() {
        assert_eq!(
            message["state"], "locked",
            "still held past the lock duration"
        );
        assert_eq!(message["deliveryCount"], 1);
    }
    host.wait_for_messages("slow", 0).await;
    let log = host.log();
    assert_eq!(
        log.matches("handler finished").count(),
        1,
        "delivered once:\n{log}"
    );
    assert!(!log.contains("lock renewal failed"), "{log}");
    assert!(host.peek("slow/$DeadLetterQueue").await.is_empty());
}

#[tokio::test]
async fn batch() {
    let host = Host::start().await;
    host.create_queue("lines", json!({ "maxDeliveryCount": 2 }))
        .await;
    host.create_queue("batch-sizes", json!({})).await;
    // Waiting before the deploy, so the first invocations get full batches.
    for i in 0..50 {
        assert_eq!(host.send("lines", &format!("line-{i}")).await.status(), 201);
    }
    assert_eq!(host.send("lines", "dead").await.status(), 201);
    assert_eq!(host.send("lines", "retry").await.status(), 201);

    // A batch handler serves queues only.
    host.create_topic("orders").await;
    let r = host
        .deploy("batch-on-topic", &component(BATCH), "topic=orders")
        .await;
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap_or_default();
    assert!(text.contains("batch component"), "{text}");
    let r = host
        .deploy(
            "batch",
            &component(BATCH),
            "queue=lines&maxMessageBatchSize=257",
        )
        .await;
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap_or_default();
    assert!(
        text.contains("maxMessageBatchSize must be between 1 and 256"),
        "{text}"
    );

    let r = host
        .deploy(
            "batch",
            &component(BATCH),
            "queue=lines&maxMessageBatchSize=20",
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());

    // Each message is settled by its own outcome.
    let dead = host.wait_for_messages("lines/$DeadLetterQueue", 2).await;
    let reason_of = |body: &str| {
        dead.iter()
            .find(|m| m["body"] == body)
            .map(|m| m["deadLetterReason"].clone())
    };
    assert_eq!(reason_of("dead"), Some(json!("Rejected")));
    assert_eq!(reason_of("retry"), Some(json!("MaxDeliveryCountExceeded")));
    host.wait_for_messages("lines", 0).await;

    // Many messages per invocation, never more than the batch size; every
    // delivery was handed over once (52 messages, `retry` twice).
    let sizes: Vec<u64> = host
        .peek("batch-sizes")
        .await
        .iter()
        .map(|m| {
            m["body"]
                .as_str()
                .and_then(|b| b.parse().ok())
                .expect("a size")
        })
        .collect();
    assert_eq!(sizes.iter().sum::<u64>(), 53, "{sizes:?}");
    assert!(sizes.iter().all(|&n| (1..=20).contains(&n)), "{sizes:?}");
    assert_eq!(sizes.iter().max(), Some(&20), "{sizes:?}");
}

/// Sends `bodies` to `lines` (one delivery allowed) before the batch guest
/// is deployed on it, so they reach one invocation; returns the dead
/// letters' descriptions once all of them are there.
async fn dead_letter_descriptions_of_one_failed_batch(bodies: &[&str]) -> (Host, Vec<String>) {
    let host = Host::start().await;
    host.create_queue("lines", json!({ "maxDeliveryCount": 1 }))
        .await;
    host.create_queue("batch-sizes", json!({})).await;
    for body in bodies {
        assert_eq!(host.send("lines", body).await.status(), 201);
    }
    let r = host.deploy("batch", &component(BATCH), "queue=lines").await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let dead = host
        .wait_for_messages("lines/$DeadLetterQueue", bodies.len())
        .await;
    let descriptions = dead
        .iter()
        .map(|message| {
            assert_eq!(message["deadLetterReason"], "MaxDeliveryCountExceeded");
            message["deadLetterDescription"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    (host, descriptions)
}

#[tokio::test]
async fn batch_trap_abandons_every_message_of_the_batch() {
    let (host, descriptions) =
        dead_letter_descriptions_of_one_failed_batch(&["line-1", "trap", "line-2"]).await;
    // One invocation got all three and trapped: none of them completed.
    for description in &descriptions {
        assert!(description.contains("trapped"), "{description}");
    }
    assert_eq!(host.peek("batch-sizes").await[0]["body"], "3");
}

#[tokio::test]
async fn batch_returning_too_few_outcomes_abandons_the_whole_batch() {
    let (_host, descriptions) =
        dead_letter_descriptions_of_one_failed_batch(&["line-1", "short", "line-2"]).await;
    for description in &descriptions {
        assert!(
            description.contains("returned 2 outcomes for 3 messages"),
            "{description}"
        );
    }
}
