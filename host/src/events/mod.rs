//! Event Grid-style topics and event subscriptions.
//!
//! Read [`Events`] first. A topic has subscriptions; each subscription has a
//! [`Filter`] and a [`Destination`] (a Wasm function or a queue). Publishing
//! normalises the events ([`schema`]), matches them against every
//! subscription, and enqueues each match, in the schema it was published
//! in and with its correlation id, on the subscription's *delivery
//! queue* (`<topic>/subscriptions/<name>`, an ordinary broker queue) in one
//! atomic, durable batch. The dispatcher drains delivery queues into the
//! destinations with Event Grid's retry schedule ([`RetryPolicy`]); what
//! cannot be delivered ends in the delivery queue's dead-letter queue.

pub mod schema;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::broker::{Broker, BrokerError, NewMessage, QueueProperties};
use crate::store::{Store, StoreError};
pub use schema::{Event, EventSchema, InvalidEvent};

/// Event Grid's default max delivery attempts.
pub const DEFAULT_MAX_DELIVERY_ATTEMPTS: u32 = 30;
/// Event Grid's default event time-to-live (one day).
pub const DEFAULT_EVENT_TTL_MINUTES: u32 = 1440;
/// Event Grid's retry schedule; after the last step, every 12 hours.
pub const RETRY_SCHEDULE_SECS: [u64; 10] = [10, 30, 60, 300, 600, 1800, 3600, 10800, 21600, 43200];

/// Why an events operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventsError {
    /// No topic by that name.
    #[error("topic `{0}` does not exist")]
    TopicNotFound(String),
    /// A topic by that name exists already.
    #[error("topic `{0}` already exists")]
    TopicExists(String),
    /// No such subscription.
    #[error("subscription `{subscription}` does not exist on topic `{topic}`")]
    SubscriptionNotFound {
        /// The topic.
        topic: String,
        /// The subscription.
        subscription: String,
    },
    /// A subscription by that name exists already.
    #[error("subscription `{subscription}` already exists on topic `{topic}`")]
    SubscriptionExists {
        /// The topic.
        topic: String,
        /// The subscription.
        subscription: String,
    },
    /// A name breaks the naming rules.
    #[error("invalid name `{name}`: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A subscription setting is out of range.
    #[error("invalid subscription: {0}")]
    InvalidSubscription(String),
    /// The published events are malformed.
    #[error(transparent)]
    InvalidEvent(#[from] InvalidEvent),
    /// The broker failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a subscription delivers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Destination {
    /// Invoke this deployed function's `handle-event`.
    Function(String),
    /// Send the event (as JSON) to this queue.
    Queue(String),
}

/// Which events a subscription wants.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Filter {
    /// Only these event types (case-insensitive); all when absent.
    pub included_event_types: Option<Vec<String>>,
    /// Only subjects starting with this.
    pub subject_begins_with: Option<String>,
    /// Only subjects ending with this.
    pub subject_ends_with: Option<String>,
    /// Compare subjects case-sensitively (Event Grid's default is not to).
    pub is_subject_case_sensitive: bool,
}

impl Filter {
    /// Whether `event` passes this filter.
    pub fn matches(&self, event: &Event) -> bool {
        let type_ok = self.included_event_types.as_ref().is_none_or(|types| {
            types
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&event.event_type))
        });
        let fold = |s: &str| {
            if self.is_subject_case_sensitive {
                s.to_string()
            } else {
                s.to_lowercase()
            }
        };
        let subject = fold(event.subject.as_deref().unwrap_or(""));
        let begins_ok = self
            .subject_begins_with
            .as_ref()
            .is_none_or(|prefix| subject.starts_with(&fold(prefix)));
        let ends_ok = self
            .subject_ends_with
            .as_ref()
            .is_none_or(|suffix| subject.ends_with(&fold(suffix)));
        type_ok && begins_ok && ends_ok
    }
}

/// How hard a subscription tries to deliver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts before the event is dead-lettered (1 ..= 30).
    pub max_delivery_attempts: u32,
    /// Minutes after publishing before the event is dead-lettered (1 ..= 1440).
    pub event_time_to_live_in_minutes: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_delivery_attempts: DEFAULT_MAX_DELIVERY_ATTEMPTS,
            event_time_to_live_in_minutes: DEFAULT_EVENT_TTL_MINUTES,
        }
    }
}

