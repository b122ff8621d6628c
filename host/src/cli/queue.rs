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
        /// Deliveries before a message is dead-lettered.
        #[arg(long)]
        max_delivery_count: Option<u32>,
        /// Peek-lock duration in seconds.
        #[arg(long)]
        lock_duration_secs: Option<u64>,
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
    /// Delete a queue and its messages.
    Delete {
        /// The queue's name.
        name: String,
    },
}

impl QueueCommand {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<()> {
        match self {
            QueueCommand::Create {
                name,
                max_delivery_count,
                lock_duration_secs,
            } => {
                let mut props = serde_json::Map::new();
                if let Some(n) = max_delivery_count {
                    props.insert("maxDeliveryCount".into(), json!(n));
                }
                if let Some(n) = lock_duration_secs {
                    props.insert("lockDurationSecs".into(), json!(n));
                }
                let request = client
                    .request(Method::PUT, &format!("/api/queues/{}", entity_path(&name)))
                    .json(&Value::Object(props));
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
