//! `sluice send`: send a message to a queue (Service Bus REST).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use reqwest::Method;
use serde_json::json;

use super::client::{Client, entity_path, parse_key_value};
use crate::clock;

/// Send a message to a queue.
#[derive(Debug, Args)]
pub(crate) struct SendCommand {
    /// The queue.
    queue: String,
    /// The body, as text.
    #[arg(long, conflicts_with = "file", required_unless_present = "file")]
    body: Option<String>,
    /// Send this file's bytes as the body.
    #[arg(long)]
    file: Option<PathBuf>,
    /// The message id (duplicate detection key).
    #[arg(long)]
    message_id: Option<String>,
    /// The correlation id.
    #[arg(long)]
    correlation_id: Option<String>,
    /// The label / subject.
    #[arg(long)]
    subject: Option<String>,
    /// The session id (session-enabled queues).
    #[arg(long)]
    session_id: Option<String>,
    /// Time-to-live in seconds.
    #[arg(long)]
    ttl_secs: Option<f64>,
    /// Deliver no earlier than this many seconds from now.
    #[arg(long)]
    delay_secs: Option<u64>,
    /// The body's media type.
    #[arg(long, default_value = "application/json")]
    content_type: String,
    /// A user property `key=value` (repeatable).
    #[arg(long = "property", value_parser = parse_key_value)]
    properties: Vec<(String, String)>,
}

impl SendCommand {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<()> {
        let body = match (&self.body, &self.file) {
            (Some(text), _) => text.clone().into_bytes(),
            (None, Some(path)) => {
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
            }
            (None, None) => anyhow::bail!("give --body or --file"),
        };
        let scheduled = self.delay_secs.map(|secs| {
            let secs = i64::try_from(secs).unwrap_or(i64::MAX / 2000);
            clock::to_rfc3339(clock::now_ms().saturating_add(secs.saturating_mul(1000)))
        });
        let broker = json!({
            "MessageId": self.message_id,
            "CorrelationId": self.correlation_id,
            "Label": self.subject,
            "SessionId": self.session_id,
            "TimeToLive": self.ttl_secs,
            "ScheduledEnqueueTimeUtc": scheduled,
        });
        let mut request = client
            .request(
                Method::POST,
                &format!("/{}/messages", entity_path(&self.queue)),
            )
            .header("content-type", &self.content_type)
            .header("BrokerProperties", broker.to_string())
            .body(body);
        for (k, v) in &self.properties {
            request = request.header(k.as_str(), format!("\"{v}\""));
        }
        client.send(request).await?;
        println!("sent to {}", self.queue);
        Ok(())
    }
}
