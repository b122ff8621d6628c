//! `sluice up`: run an app from its manifest.
//!
//! Owns the whole loop: build every function ([`build_component`]), start a
//! host as a child process unless `--url` names one ([`ChildHost`]), make
//! the host match `sluice.toml` over the HTTP API ([`Applier`]), then watch
//! each function's sources and the manifest with `notify` ([`Watch`]) and
//! rebuild and redeploy only what changed. Ctrl-C (or SIGTERM) stops the
//! child host cleanly.
//!
//! Applying is idempotent and never deletes anything:
//!
//! - queues, topics, Service Bus topics and subscriptions are created
//!   (201); one that exists (409) is compared with the manifest and left as
//!   it is, with a warning naming the fields that differ (the API cannot
//!   change them in place);
//! - event subscriptions are created, or updated with a PUT when they
//!   differ (the API supports it), and left alone when equal, so a webhook
//!   is not validated again for nothing;
//! - a bus subscription's `sql` becomes its only rule (`filter`);
//! - a function's settings are replaced (`PUT .../settings`) before it is
//!   deployed; it is deployed only when its component (sha256), trigger or
//!   limits differ from the current version's, so running `up` twice makes
//!   no new version.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use notify::{EventKind, RecursiveMode, Watcher as _};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use super::client::{Client, entity_path, segment};
use super::serve::{connection_string_file, shutdown_signal};
use crate::broker::QueueProperties;
use crate::build::{BuildOptions, build_component};
use crate::events::{Destination, ProvisioningState, SubscriptionSpec};
use crate::functions::{FunctionLimits, Trigger};
use crate::manifest::{
    self, BusSubscriptionDecl, BusTopicDecl, EventSubscriptionDecl, FunctionDecl, MANIFEST_FILE,
    Manifest, QueueDecl, ReferenceKind, SQL_RULE_NAME, SYSTEM_TOPIC_TYPE, Step, TopicDecl,
};

/// Where `up` keeps the data of the host it starts, beside the manifest.
pub(crate) const DEFAULT_DATA_DIR: &str = ".sluice";
/// How long a started host may take to listen.
const HOST_START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a stopping host may take before it is killed.
const HOST_STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Quiet time after a file change before acting on it (editors write in bursts).
const DEBOUNCE: Duration = Duration::from_millis(300);
/// Longest wait for that quiet: a steady stream of writes still gets acted on.
const MAX_SETTLE: Duration = Duration::from_secs(2);

/// Build, deploy and keep deploying the app a `sluice.toml` declares.
#[derive(Debug, Args)]
pub(crate) struct UpCommand {
    /// The app manifest.
    #[arg(long, short, default_value = MANIFEST_FILE)]
    manifest: PathBuf,
    /// Data directory of the host `up` starts (default: `.sluice/` beside
    /// the manifest). Not with `--url`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address of the host `up` starts (default: a free port on 127.0.0.1).
    /// Not with `--url`.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Apply once, without watching. With `--url`, exit afterwards;
    /// otherwise keep the started host serving until Ctrl-C.
    #[arg(long)]
    no_watch: bool,
    /// Build functions without optimisations.
    #[arg(long)]
    debug: bool,
}

impl UpCommand {
    /// `url` and `connection_string` are the global options: with a URL,
    /// `up` applies to that host instead of starting one.
    pub(crate) async fn run(
        self,
        url: Option<&str>,
        connection_string: Option<&str>,
    ) -> Result<()> {
        let file = std::fs::canonicalize(&self.manifest).with_context(|| {
            format!(
                "cannot find the manifest {} (create an app with `sluice new NAME`)",
                self.manifest.display()
            )
        })?;
        let manifest = manifest::load(&file)?;
        if url.is_some() && (self.data_dir.is_some() || self.listen.is_some()) {
            bail!(
                "--data-dir and --listen are for the host `sluice up` starts; with --url \
                 (or SLUICE_URL) it applies to that host instead"
            );
        }
        let mut host = None;
        let client = match url {
            Some(url) => {
                println!("sluice up: applying {} to {url}", file.display());
                Client::new(url, connection_string)?
            }
            None => {
                let data_dir = match &self.data_dir {
                    Some(dir) => dir.clone(),
                    None => manifest.dir.join(DEFAULT_DATA_DIR),
                };
                let child = ChildHost::start(&data_dir, self.listen).await?;
                let client = Client::new(&child.url, Some(&child.connection_string))?;
                host = Some(child);
                client
            }
        };
        let session = Session {
            applier: Applier { client: &client },
            file,
            build: BuildOptions {
                release: !self.debug,
                out: None,
            },
        };
        let external = url.is_some();
        let outcome = tokio::select! {
            outcome = session.run(manifest, self.no_watch, external) => outcome,
            () = shutdown_signal() => {
                println!("sluice up: stopping");
                Ok(())
            }
            status = wait_for_exit(&mut host) => Err(anyhow!(
                "the host `sluice up` started exited unexpectedly ({status}); its log is above"
            )),
        };
        if let Some(host) = host {
            host.stop().await;
        }
        outcome
    }
}

