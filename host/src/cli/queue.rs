//! `sluice queue`: create, list and look into queues and dead letters.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Client, entity_path, print_json};

#[derive(Debug, Subcommand)]
pub(crate) enum QueueCommand {
    /// Create a queue.
    Create {
        /// The queue's name.
        name: String,
        #[command(flatten)]
        options: QueueOptions,
    },
    /// List queues with their message counts.
    List,
    /// Show messages without locking them (`<queue>/$DeadLetterQueue` for dead letters).
    Peek {
        /// The queue (or sub-queue) path.
        entity: String,
        /// Most messages to show.
        #[arg(long, default_value_t = 32)]
        max: usize,
        /// First sequence number to show.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// List a queue's dead-lettered messages with their reasons.
    #[command(alias = "dlq")]
    DeadLetters {
        /// The queue.
        queue: String,
        /// Most messages to show.
        #[arg(long, default_value_t = 32)]
        max: usize,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Move dead-lettered messages back into the queue.
    Resubmit {
        /// The queue.
        queue: String,
        /// Most messages to move (default: all).
        #[arg(long)]
        max: Option<usize>,
    },
    /// Delete a queue and its messages.
    Delete {
        /// The queue's name.
        name: String,
    },
}

impl QueueCommand {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<()> {
        match self {
            QueueCommand::Create { name, options } => {
                let request = client
                    .request(Method::PUT, &format!("/api/queues/{}", entity_path(&name)))
                    .json(&options.to_json());
                print_json(&client.json(request).await?);
            }
            QueueCommand::Resubmit { queue, max } => {
                let mut query = vec![("queue", queue)];
                if let Some(max) = max {
                    query.push(("max", max.to_string()));
                }
                let request = client.request(Method::POST, "/api/resubmit").query(&query);
                print_json(&client.json(request).await?);
            }
            QueueCommand::List => print_json(
                &client
                    .json(client.request(Method::GET, "/api/queues"))
                    .await?,
            ),
            QueueCommand::Peek {
                entity,
                max,
                from,
                json,
            } => {
                show_messages(client, &entity, from, max, json).await?;
            }
            QueueCommand::DeadLetters { queue, max, json } => {
                show_messages(client, &format!("{queue}/$DeadLetterQueue"), 0, max, json).await?;
            }
            QueueCommand::Delete { name } => {
                client
                    .send(client.request(
                        Method::DELETE,
                        &format!("/api/queues/{}", entity_path(&name)),
                    ))
                    .await?;
                println!("deleted queue {name}");
            }
        }
        Ok(())
    }
}

/// Queue options shared by `queue create` and `bus subscribe`.
#[derive(Debug, clap::Args)]
pub(crate) struct QueueOptions {
    /// Deliveries before a message is dead-lettered (default 10).
    #[arg(long)]
    max_delivery_count: Option<u32>,
    /// Peek-lock duration in seconds (default 60, max 300).
    #[arg(long)]
    lock_duration_secs: Option<u64>,
    /// Time-to-live of messages that set none, in seconds.
    #[arg(long)]
    ttl_secs: Option<u64>,
    /// Dead-letter expired messages (reason TTLExpiredException) instead of dropping them.
    #[arg(long)]
    dead_letter_on_expiration: bool,
    /// Drop messages whose MessageId was seen within this many seconds.
    #[arg(long)]
    duplicate_detection_secs: Option<u64>,
    /// Require a SessionId on every message; deliver FIFO per session.
    #[arg(long)]
    requires_session: bool,
    /// Forward every message to this queue.
    #[arg(long)]
    forward_to: Option<String>,
    /// Forward dead-lettered messages to this queue.
    #[arg(long)]
    forward_dead_letters_to: Option<String>,
}

impl QueueOptions {
    pub(crate) fn to_json(&self) -> Value {
        let mut props = serde_json::Map::new();
        let mut set = |name: &str, value: Value| {
            if !value.is_null() {
                props.insert(name.into(), value);
            }
        };
        set("maxDeliveryCount", json!(self.max_delivery_count));
        set("lockDurationSecs", json!(self.lock_duration_secs));
        set("defaultMessageTimeToLiveSecs", json!(self.ttl_secs));
        set("forwardTo", json!(self.forward_to));
        set(
            "forwardDeadLetteredMessagesTo",
            json!(self.forward_dead_letters_to),
        );
        if self.dead_letter_on_expiration {
            set("deadLetteringOnMessageExpiration", json!(true));
        }
        if let Some(secs) = self.duplicate_detection_secs {
            set("requiresDuplicateDetection", json!(true));
            set("duplicateDetectionHistoryTimeWindowSecs", json!(secs));
        }
        if self.requires_session {
            set("requiresSession", json!(true));
        }
        Value::Object(props)
    }
}

async fn show_messages(
    client: &Client,
    entity: &str,
    from: u64,
    max: usize,
    raw: bool,
) -> anyhow::Result<()> {
    let request = client
        .request(
            Method::GET,
            &format!("/api/messages/{}", entity_path(entity)),
        )
        .query(&[("from", from.to_string()), ("max", max.to_string())]);
    let messages = client.json(request).await?;
    if raw {
        print_json(&messages);
        return Ok(());
    }
    let list = messages.as_array().cloned().unwrap_or_default();
    println!("{entity}: {} message(s)", list.len());
    for m in list {
        println!(
            "  #{} {} id={} deliveries={}",
            m["sequenceNumber"],
            m["state"].as_str().unwrap_or("?"),
            m["messageId"].as_str().unwrap_or("?"),
            m["deliveryCount"]
        );
        if let Some(reason) = m["deadLetterReason"].as_str() {
            println!("    dead-letter reason: {reason}");
            println!(
                "    description: {}",
                m["deadLetterDescription"].as_str().unwrap_or("")
            );
        }
        match m["body"].as_str() {
            Some(body) => println!("    body: {body}"),
            None => println!(
                "    body (base64): {}",
                m["bodyBase64"].as_str().unwrap_or("")
            ),
        }
    }
    Ok(())
}
