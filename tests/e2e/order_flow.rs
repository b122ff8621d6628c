//! The example integration flow, end to end.

use serde_json::{Value, json};

use crate::support::{FULFIL_ORDER, Host, VALIDATE_ORDER, component, event, order};

/// Sets up the flow as the README's demo does.
pub(crate) async fn deploy_order_flow(host: &Host) {
    host.create_topic("orders").await;
    host.create_topic("fulfilled").await;
    host.create_queue("fulfil", json!({})).await;
    host.create_queue("fulfilled-orders", json!({})).await;
    host.subscribe_queue("fulfilled", "to-queue", "fulfilled-orders", json!({}))
        .await;
    let r = host
        .deploy(
            "validate-order",
            &component(VALIDATE_ORDER),
            "topic=orders&eventTypes=orders.created",
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let r = host
        .deploy("fulfil-order", &component(FULFIL_ORDER), "queue=fulfil")
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
}

#[tokio::test]
async fn valid_orders_flow_to_fulfilled_and_invalid_order_is_dead_lettered_with_reason() {
    let host = Host::start().await;
    deploy_order_flow(&host).await;

    let mut bad = order("A-3");
    bad["lines"][0]["quantity"] = json!(0);
    let r = host
        .publish(
            "orders",
            json!([
                event("e1", "orders.created", "orders/A-1", order("A-1")),
                event("e2", "orders.created", "orders/A-2", order("A-2")),
                event("e3", "orders.created", "orders/A-3", bad),
            ]),
        )
        .await;
    assert_eq!(r.status(), 200);

    let fulfilled = host.wait_for_messages("fulfilled-orders", 2).await;
    let mut ids: Vec<String> = fulfilled
        .iter()
        .map(|m| {
            let body: Value =
                serde_json::from_str(m["body"].as_str().expect("text body")).expect("json body");
            assert_eq!(body["eventType"], "orders.fulfilled");
            assert_eq!(body["data"]["total_cents"], 3250);
            // The correlation id travels from the first step to the last.
            assert_eq!(m["correlationId"], body["data"]["id"]);
            body["data"]["id"].as_str().expect("id").to_string()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, ["A-1", "A-2"]);

    let dead = host
        .wait_for_messages("orders/subscriptions/validate-order/$DeadLetterQueue", 1)
        .await;
    assert_eq!(dead[0]["deadLetterReason"], "InvalidOrder");
    let description = dead[0]["deadLetterDescription"]
        .as_str()
        .expect("description");
    assert!(description.contains("quantity"), "{description}");
    assert_eq!(dead[0]["messageId"], "e3");

    // Nothing left behind in the intermediate queue.
    host.wait_for_messages("fulfil", 0).await;
}
