//! Event Grid publishing, fan-out, filters, topic keys, retries and dead
//! letters over HTTP.

use serde_json::{Value, json};
use sluice_host::auth::event_grid::generate_event_grid_token;

use crate::support::{Host, event};

#[tokio::test]
async fn publish_fans_out_to_every_matching_subscription() {
    let host = Host::start().await;
    host.create_topic("shop").await;
    host.create_queue("all", json!({})).await;
    host.create_queue("created", json!({})).await;
    host.create_queue("eu", json!({})).await;
    host.subscribe_queue("shop", "everything", "all", json!({}))
        .await;
    host.subscribe_queue(
        "shop",
        "only-created",
        "created",
        json!({ "includedEventTypes": ["orders.created"] }),
    )
    .await;
    host.subscribe_queue(
        "shop",
        "eu-subjects",
        "eu",
        json!({ "subjectBeginsWith": "/eu/" }),
    )
    .await;

    let r = host
        .publish(
            "shop",
            json!([
                event("1", "orders.created", "/eu/orders/1", json!({ "n": 1 })),
                event("2", "orders.shipped", "/us/orders/2", json!({ "n": 2 })),
            ]),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.expect("body"),
        "",
        "Event Grid answers an empty 200"
    );

    let all = host.wait_for_messages("all", 2).await;
    let created = host.wait_for_messages("created", 1).await;
    let eu = host.wait_for_messages("eu", 1).await;
    let first: Value =
        serde_json::from_str(created[0]["body"].as_str().expect("body")).expect("json");
    assert_eq!(first["eventType"], "orders.created");
    assert_eq!(first["topic"], "shop");
    assert_eq!(first["data"]["n"], 1);
    assert_eq!(eu[0]["messageId"], "1");
    assert_eq!(all.len(), 2);
}

