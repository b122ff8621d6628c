//! Shared pieces of the end-to-end suite: a real `sluice serve` child
//! process on a free port with a temporary data directory, components built
//! by the real `sluice build`, and small HTTP helpers.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub(crate) const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// The repository root.
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds a guest crate (path relative to the repo root) once per test run
/// with `sluice build`, and returns the component's path.
pub(crate) fn component(crate_path: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, Arc<OnceLock<PathBuf>>>>> = OnceLock::new();
    let cell = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(crate_path.to_string())
        .or_default()
        .clone();
    cell.get_or_init(|| {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let name = crate_path.rsplit('/').next().unwrap_or(crate_path);
        let out = tmp.join("components").join(format!("{name}.wasm"));
        let status = Command::new(SLUICE)
            .arg("build")
            .arg(repo_root().join(crate_path))
            .arg("--out")
            .arg(&out)
            // One target dir for every guest: dependencies build once.
            .env("CARGO_TARGET_DIR", tmp.join("guests"))
            .stdout(Stdio::null())
            .status()
            .expect("run sluice build");
        assert!(status.success(), "sluice build {crate_path} failed");
        out
    })
    .clone()
}

/// A running host.
pub(crate) struct Host {
    child: Option<Child>,
    data: tempfile::TempDir,
    /// Extra `sluice serve` arguments, kept across restarts.
    args: Vec<String>,
    pub(crate) url: String,
    pub(crate) http: reqwest::Client,
}

impl Host {
    /// Starts a host on a fresh data directory.
    pub(crate) async fn start() -> Host {
        Host::start_with(&[]).await
    }

    /// Starts a host with extra `sluice serve` options, given as name/value
    /// pairs (e.g. `["--event-retry-time-scale", "0.2"]`).
    pub(crate) async fn start_with(args: &[&str]) -> Host {
        let data = tempfile::tempdir().expect("temp dir");
        let mut host = Host {
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
            data,
            url: String::new(),
            http: reqwest::Client::new(),
        };
        host.spawn();
        host.http = host.signed_client();
        host
    }

    /// The root connection string `sluice serve` wrote beside its data.
    pub(crate) fn connection_string(&self) -> String {
        std::fs::read_to_string(self.data.path().join("db").join("connection-string"))
            .expect("serve writes the connection string")
            .trim()
            .to_string()
    }

    /// A namespace-wide SAS token for this host, made by `sluice sas token`.
    pub(crate) fn token(&self) -> String {
        let output = Command::new(SLUICE)
            .args(["sas", "token", "--url", &self.url, "--ttl-secs", "86400"])
            .args(["--connection-string", &self.connection_string()])
            .output()
            .expect("run sluice sas token");
        assert!(output.status.success(), "sluice sas token failed");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// An HTTP client that sends the root token with every request (and
    /// trusts the host's certificate when it serves https).
    fn signed_client(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            self.token().parse().expect("a header value"),
        );
        let mut builder = reqwest::Client::builder().default_headers(headers);
        if let Some(cert) = self.option("--tls-cert") {
            let pem = std::fs::read(cert).expect("the test certificate");
            builder = builder.add_root_certificate(
                reqwest::Certificate::from_pem(&pem).expect("a PEM certificate"),
            );
        }
        builder.build().expect("HTTP client")
    }

    /// The value of an extra `sluice serve` option this host was started with.
    pub(crate) fn option(&self, name: &str) -> Option<&str> {
        self.args
            .chunks(2)
            .find(|pair| pair[0] == name)
            .and_then(|pair| pair.get(1))
            .map(String::as_str)
    }