/// Waits for the child host to exit; never, when there is none.
async fn wait_for_exit(host: &mut Option<ChildHost>) -> String {
    match host {
        Some(host) => match host.child.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => e.to_string(),
        },
        None => std::future::pending().await,
    }
}

// ---------------------------------------------------------------------------
// The session: apply, then watch
// ---------------------------------------------------------------------------

struct Session<'a> {
    applier: Applier<'a>,
    /// The manifest file (canonical).
    file: PathBuf,
    build: BuildOptions,
}

impl Session<'_> {
    async fn run(&self, mut manifest: Manifest, no_watch: bool, external: bool) -> Result<()> {
        let applied = self.apply(&manifest).await;
        if no_watch {
            applied?;
            if external {
                return Ok(());
            }
            println!(
                "sluice up: applied; the host keeps serving until Ctrl-C (--no-watch: no rebuilds)"
            );
            return std::future::pending().await;
        }
        if let Err(e) = applied {
            println!("sluice up: {e:#}");
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut _watch = Watch::new(&self.file, &manifest, tx.clone())?;
        println!(
            "sluice up: watching {} and the sources of {} function(s); Ctrl-C stops",
            self.file.display(),
            manifest.functions.len()
        );
        loop {
            let Some(first) = rx.recv().await else {
                bail!("the file watcher stopped");
            };
            let mut changed = BTreeSet::from([first]);
            let settle_by = tokio::time::Instant::now() + MAX_SETTLE;
            while tokio::time::Instant::now() < settle_by
                && let Ok(Some(path)) = tokio::time::timeout(DEBOUNCE, rx.recv()).await
            {
                changed.insert(path);
            }
            if changed.contains(&self.file) {
                println!(
                    "sluice up: {} changed; applying it again",
                    self.file.display()
                );
                match manifest::load(&self.file) {
                    Ok(next) => {
                        note_removed(&manifest, &next);
                        manifest = next;
                        _watch = Watch::new(&self.file, &manifest, tx.clone())?;
                        if let Err(e) = self.apply(&manifest).await {
                            println!("sluice up: {e:#}");
                        }
                    }
                    Err(errors) => {
                        println!(
                            "sluice up: {errors}\nsluice up: nothing applied; fix the manifest"
                        );
                    }
                }
                continue;
            }
            let touched: Vec<&FunctionDecl> = manifest
                .functions
                .iter()
                .filter(|f| changed.iter().any(|p| is_source_of(p, &f.crate_dir)))
                .collect();
            for function in touched {
                println!("sluice up: sources of `{}` changed", function.name);
                let built = self.build_function(function).await;
                let outcome = match built {
                    Ok(component) => self.applier.function(function, &component).await,
                    Err(e) => Err(e),
                };
                report(
                    "function",
                    &function.name,
                    function.line,
                    &self.file,
                    outcome,
                );
            }
        }
    }

    /// Builds every function, then applies every step; a failing entity or
    /// build does not stop the others. Errors when anything failed.
    async fn apply(&self, manifest: &Manifest) -> Result<()> {
        self.applier.check_references(manifest).await?;
        let mut components: BTreeMap<&str, Result<Vec<u8>>> = BTreeMap::new();
        let mut by_crate: BTreeMap<&Path, Vec<u8>> = BTreeMap::new();
        for function in &manifest.functions {
            let built = match by_crate.get(function.crate_dir.as_path()) {
                Some(bytes) => Ok(bytes.clone()),
                None => self.build_function(function).await,
            };
            if let Ok(bytes) = &built {
                by_crate.insert(&function.crate_dir, bytes.clone());
            }
            components.insert(&function.name, built);
        }
        let mut failed = 0;
        for step in manifest.steps() {
            let (kind, name, line, outcome) = match step {
                Step::Queue(q) => ("queue", q.name.clone(), q.line, self.applier.queue(q).await),
                Step::BusTopic(t) => (
                    "bus topic",
                    t.name.clone(),
                    t.line,
                    self.applier.bus_topic(t).await,
                ),
                Step::BusSubscription(t, s) => (
                    "bus subscription",
                    format!("{}/{}", t.name, s.name),
                    s.line,
                    self.applier.bus_subscription(t, s).await,
                ),
                Step::Topic(t) => ("topic", t.name.clone(), t.line, self.applier.topic(t).await),
                Step::Function(f) => {
                    let outcome = match components.get(f.name.as_str()) {
                        Some(Ok(component)) => self.applier.function(f, component).await,
                        Some(Err(e)) => Err(anyhow!("not deployed: {e:#}")),
                        None => Err(anyhow!("not deployed: it was not built")),
                    };
                    ("function", f.name.clone(), f.line, outcome)
                }
                Step::EventSubscription(t, s) => (
                    "subscription",
                    format!("{}/{}", t.name, s.name),
                    s.line,
                    self.applier.event_subscription(t, s).await,
                ),
            };
            if !report(kind, &name, line, &manifest.file, outcome) {
                failed += 1;
            }
        }
        if failed > 0 {
            bail!(
                "{failed} of {} entities failed (see above)",
                manifest.steps().len()
            );
        }
        println!("sluice up: {} is applied", manifest.file.display());
        Ok(())
    }

    /// Builds one function's crate and reads the component.
    async fn build_function(&self, function: &FunctionDecl) -> Result<Vec<u8>> {
        println!(
            "sluice up: building `{}` ({})",
            function.name,
            function.crate_dir.display()
        );
        let dir = function.crate_dir.clone();
        let options = self.build.clone();
        let built = tokio::task::spawn_blocking(move || build_component(&dir, &options))
            .await
            .context("the build task failed")?
            .with_context(|| format!("building function `{}`", function.name))?;
        std::fs::read(&built.path)
            .with_context(|| format!("reading the component {}", built.path.display()))
    }
}

