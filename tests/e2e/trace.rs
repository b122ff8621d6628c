//! Correlation and workflow progress: W3C trace context travels with every
//! message and event, and each step of a transaction is recorded, so one
//! request shows the whole flow, retries and dead letters included.

use std::process::Command;

use serde_json::{Value, json};

use crate::order_flow::deploy_order_flow;
use crate::support::{ALWAYS_FAILS, Host, PANICS, SLUICE, component, event, order};

fn step_summary(steps: &[Value]) -> Vec<String> {
    steps
        .iter()
        .map(|s| {
            format!(
                "{} {} {} {}",
                s["kind"].as_str().unwrap_or(""),
                s["function"].as_str().unwrap_or("-"),
                s["entity"].as_str().unwrap_or(""),
                s["outcome"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// Polls the trace of `id` until it has `count` steps.
async fn wait_for_steps(host: &Host, id: &str, count: usize) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = host
            .http
            .get(host.at(&format!("/api/traces/{id}")))
            .send()
            .await
            .expect("GET trace");
        if r.status() == 200 {
            let trace: Value = r.json().await.expect("json");
            if trace["steps"].as_array().map_or(0, Vec::len) >= count {
                return trace;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the trace of {id} never reached {count} steps"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn one_transaction_is_traced_across_handlers_queues_and_topics() {
    let host = Host::start().await;
    deploy_order_flow(&host).await;
    let r = host
        .publish(
            "orders",
            json!([event("evt-7", "orders.created", "orders/T-7", order("T-7"))]),
        )
        .await;
    assert_eq!(r.status(), 200);
    let fulfilled = host.wait_for_messages("fulfilled-orders", 1).await;

    let trace = wait_for_steps(&host, "evt-7", 5).await;
    let steps = trace["steps"].as_array().expect("steps");
    assert_eq!(
        step_summary(steps),
        [
            "invoke validate-order orders/subscriptions/validate-order complete",
            "send validate-order fulfil sent",
            "invoke fulfil-order fulfil complete",
            "publish fulfil-order fulfilled published",
            "deliver - fulfilled-orders delivered",
        ]
    );
    let trace_ids = trace["traceIds"].as_array().expect("trace ids");
    assert_eq!(trace_ids.len(), 1, "one trace: {trace}");
    // The last message carries the same trace context.
    let traceparent = fulfilled[0]["userProperties"]["traceparent"]
        .as_str()
        .expect("a traceparent");
    assert!(
        traceparent.contains(trace_ids[0].as_str().expect("id")),
        "{traceparent}"
    );
    assert!(steps[0]["durationMs"].as_f64().is_some());

    // The CLI shows the same flow.
    let output = Command::new(SLUICE)
        .env("SLUICE_CONNECTION_STRING", host.connection_string())
        .args(["--url", &host.url, "trace", "evt-7"])
        .output()
        .expect("run sluice trace");
    assert!(output.status.success());
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.contains("validate-order")
            && table.contains("fulfil-order")
            && table.contains("delivered"),
        "{table}"
    );
}

#[tokio::test]
async fn retries_and_the_dead_letter_are_steps_of_the_callers_trace() {
    let host = Host::start().await;
    host.create_queue("jobs", json!({ "maxDeliveryCount": 2 }))
        .await;
    let r = host
        .deploy("always-fails", &component(ALWAYS_FAILS), "queue=jobs")
        .await;
    assert_eq!(r.status(), 201);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = host
        .http
        .post(host.at("/jobs/messages"))
        .header("BrokerProperties", r#"{"CorrelationId":"C-9"}"#)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .body("job")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201);
    host.wait_for_messages("jobs/$DeadLetterQueue", 1).await;

    let trace = wait_for_steps(&host, "C-9", 3).await;
    let steps = trace["steps"].as_array().expect("steps");
    assert_eq!(
        step_summary(steps),
        [
            "invoke always-fails jobs abandon",
            "invoke always-fails jobs abandon",
            "deadLetter - jobs dead-lettered",
        ]
    );
    assert_eq!(steps[0]["deliveryCount"], 1);
    assert_eq!(steps[1]["deliveryCount"], 2);
    assert!(
        steps[2]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("MaxDeliveryCountExceeded")),
        "{trace}"
    );
    assert_eq!(trace["traceIds"], json!([trace_id]), "the caller's trace");
    // The trace id finds the same steps.
    let by_trace = host.get_json(&format!("/api/traces/{trace_id}")).await;
    assert_eq!(by_trace["steps"], trace["steps"]);

    let r = host
        .http
        .get(host.at("/api/traces/nothing-like-this"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn under_load_successful_flows_are_sampled_whole_and_failures_always_kept() {
    // A budget of 10 successful steps a second: 400 messages in one burst
    // are well past it.
    let host = Host::start_with(&["--max-trace-steps-per-second", "10"]).await;
    host.create_queue("burst", json!({ "maxDeliveryCount": 1 }))
        .await;
    let r = host
        .deploy("maybe-panic", &component(PANICS), "queue=burst")
        .await;
    assert_eq!(r.status(), 201);
    let items: Vec<Value> = (0..400)
        .map(|i| {
            // Every 50th message traps the handler (a failure).
            let body = if i % 50 == 0 { "boom" } else { "fine" };
            json!({ "Body": body, "BrokerProperties": { "CorrelationId": format!("B-{i}") } })
        })
        .collect();
    let r = host
        .http
        .post(host.at("/burst/messages"))
        .header("Content-Type", "application/vnd.microsoft.servicebus.json")
        .body(serde_json::to_vec(&items).expect("encode"))
        .send()
        .await
        .expect("batch send");
    assert_eq!(r.status(), 201);
    host.wait_for_messages("burst/$DeadLetterQueue", 8).await;

    let (mut kept, mut dropped) = (0, 0);
    for i in 0..400 {
        let r = host
            .http
            .get(host.at(&format!("/api/traces/B-{i}")))
            .send()
            .await
            .expect("GET trace");
        if i % 50 == 0 {
            assert_eq!(r.status(), 200, "failed flow B-{i} was not recorded");
            let trace: Value = r.json().await.expect("json");
            assert_eq!(
                step_summary(trace["steps"].as_array().expect("steps")),
                [
                    "invoke maybe-panic burst error",
                    "deadLetter - burst dead-lettered"
                ],
                "B-{i}"
            );
        } else if r.status() == 200 {
            kept += 1;
        } else {
            assert_eq!(r.status(), 404);
            dropped += 1;
        }
    }
    assert!(kept > 0, "some successful flows are still recorded");
    assert!(
        dropped > 0,
        "past the budget successful flows are sampled ({kept} kept)"
    );
}