    /// Test defaults (fast retries and push events) with `args` overriding them.
    fn serve_options(&self) -> Vec<String> {
        let mut options: Vec<(String, String)> = [
            ("--event-retry-time-scale", "0.001"),
            ("--push-interval-secs", "0.5"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for pair in self.args.chunks(2) {
            if let [name, value] = pair {
                match options.iter_mut().find(|(k, _)| k == name) {
                    Some(slot) => slot.1 = value.clone(),
                    None => options.push((name.clone(), value.clone())),
                }
            }
        }
        options.into_iter().flat_map(|(k, v)| [k, v]).collect()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.path().join("host.log"))
            .expect("log file");
        let mut child = Command::new(SLUICE)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(self.data.path().join("db"))
            .args(self.serve_options())
            .env("SLUICE_LOG", "info,sluice_host=debug")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start sluice serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_else(|| panic!("no address in {line:?}; log: {}", self.log()))
            .to_string();
        self.url = url;
        self.child = Some(child);
    }

    /// The host's log so far (for failure messages).
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("host.log")).unwrap_or_default()
    }

    /// Kills the host with SIGKILL and starts it again on the same data.
    pub(crate) async fn crash_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9");
            child.wait().expect("reap");
        }
        self.spawn();
    }

    pub(crate) fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// GETs a path that answers 200 with JSON.
    pub(crate) async fn get_json(&self, path: &str) -> Value {
        let r = self.http.get(self.at(path)).send().await.expect("GET");
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.expect("a JSON body")
    }

    pub(crate) async fn put_json(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .put(self.at(path))
            .json(&body)
            .send()
            .await
            .expect("PUT")
    }

    pub(crate) async fn create_queue(&self, name: &str, props: Value) {
        let r = self.put_json(&format!("/api/queues/{name}"), props).await;
        assert_eq!(
            r.status(),
            201,
            "create queue {name}: {}",
            r.text().await.unwrap_or_default()
        );
    }

    pub(crate) async fn create_topic(&self, name: &str) {
        self.create_topic_with(name, json!({})).await;
    }

    /// Creates a topic with options, e.g. `{"inputSchema": "CloudEventSchemaV1_0"}`.
    pub(crate) async fn create_topic_with(&self, name: &str, options: Value) {
        let r = self.put_json(&format!("/api/topics/{name}"), options).await;
        assert_eq!(
            r.status(),
            201,
            "create topic {name}: {}",
            r.text().await.unwrap_or_default()
        );
    }

    pub(crate) async fn subscribe_queue(
        &self,
        topic: &str,
        name: &str,
        queue: &str,
        filter: Value,
    ) {
        let r = self
            .put_json(
                &format!("/api/topics/{topic}/subscriptions/{name}"),
                json!({ "destination": { "queue": queue }, "filter": filter }),
            )
            .await;
        assert_eq!(
            r.status(),
            201,
            "subscribe {topic}/{name}: {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Deploys a component; `trigger` is the query, e.g. `queue=fulfil`.
    pub(crate) async fn deploy(
        &self,
        name: &str,
        component: &Path,
        trigger: &str,
    ) -> reqwest::Response {
        let bytes = std::fs::read(component).expect("component bytes");
        self.http
            .put(self.at(&format!("/api/functions/{name}?{trigger}")))
            .body(bytes)
            .send()
            .await
            .expect("deploy")
    }

    /// Publishes Event Grid schema events.
    pub(crate) async fn publish(&self, topic: &str, events: Value) -> reqwest::Response {
        self.http
            .post(self.at(&format!(
                "/topics/{topic}/api/events?api-version=2018-01-01"
            )))
            .header("content-type", "application/json; charset=utf-8")
            .body(events.to_string())
            .send()
            .await
            .expect("publish")
    }

    /// Sends a message over the Service Bus REST API.
    pub(crate) async fn send(&self, queue: &str, body: &str) -> reqwest::Response {
        self.http
            .post(self.at(&format!("/{queue}/messages")))
            .header("content-type", "text/plain")
            .body(body.to_string())
            .send()
            .await
            .expect("send")
    }

    /// Peek-locks one message over the Service Bus REST API, waiting up to
    /// `timeout_secs`; returns its `BrokerProperties`, the path that settles
    /// it (from `Location`) and its body, or `None` when none came.
    pub(crate) async fn receive_locked(
        &self,
        entity: &str,
        timeout_secs: u64,
    ) -> Option<(Value, String, String)> {
        let r = self
            .http
            .post(self.at(&format!("/{entity}/messages/head?timeout={timeout_secs}")))
            .send()
            .await
            .expect("receive");
        if r.status() == reqwest::StatusCode::NO_CONTENT {
            return None;
        }
        assert_eq!(
            r.status(),
            reqwest::StatusCode::CREATED,
            "peek-lock {entity}"
        );
        let props = broker_properties(&r);
        let path = settle_path(r.headers()["location"].to_str().expect("location"));
        Some((props, path, r.text().await.expect("body")))
    }

    /// Peeks up to 100 messages of an entity (`q` or `q/$DeadLetterQueue`).
    pub(crate) async fn peek(&self, entity: &str) -> Vec<Value> {
        let r = self
            .http
            .get(self.at(&format!("/api/messages/{entity}?max=100")))
            .send()
            .await
            .expect("peek");
        assert_eq!(r.status(), 200, "peek {entity}");
        r.json().await.expect("peek json")
    }

    /// Waits until `entity` holds exactly `count` messages, then returns them.
    pub(crate) async fn wait_for_messages(&self, entity: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let messages = self.peek(entity).await;
            if messages.len() == count {
                return messages;
            }
            if Instant::now() > deadline {
                panic!(
                    "{entity} holds {} messages, expected {count}: {messages:#?}\nhost log:\n{}",
                    messages.len(),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A received message's `BrokerProperties` header, parsed.
pub(crate) fn broker_properties(r: &reqwest::Response) -> Value {
    serde_json::from_str(r.headers()["brokerproperties"].to_str().expect("header"))
        .expect("BrokerProperties is JSON")
}

/// The path part of a `Location` URL (`http://host/q/messages/1/token` → `/q/messages/1/token`).
pub(crate) fn settle_path(location: &str) -> String {
    location
        .splitn(4, '/')
        .nth(3)
        .map(|p| format!("/{p}"))
        .expect("a Location URL with a path")
}

/// An Event Grid schema event.
pub(crate) fn event(id: &str, event_type: &str, subject: &str, data: Value) -> Value {
    json!({
        "id": id,
        "eventType": event_type,
        "subject": subject,
        "eventTime": "2026-11-28T10:00:00.123456Z",
        "data": data,
        "dataVersion": "1.0",
    })
}

/// A valid order for the example flow.
pub(crate) fn order(id: &str) -> Value {
    json!({
        "id": id,
        "customer": "contoso",
        "lines": [
            { "sku": "widget", "quantity": 2, "unit_price_cents": 1250 },
            { "sku": "gadget", "quantity": 1, "unit_price_cents": 750 },
        ],
    })
}

pub(crate) const VALIDATE_ORDER: &str = "examples/order-flow/validate-order";
pub(crate) const FULFIL_ORDER: &str = "examples/order-flow/fulfil-order";
pub(crate) const ACCEPT_ORDER: &str = "examples/order-flow/accept-order";
pub(crate) const HTTP_PROBE: &str = "tests/guests/http-probe";
pub(crate) const ALWAYS_FAILS: &str = "tests/guests/always-fails";
pub(crate) const BATCH: &str = "tests/guests/batch";
pub(crate) const PANICS: &str = "tests/guests/panics";
pub(crate) const BUSY: &str = "tests/guests/busy";
pub(crate) const HOSTILE: &str = "tests/guests/hostile";
pub(crate) const STATEFUL: &str = "tests/guests/stateful";
pub(crate) const FETCHER: &str = "tests/guests/fetcher";
pub(crate) const DRAIN_BACKLOG: &str = "examples/push-model/drain-backlog";