/// Prints one entity's outcome; false when it failed.
fn report(kind: &str, name: &str, line: usize, file: &Path, outcome: Result<Outcome>) -> bool {
    match outcome {
        Ok(Outcome::Done(text)) => {
            println!("  {kind:<16} {name:<36} {text}");
            true
        }
        Ok(Outcome::Warning(text)) => {
            println!("  {kind:<16} {name:<36} warning: {text}");
            true
        }
        Err(e) => {
            println!(
                "  {kind:<16} {name:<36} FAILED ({}:{line}): {e:#}",
                file.display()
            );
            false
        }
    }
}

/// Says which entities a new manifest no longer declares: `up` never deletes.
fn note_removed(before: &Manifest, after: &Manifest) {
    let gone = |kind: &str, old: Vec<&String>, new: Vec<&String>, delete: &str| {
        for name in old.into_iter().filter(|n| !new.contains(n)) {
            println!(
                "  {kind:<16} {name:<36} no longer in the manifest: left on the host \
                 (`{delete} {name}` deletes it)"
            );
        }
    };
    gone(
        "queue",
        before.queues.iter().map(|q| &q.name).collect(),
        after.queues.iter().map(|q| &q.name).collect(),
        "sluice queue delete",
    );
    gone(
        "topic",
        before.topics.iter().map(|t| &t.name).collect(),
        after.topics.iter().map(|t| &t.name).collect(),
        "sluice topic delete",
    );
    gone(
        "bus topic",
        before.bus_topics.iter().map(|t| &t.name).collect(),
        after.bus_topics.iter().map(|t| &t.name).collect(),
        "sluice bus delete-topic",
    );
    gone(
        "function",
        before.functions.iter().map(|f| &f.name).collect(),
        after.functions.iter().map(|f| &f.name).collect(),
        "sluice function delete",
    );
}

// ---------------------------------------------------------------------------
// Applying over the HTTP API
// ---------------------------------------------------------------------------

/// What applying one entity did.
enum Outcome {
    /// Created, updated, deployed or already as declared.
    Done(String),
    /// Left as it is although it differs from the manifest.
    Warning(String),
}

