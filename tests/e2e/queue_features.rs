//! Service Bus queue features over HTTP: time-to-live, scheduling,
//! duplicate detection, deferral, modified properties, batch receive,
//! forwarding, resubmit and sessions.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Host, PANICS, broker_properties, component, settle_path};

async fn send_with(host: &Host, entity: &str, body: &str, props: Value) -> StatusCode {
    host.http
        .post(host.at(&format!("/{entity}/messages")))
        .header("BrokerProperties", props.to_string())
        .header("content-type", "text/plain")
        .body(body.to_string())
        .send()
        .await
        .expect("send")
        .status()
}

#[tokio::test]
async fn expired_message_is_dead_lettered_with_ttl_expired_exception_when_enabled() {
    let host = Host::start().await;
    host.create_queue("short", json!({ "deadLetteringOnMessageExpiration": true }))
        .await;
    host.create_queue("drop", json!({ "defaultMessageTimeToLiveSecs": 1 }))
        .await;
    assert_eq!(
        send_with(&host, "short", "stale", json!({ "TimeToLive": 0.5 })).await,
        StatusCode::CREATED
    );
    assert_eq!(
        send_with(&host, "short", "fresh", json!({})).await,
        StatusCode::CREATED
    );
    host.send("drop", "gone").await;

    let dead = host.wait_for_messages("short/$DeadLetterQueue", 1).await;
    assert_eq!(dead[0]["body"], "stale");
    assert_eq!(dead[0]["deadLetterReason"], "TTLExpiredException");
    let (_, _, body) = host
        .receive_locked("short", 1)
        .await
        .expect("the fresh one is still there");
    assert_eq!(body, "fresh");
    // Without dead-lettering on expiration, an expired message is simply dropped.
    host.wait_for_messages("drop", 0).await;
    assert!(host.peek("drop/$DeadLetterQueue").await.is_empty());
}

#[tokio::test]
async fn scheduled_message_appears_at_its_time_and_can_be_cancelled_before() {
    let host = Host::start().await;
    host.create_queue("later", json!({})).await;
    let soon = time::OffsetDateTime::now_utc() + time::Duration::milliseconds(1500);
    let when = soon
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    send_with(
        &host,
        "later",
        "kept",
        json!({ "ScheduledEnqueueTimeUtc": when }),
    )
    .await;
    send_with(
        &host,
        "later",
        "cancelled",
        json!({ "ScheduledEnqueueTimeUtc": when }),
    )
    .await;

    let peeked = host.peek("later").await;
    assert_eq!(peeked.len(), 2);
    assert!(peeked.iter().all(|m| m["state"] == "scheduled"));
    assert!(
        host.receive_locked("later", 1).await.is_none(),
        "nothing is visible before its time"
    );
    let r = host
        .http
        .delete(host.at("/later/messages/2"))
        .send()
        .await
        .expect("cancel");
    assert_eq!(r.status(), StatusCode::OK);
    let r = host
        .http
        .delete(host.at("/later/messages/2"))
        .send()
        .await
        .expect("cancel again");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (props, _, body) = host.receive_locked("later", 1).await.expect("visible now");
    assert_eq!(body, "kept");
    assert!(props["ScheduledEnqueueTimeUtc"].is_string());
    assert!(
        host.receive_locked("later", 1).await.is_none(),
        "the cancelled one never comes"
    );
}

#[tokio::test]
async fn duplicate_message_id_within_the_window_is_dropped() {
    let host = Host::start().await;
    host.create_queue("dedup", json!({ "requiresDuplicateDetection": true, "duplicateDetectionHistoryTimeWindowSecs": 60 }))
        .await;
    for body in ["first", "second"] {
        assert_eq!(
            send_with(&host, "dedup", body, json!({ "MessageId": "order-1" })).await,
            StatusCode::CREATED
        );
    }
    send_with(&host, "dedup", "other", json!({ "MessageId": "order-2" })).await;
    let bodies: Vec<Value> = host
        .peek("dedup")
        .await
        .iter()
        .map(|m| m["body"].clone())
        .collect();
    assert_eq!(bodies, [json!("first"), json!("other")]);

    // The window survives a restart.
    let mut host = host;
    host.crash_and_restart().await;
    send_with(&host, "dedup", "third", json!({ "MessageId": "order-1" })).await;
    assert_eq!(host.peek("dedup").await.len(), 2);
}

