//! The `hostile` test guest, one misbehaviour per test: each invocation ends
//! with a clear reason, the message is abandoned and then dead-lettered with
//! that reason, and a healthy function on the same host keeps completing
//! its messages meanwhile.

use serde_json::json;

use crate::support::{BUSY, HOSTILE, Host, component};

/// Deploys `hostile` on queue `hostile` (2 deliveries, 1 s deadline, 16 MiB,
/// 16 KiB of log) and the healthy `busy` on `healthy`; sends `mode` to the
/// first and five quick jobs to the second. Waits until the healthy jobs are
/// done, then returns the host with the hostile message's fate to inspect.
async fn misbehave(mode: &str) -> Host {
    let host = Host::start().await;
    host.create_queue("hostile", json!({ "maxDeliveryCount": 2 }))
        .await;
    host.create_queue("healthy", json!({})).await;
    let r = host
        .deploy(
            "hostile",
            &component(HOSTILE),
            "queue=hostile&timeoutSecs=1&memoryMib=16&maxLogKib=16",
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let r = host.deploy("busy", &component(BUSY), "queue=healthy").await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());

    assert_eq!(host.send("hostile", mode).await.status(), 201);
    for _ in 0..5 {
        assert_eq!(host.send("healthy", "0").await.status(), 201);
    }
    host.wait_for_messages("healthy", 0).await;
    host
}

/// Waits for the hostile message in the dead-letter queue; its description.
async fn dead_letter_description(host: &Host) -> String {
    let dead = host.wait_for_messages("hostile/$DeadLetterQueue", 1).await;
    assert_eq!(dead[0]["deadLetterReason"], "MaxDeliveryCountExceeded");
    assert_eq!(dead[0]["deliveryCount"], 2);
    dead[0]["deadLetterDescription"]
        .as_str()
        .expect("a description")
        .to_string()
}

#[tokio::test]
async fn hostile_infinite_loop_ends_at_its_deadline() {
    let host = misbehave("spin").await;
    let description = dead_letter_description(&host).await;
    assert!(description.contains("timed out after 1s"), "{description}");
}

#[tokio::test]
async fn hostile_memory_bomb_ends_out_of_memory_at_its_cap() {
    let host = misbehave("oom").await;
    let description = dead_letter_description(&host).await;
    assert!(
        description.contains("out of memory") && description.contains("16 MiB"),
        "{description}"
    );
}

#[tokio::test]
async fn hostile_deep_recursion_ends_with_a_stack_overflow() {
    let host = misbehave("recurse").await;
    let description = dead_letter_description(&host).await;
    assert!(description.contains("stack overflow"), "{description}");
}

#[tokio::test]
async fn hostile_trap_ends_with_the_trap_named() {
    let host = misbehave("trap").await;
    let description = dead_letter_description(&host).await;
    assert!(
        description.contains("trapped") && description.contains("unreachable"),
        "{description}"
    );
}

#[tokio::test]
async fn hostile_sandbox_escape_finds_no_files_no_environment_and_no_network() {
    let host = misbehave("escape").await;
    let description = dead_letter_description(&host).await;
    assert!(
        description
            .contains("denied: environment: empty; files: no preopened directories; tcp: denied"),
        "{description}"
    );
}

#[tokio::test]
async fn hostile_log_flood_is_cut_at_the_invocation_log_limit() {
    let host = misbehave("flood").await;
    host.wait_for_messages("hostile", 0).await;
    let log = host.log();
    let kept = log.lines().filter(|l| l.contains("flood ")).count();
    // 16 KiB of ~1 KiB records, out of 100,000 written.
    assert!(
        (1..=16).contains(&kept),
        "{kept} flood records reached the log"
    );
    assert_eq!(
        log.matches("log limit reached").count(),
        1,
        "one warning per invocation"
    );
    assert!(
        host.peek("hostile/$DeadLetterQueue").await.is_empty(),
        "a flood is cut, not failed"
    );
}

#[tokio::test]
async fn each_invocation_starts_from_pristine_memory_whatever_the_one_before_wrote() {
    let host = Host::start().await;
    host.create_queue("scribbles", json!({ "maxDeliveryCount": 1 }))
        .await;
    // One at a time, so every invocation reuses the instance slot the one
    // before it scribbled on.
    let r = host
        .deploy(
            "hostile",
            &component(HOSTILE),
            "queue=scribbles&maxConcurrency=1&memoryMib=16",
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    for _ in 0..6 {
        assert_eq!(host.send("scribbles", "scribble").await.status(), 201);
    }
    host.wait_for_messages("scribbles", 0).await;
    let dead = host.peek("scribbles/$DeadLetterQueue").await;
    assert!(
        dead.is_empty(),
        "an invocation saw an earlier one's memory: {:?}",
        dead.iter()
            .map(|m| &m["deadLetterDescription"])
            .collect::<Vec<_>>()
    );
    let log = host.log();
    assert!(
        !log.contains("memory.grow refused"),
        "the guest could not grow its memory:\n{log}"
    );
}