/// Makes a host match a manifest, one entity at a time, through the HTTP API.
struct Applier<'a> {
    client: &'a Client,
}

impl Applier<'_> {
    /// Sends a request and returns the status and the body (JSON, or the
    /// text as a JSON string); only a transport failure is an error.
    async fn exchange(&self, request: RequestBuilder) -> Result<(StatusCode, Value)> {
        let response = request.send().await.with_context(|| {
            format!(
                "cannot reach the Sluice host at {} (is it running?)",
                self.client.url("")
            )
        })?;
        let status = response.status();
        let text = response.text().await.context("reading the host's answer")?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, body))
    }

    async fn get(&self, path: &str) -> Result<(StatusCode, Value)> {
        self.exchange(self.client.request(Method::GET, path)).await
    }

    async fn put_json(&self, path: &str, body: &impl Serialize) -> Result<(StatusCode, Value)> {
        self.exchange(self.client.request(Method::PUT, path).json(body))
            .await
    }

    /// Checks that what the manifest uses without declaring exists on the host.
    async fn check_references(&self, manifest: &Manifest) -> Result<()> {
        let mut missing = Vec::new();
        for reference in manifest.external_references() {
            let path = match reference.kind {
                ReferenceKind::Queue => format!("/api/queues/{}", entity_path(&reference.name)),
                ReferenceKind::Topic => format!("/api/topics/{}", segment(&reference.name)),
                ReferenceKind::Function => format!("/api/functions/{}", segment(&reference.name)),
            };
            let (status, body) = self.get(&path).await?;
            if status == StatusCode::NOT_FOUND {
                missing.push(format!(
                    "{}:{}: {}: {} `{}` is not declared in the manifest and does not exist on the host",
                    manifest.file.display(),
                    reference.line,
                    reference.field,
                    reference.kind,
                    reference.name
                ));
            } else if !status.is_success() {
                bail!(
                    "checking {} `{}`: {}",
                    reference.kind,
                    reference.name,
                    answer(status, &body)
                );
            }
        }
        match missing.len() {
            0 => Ok(()),
            1 => bail!("{}; nothing applied", missing[0]),
            n => bail!(
                "{n} references cannot be resolved; nothing applied:\n  {}",
                missing.join("\n  ")
            ),
        }
    }

    async fn queue(&self, queue: &QueueDecl) -> Result<Outcome> {
        let path = format!("/api/queues/{}", entity_path(&queue.name));
        let (status, body) = self.put_json(&path, &queue.properties).await?;
        match status {
            StatusCode::CREATED => Ok(Outcome::Done("created".into())),
            StatusCode::CONFLICT => {
                let existing = self.existing(&path, &body).await?;
                let found: QueueProperties = from_answer(&existing["properties"])?;
                Ok(compare(&queue.properties, &found, "queue"))
            }
            _ => bail!("{}", answer(status, &body)),
        }
    }

    /// After a 409: the entity as it is, or the conflict as an error when
    /// the name is taken by an entity of another kind.
    async fn existing(&self, path: &str, conflict: &Value) -> Result<Value> {
        let (status, body) = self.get(path).await?;
        if status == StatusCode::OK {
            Ok(body)
        } else {
            bail!("{}", answer(StatusCode::CONFLICT, conflict))
        }
    }

    async fn topic(&self, topic: &TopicDecl) -> Result<Outcome> {
        let path = format!("/api/topics/{}", segment(&topic.name));
        let mut options = json!({ "inputSchema": topic.input_schema });
        if topic.system {
            options["topicType"] = json!(SYSTEM_TOPIC_TYPE);
        }
        let (status, body) = self.put_json(&path, &options).await?;
        match status {
            StatusCode::CREATED => Ok(Outcome::Done("created".into())),
            StatusCode::CONFLICT => {
                let existing = self.existing(&path, &body).await?;
                if existing["inputSchema"] == options["inputSchema"] {
                    Ok(Outcome::Done("exists, unchanged".into()))
                } else {
                    Ok(Outcome::Warning(format!(
                        "exists with input_schema {} (the manifest says {}); left as it is: \
                         a topic's schema cannot change (delete it to recreate)",
                        existing["inputSchema"], options["inputSchema"]
                    )))
                }
            }
            _ => bail!("{}", answer(status, &body)),
        }
    }

    async fn bus_topic(&self, topic: &BusTopicDecl) -> Result<Outcome> {
        let path = format!("/api/servicebus/topics/{}", segment(&topic.name));
        let (status, body) = self.put_json(&path, &topic.properties).await?;
        match status {
            StatusCode::CREATED => Ok(Outcome::Done("created".into())),
            StatusCode::CONFLICT => {
                let existing = self.existing(&path, &body).await?;
                let found = from_answer(&existing["properties"])?;
                Ok(compare(&topic.properties, &found, "topic"))
            }
            _ => bail!("{}", answer(status, &body)),
        }
    }

    async fn bus_subscription(
        &self,
        topic: &BusTopicDecl,
        sub: &BusSubscriptionDecl,
    ) -> Result<Outcome> {
        let path = format!(
            "/api/servicebus/topics/{}/subscriptions/{}",
            segment(&topic.name),
            segment(&sub.name)
        );
        let (status, body) = self.put_json(&path, &sub.properties).await?;
        let (mut outcome, info) = match status {
            StatusCode::CREATED => (Outcome::Done("created".into()), body),
            StatusCode::CONFLICT => {
                let existing = self.existing(&path, &body).await?;
                let found = from_answer(&existing["queue"]["properties"])?;
                (compare(&sub.properties, &found, "subscription"), existing)
            }
            _ => bail!("{}", answer(status, &body)),
        };
        let Some(sql) = &sub.sql else {
            return Ok(outcome);
        };
        let rules = info["rules"].as_array().cloned().unwrap_or_default();
        let only_ours = matches!(rules.as_slice(), [rule]
            if rule["name"] == SQL_RULE_NAME
                && rule["filter"]["type"] == "sql"
                && rule["filter"]["expression"] == sql.as_str());
        if only_ours {
            return Ok(outcome);
        }
        let rule = json!({ "type": "sql", "expression": sql });
        let (status, body) = self
            .put_json(&format!("{path}/rules/{SQL_RULE_NAME}"), &rule)
            .await?;
        if !status.is_success() {
            bail!("setting its SQL filter: {}", answer(status, &body));
        }
        for other in &rules {
            let Some(name) = other["name"].as_str().filter(|n| *n != SQL_RULE_NAME) else {
                continue;
            };
            let request = self
                .client
                .request(Method::DELETE, &format!("{path}/rules/{}", segment(name)));
            let (status, body) = self.exchange(request).await?;
            if !status.is_success() && status != StatusCode::NOT_FOUND {
                bail!("removing its rule `{name}`: {}", answer(status, &body));
            }
        }
        outcome = match outcome {
            Outcome::Done(text) => Outcome::Done(format!("{text}; SQL filter set")),
            Outcome::Warning(text) => Outcome::Warning(format!("{text}; SQL filter set")),
        };
        Ok(outcome)
    }

    async fn event_subscription(
        &self,
        topic: &TopicDecl,
        sub: &EventSubscriptionDecl,
    ) -> Result<Outcome> {
        let path = format!(
            "/api/topics/{}/subscriptions/{}",
            segment(&topic.name),
            segment(&sub.name)
        );
        let (status, existing) = self.get(&path).await?;
        let verb = match status {
            StatusCode::NOT_FOUND => "created".to_string(),
            StatusCode::OK => {
                let found = current_spec(&existing)?;
                // Left out, the delivery schema is the topic's input schema.
                let mut wanted = sub.spec.clone();
                wanted
                    .event_delivery_schema
                    .get_or_insert(topic.input_schema);
                if found == wanted {
                    return Ok(Outcome::Done("exists, unchanged".into()));
                }
                format!("updated: {}", changed_keys(&wanted, &found).join(", "))
            }
            _ => bail!("{}", answer(status, &existing)),
        };
        let (status, body) = self.put_json(&path, &sub.spec).await?;
        if !status.is_success() {
            bail!("{}", answer(status, &body));
        }
        let awaiting =
            serde_json::from_value::<ProvisioningState>(body["provisioningState"].clone())
                .is_ok_and(|s| s == ProvisioningState::AwaitingManualAction);
        if awaiting {
            return Ok(Outcome::Warning(format!(
                "{verb}; the webhook did not echo the validation code: no events until someone \
                 GETs its validationUrl"
            )));
        }
        let to = match &sub.spec.destination {
            Destination::Queue(q) => format!("queue {q}"),
            Destination::Function(f) => format!("function {f}"),
            Destination::Webhook(w) => format!("webhook {}", w.endpoint_url),
        };
        Ok(Outcome::Done(format!("{verb} (to {to})")))
    }

    /// Sets a function's settings, then deploys its component unless the
    /// current version already has it with the same trigger and limits.
    async fn function(&self, function: &FunctionDecl, component: &[u8]) -> Result<Outcome> {
        let name = segment(&function.name);
        let settings = function
            .settings(|variable| std::env::var(variable).ok())
            .map_err(|e| anyhow!(e))?;
        let (status, body) = self
            .put_json(&format!("/api/functions/{name}/settings"), &settings)
            .await?;
        if !status.is_success() {
            bail!("setting its config and secrets: {}", answer(status, &body));
        }
        let hash = hex::encode(Sha256::digest(component));
        let path = format!("/api/functions/{name}");
        let (status, body) = self.get(&path).await?;
        let current = match status {
            StatusCode::OK => Some(from_answer::<Deployed>(&body)?),
            StatusCode::NOT_FOUND => None,
            _ => bail!("{}", answer(status, &body)),
        };
        if let Some(current) = &current
            && current.component_hash == hash
            && current.trigger == function.trigger
            && current.limits == function.limits
        {
            return Ok(Outcome::Done(format!(
                "unchanged (version {}){}",
                current.version,
                settings_note(function)
            )));
        }
        let mut query = function.trigger.to_query();
        let limits = &function.limits;
        query.extend([
            ("maxConcurrency", limits.max_concurrency.to_string()),
            ("timeoutSecs", limits.timeout_secs.to_string()),
            ("memoryMib", limits.memory_mib.to_string()),
            ("maxLogKib", limits.max_log_kib.to_string()),
            (
                "maxMessageBatchSize",
                limits.max_message_batch_size.to_string(),
            ),
        ]);
        let request = self
            .client
            .request(Method::PUT, &path)
            .query(&query)
            .header("content-type", "application/wasm")
            .body(component.to_vec());
        let (status, body) = self.exchange(request).await?;
        if !status.is_success() {
            bail!("{}", answer(status, &body));
        }
        let deployed: Deployed = from_answer(&body)?;
        let why = match &current {
            None => String::new(),
            Some(c) => {
                let mut what = Vec::new();
                if c.component_hash != hash {
                    what.push("component");
                }
                if c.trigger != function.trigger {
                    what.push("trigger");
                }
                if c.limits != function.limits {
                    what.push("limits");
                }
                format!(", {} changed", what.join(" and "))
            }
        };
        let trigger = match &function.trigger {
            Trigger::Queue(q) => format!("queue {q}"),
            Trigger::Topic { topic, .. } => format!("topic {topic}"),
            Trigger::Http(http) => format!("route /api/{}", http.route.trim_matches('/')),
        };
        Ok(Outcome::Done(format!(
            "deployed version {} ({trigger}, {} KiB{why}){}",
            deployed.version,
            component.len().div_ceil(1024),
            settings_note(function)
        )))
    }
}