#[tokio::test]
async fn deferred_message_is_received_only_by_its_sequence_number() {
    let host = Host::start().await;
    host.create_queue("defer", json!({})).await;
    host.send("defer", "later").await;
    host.send("defer", "now").await;
    let (props, path, _) = host.receive_locked("defer", 1).await.expect("first");
    let seq = props["SequenceNumber"].as_u64().expect("seq");
    let r = host
        .http
        .put(host.at(&format!("{path}?disposition=defer")))
        .send()
        .await
        .expect("defer");
    assert_eq!(r.status(), StatusCode::OK);

    let (_, now_path, body) = host.receive_locked("defer", 1).await.expect("second");
    assert_eq!(body, "now");
    host.http
        .delete(host.at(&now_path))
        .send()
        .await
        .expect("complete");
    assert!(
        host.receive_locked("defer", 1).await.is_none(),
        "a deferred message is not delivered by receive"
    );
    assert_eq!(host.peek("defer").await[0]["state"], "deferred");

    let r = host
        .http
        .post(host.at(&format!("/defer/messages/{seq}")))
        .send()
        .await
        .expect("receive deferred");
    assert_eq!(r.status(), StatusCode::CREATED);
    let props = broker_properties(&r);
    assert_eq!(props["State"], "Deferred");
    assert_eq!(props["DeliveryCount"], 2);
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let path = settle_path(&location);
    assert_eq!(
        host.http
            .delete(host.at(&path))
            .send()
            .await
            .expect("complete")
            .status(),
        StatusCode::OK
    );
    assert!(host.peek("defer").await.is_empty());
}

#[tokio::test]
async fn abandon_can_modify_user_properties_and_dead_letter_takes_a_reason() {
    let host = Host::start().await;
    host.create_queue("props", json!({})).await;
    host.send("props", "m").await;
    let (_, path, _) = host.receive_locked("props", 1).await.expect("delivery");
    let r = host
        .http
        .put(host.at(&path))
        .json(&json!({ "propertiesToModify": { "attempt": "1", "stage": "retry" } }))
        .send()
        .await
        .expect("abandon");
    assert_eq!(r.status(), StatusCode::OK);
    let peeked = host.peek("props").await;
    let properties = &peeked[0]["userProperties"];
    assert_eq!(properties["attempt"], "1");
    assert_eq!(properties["stage"], "retry");

    let (_, path, _) = host.receive_locked("props", 1).await.expect("redelivery");
    let r = host
        .http
        .put(host.at(&format!("{path}?disposition=deadletter")))
        .header("DeadLetterReason", "\"BadInput\"")
        .header("DeadLetterErrorDescription", "\"field x missing\"")
        .send()
        .await
        .expect("dead-letter");
    assert_eq!(r.status(), StatusCode::OK);
    let dead = host.peek("props/$DeadLetterQueue").await;
    assert_eq!(dead[0]["deadLetterReason"], "BadInput");
    assert_eq!(dead[0]["deadLetterDescription"], "field x missing");
}

