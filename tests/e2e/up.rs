//! `sluice new` and `sluice up`: a scaffold that builds and runs, a manifest
//! applied idempotently to a running host, and hot reload of a handler's
//! sources and of the manifest.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{FULFIL_ORDER, Host, SLUICE, VALIDATE_ORDER, event, order, repo_root};

/// Builds and hot reloads may take minutes on a busy 2-core machine.
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);

/// A fresh directory under the test target dir (inside this checkout, so
/// `sluice new` finds `guest-sdk/` by walking up).
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("up").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// One cargo target dir for every guest, as `support::component` uses.
fn guests_target() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("guests")
}

/// `sluice ARGS` with the host's credentials and the shared guest target dir.
fn sluice(host: Option<&Host>, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(SLUICE);
    command.args(args).env("CARGO_TARGET_DIR", guests_target());
    if let Some(host) = host {
        command
            .env("SLUICE_URL", &host.url)
            .env("SLUICE_CONNECTION_STRING", host.connection_string());
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run sluice")
}

fn text(output: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `sluice up --no-watch --manifest FILE` against `host`; panics on failure.
fn up_once(host: &Host, manifest: &Path, env: &[(&str, &str)]) -> String {
    let manifest = manifest.to_string_lossy();
    let output = sluice(
        Some(host),
        &["up", "--no-watch", "--manifest", &manifest],
        env,
    );
    assert!(
        output.status.success(),
        "sluice up failed\n{}",
        text(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The summary line `up` printed for one entity.
fn line_for<'a>(stdout: &'a str, kind: &str, name: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| {
            let mut words = l.split_whitespace();
            let line_kind: Vec<&str> = kind.split(' ').collect();
            line_kind.iter().all(|k| words.next() == Some(k)) && words.next() == Some(name)
        })
        .unwrap_or_else(|| panic!("no line for {kind} {name} in:\n{stdout}"))
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn get(host: &Host, path: &str) -> (u16, Value) {
    let r = host.http.get(host.at(path)).send().await.expect("GET");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn new_scaffolds_handlers_that_build_and_run_under_up() {
    let root = scratch("new");
    for (kind, name, attribute) in [
        ("message", "scaffold-msg", "#[sluice_sdk::message_handler]"),
        ("event", "scaffold-evt", "#[sluice_sdk::event_handler]"),
        ("http", "scaffold-http", "#[sluice_sdk::http_handler]"),
    ] {
        let dir = root.join(name);
        let dir_arg = dir.to_string_lossy();
        let mut args = vec!["new", name, "--kind", kind, "--dir", &dir_arg];
        // Outside this checkout (a CARGO_TARGET_DIR elsewhere), say where the SDK is.
        let repo = repo_root().canonicalize().expect("repo root");
        let sdk = repo.join("guest-sdk").to_string_lossy().into_owned();
        if !root.canonicalize().expect("scratch").starts_with(&repo) {
            args.extend(["--sdk-path", &sdk]);
        }
        let created = sluice(None, &args, &[]);
        assert!(created.status.success(), "sluice new\n{}", text(&created));
        for file in [
            "Cargo.toml",
            "src/lib.rs",
            "sluice.toml",
            "README.md",
            ".gitignore",
        ] {
            assert!(dir.join(file).is_file(), "{name}: {file} missing");
        }
        let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
        // A path dependency on this checkout's guest-sdk.
        assert!(
            cargo.contains("sluice-sdk = { path = \"") && cargo.contains("guest-sdk\" }"),
            "{cargo}"
        );
        assert!(cargo.contains("crate-type = [\"cdylib\"]"), "{cargo}");
        assert!(cargo.contains("[workspace]"), "{cargo}");
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).expect("lib.rs");
        assert!(lib.contains(attribute), "{lib}");

        let out = root.join(format!("{name}.wasm"));
        let built = sluice(
            None,
            &["build", &dir_arg, "--out", &out.to_string_lossy()],
            &[],
        );
        assert!(
            built.status.success(),
            "sluice build {name}\n{}",
            text(&built)
        );
        assert!(out.is_file(), "{name}: no component");
    }

    // Never over an existing, non-empty directory.
    let dir = root.join("scaffold-msg").to_string_lossy().into_owned();
    let again = sluice(None, &["new", "scaffold-msg", "--dir", &dir], &[]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is not empty"),
        "{}",
        text(&again)
    );

    // The scaffold's own manifest runs as it is.
    let host = Host::start().await;
    let stdout = up_once(&host, &root.join("scaffold-msg/sluice.toml"), &[]);
    assert!(line_for(&stdout, "queue", "scaffold-msg-inbox").contains("created"));
    assert!(line_for(&stdout, "function", "scaffold-msg").contains("deployed version 1"));
    assert_eq!(
        host.send("scaffold-msg-inbox", "hi there").await.status(),
        201
    );
    let h = &host;
    wait_until(
        "the scaffold to log the message",
        Duration::from_secs(60),
        || async move { h.log().contains("message received") },
    )
    .await;
    host.wait_for_messages("scaffold-msg-inbox", 0).await;
}

/// The order-flow example as a manifest, with the crates by absolute path,
/// plus a Service Bus topic and a filtered event subscription.
fn order_flow_manifest(max_delivery_count: u32, attempts: u32, concurrency: u32) -> String {
    let path = |c: &str| repo_root().join(c).canonicalize().expect("example crate");
    format!(
        r#"
[queues.fulfil]
max_delivery_count = {max_delivery_count}

[queues.fulfilled-orders]
[queues.audit]

[topics.orders]

[topics.orders.subscriptions.contoso-audit]
queue = "audit"
filter.included_event_types = ["orders.created"]
filter.advanced_filters = [
  {{ operator_type = "StringIn", key = "data.customer", values = ["contoso"] }},
]
retry_policy = {{ max_delivery_attempts = {attempts} }}

[topics.fulfilled]

[topics.fulfilled.subscriptions.to-queue]
queue = "fulfilled-orders"

[bus_topics.invoices]

[bus_topics.invoices.subscriptions.eu]
sql = "region = 'eu'"

[functions.validate-order]
path = "{validate}"
topic = "orders"
event_types = ["orders.created"]
timeout_secs = 10
config = {{ region = "eu" }}
secrets_from_env = {{ crm-token = "SLUICE_UP_TEST_TOKEN" }}

[functions.fulfil-order]
path = "{fulfil}"
queue = "fulfil"
max_concurrency = {concurrency}
"#,
        validate = path(VALIDATE_ORDER).display(),
        fulfil = path(FULFIL_ORDER).display(),
    )
}

#[tokio::test]
async fn up_applies_a_manifest_to_a_running_host_idempotently() {
    let host = Host::start().await;
    let app = scratch("apply");
    let manifest = app.join("sluice.toml");
    let env = [("SLUICE_UP_TEST_TOKEN", "hunter2-token")];
    std::fs::write(&manifest, order_flow_manifest(5, 3, 4)).expect("manifest");

    let first = up_once(&host, &manifest, &env);
    for (kind, name) in [
        ("queue", "fulfil"),
        ("queue", "fulfilled-orders"),
        ("queue", "audit"),
        ("topic", "orders"),
        ("topic", "fulfilled"),
        ("bus topic", "invoices"),
        ("subscription", "orders/contoso-audit"),
        ("subscription", "fulfilled/to-queue"),
    ] {
        assert!(line_for(&first, kind, name).contains("created"), "{first}");
    }
    assert!(line_for(&first, "bus subscription", "invoices/eu").contains("SQL filter set"));
    assert!(line_for(&first, "function", "validate-order").contains("deployed version 1"));
    assert!(line_for(&first, "function", "fulfil-order").contains("deployed version 1"));

    // What the host now has.
    let (_, queues) = get(&host, "/api/queues").await;
    for queue in ["audit", "fulfil", "fulfilled-orders"] {
        assert!(names(&queues).contains(&queue.to_string()), "{queues:#}");
    }
    let (_, fulfil) = get(&host, "/api/queues/fulfil").await;
    assert_eq!(fulfil["properties"]["maxDeliveryCount"], 5);
    let (_, topics) = get(&host, "/api/topics").await;
    assert_eq!(names(&topics), ["fulfilled", "orders"]);
    let (_, audit) = get(&host, "/api/topics/orders/subscriptions/contoso-audit").await;
    assert_eq!(audit["destination"], json!({ "queue": "audit" }));
    assert_eq!(audit["retryPolicy"]["maxDeliveryAttempts"], 3);
    assert_eq!(
        audit["filter"]["advancedFilters"][0]["operatorType"],
        "StringIn"
    );
    let (_, eu) = get(&host, "/api/servicebus/topics/invoices/subscriptions/eu").await;
    assert_eq!(eu["rules"].as_array().map(Vec::len), Some(1), "{eu:#}");
    assert_eq!(eu["rules"][0]["name"], "filter");
    assert_eq!(eu["rules"][0]["filter"]["expression"], "region = 'eu'");
    let (_, functions) = get(&host, "/api/functions").await;
    assert_eq!(names(&functions), ["fulfil-order", "validate-order"]);
    let (_, fulfil_fn) = get(&host, "/api/functions/fulfil-order").await;
    assert_eq!(fulfil_fn["version"], 1);
    assert_eq!(fulfil_fn["limits"]["maxConcurrency"], 4);
    let (_, settings) = get(&host, "/api/functions/validate-order/settings").await;
    assert_eq!(settings["config"], json!({ "region": "eu" }));
    assert_eq!(settings["secrets"], json!(["crm-token"]));
    assert!(!settings.to_string().contains("hunter2"));

    // The functions run: an order goes through both, and the filtered
    // subscription copies contoso's order to the audit queue.
    let r = host
        .publish(
            "orders",
            json!([event("evt-1", "orders.created", "orders/1", order("U-1"))]),
        )
        .await;
    assert_eq!(r.status(), 200);
    host.wait_for_messages("fulfilled-orders", 1).await;
    host.wait_for_messages("audit", 1).await;

    // Twice: nothing new.
    let second = up_once(&host, &manifest, &env);
    assert!(!second.contains("created"), "{second}");
    assert!(!second.contains("deployed"), "{second}");
    assert!(!second.contains("warning"), "{second}");
    for (kind, name, expected) in [
        ("queue", "fulfil", "exists, unchanged"),
        ("bus subscription", "invoices/eu", "exists, unchanged"),
        ("subscription", "orders/contoso-audit", "exists, unchanged"),
        ("function", "validate-order", "unchanged (version 1)"),
    ] {
        assert!(line_for(&second, kind, name).contains(expected), "{second}");
    }
    let (_, functions) = get(&host, "/api/functions").await;
    for function in functions.as_array().expect("list") {
        assert_eq!(function["version"], 1, "{function:#}");
    }

    // Changed: what the API can update is updated, the rest is reported.
    std::fs::write(&manifest, order_flow_manifest(7, 5, 8)).expect("manifest");
    let third = up_once(&host, &manifest, &env);
    let queue = line_for(&third, "queue", "fulfil");
    assert!(
        queue.contains("warning") && queue.contains("max_delivery_count = 7 here, 5 on the host"),
        "{third}"
    );
    assert!(
        line_for(&third, "subscription", "orders/contoso-audit")
            .contains("updated: retry_policy (to queue audit)"),
        "{third}"
    );
    let function = line_for(&third, "function", "fulfil-order");
    assert!(
        function.contains("deployed version 2") && function.contains("limits changed"),
        "{third}"
    );
    let (_, audit) = get(&host, "/api/topics/orders/subscriptions/contoso-audit").await;
    assert_eq!(audit["retryPolicy"]["maxDeliveryAttempts"], 5);

    // A secret from an unset variable fails that function only, naming it.
    let output = sluice(
        Some(&host),
        &[
            "up",
            "--no-watch",
            "--manifest",
            &manifest.to_string_lossy(),
        ],
        &[],
    );
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        line_for(&stdout, "function", "validate-order")
            .contains("functions.validate-order.secrets_from_env: environment variable `SLUICE_UP_TEST_TOKEN` is not set"),
        "{}",
        text(&output)
    );
}

#[tokio::test]
async fn up_refuses_unresolved_references_and_bad_manifests_before_applying() {
    let host = Host::start().await;
    let app = scratch("refuse");
    let manifest = app.join("sluice.toml");
    let crate_dir = repo_root()
        .join(FULFIL_ORDER)
        .canonicalize()
        .expect("crate");
    std::fs::write(
        &manifest,
        format!(
            "[queues.would-be-created]\n\n[functions.lost]\npath = \"{}\"\nqueue = \"nowhere\"\n",
            crate_dir.display()
        ),
    )
    .expect("manifest");
    let output = sluice(
        Some(&host),
        &[
            "up",
            "--no-watch",
            "--manifest",
            &manifest.to_string_lossy(),
        ],
        &[],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!(
        "{}:3: functions.lost.queue: queue `nowhere` is not declared in the manifest and does not exist on the host; nothing applied",
        manifest.canonicalize().expect("manifest").display()
    );
    assert!(stderr.contains(&expected), "{}", text(&output));
    let (status, _) = get(&host, "/api/queues/would-be-created").await;
    assert_eq!(status, 404, "nothing is applied");

    std::fs::write(&manifest, "[queues.a]\nmax_delivery_count = \"five\"\n").expect("manifest");
    let output = sluice(
        Some(&host),
        &[
            "up",
            "--no-watch",
            "--manifest",
            &manifest.to_string_lossy(),
        ],
        &[],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("sluice.toml:2: invalid type: string \"five\", expected u32"),
        "{}",
        text(&output)
    );
}

/// A `sluice up` that is killed when the test ends, however it ends.
struct Up {
    child: Child,
    stdout: PathBuf,
}

impl Up {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("sluice up exited ({status}):\n{}", self.output());
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ECHO_LIB: &str = r#"//! Replies to each request on `replies`, prefixed with REPLY.
use sluice_sdk::send::{self, OutgoingMessage};
use sluice_sdk::{Message, Result};

const REPLY: &str = "v1";

#[sluice_sdk::message_handler]
fn echo(message: Message) -> Result<()> {
    let body = String::from_utf8_lossy(&message.body);
    send::send("replies", &OutgoingMessage::text(format!("{REPLY}: {body}")))?;
    Ok(())
}
"#;

#[tokio::test]
async fn up_watches_sources_and_the_manifest_and_redeploys() {
    let host = Host::start().await;
    let app = scratch("watch");
    let sdk = repo_root().join("guest-sdk").canonicalize().expect("sdk");
    std::fs::create_dir_all(app.join("echo/src")).expect("crate dir");
    std::fs::write(
        app.join("echo/Cargo.toml"),
        format!(
            "[package]\nname = \"up-watch-echo\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
             [lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nsluice-sdk = {{ path = \"{}\" }}\n\n[workspace]\n",
            sdk.display()
        ),
    )
    .expect("Cargo.toml");
    std::fs::write(app.join("echo/src/lib.rs"), ECHO_LIB).expect("lib.rs");
    let manifest = app.join("sluice.toml");
    let declared = "[queues.requests]\n[queues.replies]\n\n[functions.echo]\npath = \"echo\"\nqueue = \"requests\"\n";
    std::fs::write(&manifest, declared).expect("manifest");

    let stdout = app.join("up.out");
    let child = Command::new(SLUICE)
        .args(["up", "--manifest", &manifest.to_string_lossy()])
        .args(["--url", &host.url])
        .env("SLUICE_CONNECTION_STRING", host.connection_string())
        .env("CARGO_TARGET_DIR", guests_target())
        .stdout(std::fs::File::create(&stdout).expect("stdout file"))
        .stderr(std::fs::File::create(app.join("up.err")).expect("stderr file"))
        .stdin(Stdio::null())
        .spawn()
        .expect("start sluice up");
    let mut up = Up { child, stdout };

    let deadline = Instant::now() + BUILD_TIMEOUT;
    while !up.output().contains("sluice up: watching") {
        up.assert_running();
        assert!(
            Instant::now() < deadline,
            "no watch started:\n{}",
            up.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, echo) = get(&host, "/api/functions/echo").await;
    assert_eq!(status, 200, "{}", up.output());
    assert_eq!(echo["version"], 1);
    assert_eq!(host.send("requests", "ping").await.status(), 201);
    let replies = host.wait_for_messages("replies", 1).await;
    assert_eq!(replies[0]["body"], "v1: ping");

    // A change to the handler's source: rebuilt and redeployed as version 2.
    std::fs::write(
        app.join("echo/src/lib.rs"),
        ECHO_LIB.replace("\"v1\"", "\"v2\""),
    )
    .expect("edit lib.rs");
    let deadline = Instant::now() + BUILD_TIMEOUT;
    loop {
        up.assert_running();
        let (_, echo) = get(&host, "/api/functions/echo").await;
        if echo["version"] == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no redeploy:\n{}", up.output());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(host.send("requests", "pong").await.status(), 201);
    let replies = host.wait_for_messages("replies", 2).await;
    assert_eq!(replies[1]["body"], "v2: pong");
    // `up` reports it (just after the host answered the deploy).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !up.output().contains("deployed version 2") {
        assert!(Instant::now() < deadline, "not reported:\n{}", up.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A change to the manifest: applied again (the new queue is created,
    // the unchanged function is not deployed again).
    std::fs::write(&manifest, format!("{declared}\n[queues.added-later]\n")).expect("edit");
    let h = &host;
    wait_until("the new queue", Duration::from_secs(120), || async move {
        get(h, "/api/queues/added-later").await.0 == 200
    })
    .await;
    up.assert_running();
    let (_, echo) = get(&host, "/api/functions/echo").await;
    assert_eq!(echo["version"], 2, "{}", up.output());
    drop(up);
}

/// Starts `sluice up --no-watch` on `manifest` with a host of its own;
/// returns it once the manifest is applied, with the host's URL.
async fn up_with_own_host(manifest: &Path, data: &Path, stdout: PathBuf) -> (Up, String) {
    let child = Command::new(SLUICE)
        .args([
            "up",
            "--no-watch",
            "--manifest",
            &manifest.to_string_lossy(),
        ])
        .args(["--data-dir", &data.to_string_lossy()])
        .env_remove("SLUICE_URL")
        .env("CARGO_TARGET_DIR", guests_target())
        .stdout(std::fs::File::create(&stdout).expect("stdout file"))
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .expect("start sluice up");
    let mut up = Up { child, stdout };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !up.output().contains("the host keeps serving until Ctrl-C") {
        up.assert_running();
        assert!(Instant::now() < deadline, "not applied:\n{}", up.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = up.output();
    let url = output
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in:\n{output}"))
        .to_string();
    (up, url)
}

/// SIGTERM, as Ctrl-C or a service manager would send; returns the exit status.
fn terminate(up: &mut Up) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &up.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = up.child.try_wait() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "up did not stop:\n{}",
            up.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn up_without_a_url_runs_a_host_of_its_own_and_stops_it() {
    let app = scratch("own-host");
    let manifest = app.join("sluice.toml");
    std::fs::write(
        &manifest,
        "[queues.jobs]\nmax_delivery_count = 3\n[topics.news]\n",
    )
    .expect("manifest");
    let data = app.join("data");
    let (mut up, url) = up_with_own_host(&manifest, &data, app.join("up1.out")).await;
    let output = up.output();
    assert!(
        line_for(&output, "queue", "jobs").contains("created"),
        "{output}"
    );
    assert!(data.join("connection-string").is_file(), "{output}");
    let health = reqwest::get(format!("{url}/health")).await.expect("health");
    assert!(health.status().is_success());

    let status = terminate(&mut up);
    assert!(status.success(), "{status}:\n{}", up.output());
    assert!(
        up.output().contains("sluice up: host stopped"),
        "{}",
        up.output()
    );
    assert!(
        reqwest::get(format!("{url}/health")).await.is_err(),
        "the host is gone"
    );

    // Again on the same data: everything is there already.
    let (mut up, _) = up_with_own_host(&manifest, &data, app.join("up2.out")).await;
    let output = up.output();
    assert!(
        line_for(&output, "queue", "jobs").contains("exists, unchanged"),
        "{output}"
    );
    assert!(
        line_for(&output, "topic", "news").contains("exists, unchanged"),
        "{output}"
    );
    assert!(terminate(&mut up).success());
}