/// What the summary says about settings, when there are any.
fn settings_note(function: &FunctionDecl) -> String {
    let secrets = function.secrets.len() + function.secrets_from_env.len();
    let counts = [
        (function.config.len(), "config"),
        (secrets, "secret(s)"),
        (function.allowed_hosts.len(), "allowed host(s)"),
    ];
    let parts: Vec<String> = counts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("; settings: {}", parts.join(", "))
    }
}

/// The parts of a function record `up` compares.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Deployed {
    version: u32,
    component_hash: String,
    trigger: Trigger,
    limits: FunctionLimits,
}

/// An event subscription's definition, from the host's answer.
fn current_spec(subscription: &Value) -> Result<SubscriptionSpec> {
    let mut spec = serde_json::Map::new();
    for key in [
        "destination",
        "filter",
        "retryPolicy",
        "eventDeliverySchema",
    ] {
        if let Some(value) = subscription.get(key) {
            spec.insert(key.to_string(), value.clone());
        }
    }
    from_answer(&Value::Object(spec))
}

fn from_answer<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T> {
    serde_json::from_value(value.clone())
        .with_context(|| format!("the host's answer is not what `sluice up` expects: {value}"))
}

/// "the host answered 400 Bad Request: <its message>".
fn answer(status: StatusCode, body: &Value) -> String {
    let message = body["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| match body {
            Value::String(text) => text.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        });
    format!("the host answered {status}: {message}")
}

