//! Event Grid-style topics and event subscriptions.
//!
//! Read [`Events`] first. A topic has an input schema, two access keys and
//! subscriptions; each subscription has a [`Filter`] (with
//! [`advanced_filter`]s) and a [`Destination`] (a Wasm function, a queue or
//! a [`webhook`], validated by a handshake before any delivery). Publishing
//! normalises the events ([`schema`]), matches them against every
//! subscription, and enqueues each match, in the schema it was published
//! in and with its correlation id, on the subscription's *delivery
//! queue* (`<topic>/subscriptions/<name>`, an ordinary broker queue) in one
//! atomic, durable batch. The dispatcher drains delivery queues into the
//! destinations with Event Grid's retry schedule ([`RetryPolicy`]); what
//! cannot be delivered ends in the delivery queue's dead-letter queue, with
//! Event Grid's dead-letter metadata ([`dead_letter`]).

pub mod advanced_filter;
pub mod dead_letter;
pub mod schema;
pub mod system;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth;
use crate::broker::{Broker, BrokerError, NewMessage, QueueProperties};
use crate::clock;
use crate::store::{Store, StoreError};
use crate::trace::{self, TraceParent};
pub use advanced_filter::AdvancedFilter;
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
    /// A webhook failed Event Grid's validation handshake.
    #[error("webhook validation handshake failed for `{url}`: {reason}")]
    ValidationFailed {
        /// The endpoint (empty for a manual validation).
        url: String,
        /// What went wrong.
        reason: String,
    },
}

/// Where a subscription delivers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Destination {
    /// Invoke this deployed function's `handle-event`.
    Function(String),
    /// Send the event (as JSON) to this queue.
    Queue(String),
    /// POST the events to an HTTP(S) endpoint.
    Webhook(WebhookDestination),
}

/// An HTTP(S) endpoint with Event Grid's batching settings.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookDestination {
    /// Where events are POSTed.
    pub endpoint_url: String,
    /// Most events in one POST (1 ..= 5000).
    #[serde(default = "one")]
    pub max_events_per_batch: u32,
    /// A batch stops growing past this size (1 ..= 1024 KB); one event
    /// larger than it still goes alone.
    #[serde(default = "default_batch_kb")]
    pub preferred_batch_size_in_kilobytes: u32,
}

fn one() -> u32 {
    1
}

fn default_batch_kb() -> u32 {
    64
}

/// Which events a subscription wants.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
    /// Conditions on event fields, all of which must hold (at most 25).
    pub advanced_filters: Vec<AdvancedFilter>,
    /// Whether advanced filters look into arrays in the data.
    pub enable_advanced_filtering_on_arrays: bool,
}

impl Filter {
    /// Whether `event` (and `wire`, the same event as delivered) passes.
    pub fn matches(&self, event: &Event, wire: &serde_json::Value) -> bool {
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
        type_ok
            && begins_ok
            && ends_ok
            && advanced_filter::all_match(
                &self.advanced_filters,
                wire,
                self.enable_advanced_filtering_on_arrays,
            )
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// The schema events are delivered in; the topic's input schema when absent.
    #[serde(default)]
    pub event_delivery_schema: Option<EventSchema>,
}

/// Whether a subscription receives events yet (Azure's `provisioningState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProvisioningState {
    /// Validated (or needing no validation): events are delivered.
    Succeeded,
    /// A webhook that did not echo the validation code: waiting for a GET
    /// on the validation URL.
    AwaitingManualAction,
}

/// A subscription with its names and state.
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
    /// Whether it receives events yet.
    pub provisioning_state: ProvisioningState,
    /// The broker queue holding its pending deliveries.
    pub delivery_queue: String,
    /// The open manual validation, if any (never shown).
    #[serde(skip)]
    validation: Option<ManualValidation>,
}

impl Subscription {
    /// The schema its events are delivered in.
    pub fn delivery_schema(&self) -> EventSchema {
        self.spec.event_delivery_schema.unwrap_or_default()
    }
}

/// A validation code waiting for its GET, and until when.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManualValidation {
    code: String,
    expires_at_ms: i64,
}

/// A subscription as stored.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionRecord {
    spec: SubscriptionSpec,
    provisioning_state: ProvisioningState,
    validation: Option<ManualValidation>,
}

