//! The official Event Grid SDKs publish to Sluice unchanged, with only the
//! endpoint and a key set: `azure-eventgrid` (Python, from PyPI) over http
//! and https, and `@azure/eventgrid` (JavaScript, from npm), which insists
//! on https, against the host serving a configured certificate. Each SDK is
//! installed under the test's target directory on first use.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::support::{Host, repo_root};

/// The SDK versions the tests pin (what they were written against).
const PYTHON_SDK: &str = "azure-eventgrid==4.22.1";
const JS_SDK: &str = "@azure/eventgrid@5.12.0";

fn sdk_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

fn run(command: &mut Command, what: &str) {
    let status = command.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed");
}

/// The venv's python, with the Python SDK installed.
fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let venv = sdk_dir("azure-eventgrid-venv");
            let python = venv.join("bin").join("python");
            let ready = venv.join(".installed");
            if std::fs::read_to_string(&ready).ok().as_deref() != Some(PYTHON_SDK) {
                run(
                    Command::new("python3").args(["-m", "venv"]).arg(&venv),
                    "python3 -m venv",
                );
                run(
                    Command::new(&python).args(["-m", "pip", "install", "--quiet", PYTHON_SDK]),
                    "pip install azure-eventgrid",
                );
                std::fs::write(&ready, PYTHON_SDK).expect("mark the venv ready");
            }
            python
        })
        .clone()
}

/// A directory with the JavaScript SDK in `node_modules` and the publish script.
fn js_package() -> PathBuf {
    static PACKAGE: OnceLock<PathBuf> = OnceLock::new();
    PACKAGE
        .get_or_init(|| {
            let dir = sdk_dir("azure-eventgrid-js");
            let ready = dir.join(".installed");
            if std::fs::read_to_string(&ready).ok().as_deref() != Some(JS_SDK) {
                std::fs::create_dir_all(&dir).expect("SDK directory");
                std::fs::write(dir.join("package.json"), r#"{"private":true}"#)
                    .expect("package.json");
                run(
                    Command::new("npm")
                        .args(["install", "--silent", "--no-audit", "--no-fund", JS_SDK])
                        .current_dir(&dir),
                    "npm install @azure/eventgrid",
                );
                std::fs::write(&ready, JS_SDK).expect("mark the package ready");
            }
            // The script sits beside node_modules so its import resolves.
            std::fs::copy(
                repo_root().join("tests/e2e/sdk/eventgrid_publish.mjs"),
                dir.join("eventgrid_publish.mjs"),
            )
            .expect("copy the JS script");
            dir
        })
        .clone()
}

/// Runs the Python SDK script; `ca` is the certificate to trust for https.
fn python_publish(
    endpoint: &str,
    key: &str,
    schema: &str,
    auth: &str,
    ca: Option<&Path>,
) -> Output {
    let mut command = Command::new(python());
    command
        .arg(repo_root().join("tests/e2e/sdk/eventgrid_publish.py"))
        .args([endpoint, key, schema, auth]);
    if let Some(ca) = ca {
        command.env("REQUESTS_CA_BUNDLE", ca);
    }
    command.output().expect("run the Python SDK script")
}

fn js_publish(endpoint: &str, key: &str, schema: &str, ca: &Path) -> Output {
    let package = js_package();
    Command::new("node")
        .arg(package.join("eventgrid_publish.mjs"))
        .args([endpoint, key, schema])
        .env("NODE_EXTRA_CA_CERTS", ca)
        .current_dir(package)
        .output()
        .expect("run the JS SDK script")
}

fn assert_published(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed to publish:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Topics `eg` (Event Grid schema) and `ce` (CloudEvents), each with a queue
/// subscription `<topic>-sink`; returns their endpoints and first keys.
async fn topics_with_sinks(host: &Host) -> [(String, String); 2] {
    host.create_topic("eg").await;
    host.create_topic_with("ce", json!({ "inputSchema": "CloudEventSchemaV1_0" }))
        .await;
    let mut out = Vec::new();
    for topic in ["eg", "ce"] {
        let sink = format!("{topic}-sink");
        host.create_queue(&sink, json!({})).await;
        host.subscribe_queue(topic, "sink", &sink, json!({})).await;
        let keys = host
            .http
            .post(host.at(&format!("/api/topics/{topic}/listKeys")))
            .send()
            .await
            .expect("listKeys")
            .json::<Value>()
            .await
            .expect("keys");
        out.push((
            host.at(&format!("/topics/{topic}/api/events")),
            keys["key1"].as_str().expect("key1").to_string(),
        ));
    }
    [out[0].clone(), out[1].clone()]
}

async fn delivered(host: &Host, sink: &str, count: usize) -> Vec<Value> {
    host.wait_for_messages(sink, count)
        .await
        .iter()
        .map(|m| serde_json::from_str(m["body"].as_str().expect("body")).expect("event JSON"))
        .collect()
}

/// A self-signed certificate for 127.0.0.1 and localhost, as PEM files.
fn test_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("a self-signed certificate");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.key_pair.serialize_pem()).expect("write key");
    (cert, key)
}