/// Compares an entity's declared options with the host's; a difference is
/// a warning naming each field (in the manifest's snake_case).
fn compare<T: Serialize>(wanted: &T, found: &T, what: &str) -> Outcome {
    let (Ok(Value::Object(wanted)), Ok(Value::Object(found))) =
        (serde_json::to_value(wanted), serde_json::to_value(found))
    else {
        return Outcome::Warning("exists; cannot compare its options".into());
    };
    let differences: Vec<String> = wanted
        .iter()
        .filter(|(key, value)| found.get(key.as_str()) != Some(*value))
        .map(|(key, value)| {
            let on_host = found.get(key.as_str()).unwrap_or(&Value::Null);
            format!("{} = {value} here, {on_host} on the host", snake_case(key))
        })
        .collect();
    if differences.is_empty() {
        Outcome::Done("exists, unchanged".into())
    } else {
        Outcome::Warning(format!(
            "exists with other options ({}); left as it is: the API cannot change a {what} in \
             place (delete it to recreate)",
            differences.join("; ")
        ))
    }
}

/// The top-level fields (in the manifest's snake_case) whose values differ.
fn changed_keys<T: Serialize>(wanted: &T, found: &T) -> Vec<String> {
    match (serde_json::to_value(wanted), serde_json::to_value(found)) {
        (Ok(Value::Object(wanted)), Ok(Value::Object(found))) => wanted
            .iter()
            .filter(|(key, value)| found.get(key.as_str()) != Some(*value))
            .map(|(key, _)| snake_case(key))
            .collect(),
        _ => Vec::new(),
    }
}