/// A topic's settings as stored; its keys authorise publishers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TopicRecord {
    #[serde(default)]
    input_schema: EventSchema,
    #[serde(default)]
    topic_type: Option<String>,
    #[serde(default)]
    key1: String,
    #[serde(default)]
    key2: String,
}

/// How a topic is created.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TopicOptions {
    /// `EventGridSchema` (the default) or `CloudEventSchemaV1_0`.
    #[serde(default)]
    pub input_schema: EventSchema,
    /// `Microsoft.ServiceBus.Namespaces` for a system topic that receives
    /// the broker's events ([`system`]); absent for a custom topic.
    #[serde(default)]
    pub topic_type: Option<String>,
}

/// A topic as shown to users (keys are listed separately).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicInfo {
    /// Its name.
    pub name: String,
    /// The schema publishers must use.
    pub input_schema: EventSchema,
    /// Set for system topics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic_type: Option<String>,
    /// How many subscriptions it has.
    pub subscriptions: usize,
}

/// A topic's two access keys (Azure's `listKeys` answer).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicKeys {
    /// The first key.
    pub key1: String,
    /// The second key.
    pub key2: String,
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

fn validate_spec(spec: &SubscriptionSpec) -> Result<(), EventsError> {
    let invalid = |m: String| Err(EventsError::InvalidSubscription(m));
    let retry = &spec.retry_policy;
    if !(1..=30).contains(&retry.max_delivery_attempts) {
        return invalid(format!(
            "retryPolicy.maxDeliveryAttempts must be between 1 and 30, got {}",
            retry.max_delivery_attempts
        ));
    }
    if !(1..=1440).contains(&retry.event_time_to_live_in_minutes) {
        return invalid(format!(
            "retryPolicy.eventTimeToLiveInMinutes must be between 1 and 1440, got {}",
            retry.event_time_to_live_in_minutes
        ));
    }
    advanced_filter::validate(&spec.filter.advanced_filters)
        .map_err(|e| EventsError::InvalidSubscription(format!("filter.advancedFilters: {e}")))?;
    if let Destination::Webhook(hook) = &spec.destination {
        let scheme_ok =
            hook.endpoint_url.starts_with("http://") || hook.endpoint_url.starts_with("https://");
        if !scheme_ok || reqwest::Url::parse(&hook.endpoint_url).is_err() {
            return invalid(format!(
                "destination.webhook.endpointUrl must be an http:// or https:// URL, got `{}`",
                hook.endpoint_url
            ));
        }
        if !(1..=5000).contains(&hook.max_events_per_batch) {
            return invalid(format!(
                "destination.webhook.maxEventsPerBatch must be between 1 and 5000, got {}",
                hook.max_events_per_batch
            ));
        }
        if !(1..=1024).contains(&hook.preferred_batch_size_in_kilobytes) {
            return invalid(format!(
                "destination.webhook.preferredBatchSizeInKilobytes must be between 1 and 1024, got {}",
                hook.preferred_batch_size_in_kilobytes
            ));
        }
    }
    Ok(())
}

fn corrupt(what: String) -> impl FnOnce(serde_json::Error) -> StoreError {
    move |e| StoreError::Corrupt {
        tree: "entities",
        detail: format!("{what}: {e}"),
    }
}

fn encode_json(value: &impl Serialize) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(corrupt("encoding".into()))
}

/// A topic in memory: its settings and subscriptions.
struct Topic {
    record: TopicRecord,
    subscriptions: BTreeMap<String, Subscription>,
}

/// Owns topics and event subscriptions.
pub struct Events {
    store: Store,
    broker: Arc<Broker>,
    http: reqwest::Client,
    topics: RwLock<BTreeMap<String, Topic>>,
}

