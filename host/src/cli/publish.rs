//! `sluice publish`: publish an event (Event Grid schema or CloudEvents) to a topic.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Client, segment};
use crate::clock;

/// Publish an event to a topic.
#[derive(Debug, Args)]
pub(crate) struct PublishCommand {
    /// The topic.
    topic: String,
    /// The event type, e.g. `orders.created`.
    #[arg(long = "type", required_unless_present = "file")]
    event_type: Option<String>,
    /// What the event is about (default: the event type).
    #[arg(long)]
    subject: Option<String>,
    /// The payload, as JSON.
    #[arg(long, default_value = "{}")]
    data: String,
    /// The event id (generated when absent).
    #[arg(long)]
    id: Option<String>,
    /// Publish this file's JSON array of events instead.
    #[arg(long, conflicts_with_all = ["event_type", "id"])]
    file: Option<PathBuf>,
    /// Send CloudEvents 1.0 (for topics with input schema CloudEventSchemaV1_0).
    #[arg(long)]
    cloud_events: bool,
}

impl PublishCommand {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<()> {
        let body = match &self.file {
            Some(path) => {
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
            }
            None => {
                let data: Value =
                    serde_json::from_str(&self.data).context("--data must be JSON")?;
                let id = self
                    .id
                    .clone()
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                let subject = self.subject.clone().or_else(|| self.event_type.clone());
                let time = clock::to_rfc3339(clock::now_ms());
                let event = if self.cloud_events {
                    json!([{
                        "specversion": "1.0",
                        "id": id,
                        "source": "/sluice/cli",
                        "type": self.event_type,
                        "subject": subject,
                        "time": time,
                        "datacontenttype": "application/json",
                        "data": data,
                    }])
                } else {
                    json!([{
                        "id": id,
                        "eventType": self.event_type,
                        "subject": subject,
                        "eventTime": time,
                        "data": data,
                        "dataVersion": "1.0",
                    }])
                };
                serde_json::to_vec(&event)?
            }
        };
        let request = client
            .request(
                Method::POST,
                &format!("/topics/{}/api/events", segment(&self.topic)),
            )
            .query(&[("api-version", "2018-01-01")])
            .header(
                "content-type",
                if self.cloud_events {
                    "application/cloudevents-batch+json; charset=utf-8"
                } else {
                    "application/json"
                },
            )
            .body(body);
        client.send(request).await?;
        println!("published to {}", self.topic);
        Ok(())
    }
}