/// `maxDeliveryCount` → `max_delivery_count`.
fn snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Watching files
// ---------------------------------------------------------------------------

/// File watches on the manifest and each function's `src/` and
/// `Cargo.toml`; changed paths arrive on the channel. Dropping it stops them.
struct Watch {
    _watcher: notify::RecommendedWatcher,
}

impl Watch {
    fn new(file: &Path, manifest: &Manifest, tx: mpsc::UnboundedSender<PathBuf>) -> Result<Watch> {
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) if is_change(&event.kind) => {
                    for path in event.paths {
                        let _ = tx.send(path);
                    }
                }
                Ok(_) => {}
                Err(e) => eprintln!("sluice up: file watcher: {e}"),
            })
            .context("cannot watch files")?;
        // Directories, not files: editors replace files by renaming, which a
        // watch on the file itself would lose. Only `src/` is recursive, so
        // builds writing `target/` and the host writing `.sluice/` stay unseen.
        let mut targets: BTreeMap<PathBuf, RecursiveMode> = BTreeMap::new();
        if let Some(dir) = file.parent() {
            targets.insert(dir.to_path_buf(), RecursiveMode::NonRecursive);
        }
        for function in &manifest.functions {
            targets
                .entry(function.crate_dir.clone())
                .or_insert(RecursiveMode::NonRecursive);
            targets.insert(function.crate_dir.join("src"), RecursiveMode::Recursive);
        }
        for (path, mode) in targets {
            if let Err(e) = watcher.watch(&path, mode) {
                println!(
                    "sluice up: warning: cannot watch {}: {e}; changes there are not seen",
                    path.display()
                );
            }
        }
        Ok(Watch { _watcher: watcher })
    }
}

/// Whether an event changes a file (reads, such as cargo's, do not count).
fn is_change(kind: &EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Modify(_)
            | EventKind::Remove(_)
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    )
}

/// Whether `path` is one of a crate's sources: under `src/` or its
/// `Cargo.toml` (editor backups and swap files excepted).
fn is_source_of(path: &Path, crate_dir: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let scratch = name.starts_with('.') || name.ends_with('~') || name.ends_with(".swp");
    !scratch && (path.starts_with(crate_dir.join("src")) || path == crate_dir.join("Cargo.toml"))
}

// ---------------------------------------------------------------------------
// The host `up` starts
// ---------------------------------------------------------------------------

/// A `sluice serve` child process.
struct ChildHost {
    child: tokio::process::Child,
    url: String,
    connection_string: String,
}

