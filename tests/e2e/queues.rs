//! Service Bus REST semantics over HTTP: send, peek-lock, settle, dead-letter.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Host, broker_properties, settle_path};

#[tokio::test]
async fn sent_message_is_received_under_peek_lock_and_completed() {
    let host = Host::start().await;
    host.create_queue("orders", json!({})).await;
    let r = host
        .http
        .post(host.at("/orders/messages"))
        .header(
            "BrokerProperties",
            r#"{"MessageId":"m-1","CorrelationId":"c-1","Label":"order"}"#,
        )
        .header("Priority", "\"High\"")
        .header("content-type", "application/json")
        .body(r#"{"id":1}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);

    // Clients send capitalised paths; they match.
    let r = host
        .http
        .post(host.at("/orders/Messages/Head?timeout=2"))
        .send()
        .await
        .expect("receive");
    assert_eq!(r.status(), StatusCode::CREATED);
    let props = broker_properties(&r);
    assert_eq!(props["MessageId"], "m-1");
    assert_eq!(props["CorrelationId"], "c-1");
    assert_eq!(props["Label"], "order");
    assert_eq!(props["DeliveryCount"], 1);
    assert_eq!(props["SequenceNumber"], 1);
    assert!(
        props["LockedUntilUtc"]
            .as_str()
            .expect("locked until")
            .ends_with("GMT")
    );
    assert_eq!(r.headers()["priority"], "\"High\"");
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    assert!(location.ends_with(&format!(
        "/orders/messages/1/{}",
        props["LockToken"].as_str().expect("token")
    )));
    assert_eq!(r.text().await.expect("body"), r#"{"id":1}"#);

    let path = settle_path(&location);
    let r = host
        .http
        .delete(host.at(&path))
        .send()
        .await
        .expect("complete");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        host.receive_locked("orders", 2).await.is_none(),
        "completed messages never come back"
    );
}

#[tokio::test]
async fn abandoned_message_is_redelivered_with_incremented_delivery_count() {
    let host = Host::start().await;
    host.create_queue("work", json!({})).await;
    host.send("work", "job").await;
    let (props, path, _) = host
        .receive_locked("work", 2)
        .await
        .expect("first delivery");
    assert_eq!(props["DeliveryCount"], 1);
    assert_eq!(
        host.http
            .put(host.at(&path))
            .send()
            .await
            .expect("abandon")
            .status(),
        StatusCode::OK
    );
    let (props, _, body) = host.receive_locked("work", 2).await.expect("redelivery");
    assert_eq!(props["DeliveryCount"], 2);
    assert_eq!(body, "job");
}

#[tokio::test]
async fn expired_lock_makes_the_message_available_again() {
    let host = Host::start().await;
    host.create_queue("slow", json!({ "lockDurationSecs": 1 }))
        .await;
    host.send("slow", "job").await;
    let (_, stale_path, _) = host
        .receive_locked("slow", 2)
        .await
        .expect("first delivery");
    let (props, _, _) = host
        .receive_locked("slow", 2)
        .await
        .expect("redelivered after the lock expired");
    assert_eq!(props["DeliveryCount"], 2);
    // The first receiver's lock is gone: settling with it fails and changes nothing.
    let r = host
        .http
        .delete(host.at(&stale_path))
        .send()
        .await
        .expect("complete");
    assert_eq!(r.status(), StatusCode::GONE);
    assert!(
        r.text()
            .await
            .expect("body")
            .contains("<Error><Code>410</Code>")
    );
    assert_eq!(host.peek("slow").await.len(), 1);
}

#[tokio::test]
async fn renewed_lock_keeps_the_message_locked() {
    let host = Host::start().await;
    host.create_queue("renew", json!({ "lockDurationSecs": 2 }))
        .await;
    host.send("renew", "job").await;
    let (_, path, _) = host.receive_locked("renew", 2).await.expect("delivery");
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        assert_eq!(
            host.http
                .post(host.at(&path))
                .send()
                .await
                .expect("renew")
                .status(),
            StatusCode::OK
        );
    }
    let r = host
        .http
        .post(host.at("/renew/messages/head?timeout=0"))
        .send()
        .await
        .expect("receive");
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "still locked after 2.4 s thanks to renewals"
    );
    assert_eq!(
        host.http
            .delete(host.at(&path))
            .send()
            .await
            .expect("complete")
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn message_delivered_max_delivery_count_times_is_dead_lettered() {
    let host = Host::start().await;
    host.create_queue("fragile", json!({ "maxDeliveryCount": 2 }))
        .await;
    host.send("fragile", "poison").await;
    for _ in 0..2 {
        let (_, path, _) = host.receive_locked("fragile", 2).await.expect("delivery");
        host.http.put(host.at(&path)).send().await.expect("abandon");
    }
    assert!(host.receive_locked("fragile", 2).await.is_none());
    let (props, path, body) = host
        .receive_locked("fragile/$DeadLetterQueue", 2)
        .await
        .expect("dead letter");
    assert_eq!(body, "poison");
    assert_eq!(props["State"], "Deadlettered");
    assert_eq!(
        host.http
            .delete(host.at(&path))
            .send()
            .await
            .expect("complete")
            .status(),
        StatusCode::OK
    );
    assert!(host.peek("fragile/$DeadLetterQueue").await.is_empty());
}

#[tokio::test]
async fn receive_and_delete_removes_the_message_and_sequence_numbers_increase() {
    let host = Host::start().await;
    host.create_queue("fifo", json!({})).await;
    for body in ["a", "b", "c"] {
        host.send("fifo", body).await;
    }
    let mut seqs = Vec::new();
    for expected in ["a", "b", "c"] {
        let r = host
            .http
            .delete(host.at("/fifo/messages/head?timeout=1"))
            .send()
            .await
            .expect("receive");
        assert_eq!(r.status(), StatusCode::OK);
        let props = broker_properties(&r);
        seqs.push(props["SequenceNumber"].as_u64().expect("seq"));
        assert_eq!(r.text().await.expect("body"), expected);
    }
    assert_eq!(seqs, [1, 2, 3]);
    let r = host
        .http
        .delete(host.at("/fifo/messages/head?timeout=0"))
        .send()
        .await
        .expect("receive");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let host = Host::start().await;
    host.create_queue("small", json!({ "maxMessageSizeBytes": 10 }))
        .await;

    let r = host.send("missing", "x").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        r.text().await.expect("body"),
        "<Error><Code>404</Code><Detail>queue `missing` does not exist</Detail></Error>"
    );

    let r = host.send("small", "more than ten bytes").await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        r.text()
            .await
            .expect("body")
            .contains("exceeds the 10-byte limit")
    );

    let r = host
        .http
        .post(host.at("/small/messages"))
        .header("BrokerProperties", "{not json")
        .body("x")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        r.text()
            .await
            .expect("body")
            .contains("BrokerProperties header is not valid JSON")
    );

    let r = host
        .http
        .delete(host.at("/small/messages/1/not-a-token"))
        .send()
        .await
        .expect("complete");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let r = host
        .put_json("/api/queues/bad", json!({ "lockDurationSecs": 900 }))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("lockDurationSecs must be between 1 and 300")
    );

    let r = host.put_json("/api/queues/small", json!({})).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);

    let r = host.put_json("/api/queues/bad%20name", json!({})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}
