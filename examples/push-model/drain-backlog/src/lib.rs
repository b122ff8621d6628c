//! Push model, the handler: woken by
//! `Microsoft.ServiceBus.ActiveMessagesAvailableWithNoListeners` (or its
//! dead-letter twin), it drains the entity the event names, a batch at a
//! time, instead of polling it.
//!
//! One event means *at least one* message waits: the handler keeps pulling
//! until the entity is empty. Each message is "processed" by forwarding it to
//! the `processed` queue with the entity it came from, then completed.

use serde::Deserialize;
use sluice_sdk::receive::receive_batch;
use sluice_sdk::send::{OutgoingMessage, send};
use sluice_sdk::{Error, Event, log};

/// Messages pulled per call.
const BATCH: u32 = 32;

/// The data of Service Bus's `...MessagesAvailableWithNoListeners` events.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NoListeners {
    queue_name: Option<String>,
    topic_name: Option<String>,
    subscription_name: Option<String>,
}

impl NoListeners {
    /// The entity path to receive from.
    fn entity(&self, dead_letters: bool) -> Result<String, Error> {
        let entity = match (&self.queue_name, &self.topic_name, &self.subscription_name) {
            (Some(queue), _, _) => queue.clone(),
            (None, Some(topic), Some(sub)) => format!("{topic}/subscriptions/{sub}"),
            _ => {
                return Err(Error::dead_letter(
                    "NoEntity",
                    "the event names neither a queue nor a subscription",
                ));
            }
        };
        Ok(if dead_letters {
            format!("{entity}/$DeadLetterQueue")
        } else {
            entity
        })
    }
}

#[sluice_sdk::event_handler]
fn drain(event: Event) -> Result<(), Error> {
    let data: NoListeners = event.data()?;
    let entity = data.entity(event.event_type.contains("Deadletter"))?;
    let mut drained = 0usize;
    loop {
        let batch = receive_batch(&entity, BATCH, 0)?;
        if batch.is_empty() {
            break;
        }
        for locked in batch {
            let forwarded = OutgoingMessage::bytes(locked.message.body.clone())
                .with_property("drained-from", entity.clone());
            send("processed", &forwarded)?;
            locked.complete()?;
            drained += 1;
        }
    }
    log::write(
        log::Level::Info,
        "drained",
        &[("entity", &entity), ("messages", &drained)],
    );
    Ok(())
}
