//! The Service Bus management API (Atom XML), as ServiceBusAdministrationClient speaks it.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Host, settle_path};

/// What azure-servicebus (Python) sends for `create_queue(name, lock_duration=..., ...)`.
const QUEUE_ENTRY: &str = "<?xml version='1.0' encoding='utf-8'?>\n<ns0:entry xmlns:ns0=\"http://www.w3.org/2005/Atom\" \
    xmlns=\"http://schemas.microsoft.com/netservices/2010/10/servicebus/connect\"><ns0:content type=\"application/xml\">\
    <QueueDescription><LockDuration>PT13S</LockDuration><RequiresSession>false</RequiresSession>\
    <DeadLetteringOnMessageExpiration>true</DeadLetteringOnMessageExpiration><MaxDeliveryCount>7</MaxDeliveryCount>\
    </QueueDescription></ns0:content></ns0:entry>";

const TOPIC_ENTRY: &str = "<?xml version='1.0' encoding='utf-8'?>\n<ns0:entry xmlns:ns0=\"http://www.w3.org/2005/Atom\" \
    xmlns=\"http://schemas.microsoft.com/netservices/2010/10/servicebus/connect\"><ns0:content type=\"application/xml\">\
    <TopicDescription /></ns0:content></ns0:entry>";

/// .NET's subscription with its first rule inside (`DefaultRuleDescription`).
const SUBSCRIPTION_ENTRY: &str = "<entry xmlns=\"http://www.w3.org/2005/Atom\"><content type=\"application/xml\">\
    <SubscriptionDescription xmlns=\"http://schemas.microsoft.com/netservices/2010/10/servicebus/connect\">\
    <LockDuration>PT30S</LockDuration><DefaultRuleDescription><Filter p1:type=\"SqlFilter\" \
    xmlns:p1=\"http://www.w3.org/2001/XMLSchema-instance\"><SqlExpression>priority &gt; 3</SqlExpression><Parameters /></Filter>\
    <Name>high</Name></DefaultRuleDescription><MaxDeliveryCount>3</MaxDeliveryCount></SubscriptionDescription></content></entry>";

