//! `sluice:handler/publisher`: a guest publishes an event to a topic. The
//! event inherits the invocation's correlation id and continues its trace
//! (CloudEvents `correlationid` and `traceparent` extensions).

use std::collections::BTreeMap;

use super::HostContext;
use crate::clock;
use crate::events::{Event, EventSchema, EventsError};
use crate::runtime::bindings::publisher::Host;
use crate::runtime::bindings::types::{CapabilityError, OutgoingEvent};
use crate::trace::{StepKind, TRACEPARENT};

impl Host for HostContext {
    async fn publish(
        &mut self,
        topic: String,
        event: OutgoingEvent,
    ) -> Result<(), CapabilityError> {
        if event.event_type.is_empty() {
            return Err(CapabilityError::Invalid(
                "the event type must not be empty".into(),
            ));
        }
        let data =
            if event.data.is_empty() {
                None
            } else {
                Some(serde_json::from_slice(&event.data).map_err(|e| {
                    CapabilityError::Invalid(format!("event data must be JSON: {e}"))
                })?)
            };
        let mut extensions = BTreeMap::new();
        if let Some(correlation) = &self.correlation_id {
            extensions.insert("correlationid".to_string(), correlation.clone().into());
        }
        extensions.insert(TRACEPARENT.to_string(), self.trace.header().into());
        let event = Event {
            id: if event.id.is_empty() {
                uuid::Uuid::new_v4().to_string()
            } else {
                event.id
            },
            source: topic.clone(),
            event_type: event.event_type,
            subject: event.subject,
            time: clock::to_rfc3339(clock::now_ms()),
            data_content_type: Some("application/json".into()),
            data,
            data_base64: None,
            data_version: Some("1.0".into()),
            extensions,
            schema: EventSchema::EventGrid,
        };
        let stamp = self.traces.stamp();
        let published = self.events.publish(&topic, vec![event]).await;
        self.record(
            StepKind::Publish,
            &topic,
            stamp,
            published.as_ref().map(|_| ()).map_err(ToString::to_string),
        );
        match published {
            Ok(_) => Ok(()),
            Err(EventsError::TopicNotFound(_)) => Err(CapabilityError::NotFound(format!(
                "topic `{topic}` does not exist"
            ))),
            Err(EventsError::InvalidEvent(e)) => Err(CapabilityError::Invalid(e.to_string())),
            Err(e) => Err(CapabilityError::Unavailable(e.to_string())),
        }
    }
}