impl Events {
    /// Loads topics and subscriptions from the store.
    pub fn open(store: Store, broker: Arc<Broker>) -> Result<Events, EventsError> {
        let mut topics: BTreeMap<String, Topic> = BTreeMap::new();
        for entry in store.entities().scan_prefix("topic/") {
            let (key, value) = entry.map_err(StoreError::from)?;
            let name = String::from_utf8_lossy(&key["topic/".len()..]).into_owned();
            let mut record: TopicRecord =
                serde_json::from_slice(&value).map_err(corrupt(format!("topic `{name}`")))?;
            if record.key1.is_empty() || record.key2.is_empty() {
                // Topics made before keys existed get theirs now.
                record.key1 = auth::event_grid::generate_topic_key();
                record.key2 = auth::event_grid::generate_topic_key();
                store
                    .entities()
                    .insert(key, encode_json(&record)?)
                    .map_err(StoreError::from)?;
            }
            let subscriptions = BTreeMap::new();
            topics.insert(
                name,
                Topic {
                    record,
                    subscriptions,
                },
            );
        }
        for entry in store.entities().scan_prefix("subscription/") {
            let (key, value) = entry.map_err(StoreError::from)?;
            let path = String::from_utf8_lossy(&key["subscription/".len()..]).into_owned();
            let Some((topic, name)) = path.split_once('/') else {
                continue;
            };
            let record: SubscriptionRecord = serde_json::from_slice(&value)
                .map_err(corrupt(format!("subscription `{path}`")))?;
            if let Some(t) = topics.get_mut(topic) {
                t.subscriptions.insert(
                    name.to_string(),
                    Subscription {
                        topic: topic.to_string(),
                        name: name.to_string(),
                        spec: record.spec,
                        provisioning_state: record.provisioning_state,
                        delivery_queue: delivery_queue(topic, name),
                        validation: record.validation,
                    },
                );
            }
        }
        Ok(Events {
            store,
            broker,
            http: webhook::client(),
            topics: RwLock::new(topics),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Topic>> {
        self.topics.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Topic>> {
        self.topics.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a topic with two fresh access keys.
    pub async fn create_topic(
        &self,
        name: &str,
        options: TopicOptions,
    ) -> Result<TopicInfo, EventsError> {
        validate_name(name)?;
        if let Some(kind) = options
            .topic_type
            .as_deref()
            .filter(|t| *t != system::NAMESPACE_TOPIC_TYPE)
        {
            return Err(EventsError::InvalidName {
                name: kind.to_string(),
                reason: "the only topicType is `Microsoft.ServiceBus.Namespaces` (a system topic)",
            });
        }
        let record = TopicRecord {
            input_schema: options.input_schema,
            topic_type: options.topic_type,
            key1: auth::event_grid::generate_topic_key(),
            key2: auth::event_grid::generate_topic_key(),
        };
        {
            let mut topics = self.write();
            if topics.contains_key(name) {
                return Err(EventsError::TopicExists(name.to_string()));
            }
            self.store
                .entities()
                .insert(format!("topic/{name}"), encode_json(&record)?)
                .map_err(StoreError::from)?;
            topics.insert(
                name.to_string(),
                Topic {
                    record,
                    subscriptions: BTreeMap::new(),
                },
            );
        }
        self.store.commit().await?;
        self.topic(name)
    }

    /// Deletes a topic, its subscriptions and their pending deliveries.
    pub async fn delete_topic(&self, name: &str) -> Result<Vec<Subscription>, EventsError> {
        let subscriptions = {
            let mut topics = self.write();
            let topic = topics
                .remove(name)
                .ok_or_else(|| EventsError::TopicNotFound(name.to_string()))?;
            self.store
                .entities()
                .remove(format!("topic/{name}"))
                .map_err(StoreError::from)?;
            for sub in topic.subscriptions.keys() {
                self.store
                    .entities()
                    .remove(format!("subscription/{name}/{sub}"))
                    .map_err(StoreError::from)?;
            }
            topic.subscriptions
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

    /// Every topic.
    pub fn list_topics(&self) -> Vec<TopicInfo> {
        self.read().iter().map(|(name, t)| info(name, t)).collect()
    }

    /// One topic.
    pub fn topic(&self, name: &str) -> Result<TopicInfo, EventsError> {
        self.read()
            .get(name)
            .map(|t| info(name, t))
            .ok_or_else(|| EventsError::TopicNotFound(name.to_string()))
    }

    /// Whether a topic exists.
    pub fn has_topic(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    /// The system topics: those receiving the broker's events.
    pub fn system_topics(&self) -> Vec<String> {
        self.read()
            .iter()
            .filter(|(_, t)| t.record.topic_type.is_some())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Whether `queue` is a subscription's delivery queue (internal).
    pub fn is_delivery_queue(&self, queue: &str) -> bool {
        queue
            .split_once("/subscriptions/")
            .is_some_and(|(topic, sub)| {
                self.read()
                    .get(topic)
                    .is_some_and(|t| t.subscriptions.contains_key(sub))
            })
    }

    /// A topic's access keys.
    pub fn keys(&self, name: &str) -> Result<TopicKeys, EventsError> {
        self.read()
            .get(name)
            .map(|t| TopicKeys {
                key1: t.record.key1.clone(),
                key2: t.record.key2.clone(),
            })
            .ok_or_else(|| EventsError::TopicNotFound(name.to_string()))
    }

    /// Replaces one of a topic's keys (`key1` or `key2`) with a fresh one;
    /// publishers holding the old one are refused from now on.
    pub async fn regenerate_key(
        &self,
        name: &str,
        key_name: &str,
    ) -> Result<TopicKeys, EventsError> {
        {
            let mut topics = self.write();
            let topic = topics
                .get_mut(name)
                .ok_or_else(|| EventsError::TopicNotFound(name.to_string()))?;
            let mut record = topic.record.clone();
            match key_name {
                "key1" => record.key1 = auth::event_grid::generate_topic_key(),
                "key2" => record.key2 = auth::event_grid::generate_topic_key(),
                other => {
                    return Err(EventsError::InvalidName {
                        name: other.to_string(),
                        reason: "keyName must be `key1` or `key2`",
                    });
                }
            }
            self.store
                .entities()
                .insert(format!("topic/{name}"), encode_json(&record)?)
                .map_err(StoreError::from)?;
            topic.record = record;
        }
        self.store.commit().await?;
        self.keys(name)
    }

    /// Subscriptions of one topic.
    pub fn subscriptions(&self, topic: &str) -> Result<Vec<Subscription>, EventsError> {
        self.read()
            .get(topic)
            .map(|t| t.subscriptions.values().cloned().collect())
            .ok_or_else(|| EventsError::TopicNotFound(topic.to_string()))
    }

    /// Every subscription of every topic.
    pub fn all_subscriptions(&self) -> Vec<Subscription> {
        self.read()
            .values()
            .flat_map(|t| t.subscriptions.values().cloned())
            .collect()
    }

    /// One subscription.
    pub fn subscription(&self, topic: &str, name: &str) -> Result<Subscription, EventsError> {
        self.read()
            .get(topic)
            .ok_or_else(|| EventsError::TopicNotFound(topic.to_string()))?
            .subscriptions
            .get(name)
            .cloned()
            .ok_or_else(|| EventsError::SubscriptionNotFound {
                topic: topic.to_string(),
                subscription: name.to_string(),
            })
    }

    /// Creates a subscription with its delivery queue, or replaces the
    /// definition of an existing one (keeping its pending deliveries).
    /// A webhook destination is validated first (Event Grid's handshake);
    /// `public_url` is this host's base URL for the validation URL.
    /// Returns the subscription and whether it was created.
    pub async fn put_subscription(
        &self,
        topic: &str,
        name: &str,
        mut spec: SubscriptionSpec,
        public_url: &str,
    ) -> Result<(Subscription, bool), EventsError> {
        validate_name(name)?;
        validate_spec(&spec)?;
        let input_schema = self.topic_record(topic)?.input_schema;
        let schema = *spec.event_delivery_schema.get_or_insert(input_schema);
        let previous = self.subscription(topic, name).ok();
        let (provisioning_state, validation) = match &spec.destination {
            Destination::Webhook(hook) => {
                let unchanged = previous.as_ref().is_some_and(|p| {
                    p.spec.destination == spec.destination
                        && p.provisioning_state == ProvisioningState::Succeeded
                });
                if unchanged {
                    (ProvisioningState::Succeeded, None)
                } else {
                    self.handshake(topic, name, &hook.endpoint_url, schema, public_url)
                        .await?
                }
            }
            _ => (ProvisioningState::Succeeded, None),
        };
        let subscription = Subscription {
            topic: topic.to_string(),
            name: name.to_string(),
            delivery_queue: delivery_queue(topic, name),
            spec,
            provisioning_state,
            validation,
        };
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
        let created = self.store_subscription(&subscription)?;
        self.store.commit().await?;
        Ok((subscription, created))
    }

    fn topic_record(&self, topic: &str) -> Result<TopicRecord, EventsError> {
        self.read()
            .get(topic)
            .map(|t| t.record.clone())
            .ok_or_else(|| EventsError::TopicNotFound(topic.to_string()))
    }

    /// Writes a subscription (not yet committed); true when it is new.
    fn store_subscription(&self, subscription: &Subscription) -> Result<bool, EventsError> {
        let (topic, name) = (&subscription.topic, &subscription.name);
        let mut topics = self.write();
        let subs = &mut topics
            .get_mut(topic.as_str())
            .ok_or_else(|| EventsError::TopicNotFound(topic.clone()))?
            .subscriptions;
        let record = SubscriptionRecord {
            spec: subscription.spec.clone(),
            provisioning_state: subscription.provisioning_state,
            validation: subscription.validation.clone(),
        };
        self.store
            .entities()
            .insert(
                format!("subscription/{topic}/{name}"),
                encode_json(&record)?,
            )
            .map_err(StoreError::from)?;
        Ok(subs.insert(name.clone(), subscription.clone()).is_none())
    }

    /// Event Grid's validation handshake with a webhook, before any delivery.
    async fn handshake(
        &self,
        topic: &str,
        name: &str,
        url: &str,
        schema: EventSchema,
        public_url: &str,
    ) -> Result<(ProvisioningState, Option<ManualValidation>), EventsError> {
        let outcome = match schema {
            EventSchema::EventGrid => {
                let code = uuid::Uuid::new_v4().to_string().to_uppercase();
                let validation_url = format!(
                    "{}/api/topics/{topic}/subscriptions/{name}/validate?code={code}",
                    public_url.trim_end_matches('/')
                );
                let handshake = webhook::validate_event_grid(
                    &self.http,
                    url,
                    &format!("/topics/{topic}"),
                    name,
                    &code,
                    &validation_url,
                )
                .await;
                (handshake, Some(code))
            }
            EventSchema::CloudEvents => (
                webhook::validate_cloud_events(&self.http, url, webhook::EVENT_GRID_ORIGIN).await,
                None,
            ),
        };
        match outcome {
            (webhook::Handshake::Validated, _) => Ok((ProvisioningState::Succeeded, None)),
            (webhook::Handshake::AwaitingManualValidation { reason }, Some(code)) => {
                tracing::info!(topic, subscription = name, %reason, "webhook awaits manual validation");
                Ok((
                    ProvisioningState::AwaitingManualAction,
                    Some(ManualValidation {
                        code,
                        expires_at_ms: clock::now_ms()
                            + i64::try_from(webhook::MANUAL_VALIDATION_WINDOW.as_millis())
                                .unwrap_or(i64::MAX),
                    }),
                ))
            }
            (
                webhook::Handshake::AwaitingManualValidation { reason }
                | webhook::Handshake::Failed { reason },
                _,
            ) => Err(EventsError::ValidationFailed {
                url: url.to_string(),
                reason,
            }),
        }
    }

    /// Completes a manual validation (a GET on the validation URL).
    pub async fn validate_manually(
        &self,
        topic: &str,
        name: &str,
        code: &str,
    ) -> Result<Subscription, EventsError> {
        let mut subscription = self.subscription(topic, name)?;
        let Some(pending) = subscription.validation.take() else {
            return match subscription.provisioning_state {
                ProvisioningState::Succeeded => Ok(subscription),
                ProvisioningState::AwaitingManualAction => Err(EventsError::ValidationFailed {
                    url: String::new(),
                    reason: "no validation is pending".into(),
                }),
            };
        };
        let matches: bool =
            subtle::ConstantTimeEq::ct_eq(pending.code.as_bytes(), code.as_bytes()).into();
        if !matches {
            return Err(EventsError::ValidationFailed {
                url: String::new(),
                reason: "the validation code does not match".into(),
            });
        }
        if clock::now_ms() > pending.expires_at_ms {
            return Err(EventsError::ValidationFailed {
                url: String::new(),
                reason: "the validation URL has expired; update the subscription to start a new handshake".into(),
            });
        }
        subscription.provisioning_state = ProvisioningState::Succeeded;
        self.store_subscription(&subscription)?;
        self.store.commit().await?;
        Ok(subscription)
    }

    /// Deletes a subscription and its pending deliveries.
    pub async fn delete_subscription(
        &self,
        topic: &str,
        name: &str,
    ) -> Result<Subscription, EventsError> {
        let removed = {
            let mut topics = self.write();
            let subs = &mut topics
                .get_mut(topic)
                .ok_or_else(|| EventsError::TopicNotFound(topic.to_string()))?
                .subscriptions;
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

    /// Publishes events to a topic: every matching, provisioned subscription
    /// gets a delivery in its delivery schema, all in one durable batch.
    /// Returns once durable.
    pub async fn publish(
        &self,
        topic: &str,
        mut events: Vec<Event>,
    ) -> Result<PublishReport, EventsError> {
        let subscriptions = self.subscriptions(topic)?;
        // Every event carries trace context: the publisher's, else a new trace.
        let traces: Vec<String> = events
            .iter_mut()
            .map(|event| {
                let existing = event
                    .extensions
                    .get(trace::TRACEPARENT)
                    .and_then(Value::as_str)
                    .and_then(TraceParent::parse);
                let header = existing.unwrap_or_else(TraceParent::new_root).header();
                event
                    .extensions
                    .insert(trace::TRACEPARENT.to_string(), header.clone().into());
                header
            })
            .collect();
        let mut deliveries: Vec<(String, Vec<NewMessage>)> = Vec::new();
        let mut count = 0;
        // Each event rendered once per schema that some subscription delivers in.
        let wanted =
            |schema: EventSchema| subscriptions.iter().any(|s| s.delivery_schema() == schema);
        let (eg, ce) = (
            wanted(EventSchema::EventGrid),
            wanted(EventSchema::CloudEvents),
        );
        let wires: Vec<[Option<Value>; 2]> = events
            .iter()
            .map(|e| {
                [
                    eg.then(|| e.to_wire_in(EventSchema::EventGrid)),
                    ce.then(|| e.to_wire_in(EventSchema::CloudEvents)),
                ]
            })
            .collect();
        for sub in subscriptions
            .iter()
            .filter(|s| s.provisioning_state == ProvisioningState::Succeeded)
        {
            let schema = sub.delivery_schema();
            let mut messages = Vec::new();
            for ((event, wire), traceparent) in events.iter().zip(&wires).zip(&traces) {
                let rendered = match schema {
                    EventSchema::EventGrid => &wire[0],
                    EventSchema::CloudEvents => &wire[1],
                };
                // Rendered above for every schema a subscription delivers in.
                let Some(wire) = rendered else { continue };
                if !sub.spec.filter.matches(event, wire) {
                    continue;
                }
                let body = serde_json::to_vec(wire).map_err(|e| InvalidEvent(e.to_string()))?;
                messages.push(NewMessage {
                    message_id: Some(event.id.clone()),
                    body,
                    content_type: Some("application/json".into()),
                    correlation_id: correlation_of(event),
                    subject: Some(event.event_type.clone()),
                    user_properties: vec![(trace::TRACEPARENT.to_string(), traceparent.clone())],
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

    /// The HTTP client webhook deliveries share.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

fn info(name: &str, topic: &Topic) -> TopicInfo {
    TopicInfo {
        name: name.to_string(),
        input_schema: topic.record.input_schema,
        topic_type: topic.record.topic_type.clone(),
        subscriptions: topic.subscriptions.len(),
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
        assert!(filter.matches(&event("orders.created", "x"), &Value::Null));
        assert!(!filter.matches(&event("orders.deleted", "x"), &Value::Null));
    }

    #[test]
    fn filter_matches_subject_prefix_and_suffix() {
        let filter = Filter {
            subject_begins_with: Some("/Orders/".into()),
            subject_ends_with: Some(".json".into()),
            ..Filter::default()
        };
        assert!(filter.matches(&event("t", "/orders/42.JSON"), &Value::Null));
        assert!(!filter.matches(&event("t", "/invoices/42.json"), &Value::Null));
        let strict = Filter {
            is_subject_case_sensitive: true,
            ..filter
        };
        assert!(!strict.matches(&event("t", "/orders/42.JSON"), &Value::Null));
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
