//! System events about the broker: the push model.
//!
//! Instead of polling, a handler can wait for Service Bus's system events:
//! every entity holding messages that no receiver has asked for within the
//! interval raises `Microsoft.ServiceBus.ActiveMessagesAvailableWithNoListeners`
//! (or `...DeadletterMessagesAvailableWithNoListeners` for its dead-letter
//! queue) on each topic created with `topicType`
//! `Microsoft.ServiceBus.Namespaces`, at most once per entity per interval.
//! One event means *at least one* message: the handler drains the entity
//! itself through the receiver capability.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{Event, EventSchema, Events};
use crate::broker::{Broker, EntityPath};
use crate::clock;

/// Active messages wait and no receiver is listening.
pub const ACTIVE_MESSAGES_NO_LISTENERS: &str =
    "Microsoft.ServiceBus.ActiveMessagesAvailableWithNoListeners";
/// Dead-lettered messages wait and no receiver is listening.
pub const DEAD_LETTER_MESSAGES_NO_LISTENERS: &str =
    "Microsoft.ServiceBus.DeadletterMessagesAvailableWithNoListeners";
/// The `topicType` that makes a topic receive these events.
pub const NAMESPACE_TOPIC_TYPE: &str = "Microsoft.ServiceBus.Namespaces";

/// How the push model behaves.
#[derive(Clone, Debug)]
pub struct PushSettings {
    /// How long an entity must go unattended, and the least time between
    /// two events about it.
    pub interval: Duration,
    /// The namespace name the events carry.
    pub namespace: String,
    /// How clients reach this host (for `requestUri`), e.g. `http://127.0.0.1:7070`.
    pub base_url: String,
}

/// Raises the events, forever.
pub async fn run(events: Arc<Events>, broker: Arc<Broker>, settings: PushSettings) {
    let interval_ms = i64::try_from(settings.interval.as_millis()).unwrap_or(i64::MAX);
    let tick = (settings.interval / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    let mut last_raised: HashMap<String, i64> = HashMap::new();
    loop {
        tokio::time::sleep(tick).await;
        let topics = events.system_topics();
        if topics.is_empty() {
            continue;
        }
        let now = clock::now_ms();
        for (path, _) in broker.unattended(now - interval_ms) {
            if events.is_delivery_queue(&path.queue) {
                continue;
            }
            let key = path.to_string();
            if last_raised
                .get(&key)
                .is_some_and(|at| now - at < interval_ms)
            {
                continue;
            }
            let event = system_event(&path, &settings);
            for topic in &topics {
                if let Err(e) = events.publish(topic, vec![event.clone()]).await {
                    tracing::warn!(topic, entity = %path, error = %e, "cannot raise a system event");
                }
            }
            tracing::debug!(entity = %path, event_type = %event.event_type, "system event raised");
            last_raised.insert(key, now);
        }
        last_raised.retain(|_, at| now - *at < interval_ms);
    }
}

/// The event Service Bus raises for `path`, with its documented data.
fn system_event(path: &EntityPath, settings: &PushSettings) -> Event {
    let (topic_name, subscription_name) = match path.queue.split_once("/subscriptions/") {
        Some((topic, sub)) => (Some(topic), Some(sub)),
        None => (None, None),
    };
    let (entity_type, subject) = match (topic_name, subscription_name) {
        (Some(t), Some(s)) => ("subscriber", format!("topics/{t}/subscriptions/{s}")),
        _ => ("queue", format!("queues/{}", path.queue)),
    };
    let (event_type, entity_uri) = if path.dead_letter {
        (
            DEAD_LETTER_MESSAGES_NO_LISTENERS,
            format!("{}/$deadletterqueue", path.queue),
        )
    } else {
        (ACTIVE_MESSAGES_NO_LISTENERS, path.queue.clone())
    };
    let data = json!({
        "namespaceName": settings.namespace,
        "requestUri": format!("{}/{entity_uri}/messages/head", settings.base_url.trim_end_matches('/')),
        "entityType": entity_type,
        "queueName": topic_name.is_none().then_some(&path.queue),
        "topicName": topic_name,
        "subscriptionName": subscription_name,
    });
    Event {
        id: uuid::Uuid::new_v4().to_string(),
        source: format!("/namespaces/{}", settings.namespace),
        event_type: event_type.to_string(),
        subject: Some(subject),
        time: clock::to_rfc3339(clock::now_ms()),
        data_content_type: Some("application/json".into()),
        data: Some(data),
        data_base64: None,
        data_version: Some("1".into()),
        extensions: Default::default(),
        schema: EventSchema::EventGrid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PushSettings {
        PushSettings {
            interval: Duration::from_secs(1),
            namespace: "shop".into(),
            base_url: "http://127.0.0.1:7070/".into(),
        }
    }

    #[test]
    fn queue_event_names_the_queue_and_its_receive_uri() {
        let event = system_event(&EntityPath::active("orders"), &settings());
        assert_eq!(event.event_type, ACTIVE_MESSAGES_NO_LISTENERS);
        assert_eq!(event.subject.as_deref(), Some("queues/orders"));
        let data = event.data.unwrap_or_default();
        assert_eq!(data["entityType"], "queue");
        assert_eq!(data["queueName"], "orders");
        assert_eq!(data["topicName"], serde_json::Value::Null);
        assert_eq!(
            data["requestUri"],
            "http://127.0.0.1:7070/orders/messages/head"
        );
    }

    #[test]
    fn subscription_dead_letter_event_names_topic_and_subscription() {
        let path = EntityPath::dead_letter("orders/subscriptions/audit");
        let event = system_event(&path, &settings());
        assert_eq!(event.event_type, DEAD_LETTER_MESSAGES_NO_LISTENERS);
        let data = event.data.unwrap_or_default();
        assert_eq!(data["entityType"], "subscriber");
        assert_eq!(data["topicName"], "orders");
        assert_eq!(data["subscriptionName"], "audit");
        assert_eq!(
            data["requestUri"],
            "http://127.0.0.1:7070/orders/subscriptions/audit/$deadletterqueue/messages/head"
        );
    }
}