impl ChildHost {
    /// Starts `sluice serve` on `data_dir` and waits until it listens.
    async fn start(data_dir: &Path, listen: Option<SocketAddr>) -> Result<ChildHost> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
        let exe = std::env::current_exe().context("cannot find the sluice executable")?;
        let listen = listen.map_or_else(|| "127.0.0.1:0".to_string(), |a| a.to_string());
        let mut child = tokio::process::Command::new(exe)
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(&listen)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // A safety net: if `up` fails before it stops the host, kill it.
            .kill_on_drop(true)
            .spawn()
            .context("starting `sluice serve`")?;
        let stdout = child
            .stdout
            .take()
            .context("the host's output is not readable")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(HOST_START_TIMEOUT, lines.next_line()).await;
        let line = match first {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) | Ok(Err(_)) => {
                let status = child
                    .wait()
                    .await
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                bail!(
                    "the host did not start ({status}); its log is above (data directory {})",
                    data_dir.display()
                );
            }
            Err(_) => bail!(
                "the host did not listen within {} s",
                HOST_START_TIMEOUT.as_secs()
            ),
        };
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .with_context(|| format!("no address in the host's first line: {line}"))?
            .to_string();
        // `serve` prints nothing more on stdout today; pass on whatever comes.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                println!("{line}");
            }
        });
        let file = connection_string_file(data_dir);
        let connection_string = std::fs::read_to_string(&file)
            .with_context(|| format!("reading the host's connection string {}", file.display()))?
            .trim()
            .to_string();
        println!(
            "sluice up: started a host at {url} (data in {}; connection string in {})",
            data_dir.display(),
            file.display()
        );
        println!(
            "sluice up: for other commands: export SLUICE_URL={url} SLUICE_DATA_DIR={}",
            data_dir.display()
        );
        Ok(ChildHost {
            child,
            url,
            connection_string,
        })
    }

    /// Asks the host to shut down (SIGTERM), and kills it if it takes too long.
    async fn stop(mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Some(pid) = self.child.id() {
            terminate(pid);
        }
        match tokio::time::timeout(HOST_STOP_TIMEOUT, self.child.wait()).await {
            Ok(_) => println!("sluice up: host stopped"),
            Err(_) => {
                let _ = self.child.kill().await;
                println!(
                    "sluice up: the host did not stop within {} s and was killed",
                    HOST_STOP_TIMEOUT.as_secs()
                );
            }
        }
    }
}

/// Sends SIGTERM, which `sluice serve` answers with a clean shutdown.
#[cfg(unix)]
fn terminate(pid: u32) {
    use rustix::process::{Pid, Signal, kill_process};
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, Signal::TERM);
    }
}

/// Elsewhere the host is killed after the stop timeout.
#[cfg(not(unix))]
fn terminate(_pid: u32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_src_and_cargo_toml_only() {
        let dir = Path::new("/app/handler");
        for (path, expected) in [
            ("/app/handler/src/lib.rs", true),
            ("/app/handler/src/deep/mod.rs", true),
            ("/app/handler/Cargo.toml", true),
            ("/app/handler/Cargo.lock", false),
            ("/app/handler/target/release/x.wasm", false),
            ("/app/handler/src/.lib.rs.swp", false),
            ("/app/handler/src/lib.rs~", false),
            ("/app/other/src/lib.rs", false),
        ] {
            assert_eq!(is_source_of(Path::new(path), dir), expected, "{path}");
        }
    }

    #[test]
    fn reads_are_not_changes() {
        use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
        assert!(is_change(&EventKind::Modify(ModifyKind::Any)));
        assert!(is_change(&EventKind::Create(CreateKind::File)));
        assert!(is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(!is_change(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
    }

    #[test]
    fn differences_name_the_manifest_fields() {
        let wanted = QueueProperties {
            max_delivery_count: 5,
            ..QueueProperties::default()
        };
        match compare(&wanted, &QueueProperties::default(), "queue") {
            Outcome::Warning(text) => {
                assert!(
                    text.contains("max_delivery_count = 5 here, 10 on the host"),
                    "{text}"
                );
                assert!(!text.contains("lock_duration_secs"), "{text}");
            }
            Outcome::Done(text) => panic!("expected a warning, got {text}"),
        }
        assert!(matches!(
            compare(&wanted, &wanted, "queue"),
            Outcome::Done(text) if text == "exists, unchanged"
        ));
    }
}
