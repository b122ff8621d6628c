//! `sluice topic`: Event Grid topics, their keys, subscriptions and dead letters.

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
        /// Accept CloudEvents 1.0 instead of the Event Grid schema.
        #[arg(long)]
        cloud_events: bool,
        /// A system topic: receives the broker's
        /// `Microsoft.ServiceBus.*MessagesAvailableWithNoListeners` events.
        #[arg(long)]
        system: bool,
    },
    /// Show a topic's two access keys (for `aeg-sas-key` and SDK credentials).
    Keys {
        /// The topic's name.
        name: String,
    },
    /// Replace one of a topic's keys; holders of the old one are refused.
    RegenerateKey {
        /// The topic's name.
        name: String,
        /// `key1` or `key2`.
        key_name: String,
    },
    /// List topics with their publish endpoints.
    List,
    /// Subscribe a queue, function or webhook to a topic (a webhook is
    /// validated by Event Grid's handshake first).
    Subscribe {
        /// The topic.
        topic: String,
        /// The subscription's name.
        name: String,
        /// Deliver matching events to this queue.
        #[arg(long, group = "destination")]
        queue: Option<String>,
        /// Deliver matching events to this function.
        #[arg(long, group = "destination")]
        function: Option<String>,
        /// POST matching events to this http(s) URL.
        #[arg(long, group = "destination")]
        webhook: Option<String>,
        /// Webhooks: most events per POST (1-5000).
        #[arg(long, requires = "webhook")]
        max_events_per_batch: Option<u32>,
        /// Webhooks: preferred POST size in KB (1-1024).
        #[arg(long, requires = "webhook")]
        preferred_batch_size_kb: Option<u32>,
        /// Deliver as CloudEvents 1.0 (default: the topic's input schema).
        #[arg(long)]
        cloud_events: bool,
        /// An advanced filter as JSON, e.g.
        /// '{"operatorType":"NumberGreaterThan","key":"data.total","value":100}' (repeatable).
        #[arg(long = "advanced-filter")]
        advanced_filters: Vec<String>,
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
        /// Minutes before an undelivered event is dead-lettered (1-1440).
        #[arg(long)]
        event_ttl_minutes: Option<u32>,
    },
    /// List a subscription's dead-lettered events with Event Grid's metadata.
    DeadLetters {
        /// The topic.
        topic: String,
        /// The subscription.
        name: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        max: usize,
    },
    /// Deliver a subscription's dead-lettered events again.
    Resubmit {
        /// The topic.
        topic: String,
        /// The subscription.
        name: String,
        /// At most this many (default: all).
        #[arg(long)]
        max: Option<usize>,
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
            TopicCommand::Create {
                name,
                cloud_events,
                system,
            } => {
                let schema = if cloud_events {
                    "CloudEventSchemaV1_0"
                } else {
                    "EventGridSchema"
                };
                let mut options = json!({ "inputSchema": schema });
                if system {
                    options["topicType"] = json!("Microsoft.ServiceBus.Namespaces");
                }
                let request = client
                    .request(Method::PUT, &format!("/api/topics/{}", segment(&name)))
                    .json(&options);
                print_json(&client.json(request).await?);
            }
            TopicCommand::Keys { name } => {
                let path = format!("/api/topics/{}/listKeys", segment(&name));
                print_json(&client.json(client.request(Method::POST, &path)).await?);
            }
            TopicCommand::RegenerateKey { name, key_name } => {
                let path = format!("/api/topics/{}/regenerateKey", segment(&name));
                let request = client
                    .request(Method::POST, &path)
                    .json(&json!({ "keyName": key_name }));
                print_json(&client.json(request).await?);
            }
            TopicCommand::DeadLetters { topic, name, max } => {
                let path = format!(
                    "/api/topics/{}/subscriptions/{}/deadLetters",
                    segment(&topic),
                    segment(&name)
                );
                let request = client
                    .request(Method::GET, &path)
                    .query(&[("max", max.to_string())]);
                print_json(&client.json(request).await?);
            }
            TopicCommand::Resubmit { topic, name, max } => {
                let path = format!(
                    "/api/topics/{}/subscriptions/{}/deadLetters/resubmit",
                    segment(&topic),
                    segment(&name)
                );
                let mut request = client.request(Method::POST, &path);
                if let Some(max) = max {
                    request = request.query(&[("max", max.to_string())]);
                }
                print_json(&client.json(request).await?);
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
                webhook,
                max_events_per_batch,
                preferred_batch_size_kb,
                cloud_events,
                advanced_filters,
                event_types,
                subject_begins_with,
                subject_ends_with,
                max_delivery_attempts,
                event_ttl_minutes,
            } => {
                let destination = match (queue, function, webhook) {
                    (Some(q), _, _) => json!({ "queue": q }),
                    (_, Some(f), _) => json!({ "function": f }),
                    (_, _, Some(url)) => {
                        let mut hook = json!({ "endpointUrl": url });
                        if let Some(n) = max_events_per_batch {
                            hook["maxEventsPerBatch"] = json!(n);
                        }
                        if let Some(kb) = preferred_batch_size_kb {
                            hook["preferredBatchSizeInKilobytes"] = json!(kb);
                        }
                        json!({ "webhook": hook })
                    }
                    (None, None, None) => anyhow::bail!("give --queue, --function or --webhook"),
                };
                let advanced: Vec<serde_json::Value> = advanced_filters
                    .iter()
                    .map(|text| {
                        serde_json::from_str(text).map_err(|e| {
                            anyhow::anyhow!("--advanced-filter `{text}` is not JSON: {e}")
                        })
                    })
                    .collect::<anyhow::Result<_>>()?;
                let mut spec = json!({
                    "destination": destination,
                    "filter": {
                        "includedEventTypes": (!event_types.is_empty()).then_some(event_types),
                        "subjectBeginsWith": subject_begins_with,
                        "subjectEndsWith": subject_ends_with,
                        "advancedFilters": advanced,
                    },
                });
                let mut retry = serde_json::Map::new();
                if let Some(n) = max_delivery_attempts {
                    retry.insert("maxDeliveryAttempts".into(), json!(n));
                }
                if let Some(m) = event_ttl_minutes {
                    retry.insert("eventTimeToLiveInMinutes".into(), json!(m));
                }
                if !retry.is_empty() {
                    spec["retryPolicy"] = serde_json::Value::Object(retry);
                }
                if cloud_events {
                    spec["eventDeliverySchema"] = json!("CloudEventSchemaV1_0");
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