#[tokio::test]
async fn cloud_events_in_batch_structured_and_binary_mode_are_accepted() {
    let host = Host::start().await;
    host.create_topic_with("ce", json!({ "inputSchema": "CloudEventSchemaV1_0" }))
        .await;
    host.create_queue("sink", json!({})).await;
    host.subscribe_queue("ce", "sink", "sink", json!({})).await;
    let ce = |id: &str| json!({ "specversion": "1.0", "id": id, "source": "/shop", "type": "orders.created", "data": { "id": id } });

    let batch = host
        .http
        .post(host.at("/topics/ce/api/events"))
        .header(
            "content-type",
            "application/cloudevents-batch+json; charset=utf-8",
        )
        .body(json!([ce("b1"), ce("b2")]).to_string())
        .send()
        .await
        .expect("batch");
    assert_eq!(batch.status(), 200);
    let single = host
        .http
        .post(host.at("/topics/ce/api/events"))
        .header("content-type", "application/cloudevents+json")
        .body(ce("s1").to_string())
        .send()
        .await
        .expect("single");
    assert_eq!(single.status(), 200);
    let binary = host
        .http
        .post(host.at("/topics/ce/api/events"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "bin1")
        .header("ce-source", "/shop")
        .header("ce-type", "orders.created")
        .header("content-type", "application/json")
        .body(r#"{"id":"bin1"}"#)
        .send()
        .await
        .expect("binary");
    assert_eq!(binary.status(), 200);

    let messages = host.wait_for_messages("sink", 4).await;
    let ids: Vec<&str> = messages
        .iter()
        .map(|m| m["messageId"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["b1", "b2", "s1", "bin1"]);
    let delivered: Value =
        serde_json::from_str(messages[3]["body"].as_str().expect("body")).expect("json");
    assert_eq!(
        delivered["specversion"], "1.0",
        "delivered in the schema it was published in"
    );
    assert_eq!(delivered["data"]["id"], "bin1");
}

#[tokio::test]
async fn malformed_events_are_refused_with_a_message_naming_the_field() {
    let host = Host::start().await;
    host.create_topic("strict").await;
    let mut no_type = event("1", "t", "s", json!({}));
    no_type.as_object_mut().expect("object").remove("eventType");
    let r = host.publish("strict", json!([no_type])).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json error");
    assert_eq!(
        body["error"]["message"],
        "event[0]: missing required property `eventType`"
    );

    let r = host.publish("strict", json!({ "not": "an array" })).await;
    assert_eq!(r.status(), 400);

    let r = host
        .publish("nope", json!([event("1", "t", "s", json!({}))]))
        .await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.expect("json error");
    assert_eq!(body["error"]["code"], "NotFound");

    let big = "x".repeat(1024 * 1024 + 1);
    let r = host
        .publish(
            "strict",
            json!([event("1", "t", "s", json!({ "big": big }))]),
        )
        .await;
    assert_eq!(r.status(), 413);
}

#[tokio::test]
async fn undeliverable_event_is_retried_on_the_schedule_then_dead_lettered() {
    let host = Host::start().await;
    host.create_topic("alerts").await;
    host.create_queue("pager", json!({})).await;
    let r = host
        .put_json(
            "/api/topics/alerts/subscriptions/page",
            json!({ "destination": { "queue": "pager" }, "retryPolicy": { "maxDeliveryAttempts": 3 } }),
        )
        .await;
    assert_eq!(r.status(), 201);
    // The destination disappears: every delivery attempt now fails.
    let r = host
        .http
        .delete(host.at("/api/queues/pager"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 200);

    assert_eq!(
        host.publish("alerts", json!([event("a1", "alert", "s", json!({}))]))
            .await
            .status(),
        200
    );
    let dead = host
        .wait_for_messages("alerts/subscriptions/page/$DeadLetterQueue", 1)
        .await;
    assert_eq!(dead[0]["deadLetterReason"], "MaxDeliveryAttemptsExceeded");
    assert_eq!(dead[0]["deliveryCount"], 3);
    let description = dead[0]["deadLetterDescription"]
        .as_str()
        .expect("description");
    assert!(
        description.contains("queue `pager` does not exist"),
        "{description}"
    );
}

#[tokio::test]
async fn a_topic_accepts_only_its_input_schema() {
    let host = Host::start().await;
    host.create_topic("eg").await;
    host.create_topic_with("ce", json!({ "inputSchema": "CloudEventSchemaV1_0" }))
        .await;
    let cloud_event = json!([{ "specversion": "1.0", "id": "1", "source": "/s", "type": "t" }]);
    let r = host
        .http
        .post(host.at("/topics/eg/api/events"))
        .header(
            "content-type",
            "application/cloudevents-batch+json; charset=utf-8",
        )
        .body(cloud_event.to_string())
        .send()
        .await
        .expect("publish");
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("EventGridSchema")),
        "{body}"
    );
    let r = host
        .publish("ce", json!([event("1", "t", "s", json!({}))]))
        .await;
    assert_eq!(r.status(), 400);
    let r = host
        .put_json("/api/topics/odd", json!({ "inputSchema": "Avro" }))
        .await;
    assert_eq!(r.status(), 400);
}

/// Publishes one event with only this credential header (no SAS); the status.
async fn publish_with(endpoint: &str, header: &str, value: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{endpoint}?api-version=2018-01-01"))
        .header(header, value)
        .header("content-type", "application/json")
        .body(json!([event("k", "t", "s", json!({}))]).to_string())
        .send()
        .await
        .expect("publish")
        .status()
        .as_u16()
}

#[tokio::test]
async fn topic_keys_authorise_publishers_and_a_regenerated_key_stops_working() {
    let host = Host::start().await;
    host.create_topic("orders").await;
    let keys: Value = host
        .http
        .post(host.at("/api/topics/orders/listKeys"))
        .send()
        .await
        .expect("listKeys")
        .json()
        .await
        .expect("json");
    let (key1, key2) = (
        keys["key1"].as_str().expect("key1").to_string(),
        keys["key2"].as_str().expect("key2").to_string(),
    );
    assert_ne!(key1, key2);
    // A publisher with only the topic key: no SAS token.
    let endpoint = host.at("/topics/orders/api/events");
    assert_eq!(publish_with(&endpoint, "aeg-sas-key", &key1).await, 200);
    assert_eq!(
        publish_with(&endpoint, "aeg-sas-key", "bm9wZQ==").await,
        401
    );
    let token = generate_event_grid_token(&endpoint, &key2, 4_102_444_800).expect("token");
    assert_eq!(publish_with(&endpoint, "aeg-sas-token", &token).await, 200);
    let expired = generate_event_grid_token(&endpoint, &key2, 1_000_000_000).expect("token");
    assert_eq!(
        publish_with(&endpoint, "aeg-sas-token", &expired).await,
        401
    );
    let no_credentials = reqwest::Client::new()
        .post(&endpoint)
        .header("content-type", "application/json")
        .body("[]")
        .send()
        .await
        .expect("send");
    assert_eq!(no_credentials.status(), 401);

    let r = host
        .http
        .post(host.at("/api/topics/orders/regenerateKey"))
        .json(&json!({ "keyName": "key1" }))
        .send()
        .await
        .expect("regenerate");
    assert_eq!(r.status(), 200);
    let renewed: Value = r.json().await.expect("json");
    assert_ne!(renewed["key1"], key1.as_str());
    assert_eq!(renewed["key2"], key2.as_str());
    assert_eq!(publish_with(&endpoint, "aeg-sas-key", &key1).await, 401);
    assert_eq!(publish_with(&endpoint, "aeg-sas-key", &key2).await, 200);
    let r = host
        .http
        .post(host.at("/api/topics/orders/regenerateKey"))
        .json(&json!({ "keyName": "key3" }))
        .send()
        .await
        .expect("regenerate");
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn advanced_filters_route_events_on_data_fields() {
    let host = Host::start().await;
    host.create_topic("shop").await;
    host.create_queue("big-eu", json!({})).await;
    host.subscribe_queue(
        "shop",
        "big-eu",
        "big-eu",
        json!({
            "advancedFilters": [
                { "operatorType": "NumberGreaterThan", "key": "data.total", "value": 100 },
                { "operatorType": "StringIn", "key": "data.region", "values": ["eu", "uk"] },
                { "operatorType": "StringContains", "key": "subject", "values": ["orders"] },
            ],
        }),
    )
    .await;
    let r = host
        .publish(
            "shop",
            json!([
                event(
                    "yes",
                    "orders.created",
                    "/orders/1",
                    json!({ "total": 250, "region": "EU" })
                ),
                event(
                    "small",
                    "orders.created",
                    "/orders/2",
                    json!({ "total": 50, "region": "eu" })
                ),
                event(
                    "us",
                    "orders.created",
                    "/orders/3",
                    json!({ "total": 500, "region": "us" })
                ),
                event(
                    "no-total",
                    "orders.created",
                    "/orders/4",
                    json!({ "region": "eu" })
                ),
            ]),
        )
        .await;
    assert_eq!(r.status(), 200);
    let matched = host.wait_for_messages("big-eu", 1).await;
    assert_eq!(matched[0]["messageId"], "yes");

    let too_many: Vec<Value> = (0..26)
        .map(|i| json!({ "operatorType": "IsNotNull", "key": format!("data.k{i}") }))
        .collect();
    let r = host
        .put_json(
            "/api/topics/shop/subscriptions/greedy",
            json!({ "destination": { "queue": "big-eu" }, "filter": { "advancedFilters": too_many } }),
        )
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("advancedFilters")),
        "{body}"
    );
}
