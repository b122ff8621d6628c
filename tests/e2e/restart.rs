//! What must survive a crash (`kill -9`) and restart.

use serde_json::{Value, json};

use crate::order_flow::deploy_order_flow;
use crate::support::{Host, event, order};

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
    let props: Value =
        serde_json::from_str(r.headers()["brokerproperties"].to_str().expect("h")).expect("json");
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

    // New messages continue the sequence after a restart.
    host.send("backlog", "four").await;
    let backlog = host.peek("backlog").await;
    assert_eq!(backlog.last().expect("message")["sequenceNumber"], 4);
}
