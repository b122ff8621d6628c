//! The official Python SDK (`azure-eventgrid`, from PyPI) publishes to Sluice
//! unchanged: Event Grid events and CloudEvents, with a topic key and with a
//! SAS token. The SDK is installed into a virtual environment under the
//! test's target directory on first use (`python3 -m venv` + `pip`).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::support::{Host, repo_root};

/// The SDK version the tests pin (what they were written against).
const AZURE_EVENTGRID: &str = "azure-eventgrid==4.22.1";

/// The venv's python, with the SDK installed.
fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("azure-eventgrid-venv");
            let python = venv.join("bin").join("python");
            let ready = venv.join(".installed");
            if !ready.exists() {
                let status = Command::new("python3")
                    .args(["-m", "venv"])
                    .arg(&venv)
                    .status()
                    .expect("python3 is needed for the SDK tests");
                assert!(status.success(), "python3 -m venv failed");
                let status = Command::new(&python)
                    .args(["-m", "pip", "install", "--quiet", AZURE_EVENTGRID])
                    .status()
                    .expect("run pip");
                assert!(status.success(), "pip install {AZURE_EVENTGRID} failed");
                std::fs::write(&ready, AZURE_EVENTGRID).expect("mark the venv ready");
            }
            python
        })
        .clone()
}

fn publish_with_sdk(endpoint: &str, key: &str, schema: &str, auth: &str) {
    let script = repo_root().join("tests/e2e/sdk/eventgrid_publish.py");
    let output = Command::new(python())
        .arg(script)
        .args([endpoint, key, schema, auth])
        .output()
        .expect("run the SDK script");
    assert!(
        output.status.success(),
        "the SDK failed to publish ({schema}, {auth}):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn key1(host: &Host, topic: &str) -> String {
    let r = host
        .http
        .post(host.at(&format!("/api/topics/{topic}/listKeys")))
        .send()
        .await
        .expect("listKeys");
    let keys: Value = r.json().await.expect("keys");
    keys["key1"].as_str().expect("key1").to_string()
}

fn bodies(messages: &[Value]) -> Vec<Value> {
    messages
        .iter()
        .map(|m| serde_json::from_str(m["body"].as_str().expect("body")).expect("event JSON"))
        .collect()
}

#[tokio::test]
async fn python_sdk_publishes_event_grid_events_and_cloud_events_with_key_and_sas() {
    let host = Host::start().await;
    host.create_topic("py-eg").await;
    host.create_topic_with("py-ce", json!({ "inputSchema": "CloudEventSchemaV1_0" }))
        .await;
    host.create_queue("eg-sink", json!({})).await;
    host.create_queue("ce-sink", json!({})).await;
    host.subscribe_queue("py-eg", "sink", "eg-sink", json!({}))
        .await;
    host.subscribe_queue("py-ce", "sink", "ce-sink", json!({}))
        .await;

    let eg_endpoint = host.at("/topics/py-eg/api/events");
    let eg_key = key1(&host, "py-eg").await;
    publish_with_sdk(&eg_endpoint, &eg_key, "eventgrid", "key");
    publish_with_sdk(&eg_endpoint, &eg_key, "eventgrid", "sas");
    let events = bodies(&host.wait_for_messages("eg-sink", 4).await);
    assert_eq!(events[0]["id"], "sdk-1");
    assert_eq!(events[0]["eventType"], "orders.created");
    assert_eq!(events[0]["subject"], "/orders/1");
    assert_eq!(events[0]["data"]["via"], "python");
    assert_eq!(events[1]["dataVersion"], "1.0");

    let ce_endpoint = host.at("/topics/py-ce/api/events");
    let ce_key = key1(&host, "py-ce").await;
    publish_with_sdk(&ce_endpoint, &ce_key, "cloudevents", "key");
    publish_with_sdk(&ce_endpoint, &ce_key, "cloudevents", "sas");
    let events = bodies(&host.wait_for_messages("ce-sink", 4).await);
    assert_eq!(events[0]["specversion"], "1.0");
    assert_eq!(events[0]["source"], "/python/sdk");
    assert_eq!(events[0]["type"], "orders.created");
    assert_eq!(events[3]["id"], "sdk-2");
    assert_eq!(events[3]["data"]["n"], 2);

    // A wrong key is the SDK's authentication error, not a silent success.
    let script = repo_root().join("tests/e2e/sdk/eventgrid_publish.py");
    let refused = Command::new(python())
        .arg(script)
        .args([&eg_endpoint, "bm90IHRoZSBrZXk=", "eventgrid", "key"])
        .output()
        .expect("run the SDK script");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("ClientAuthenticationError"), "{stderr}");
}
