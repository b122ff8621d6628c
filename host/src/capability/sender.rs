//! `sluice:handler/sender`: a guest sends a message to a queue. The message
//! inherits the invocation's correlation id and continues its trace.

use super::HostContext;
use crate::broker::{BrokerError, NewMessage};
use crate::runtime::bindings::sender::Host;
use crate::runtime::bindings::types::{CapabilityError, OutgoingMessage};
use crate::trace::{StepKind, TRACEPARENT, TraceParent};

impl Host for HostContext {
    async fn send(
        &mut self,
        queue: String,
        message: OutgoingMessage,
    ) -> Result<u64, CapabilityError> {
        let mut user_properties = message.user_properties;
        if TraceParent::from_properties(&user_properties).is_none() {
            user_properties.retain(|(k, _)| !k.eq_ignore_ascii_case(TRACEPARENT));
            user_properties.push((TRACEPARENT.to_string(), self.trace.header()));
        }
        let message = NewMessage {
            message_id: message.message_id,
            body: message.body,
            content_type: message.content_type,
            // Inherit the transaction's correlation id unless the guest set one.
            correlation_id: message
                .correlation_id
                .or_else(|| self.correlation_id.clone()),
            subject: message.subject,
            user_properties,
            session_id: message.session_id,
            scheduled_at_ms: message.delay_ms.map(|ms| {
                crate::clock::now_ms().saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))
            }),
            ..NewMessage::default()
        };
        let stamp = self.traces.stamp();
        let sent = self.broker.send(&queue, vec![message]).await;
        self.record(
            StepKind::Send,
            &queue,
            stamp,
            sent.as_ref().map(|_| ()).map_err(ToString::to_string),
        );
        match sent {
            Ok(seqs) => Ok(seqs.first().copied().unwrap_or_default()),
            Err(BrokerError::QueueNotFound(_)) => Err(CapabilityError::NotFound(format!(
                "queue `{queue}` does not exist"
            ))),
            Err(
                e @ (BrokerError::MessageTooLarge { .. }
                | BrokerError::InvalidName { .. }
                | BrokerError::Session(_)),
            ) => Err(CapabilityError::Invalid(e.to_string())),
            Err(e) => Err(CapabilityError::Unavailable(e.to_string())),
        }
    }
}
