//! `sluice trace`: the steps of one business transaction, by correlation id.

use clap::Args;
use reqwest::Method;

use super::client::{Client, print_json, segment};

/// Show the steps of one transaction.
#[derive(Debug, Args)]
pub(crate) struct TraceCommand {
    /// A correlation id (a message's CorrelationId or id, an event's
    /// `correlationid` extension or id) or a W3C trace id.
    correlation_id: String,
    /// Print the JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl TraceCommand {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<()> {
        let path = format!("/api/traces/{}", segment(&self.correlation_id));
        let trace = client.json(client.request(Method::GET, &path)).await?;
        if self.json {
            print_json(&trace);
            return Ok(());
        }
        let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
        println!(
            "transaction {} (trace {})",
            text(&trace["id"]),
            trace["traceIds"]
                .as_array()
                .map(|ids| ids.iter().map(text).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        );
        println!(
            "{:<24}  {:<11} {:<18} {:<36} {:<13} {:>5} {:>9}  reason",
            "at", "step", "function", "entity", "outcome", "count", "ms"
        );
        for step in trace["steps"].as_array().into_iter().flatten() {
            println!(
                "{:<24}  {:<11} {:<18} {:<36} {:<13} {:>5} {:>9.1}  {}",
                text(&step["at"]),
                text(&step["kind"]),
                text(&step["function"]),
                text(&step["entity"]),
                text(&step["outcome"]),
                step["deliveryCount"]
                    .as_u64()
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                step["durationMs"].as_f64().unwrap_or(0.0),
                text(&step["reason"]),
            );
        }
        Ok(())
    }
}