#[tokio::test]
async fn queues_and_topics_are_managed_with_atom_entries_and_show_runtime_counts() {
    let host = Host::start().await;
    let put = |path: &'static str, body: &'static str| {
        let host = &host;
        async move { Ok::<_, reqwest::Error>(put_entry(host, path, body, false).await) }
    };
    let r = put("/billing", QUEUE_ENTRY).await.expect("create");
    assert_eq!(r.status(), StatusCode::CREATED);
    let body = r.text().await.expect("entry");
    assert!(
        body.contains("<LockDuration>PT13S</LockDuration>"),
        "{body}"
    );
    assert!(
        body.contains("<MaxDeliveryCount>7</MaxDeliveryCount>"),
        "{body}"
    );
    assert_eq!(
        put("/billing", QUEUE_ENTRY).await.expect("again").status(),
        StatusCode::CONFLICT
    );

    // The queue works, and its entry shows what it holds.
    host.send("billing", "a").await;
    host.send("billing", "b").await;
    let r = host
        .http
        .post(host.at("/billing/messages/head?timeout=1"))
        .send()
        .await
        .expect("receive");
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let path = settle_path(&location);
    host.http
        .put(host.at(&format!("{path}?disposition=deadletter")))
        .send()
        .await
        .expect("dead-letter");
    let entry = host
        .http
        .get(host.at("/billing"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    assert!(
        entry.contains("<d2p1:ActiveMessageCount>1</d2p1:ActiveMessageCount>"),
        "{entry}"
    );
    assert!(
        entry.contains("<d2p1:DeadLetterMessageCount>1</d2p1:DeadLetterMessageCount>"),
        "{entry}"
    );

    let feed = host
        .http
        .get(host.at("/$Resources/Queues"))
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("feed");
    assert!(feed.starts_with("<feed"), "{feed}");
    assert_eq!(feed.matches("<entry").count(), 1, "{feed}");
    assert!(
        feed.contains("<title type=\"text\">billing</title>"),
        "{feed}"
    );

    // Topics, subscriptions with a rule inside, rules.
    assert_eq!(
        put("/alerts", TOPIC_ENTRY).await.expect("topic").status(),
        StatusCode::CREATED
    );
    let r = put("/alerts/Subscriptions/urgent", SUBSCRIPTION_ENTRY)
        .await
        .expect("subscription");
    assert_eq!(r.status(), StatusCode::CREATED);
    let rules = host
        .http
        .get(host.at("/alerts/Subscriptions/urgent/Rules"))
        .send()
        .await
        .expect("rules")
        .text()
        .await
        .expect("feed");
    assert!(rules.contains("priority &gt; 3"), "{rules}");
    assert!(
        !rules.contains("$Default"),
        "the given rule replaces the default one: {rules}"
    );

    for priority in ["1", "5"] {
        host.http
            .post(host.at("/alerts/messages"))
            .header("priority", priority)
            .body(format!("p{priority}"))
            .send()
            .await
            .expect("send");
    }
    let got = host
        .wait_for_messages("alerts/subscriptions/urgent", 1)
        .await;
    assert_eq!(got[0]["body"], "p5");

    // Bad entries say what is wrong.
    let r = put("/broken", "<entry><content><QueueDescription><LockDuration>PT1X</LockDuration></QueueDescription></content></entry>")
        .await
        .expect("bad");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let text = r.text().await.expect("error");
    assert!(
        text.contains("<Code>400</Code>") && text.contains("LockDuration"),
        "{text}"
    );

    assert_eq!(
        host.http
            .delete(host.at("/billing"))
            .send()
            .await
            .expect("delete")
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        host.http
            .get(host.at("/billing"))
            .send()
            .await
            .expect("get")
            .status(),
        StatusCode::NOT_FOUND
    );
    let r = host.put_json("/api/queues/billing", json!({})).await;
    assert_eq!(r.status(), StatusCode::CREATED, "the name is free again");
}

/// `PUT`s an Atom entry; with `if_match`, as the SDKs' Update* calls do.
async fn put_entry(host: &Host, path: &str, body: &str, if_match: bool) -> reqwest::Response {
    let mut request = host
        .http
        .put(host.at(path))
        .header(
            "content-type",
            "application/atom+xml;type=entry;charset=utf-8",
        )
        .body(body.to_string());
    if if_match {
        request = request.header("If-Match", "*");
    }
    request.send().await.expect("PUT an entry")
}

/// An Atom entry with `description` inside, as the SDKs send it.
fn entry(description: &str) -> String {
    format!(
        "<?xml version='1.0' encoding='utf-8'?>\n<entry xmlns=\"http://www.w3.org/2005/Atom\"><content type=\"application/xml\">{description}</content></entry>"
    )
}

#[tokio::test]
async fn put_with_if_match_updates_an_entity_in_place_and_the_change_survives_a_restart() {
    let mut host = Host::start().await;
    let ns = "xmlns=\"http://schemas.microsoft.com/netservices/2010/10/servicebus/connect\"";
    let r = put_entry(&host, "/billing", QUEUE_ENTRY, false).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    host.send("billing", "kept").await;

    // UpdateQueue: a lower max delivery count and a shorter lock.
    let update = entry(&format!(
        "<QueueDescription {ns}><LockDuration>PT5S</LockDuration><MaxDeliveryCount>2</MaxDeliveryCount>\
         <DeadLetteringOnMessageExpiration>true</DeadLetteringOnMessageExpiration></QueueDescription>"
    ));
    let r = put_entry(&host, "/billing", &update, true).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.expect("entry");
    assert!(body.contains("<LockDuration>PT5S</LockDuration>"), "{body}");
    assert!(
        body.contains("<MaxDeliveryCount>2</MaxDeliveryCount>"),
        "{body}"
    );
    assert!(
        body.contains("<d2p1:ActiveMessageCount>1</d2p1:ActiveMessageCount>"),
        "the messages stay: {body}"
    );

    // The new count applies: two abandons dead-letter the message.
    for attempt in 1..=2 {
        let (props, path, text) = host.receive_locked("billing", 5).await.expect("a message");
        assert_eq!(text, "kept");
        assert_eq!(props["DeliveryCount"], attempt);
        let r = host.http.put(host.at(&path)).send().await.expect("abandon");
        assert!(r.status().is_success(), "{}", r.status());
    }
    let dead = host.wait_for_messages("billing/$DeadLetterQueue", 1).await;
    assert_eq!(dead.len(), 1);

    // Sessions cannot be switched on; a missing queue is not created.
    let sessions = entry(&format!(
        "<QueueDescription {ns}><RequiresSession>true</RequiresSession></QueueDescription>"
    ));
    let r = put_entry(&host, "/billing", &sessions, true).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        r.text()
            .await
            .expect("body")
            .contains("requiresSession cannot be changed"),
    );
    let r = put_entry(&host, "/nowhere", &update, true).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // UpdateTopic and UpdateSubscription.
    let r = put_entry(&host, "/alerts", TOPIC_ENTRY, false).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let topic = entry(&format!(
        "<TopicDescription {ns}><DefaultMessageTimeToLive>PT1H</DefaultMessageTimeToLive></TopicDescription>"
    ));
    let r = put_entry(&host, "/alerts", &topic, true).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.text()
            .await
            .expect("entry")
            .contains("<DefaultMessageTimeToLive>PT1H</DefaultMessageTimeToLive>")
    );
    let r = put_entry(
        &host,
        "/alerts/Subscriptions/urgent",
        SUBSCRIPTION_ENTRY,
        false,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let subscription = entry(&format!(
        "<SubscriptionDescription {ns}><LockDuration>PT45S</LockDuration><MaxDeliveryCount>9</MaxDeliveryCount></SubscriptionDescription>"
    ));
    let r = put_entry(&host, "/alerts/Subscriptions/urgent", &subscription, true).await;
    assert_eq!(r.status(), StatusCode::OK);
    let rules = host
        .http
        .get(host.at("/alerts/Subscriptions/urgent/Rules"))
        .send()
        .await
        .expect("rules")
        .text()
        .await
        .expect("feed");
    assert!(
        rules.contains("priority &gt; 3"),
        "an update keeps the rules: {rules}"
    );

    // The changes are durable.
    host.crash_and_restart().await;
    let host = &host;
    let get = |path: &'static str| async move {
        host.http
            .get(host.at(path))
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("body")
    };
    let queue = get("/billing").await;
    assert!(
        queue.contains("<MaxDeliveryCount>2</MaxDeliveryCount>"),
        "{queue}"
    );
    let subscription = get("/alerts/Subscriptions/urgent").await;
    assert!(
        subscription.contains("<LockDuration>PT45S</LockDuration>")
            && subscription.contains("<MaxDeliveryCount>9</MaxDeliveryCount>"),
        "{subscription}"
    );
    let topic = get("/alerts").await;
    assert!(
        topic.contains("<DefaultMessageTimeToLive>PT1H</DefaultMessageTimeToLive>"),
        "{topic}"
    );
}
