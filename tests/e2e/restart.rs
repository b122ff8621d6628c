//! What must survive a crash (`kill -9`) and restart.

use serde_json::{Value, json};

use crate::order_flow::deploy_order_flow;
use crate::support::{Host, broker_properties, event, order};

#[tokio::test]
async fn queued_messages_locks_and_deployed_functions_survive_a_crash() {
    let mut host = Host::start().await;
    deploy_order_flow(&host).await;
    host.create_queue("backlog", json!({})).await;
    for body in ["one", "two", "three"] {
        assert_eq!(host.send("backlog", body).await.status(), 201);
    }
    // Hold a lock on the first message across the crash.
    let r = host
        .http
        .post(host.at("/backlog/messages/head?timeout=1"))
        .send()
        .await
        .expect("receive");
    assert_eq!(r.status(), 201);

    host.crash_and_restart().await;

    let backlog = host.peek("backlog").await;
    let bodies: Vec<&str> = backlog
        .iter()
        .map(|m| m["body"].as_str().expect("body"))
        .collect();
    assert_eq!(bodies, ["one", "two", "three"]);
    // The lock died with the process; the delivery it made still counts.
    let r = host
        .http
        .post(host.at("/backlog/messages/head?timeout=1"))
        .send()
        .await
        .expect("receive");
    assert_eq!(r.status(), 201);
    let props = broker_properties(&r);
    assert_eq!(props["SequenceNumber"], 1);
    assert_eq!(props["DeliveryCount"], 2);

    let functions: Vec<Value> = host
        .http
        .get(host.at("/api/functions"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = functions
        .iter()
        .map(|f| f["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["fulfil-order", "validate-order"]);

    // The functions still run (from their precompiled artifacts).
    let r = host
        .publish(
            "orders",
            json!([event("after", "orders.created", "orders/R-1", order("R-1"))]),
        )
        .await;
    assert_eq!(r.status(), 200);
    let fulfilled = host.wait_for_messages("fulfilled-orders", 1).await;
    assert!(fulfilled[0]["body"].as_str().expect("body").contains("R-1"));

    // New messages continue the sequence after a restart: numbers only grow
    // (a restart may skip some, as the store reserves them in blocks).
    host.send("backlog", "four").await;
    let backlog = host.peek("backlog").await;
    let four = backlog.last().expect("message")["sequenceNumber"]
        .as_u64()
        .expect("sequenceNumber");
    assert!(four > 3, "`four` got sequence number {four} after 1..=3");
}

#[tokio::test]
async fn sequence_numbers_keep_increasing_across_a_crash_after_every_message_was_completed() {
    let mut host = Host::start().await;
    host.create_queue("numbers", json!({})).await;
    let mut highest = 0;
    for round in 0..3 {
        for i in 0..3 {
            assert_eq!(
                host.send("numbers", &format!("{round}-{i}")).await.status(),
                201
            );
        }
        // Receive-and-delete all of them: nothing is left in the store that
        // carries a sequence number, only the counter.
        for _ in 0..3 {
            let r = host
                .http
                .delete(host.at("/numbers/messages/head?timeout=1"))
                .send()
                .await
                .expect("receive and delete");
            assert_eq!(r.status(), 200);
            let props = broker_properties(&r);
            let seq = props["SequenceNumber"].as_u64().expect("SequenceNumber");
            assert!(
                seq > highest,
                "round {round}: sequence number {seq} after {highest}"
            );
            highest = seq;
        }
        assert!(host.peek("numbers").await.is_empty());
        host.crash_and_restart().await;
    }
}
