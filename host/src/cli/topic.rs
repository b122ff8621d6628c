//! `sluice topic`: create and list topics, and subscribe to them.

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::client::{Client, print_json, segment};

#[derive(Debug, Subcommand)]
pub(crate) enum TopicCommand {
    /// Create a topic.
    Create {
        /// The topic's name.
        name: String,
    },
    /// List topics with their publish endpoints.
    List,
    /// Subscribe a queue or function to a topic.
    Subscribe {
        /// The topic.
        topic: String,
        /// The subscription's name.
        name: String,
        /// Deliver matching events to this queue.
        #[arg(
            long,
            conflicts_with = "function",
            required_unless_present = "function"
        )]
        queue: Option<String>,
        /// Deliver matching events to this function.
        #[arg(long)]
        function: Option<String>,
        /// Only these event types (repeatable).
        #[arg(long = "event-type")]
        event_types: Vec<String>,
        /// Only subjects starting with this.
        #[arg(long)]
        subject_begins_with: Option<String>,
        /// Only subjects ending with this.
        #[arg(long)]
        subject_ends_with: Option<String>,
        /// Attempts before an event is dead-lettered (1-30).
        #[arg(long)]
        max_delivery_attempts: Option<u32>,
    },
    /// Delete a topic with its subscriptions.
    Delete {
        /// The topic's name.
        name: String,
    },
}

impl TopicCommand {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<()> {
        match self {
            TopicCommand::Create { name } => {
                print_json(
                    &client
                        .json(
                            client.request(Method::PUT, &format!("/api/topics/{}", segment(&name))),
                        )
                        .await?,
                );
            }
            TopicCommand::List => print_json(
                &client
                    .json(client.request(Method::GET, "/api/topics"))
                    .await?,
            ),
            TopicCommand::Subscribe {
                topic,
                name,
                queue,
                function,
                event_types,
                subject_begins_with,
                subject_ends_with,
                max_delivery_attempts,
            } => {
                let destination = match (queue, function) {
                    (Some(q), _) => json!({ "queue": q }),
                    (None, Some(f)) => json!({ "function": f }),
                    (None, None) => anyhow::bail!("give --queue or --function"),
                };
                let mut spec = json!({
                    "destination": destination,
                    "filter": {
                        "includedEventTypes": (!event_types.is_empty()).then_some(event_types),
                        "subjectBeginsWith": subject_begins_with,
                        "subjectEndsWith": subject_ends_with,
                    },
                });
                if let Some(n) = max_delivery_attempts {
                    spec["retryPolicy"] = json!({ "maxDeliveryAttempts": n });
                }
                let path = format!(
                    "/api/topics/{}/subscriptions/{}",
                    segment(&topic),
                    segment(&name)
                );
                print_json(
                    &client
                        .json(client.request(Method::PUT, &path).json(&spec))
                        .await?,
                );
            }
            TopicCommand::Delete { name } => {
                client
                    .send(
                        client.request(Method::DELETE, &format!("/api/topics/{}", segment(&name))),
                    )
                    .await?;
                println!("deleted topic {name}");
            }
        }
        Ok(())
    }
}