#[tokio::test]
async fn python_sdk_publishes_event_grid_events_and_cloud_events_with_key_and_sas() {
    let host = Host::start().await;
    let [(eg, eg_key), (ce, ce_key)] = topics_with_sinks(&host).await;

    for auth in ["key", "sas"] {
        assert_published(&python_publish(&eg, &eg_key, "eventgrid", auth, None), auth);
        assert_published(
            &python_publish(&ce, &ce_key, "cloudevents", auth, None),
            auth,
        );
    }
    let events = delivered(&host, "eg-sink", 4).await;
    assert_eq!(events[0]["id"], "sdk-1");
    assert_eq!(events[0]["eventType"], "orders.created");
    assert_eq!(events[0]["subject"], "/orders/1");
    assert_eq!(events[0]["data"]["via"], "python");
    assert_eq!(events[1]["dataVersion"], "1.0");
    let events = delivered(&host, "ce-sink", 4).await;
    assert_eq!(events[0]["specversion"], "1.0");
    assert_eq!(events[0]["source"], "/python/sdk");
    assert_eq!(events[0]["type"], "orders.created");
    assert_eq!(events[3]["id"], "sdk-2");
    assert_eq!(events[3]["data"]["n"], 2);

    // A wrong key is the SDK's authentication error, not a silent success.
    let refused = python_publish(&eg, "bm90IHRoZSBrZXk=", "eventgrid", "key", None);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("ClientAuthenticationError"), "{stderr}");
}

#[tokio::test]
async fn javascript_and_python_sdks_publish_over_https_with_a_configured_certificate() {
    let certs = tempfile::tempdir().expect("temp dir");
    let (cert, key) = test_certificate(certs.path());
    let (cert_arg, key_arg) = (cert.display().to_string(), key.display().to_string());
    let host = Host::start_with(&["--tls-cert", &cert_arg, "--tls-key", &key_arg]).await;
    assert!(host.url.starts_with("https://"), "{}", host.url);
    let [(eg, eg_key), (ce, ce_key)] = topics_with_sinks(&host).await;

    assert_published(
        &js_publish(&eg, &eg_key, "eventgrid", &cert),
        "JS (Event Grid)",
    );
    assert_published(
        &js_publish(&ce, &ce_key, "cloudevents", &cert),
        "JS (CloudEvents)",
    );
    assert_published(
        &python_publish(&eg, &eg_key, "eventgrid", "key", Some(&cert)),
        "Python over https",
    );
    let events = delivered(&host, "eg-sink", 4).await;
    assert_eq!(events[0]["id"], "sdk-js-1");
    assert_eq!(events[0]["data"]["via"], "js");
    assert_eq!(events[2]["id"], "sdk-1");
    let events = delivered(&host, "ce-sink", 2).await;
    assert_eq!(events[1]["id"], "sdk-js-2");
    assert_eq!(events[1]["source"], "/js/sdk");

    // A wrong key fails the JS SDK too.
    let refused = js_publish(&eg, "bm90IHRoZSBrZXk=", "eventgrid", &cert);
    assert!(!refused.status.success());
}
