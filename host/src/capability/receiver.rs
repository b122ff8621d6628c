//! `sluice:handler/receiver`: a guest pulls a batch of messages and settles
//! them itself (the push model: an event says messages wait, the handler
//! drains the entity).

use std::time::Duration;

use super::HostContext;
use crate::broker::{BrokerError, EntityPath, LockToken, ReceiveMode};
use crate::runtime::Outcome;
use crate::runtime::bindings::message_to_wit;
use crate::runtime::bindings::receiver::{Host, LockedMessage};
use crate::runtime::bindings::types::{CapabilityError, Outcome as WitOutcome};

/// Most messages one call returns.
const MAX_BATCH: u32 = 256;
/// Longest a guest may wait for the first message.
const MAX_WAIT_MS: u32 = 5000;

fn refused(entity: &str, e: BrokerError) -> CapabilityError {
    match e {
        BrokerError::QueueNotFound(_) => {
            CapabilityError::NotFound(format!("entity `{entity}` does not exist"))
        }
        e @ (BrokerError::LockLost { .. }
        | BrokerError::Session(_)
        | BrokerError::InvalidName { .. }
        | BrokerError::MessageNotFound { .. }) => CapabilityError::Invalid(e.to_string()),
        e => CapabilityError::Unavailable(e.to_string()),
    }
}

impl Host for HostContext {
    async fn receive_batch(
        &mut self,
        entity: String,
        max: u32,
        wait_ms: u32,
    ) -> Result<Vec<LockedMessage>, CapabilityError> {
        if !(1..=MAX_BATCH).contains(&max) {
            return Err(CapabilityError::Invalid(format!(
                "max must be between 1 and {MAX_BATCH}, got {max}"
            )));
        }
        let path = EntityPath::parse(&entity);
        let wait = Duration::from_millis(u64::from(wait_ms.min(MAX_WAIT_MS)));
        let max = usize::try_from(max).unwrap_or(1);
        let messages = self
            .broker
            .receive_batch(&path, ReceiveMode::PeekLock, max, wait)
            .await
            .map_err(|e| refused(&entity, e))?;
        Ok(messages
            .iter()
            .map(|m| LockedMessage {
                message: message_to_wit(m),
                lock_token: m.lock.map(|l| l.token.to_string()).unwrap_or_default(),
            })
            .collect())
    }

    async fn settle(
        &mut self,
        entity: String,
        sequence_number: u64,
        lock_token: String,
        outcome: WitOutcome,
    ) -> Result<(), CapabilityError> {
        let token: LockToken = lock_token
            .parse()
            .map_err(|_| CapabilityError::Invalid(format!("`{lock_token}` is not a lock token")))?;
        let path = EntityPath::parse(&entity);
        let seq = sequence_number;
        let result = match Outcome::from(outcome) {
            Outcome::Complete => self.broker.complete(&path, seq, token).await,
            Outcome::Abandon(reason) => self
                .broker
                .abandon(&path, seq, token, Some(&reason), Duration::ZERO, &[])
                .await
                .map(|_| ()),
            Outcome::DeadLetter(info) => {
                self.broker.dead_letter(&path, seq, token, info, &[]).await
            }
        };
        result.map_err(|e| refused(&entity, e))
    }
}