#[tokio::test]
async fn batch_receive_long_polls_and_returns_up_to_max_messages() {
    let host = Host::start().await;
    host.create_queue("batch", json!({})).await;
    // Nothing there: the receive waits, then a message arriving wakes it.
    let waiting = {
        let http = host.http.clone();
        let url = host.at("/api/receive?entity=batch&max=10&timeout=10");
        tokio::spawn(async move {
            http.post(url)
                .send()
                .await
                .expect("receive")
                .json::<Vec<Value>>()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    host.send("batch", "wake").await;
    let first = waiting.await.expect("join").expect("json");
    assert_eq!(first.len(), 1);
    assert!(first[0]["lockToken"].is_string());

    for i in 0..5 {
        host.send("batch", &format!("m{i}")).await;
    }
    let r = host
        .http
        .post(host.at("/batch/messages/head?timeout=1&maxMessages=3"))
        .send()
        .await
        .expect("batch receive");
    assert_eq!(r.status(), StatusCode::CREATED);
    let items: Vec<Value> = r.json().await.expect("json");
    let bodies: Vec<&str> = items
        .iter()
        .map(|m| m["Body"].as_str().expect("body"))
        .collect();
    assert_eq!(bodies, ["m0", "m1", "m2"]);
    assert!(items[0]["BrokerProperties"]["LockToken"].is_string());

    // Peek browses from a sequence number without locking.
    let from: Vec<Value> = host
        .http
        .get(host.at("/api/messages/batch?from=5&max=10"))
        .send()
        .await
        .expect("peek")
        .json()
        .await
        .expect("json");
    let seqs: Vec<u64> = from
        .iter()
        .map(|m| m["sequenceNumber"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, [5, 6]);
}

#[tokio::test]
async fn forward_to_and_forward_dead_lettered_messages_to_move_messages_on() {
    let host = Host::start().await;
    host.create_queue("final", json!({})).await;
    host.create_queue("parking", json!({})).await;
    host.create_queue("entry", json!({ "forwardTo": "final" }))
        .await;
    host.create_queue(
        "strict",
        json!({ "maxDeliveryCount": 1, "forwardDeadLetteredMessagesTo": "parking" }),
    )
    .await;

    host.send("entry", "via entry").await;
    let forwarded = host.wait_for_messages("final", 1).await;
    assert_eq!(forwarded[0]["body"], "via entry");
    assert!(host.peek("entry").await.is_empty());

    host.send("strict", "poison").await;
    let (_, path, _) = host.receive_locked("strict", 1).await.expect("delivery");
    host.http.put(host.at(&path)).send().await.expect("abandon");
    let parked = host.wait_for_messages("parking", 1).await;
    assert_eq!(parked[0]["body"], "poison");
    assert_eq!(
        parked[0]["userProperties"]["DeadLetterReason"],
        "MaxDeliveryCountExceeded"
    );
    host.wait_for_messages("strict/$DeadLetterQueue", 0).await;
}

#[tokio::test]
async fn resubmit_moves_dead_letters_back_as_new_messages() {
    let host = Host::start().await;
    host.create_queue("again", json!({ "maxDeliveryCount": 1 }))
        .await;
    host.send("again", "retry me").await;
    let (_, path, _) = host.receive_locked("again", 1).await.expect("delivery");
    host.http.put(host.at(&path)).send().await.expect("abandon");
    host.wait_for_messages("again/$DeadLetterQueue", 1).await;

    let r = host
        .http
        .post(host.at("/api/resubmit?queue=again"))
        .send()
        .await
        .expect("resubmit");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.expect("json")["resubmitted"], 1);
    assert!(host.peek("again/$DeadLetterQueue").await.is_empty());
    let (props, _, body) = host
        .receive_locked("again", 1)
        .await
        .expect("back in the queue");
    assert_eq!(body, "retry me");
    assert_eq!(props["DeliveryCount"], 1);
    assert_eq!(props["SequenceNumber"], 2);
}

#[tokio::test]
async fn session_messages_go_in_order_to_one_receiver_and_keep_state() {
    let host = Host::start().await;
    host.create_queue("orders", json!({ "requiresSession": true }))
        .await;
    let r = send_with(&host, "orders", "no session", json!({})).await;
    assert_eq!(r, StatusCode::BAD_REQUEST);
    for (session, body) in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("a", "a3")] {
        assert_eq!(
            send_with(&host, "orders", body, json!({ "SessionId": session })).await,
            StatusCode::CREATED
        );
    }
    let r = host
        .http
        .post(host.at("/orders/messages/head?timeout=0"))
        .send()
        .await
        .expect("plain receive");
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "a session queue needs a session receiver"
    );

    let accept = |id: Option<&str>| {
        let mut url = host.at("/api/sessions/accept?queue=orders&timeout=1");
        if let Some(id) = id {
            url.push_str(&format!("&sessionId={id}"));
        }
        host.http.post(url).send()
    };
    let first: Value = accept(None)
        .await
        .expect("accept")
        .json()
        .await
        .expect("json");
    assert_eq!(
        first["sessionId"], "a",
        "the session with the oldest message comes first"
    );
    let token = first["lockToken"].as_str().expect("token").to_string();
    // Held: nobody else gets session a.
    assert_eq!(
        accept(Some("a")).await.expect("accept").status(),
        StatusCode::NO_CONTENT
    );
    let second: Value = accept(None)
        .await
        .expect("accept")
        .json()
        .await
        .expect("json");
    assert_eq!(second["sessionId"], "b");

    let url = |action: &str| {
        host.at(&format!(
            "/api/sessions/{action}?queue=orders&sessionId=a&lockToken={token}"
        ))
    };
    let got: Vec<Value> = host
        .http
        .post(format!("{}&max=10&mode=receiveAndDelete", url("receive")))
        .send()
        .await
        .expect("receive")
        .json()
        .await
        .expect("json");
    let bodies: Vec<&str> = got
        .iter()
        .map(|m| m["body"].as_str().expect("body"))
        .collect();
    assert_eq!(bodies, ["a1", "a2", "a3"]);

    assert_eq!(
        host.http
            .put(url("state"))
            .body("step 3 of 5")
            .send()
            .await
            .expect("set")
            .status(),
        StatusCode::OK
    );
    let state = host.http.get(url("state")).send().await.expect("get");
    assert_eq!(state.text().await.expect("state"), "step 3 of 5");
    assert_eq!(
        host.http
            .post(url("renew"))
            .send()
            .await
            .expect("renew")
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        host.http
            .post(url("release"))
            .send()
            .await
            .expect("release")
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        host.http
            .post(url("renew"))
            .send()
            .await
            .expect("renew")
            .status(),
        StatusCode::GONE
    );
    let again: Value = accept(Some("a"))
        .await
        .expect("accept")
        .json()
        .await
        .expect("json");
    assert_eq!(
        again["sessionId"], "a",
        "a released session can be accepted again"
    );
}

#[tokio::test]
async fn session_enabled_queue_triggers_a_handler_per_session() {
    let host = Host::start().await;
    host.create_queue("jobs", json!({ "requiresSession": true }))
        .await;
    assert_eq!(
        host.deploy("worker", &component(PANICS), "queue=jobs")
            .await
            .status(),
        201
    );
    for i in 0..6 {
        let session = if i % 2 == 0 { "even" } else { "odd" };
        send_with(
            &host,
            "jobs",
            &format!("job {i}"),
            json!({ "SessionId": session }),
        )
        .await;
    }
    host.wait_for_messages("jobs", 0).await;
    assert!(host.peek("jobs/$DeadLetterQueue").await.is_empty());
}

#[tokio::test]
async fn topic_copies_each_message_to_every_subscription_whose_rules_match() {
    let host = Host::start().await;
    let host = &host;
    let put = |path: String, body: Value| async move { host.put_json(&path, body).await };
    assert_eq!(
        put("/api/servicebus/topics/sales".into(), json!({}))
            .await
            .status(),
        StatusCode::CREATED
    );
    for sub in ["all", "eu", "big", "vip"] {
        let r = put(
            format!("/api/servicebus/topics/sales/subscriptions/{sub}"),
            json!({}),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    // Replace the default rule with filters.
    for (sub, filter) in [
        (
            "eu",
            json!({ "type": "sql", "expression": "region IN ('de', 'fr') AND sys.Label LIKE 'order%'" }),
        ),
        (
            "big",
            json!({ "type": "sql", "expression": "amount > 100 AND NOT EXISTS(test)" }),
        ),
        (
            "vip",
            json!({ "type": "correlation", "correlationId": "vip-1", "properties": { "tier": "gold" } }),
        ),
    ] {
        let r = host
            .http
            .delete(host.at(&format!(
                "/api/servicebus/topics/sales/subscriptions/{sub}/rules/$Default"
            )))
            .send()
            .await
            .expect("delete rule");
        assert_eq!(r.status(), StatusCode::OK);
        let r = put(
            format!("/api/servicebus/topics/sales/subscriptions/{sub}/rules/only"),
            filter,
        )
        .await;
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "{}",
            r.text().await.unwrap_or_default()
        );
    }
    let r = put(
        "/api/servicebus/topics/sales/subscriptions/eu/rules/bad".into(),
        json!({ "type": "sql", "expression": "region = " }),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.expect("body").contains("SQL filter"));

    let send = |body: &'static str, props: Value, region: &'static str, amount: &'static str| {
        host.http
            .post(host.at("/sales/messages"))
            .header("BrokerProperties", props.to_string())
            .header("region", format!("\"{region}\""))
            .header("amount", amount)
            .body(body)
            .send()
    };
    send("m1", json!({ "Label": "order.created" }), "de", "50")
        .await
        .expect("send");
    send("m2", json!({ "Label": "invoice" }), "fr", "500")
        .await
        .expect("send");
    send("m3", json!({ "CorrelationId": "vip-1" }), "us", "5")
        .await
        .expect("send");

    let bodies = |messages: Vec<Value>| {
        messages
            .iter()
            .map(|m| m["body"].as_str().expect("b").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        bodies(host.wait_for_messages("sales/subscriptions/all", 3).await),
        ["m1", "m2", "m3"]
    );
    assert_eq!(
        bodies(host.wait_for_messages("sales/subscriptions/eu", 1).await),
        ["m1"]
    );
    assert_eq!(
        bodies(host.wait_for_messages("sales/subscriptions/big", 1).await),
        ["m2"]
    );
    // The correlation filter also needs tier=gold, which m3 lacks.
    assert!(host.peek("sales/subscriptions/vip").await.is_empty());

    // Subscriptions are queues: receive and complete as usual.
    let (_, path, body) = host
        .receive_locked("sales/subscriptions/eu", 1)
        .await
        .expect("receive");
    assert_eq!(body, "m1");
    assert_eq!(
        host.http
            .delete(host.at(&path))
            .send()
            .await
            .expect("complete")
            .status(),
        StatusCode::OK
    );

    let subs: Vec<Value> = host
        .http
        .get(host.at("/api/servicebus/topics/sales/subscriptions"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(subs.len(), 4);
    let r = put("/api/queues/sales".into(), json!({})).await;
    assert_eq!(
        r.status(),
        StatusCode::CONFLICT,
        "queues and topics share names"
    );
}
