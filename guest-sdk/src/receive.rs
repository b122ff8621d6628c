//! Pulling messages from queues and settling them: the push model.
//!
//! An event such as `Microsoft.ServiceBus.ActiveMessagesAvailableWithNoListeners`
//! says *at least one* message waits in an entity; the handler then drains
//! the entity itself, a batch at a time, and settles each message.
//!
//! ```no_run
//! use sluice_sdk::receive::receive_batch;
//!
//! # fn run() -> sluice_sdk::Result<()> {
//! loop {
//!     let batch = receive_batch("backlog", 32, 0)?;
//!     if batch.is_empty() {
//!         break;
//!     }
//!     for locked in batch {
//!         sluice_sdk::log::info(format!("got #{}", locked.message.sequence_number));
//!         locked.complete()?;
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use crate::__private::bindings::sluice::handler::receiver;
use crate::__private::{capability_error, message_from_wit, to_wit};
use crate::error::Result;
use crate::message::Message;
use crate::outcome::Outcome;

/// A message received under a peek-lock. Settle it with
/// [`complete`](Self::complete), [`abandon`](Self::abandon) or
/// [`dead_letter`](Self::dead_letter); if it is not settled before its lock
/// expires, the host delivers it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedMessage {
    /// The message.
    pub message: Message,
    entity: String,
    lock_token: String,
}

/// Receives up to `max` messages (1 to 256) from `entity` (a queue, a topic
/// subscription `orders/subscriptions/audit`, or either's
/// `/$DeadLetterQueue`), waiting up to `wait_ms` (at most 5000) for the
/// first. An empty batch means the entity had nothing ready.
pub fn receive_batch(entity: &str, max: u32, wait_ms: u32) -> Result<Vec<LockedMessage>> {
    let batch = receiver::receive_batch(entity, max, wait_ms)
        .map_err(|e| capability_error("entity", entity, "receive", e))?;
    Ok(batch
        .into_iter()
        .map(|locked| LockedMessage {
            message: message_from_wit(locked.message),
            entity: entity.to_string(),
            lock_token: locked.lock_token,
        })
        .collect())
}

impl LockedMessage {
    /// Settles the message with `outcome`.
    pub fn settle(self, outcome: Outcome) -> Result<()> {
        receiver::settle(
            &self.entity,
            self.message.sequence_number,
            &self.lock_token,
            &to_wit(outcome),
        )
        .map_err(|e| capability_error("entity", &self.entity, "settlement", e))
    }

    /// Removes the message: it is done.
    pub fn complete(self) -> Result<()> {
        self.settle(Outcome::Complete)
    }

    /// Releases the message for another delivery.
    pub fn abandon(self, reason: impl Into<String>) -> Result<()> {
        self.settle(Outcome::Abandon(reason.into()))
    }

    /// Moves the message to the dead-letter queue.
    pub fn dead_letter(
        self,
        reason: impl Into<String>,
        description: impl Into<String>,
    ) -> Result<()> {
        self.settle(Outcome::DeadLetter {
            reason: reason.into(),
            description: description.into(),
        })
    }
}
