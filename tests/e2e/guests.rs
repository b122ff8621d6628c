//! One test per test guest in tests/guests/.

use serde_json::json;

use crate::support::{ALWAYS_FAILS, BUSY, FULFIL_ORDER, Host, PANICS, component};

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
