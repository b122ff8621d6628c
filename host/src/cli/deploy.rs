//! `sluice deploy`: upload a component as a function.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use reqwest::Method;

use super::client::{Client, SettingsArgs, print_json, put_settings, segment};

/// Upload a component as a function with its trigger.
#[derive(Debug, Args)]
pub(crate) struct DeployCommand {
    /// The function's name.
    name: String,
    /// The component (.wasm) to upload.
    component: PathBuf,
    /// Run on every message of this queue.
    #[arg(long, conflicts_with = "topic", required_unless_present = "topic")]
    queue: Option<String>,
    /// Run on events published to this topic.
    #[arg(long)]
    topic: Option<String>,
    /// Only these event types (repeatable; topic trigger only).
    #[arg(long = "event-type", requires = "topic")]
    event_types: Vec<String>,
    /// Invocations that may run at once.
    #[arg(long)]
    max_concurrency: Option<u32>,
    /// Deadline of one invocation, in seconds.
    #[arg(long)]
    timeout_secs: Option<u64>,
    /// Memory cap of one instance, in MiB.
    #[arg(long)]
    memory_mib: Option<u32>,
    /// Log volume one invocation may write, in KiB (more is dropped).
    #[arg(long)]
    max_log_kib: Option<u32>,
    /// Settings; when any is given, they replace the function's settings
    /// before the deploy.
    #[command(flatten)]
    settings: SettingsArgs,
}

impl DeployCommand {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<()> {
        let bytes = std::fs::read(&self.component)
            .with_context(|| format!("reading component {}", self.component.display()))?;
        // Settings first, so the first invocation already sees them.
        if !self.settings.is_empty() {
            put_settings(client, &self.name, &self.settings).await?;
        }
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(queue) = &self.queue {
            query.push(("queue", queue.clone()));
        }
        if let Some(topic) = &self.topic {
            query.push(("topic", topic.clone()));
        }
        if !self.event_types.is_empty() {
            query.push(("eventTypes", self.event_types.join(",")));
        }
        if let Some(n) = self.max_concurrency {
            query.push(("maxConcurrency", n.to_string()));
        }
        if let Some(n) = self.timeout_secs {
            query.push(("timeoutSecs", n.to_string()));
        }
        if let Some(n) = self.memory_mib {
            query.push(("memoryMib", n.to_string()));
        }
        if let Some(n) = self.max_log_kib {
            query.push(("maxLogKib", n.to_string()));
        }
        let request = client
            .request(
                Method::PUT,
                &format!("/api/functions/{}", segment(&self.name)),
            )
            .query(&query)
            .header("content-type", "application/wasm")
            .body(bytes);
        let record = client.json(request).await?;
        print_json(&record);
        Ok(())
    }
}
