//! The `sluice` client verbs against a running host.

use std::process::Command;

use crate::support::{Host, SLUICE};

fn sluice(host: &Host, args: &[&str]) -> String {
    let output = Command::new(SLUICE)
        .env("SLUICE_CONNECTION_STRING", host.connection_string())
        .arg("--url")
        .arg(&host.url)
        .args(args)
        .output()
        .expect("run sluice");
    assert!(
        output.status.success(),
        "sluice {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn cli_creates_entities_sends_publishes_and_peeks() {
    let host = Host::start().await;
    sluice(
        &host,
        &["queue", "create", "inbox", "--max-delivery-count", "5"],
    );
    sluice(&host, &["topic", "create", "news"]);
    sluice(
        &host,
        &[
            "topic",
            "subscribe",
            "news",
            "to-inbox",
            "--queue",
            "inbox",
            "--event-type",
            "news.posted",
        ],
    );
    sluice(
        &host,
        &[
            "send",
            "inbox",
            "--body",
            "hello",
            "--message-id",
            "m1",
            "--property",
            "lang=en",
        ],
    );
    sluice(
        &host,
        &[
            "publish",
            "news",
            "--type",
            "news.posted",
            "--subject",
            "s",
            "--data",
            r#"{"title":"hi"}"#,
        ],
    );
    sluice(
        &host,
        &["publish", "news", "--type", "news.ignored", "--data", "{}"],
    );

    host.wait_for_messages("inbox", 2).await;
    let peek = sluice(&host, &["queue", "peek", "inbox"]);
    assert!(peek.contains("inbox: 2 message(s)"), "{peek}");
    assert!(peek.contains("id=m1"), "{peek}");
    assert!(peek.contains("body: hello"), "{peek}");
    assert!(peek.contains(r#""title":"hi""#), "{peek}");

    let list = sluice(&host, &["queue", "list"]);
    assert!(list.contains(r#""maxDeliveryCount": 5"#), "{list}");
    let dead = sluice(&host, &["queue", "dead-letters", "inbox"]);
    assert!(dead.contains("0 message(s)"), "{dead}");

    let output = Command::new(SLUICE)
        .env("SLUICE_CONNECTION_STRING", host.connection_string())
        .args(["--url", &host.url, "send", "nowhere", "--body", "x"])
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("queue `nowhere` does not exist"));
}

#[tokio::test]
async fn cli_manages_topic_keys_advanced_filters_and_event_dead_letters() {
    let host = Host::start().await;
    sluice(&host, &["topic", "create", "alerts", "--cloud-events"]);
    let keys: serde_json::Value =
        serde_json::from_str(&sluice(&host, &["topic", "keys", "alerts"])).expect("keys JSON");
    let renewed: serde_json::Value = serde_json::from_str(&sluice(
        &host,
        &["topic", "regenerate-key", "alerts", "key2"],
    ))
    .expect("keys JSON");
    assert_eq!(renewed["key1"], keys["key1"]);
    assert_ne!(renewed["key2"], keys["key2"]);

    sluice(&host, &["queue", "create", "pager"]);
    sluice(
        &host,
        &[
            "topic",
            "subscribe",
            "alerts",
            "critical",
            "--queue",
            "pager",
            "--max-delivery-attempts",
            "1",
            "--advanced-filter",
            r#"{"operatorType":"NumberGreaterThanOrEquals","key":"data.severity","value":3}"#,
        ],
    );
    // The destination goes away: the matching event dead-letters.
    sluice(&host, &["queue", "delete", "pager"]);
    for (id, severity) in [("low", "1"), ("high", "5")] {
        sluice(
            &host,
            &[
                "publish",
                "alerts",
                "--cloud-events",
                "--type",
                "alert.raised",
                "--id",
                id,
                "--data",
                &format!(r#"{{"severity":{severity}}}"#),
            ],
        );
    }
    host.wait_for_messages("alerts/subscriptions/critical/$DeadLetterQueue", 1)
        .await;
    let dead: serde_json::Value = serde_json::from_str(&sluice(
        &host,
        &["topic", "dead-letters", "alerts", "critical"],
    ))
    .expect("dead letters JSON");
    assert_eq!(dead[0]["id"], "high");
    assert_eq!(dead[0]["deadLetterReason"], "MaxDeliveryAttemptsExceeded");
    assert_eq!(dead[0]["lastDeliveryOutcome"], "NotFound");

    sluice(&host, &["queue", "create", "pager"]);
    sluice(&host, &["topic", "resubmit", "alerts", "critical"]);
    let delivered = host.wait_for_messages("pager", 1).await;
    assert_eq!(delivered[0]["messageId"], "high");
}

#[tokio::test]
async fn cli_sets_function_settings_and_shows_secret_names_only() {
    let host = Host::start().await;
    sluice(
        &host,
        &[
            "function",
            "settings",
            "crm-sync",
            "--config",
            "endpoint=http://crm.local",
            "--secret",
            "token=hunter2-token",
        ],
    );
    let shown: serde_json::Value =
        serde_json::from_str(&sluice(&host, &["function", "settings", "crm-sync"]))
            .expect("settings JSON");
    assert_eq!(shown["config"]["endpoint"], "http://crm.local");
    assert_eq!(shown["secrets"], serde_json::json!(["token"]));
    assert!(!shown.to_string().contains("hunter2-token"));
}
