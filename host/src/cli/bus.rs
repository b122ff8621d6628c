//! `sluice bus`: Service Bus topics, their subscriptions and rules.

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::client::{Client, print_json, segment};
use super::queue::QueueOptions;

#[derive(Debug, Subcommand)]
pub(crate) enum BusCommand {
    /// Create a Service Bus topic (send to it like a queue: `sluice send TOPIC`).
    CreateTopic {
        /// The topic's name.
        name: String,
        /// Drop messages whose MessageId was seen within this many seconds.
        #[arg(long)]
        duplicate_detection_secs: Option<u64>,
        /// Time-to-live of messages that set none, in seconds.
        #[arg(long)]
        ttl_secs: Option<u64>,
    },
    /// List topics, or one topic's subscriptions with their counts and rules.
    List {
        /// A topic: list its subscriptions.
        topic: Option<String>,
    },
    /// Add a subscription (a queue at `TOPIC/subscriptions/NAME`), optionally filtered.
    Subscribe {
        /// The topic.
        topic: String,
        /// The subscription's name.
        name: String,
        /// Keep only messages matching this SQL filter (replaces the match-all `$Default` rule).
        #[arg(long)]
        sql: Option<String>,
        #[command(flatten)]
        options: QueueOptions,
    },
    /// Delete a topic with its subscriptions.
    DeleteTopic {
        /// The topic's name.
        name: String,
    },
}

impl BusCommand {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<()> {
        match self {
            BusCommand::CreateTopic {
                name,
                duplicate_detection_secs,
                ttl_secs,
            } => {
                let mut props = json!({ "defaultMessageTimeToLiveSecs": ttl_secs });
                if let Some(secs) = duplicate_detection_secs {
                    props["requiresDuplicateDetection"] = json!(true);
                    props["duplicateDetectionHistoryTimeWindowSecs"] = json!(secs);
                }
                let path = format!("/api/servicebus/topics/{}", segment(&name));
                print_json(
                    &client
                        .json(client.request(Method::PUT, &path).json(&props))
                        .await?,
                );
            }
            BusCommand::List { topic } => {
                let path = match topic {
                    None => "/api/servicebus/topics".to_string(),
                    Some(t) => format!("/api/servicebus/topics/{}/subscriptions", segment(&t)),
                };
                print_json(&client.json(client.request(Method::GET, &path)).await?);
            }
            BusCommand::Subscribe {
                topic,
                name,
                sql,
                options,
            } => {
                let base = format!(
                    "/api/servicebus/topics/{}/subscriptions/{}",
                    segment(&topic),
                    segment(&name)
                );
                let created = client
                    .json(client.request(Method::PUT, &base).json(&options.to_json()))
                    .await?;
                if let Some(expression) = sql {
                    let rule = json!({ "type": "sql", "expression": expression });
                    client
                        .json(
                            client
                                .request(Method::PUT, &format!("{base}/rules/filter"))
                                .json(&rule),
                        )
                        .await?;
                    client
                        .send(client.request(Method::DELETE, &format!("{base}/rules/%24Default")))
                        .await?;
                }
                print_json(&created);
            }
            BusCommand::DeleteTopic { name } => {
                let path = format!("/api/servicebus/topics/{}", segment(&name));
                client.send(client.request(Method::DELETE, &path)).await?;
                println!("deleted topic {name}");
            }
        }
        Ok(())
    }
}