impl RetryPolicy {
    /// Event Grid's wait before attempt `attempt + 1`, given `attempt` failed ones.
    pub fn backoff_secs(attempt: u32) -> u64 {
        let step = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
        RETRY_SCHEDULE_SECS[step.min(RETRY_SCHEDULE_SECS.len() - 1)]
    }
}

/// A subscription as created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionSpec {
    /// Where matching events go.
    pub destination: Destination,
    /// Which events match.
    #[serde(default)]
    pub filter: Filter,
    /// Retry and time-to-live.
    #[serde(default)]
    pub retry_policy: RetryPolicy,
}

/// A subscription with its names.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// The topic.
    pub topic: String,
    /// The subscription's name.
    pub name: String,
    /// Its definition.
    #[serde(flatten)]
    pub spec: SubscriptionSpec,
    /// The broker queue holding its pending deliveries.
    pub delivery_queue: String,
}

/// What a publish did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishReport {
    /// Events accepted.
    pub events: usize,
    /// Deliveries enqueued across all subscriptions.
    pub deliveries: usize,
}

/// The delivery queue of a subscription.
pub fn delivery_queue(topic: &str, subscription: &str) -> String {
    format!("{topic}/subscriptions/{subscription}")
}

fn validate_name(name: &str) -> Result<(), EventsError> {
    let invalid = |reason| EventsError::InvalidName {
        name: name.to_string(),
        reason,
    };
    if !(1..=128).contains(&name.len()) {
        return Err(invalid("must be 1 to 128 characters long"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(invalid(
            "only letters, digits, `-`, `_` and `.` are allowed",
        ));
    }
    Ok(())
}

/// Owns topics and event subscriptions.
pub struct Events {
    store: Store,
    broker: Arc<Broker>,
    /// topic → subscription name → subscription.
    topics: RwLock<BTreeMap<String, BTreeMap<String, Subscription>>>,
}

impl Events {
    /// Loads topics and subscriptions from the store.
    pub fn open(store: Store, broker: Arc<Broker>) -> Result<Events, EventsError> {
        let mut topics: BTreeMap<String, BTreeMap<String, Subscription>> = BTreeMap::new();
        for entry in store.entities().scan_prefix("topic/") {
            let (key, _) = entry.map_err(StoreError::from)?;
            topics.insert(
                String::from_utf8_lossy(&key["topic/".len()..]).into_owned(),
                BTreeMap::new(),
            );
        }
        for entry in store.entities().scan_prefix("subscription/") {
            let (key, value) = entry.map_err(StoreError::from)?;
            let path = String::from_utf8_lossy(&key["subscription/".len()..]).into_owned();
            let Some((topic, name)) = path.split_once('/') else {
                continue;
            };
            let spec: SubscriptionSpec =
                serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                    tree: "entities",
                    detail: format!("subscription `{path}`: {e}"),
                })?;
            topics.entry(topic.to_string()).or_default().insert(
                name.to_string(),
                Subscription {
                    topic: topic.to_string(),
                    name: name.to_string(),
                    spec,
                    delivery_queue: delivery_queue(topic, name),
                },
            );
        }
        Ok(Events {
            store,
            broker,
            topics: RwLock::new(topics),
        })
    }

    /// Creates a topic.
    pub async fn create_topic(&self, name: &str) -> Result<(), EventsError> {
        validate_name(name)?;
        {
            let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
            if topics.contains_key(name) {
                return Err(EventsError::TopicExists(name.to_string()));
            }
            self.store
                .entities()
                .insert(format!("topic/{name}"), b"{}".as_slice())
                .map_err(StoreError::from)?;
            topics.insert(name.to_string(), BTreeMap::new());
        }
        self.store.commit().await?;
        Ok(())
    }

    /// Deletes a topic, its subscriptions and their pending deliveries.
    pub async fn delete_topic(&self, name: &str) -> Result<Vec<Subscription>, EventsError> {
        let subscriptions = {
            let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
            let subscriptions = topics
                .remove(name)
                .ok_or_else(|| EventsError::TopicNotFound(name.to_string()))?;
            self.store
                .entities()
                .remove(format!("topic/{name}"))
                .map_err(StoreError::from)?;
            for sub in subscriptions.keys() {
                self.store
                    .entities()
                    .remove(format!("subscription/{name}/{sub}"))
                    .map_err(StoreError::from)?;
            }
            subscriptions
        };
        for sub in subscriptions.values() {
            self.delete_delivery_queue(&sub.delivery_queue).await?;
        }
        self.store.commit().await?;
        Ok(subscriptions.into_values().collect())
    }

    async fn delete_delivery_queue(&self, queue: &str) -> Result<(), EventsError> {
        match self.broker.delete_queue(queue).await {
            Ok(()) | Err(BrokerError::QueueNotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Topic names with their subscription counts.
    pub fn list_topics(&self) -> Vec<(String, usize)> {
        self.topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, subs)| (name.clone(), subs.len()))
            .collect()
    }

    /// Whether a topic exists.
    pub fn has_topic(&self, name: &str) -> bool {
        self.topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
    }

    /// Subscriptions of one topic.
    pub fn subscriptions(&self, topic: &str) -> Result<Vec<Subscription>, EventsError> {
        self.topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
            .map(|subs| subs.values().cloned().collect())
            .ok_or_else(|| EventsError::TopicNotFound(topic.to_string()))
    }

    /// Every subscription of every topic.
    pub fn all_subscriptions(&self) -> Vec<Subscription> {
        self.topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .flat_map(|subs| subs.values().cloned())
            .collect()
    }

    /// One subscription.
    pub fn subscription(&self, topic: &str, name: &str) -> Result<Subscription, EventsError> {
        self.subscriptions(topic)?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| EventsError::SubscriptionNotFound {
                topic: topic.to_string(),
                subscription: name.to_string(),
            })
    }

    /// Creates a subscription with its delivery queue, or replaces the
    /// definition of an existing one (keeping its pending deliveries).
    /// Returns the subscription and whether it was created.
    pub async fn put_subscription(
        &self,
        topic: &str,
        name: &str,
        spec: SubscriptionSpec,
    ) -> Result<(Subscription, bool), EventsError> {
        validate_name(name)?;
        let retry = &spec.retry_policy;
        if !(1..=30).contains(&retry.max_delivery_attempts) {
            return Err(EventsError::InvalidSubscription(format!(
                "retryPolicy.maxDeliveryAttempts must be between 1 and 30, got {}",
                retry.max_delivery_attempts
            )));
        }
        if !(1..=1440).contains(&retry.event_time_to_live_in_minutes) {
            return Err(EventsError::InvalidSubscription(format!(
                "retryPolicy.eventTimeToLiveInMinutes must be between 1 and 1440, got {}",
                retry.event_time_to_live_in_minutes
            )));
        }
        let subscription = Subscription {
            topic: topic.to_string(),
            name: name.to_string(),
            delivery_queue: delivery_queue(topic, name),
            spec,
        };
        if !self.has_topic(topic) {
            return Err(EventsError::TopicNotFound(topic.to_string()));
        }
        // The delivery queue first: a subscription is never visible without it.
        // Its max delivery count is a backstop; the dispatcher applies the
        // subscription's own retry policy.
        let properties = QueueProperties {
            max_delivery_count: subscription.spec.retry_policy.max_delivery_attempts,
            ..QueueProperties::default()
        };
        match self
            .broker
            .create_queue(&subscription.delivery_queue, properties)
            .await
        {
            Ok(_) | Err(BrokerError::QueueExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let created = {
            let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
            let subs = topics
                .get_mut(topic)
                .ok_or_else(|| EventsError::TopicNotFound(topic.to_string()))?;
            let record =
                serde_json::to_vec(&subscription.spec).map_err(|e| StoreError::Corrupt {
                    tree: "entities",
                    detail: e.to_string(),
                })?;
            self.store
                .entities()
                .insert(format!("subscription/{topic}/{name}"), record)
                .map_err(StoreError::from)?;
            subs.insert(name.to_string(), subscription.clone())
                .is_none()
        };
        self.store.commit().await?;
        Ok((subscription, created))
    }

    /// Deletes a subscription and its pending deliveries.
    pub async fn delete_subscription(
        &self,
        topic: &str,
        name: &str,
    ) -> Result<Subscription, EventsError> {
        let removed = {
            let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
            let subs = topics
                .get_mut(topic)
                .ok_or_else(|| EventsError::TopicNotFound(topic.to_string()))?;
            let removed = subs
                .remove(name)
                .ok_or_else(|| EventsError::SubscriptionNotFound {
                    topic: topic.to_string(),
                    subscription: name.to_string(),
                })?;
            self.store
                .entities()
                .remove(format!("subscription/{topic}/{name}"))
                .map_err(StoreError::from)?;
            removed
        };
        self.delete_delivery_queue(&removed.delivery_queue).await?;
        self.store.commit().await?;
        Ok(removed)
    }

    /// Publishes events to a topic: every matching subscription gets a
    /// delivery, all in one durable batch. Returns once durable.
    pub async fn publish(
        &self,
        topic: &str,
        events: Vec<Event>,
    ) -> Result<PublishReport, EventsError> {
        let subscriptions = self.subscriptions(topic)?;
        let mut deliveries: Vec<(String, Vec<NewMessage>)> = Vec::new();
        let mut count = 0;
        for sub in &subscriptions {
            let mut messages = Vec::new();
            for event in events.iter().filter(|e| sub.spec.filter.matches(e)) {
                let body = serde_json::to_vec(&event.to_wire())
                    .map_err(|e| InvalidEvent(e.to_string()))?;
                messages.push(NewMessage {
                    message_id: Some(event.id.clone()),
                    body,
                    content_type: Some("application/json".into()),
                    correlation_id: correlation_of(event),
                    subject: Some(event.event_type.clone()),
                    ..NewMessage::default()
                });
            }
            count += messages.len();
            if !messages.is_empty() {
                deliveries.push((sub.delivery_queue.clone(), messages));
            }
        }
        if !deliveries.is_empty() {
            self.broker.send_to_many(deliveries).await?;
        }
        Ok(PublishReport {
            events: events.len(),
            deliveries: count,
        })
    }
}

/// The correlation id an event carries: a `correlationid` extension, else its id.
pub fn correlation_of(event: &Event) -> Option<String> {
    match event.extensions.get("correlationid") {
        Some(serde_json::Value::String(id)) => Some(id.clone()),
        _ => Some(event.id.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, subject: &str) -> Event {
        Event {
            id: "1".into(),
            source: "t".into(),
            event_type: event_type.into(),
            subject: Some(subject.into()),
            time: "2026-01-01T00:00:00Z".into(),
            data_content_type: None,
            data: None,
            data_base64: None,
            data_version: None,
            extensions: BTreeMap::new(),
            schema: EventSchema::EventGrid,
        }
    }

    #[test]
    fn filter_matches_event_types_case_insensitively() {
        let filter = Filter {
            included_event_types: Some(vec!["Orders.Created".into()]),
            ..Filter::default()
        };
        assert!(filter.matches(&event("orders.created", "x")));
        assert!(!filter.matches(&event("orders.deleted", "x")));
    }

    #[test]
    fn filter_matches_subject_prefix_and_suffix() {
        let filter = Filter {
            subject_begins_with: Some("/Orders/".into()),
            subject_ends_with: Some(".json".into()),
            ..Filter::default()
        };
        assert!(filter.matches(&event("t", "/orders/42.JSON")));
        assert!(!filter.matches(&event("t", "/invoices/42.json")));
        let strict = Filter {
            is_subject_case_sensitive: true,
            ..filter
        };
        assert!(!strict.matches(&event("t", "/orders/42.JSON")));
    }

    #[test]
    fn backoff_follows_event_grid_schedule_then_every_twelve_hours() {
        assert_eq!(RetryPolicy::backoff_secs(1), 10);
        assert_eq!(RetryPolicy::backoff_secs(2), 30);
        assert_eq!(RetryPolicy::backoff_secs(9), 21600);
        assert_eq!(RetryPolicy::backoff_secs(10), 43200);
        assert_eq!(RetryPolicy::backoff_secs(25), 43200);
    }
}
