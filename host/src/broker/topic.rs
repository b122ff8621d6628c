//! Service Bus topics: a send fans out to every subscription whose rules match.
//!
//! A subscription is an ordinary queue named `<topic>/subscriptions/<name>`
//! (so it has peek-lock, dead letters, sessions... of its own) plus a set
//! of named rules ([`RuleFilter`]): a message is copied into the
//! subscription when any rule matches. A new subscription gets the
//! `$Default` rule, which matches everything. A message no subscription
//! wants is dropped, as in Service Bus.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use super::filter::{FilterView, RuleFilter};
use super::{
    Broker, BrokerError, DEFAULT_DUPLICATE_DETECTION_WINDOW_SECS, DEFAULT_MAX_MESSAGE_SIZE_BYTES,
    NewMessage, QueueInfo, QueueProperties, dedup::Dedup, dedup_key, load_dedup,
    validate_entity_name,
};
use crate::clock::now_ms;
use crate::store::{Store, StoreError};

/// The rule every new subscription starts with.
pub const DEFAULT_RULE: &str = "$Default";

/// Why a topic operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// No topic by that name.
    #[error("topic `{0}` does not exist")]
    TopicNotFound(String),
    /// No such subscription.
    #[error("subscription `{subscription}` does not exist on topic `{topic}`")]
    SubscriptionNotFound {
        /// The topic.
        topic: String,
        /// The subscription.
        subscription: String,
    },
    /// The subscription exists already.
    #[error("subscription `{subscription}` already exists on topic `{topic}`")]
    SubscriptionExists {
        /// The topic.
        topic: String,
        /// The subscription.
        subscription: String,
    },
    /// No such rule.
    #[error("rule `{rule}` does not exist on `{subscription}`")]
    RuleNotFound {
        /// The subscription path.
        subscription: String,
        /// The rule.
        rule: String,
    },
    /// The rule exists already.
    #[error("rule `{rule}` already exists on `{subscription}`")]
    RuleExists {
        /// The subscription path.
        subscription: String,
        /// The rule.
        rule: String,
    },
    /// The filter is malformed.
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    /// A topic property is out of range.
    #[error("invalid topic property: {0}")]
    InvalidProperty(String),
}

/// Options of a topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TopicProperties {
    /// Time-to-live of messages that set none (none: forever).
    pub default_message_time_to_live_secs: Option<u64>,
    /// Drop messages whose id was seen within the window.
    pub requires_duplicate_detection: bool,
    /// The duplicate-detection window in seconds.
    pub duplicate_detection_history_time_window_secs: u64,
    /// Largest message accepted.
    pub max_message_size_bytes: usize,
}

impl Default for TopicProperties {
    fn default() -> Self {
        TopicProperties {
            default_message_time_to_live_secs: None,
            requires_duplicate_detection: false,
            duplicate_detection_history_time_window_secs: DEFAULT_DUPLICATE_DETECTION_WINDOW_SECS,
            max_message_size_bytes: DEFAULT_MAX_MESSAGE_SIZE_BYTES,
        }
    }
}

impl TopicProperties {
    fn validate(&self) -> Result<(), TopicError> {
        if self.max_message_size_bytes == 0 {
            return Err(TopicError::InvalidProperty(
                "maxMessageSizeBytes must be above 0".into(),
            ));
        }
        if self.default_message_time_to_live_secs == Some(0) {
            return Err(TopicError::InvalidProperty(
                "defaultMessageTimeToLiveSecs must be above 0 (leave it out for no expiry)".into(),
            ));
        }
        if !(20..=7 * 24 * 3600).contains(&self.duplicate_detection_history_time_window_secs) {
            return Err(TopicError::InvalidProperty(format!(
                "duplicateDetectionHistoryTimeWindowSecs must be between 20 and 604800, got {}",
                self.duplicate_detection_history_time_window_secs
            )));
        }
        Ok(())
    }

    fn dedup_window_ms(&self) -> i64 {
        i64::try_from(self.duplicate_detection_history_time_window_secs * 1000).unwrap_or(i64::MAX)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TopicRecord {
    #[serde(flatten)]
    properties: TopicProperties,
    #[serde(default)]
    created_at_ms: i64,
}

/// A topic as the management API shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicInfo {
    /// The topic's name.
    pub name: String,
    /// Its options.
    pub properties: TopicProperties,
    /// How many subscriptions it has.
    pub subscription_count: usize,
    /// When it was created (Unix ms).
    pub created_at_ms: i64,
}

/// A rule of a subscription.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleInfo {
    /// The rule's name.
    pub name: String,
    /// Its filter.
    pub filter: RuleFilter,
}

/// A subscription as the management API shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionInfo {
    /// The topic.
    pub topic: String,
    /// The subscription's name.
    pub name: String,
    /// The queue behind it, with its counts.
    pub queue: QueueInfo,
    /// Its rules.
    pub rules: Vec<RuleInfo>,
}

pub(super) struct Topic {
    name: String,
    /// Replaced whole by [`Broker::update_topic`]; readers take a snapshot.
    properties: RwLock<Arc<TopicProperties>>,
    created_at_ms: i64,
    /// subscription → rule name → filter.
    subscriptions: RwLock<BTreeMap<String, BTreeMap<String, RuleFilter>>>,
    dedup: Mutex<Dedup>,
}

impl Topic {
    /// The topic's options as they are now.
    fn properties(&self) -> Arc<TopicProperties> {
        self.properties
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The queue behind a subscription.
pub fn subscription_queue(topic: &str, subscription: &str) -> String {
    format!("{topic}/subscriptions/{subscription}")
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
        tree: "entities",
        detail: e.to_string(),
    })
}

fn validate_segment(name: &str) -> Result<(), BrokerError> {
    validate_entity_name(name)?;
    if name.contains('/') {
        return Err(BrokerError::InvalidName {
            name: name.to_string(),
            reason: "must be a single segment (no `/`)",
        });
    }
    Ok(())
}

/// Loads topics, their subscriptions and rules.
pub(super) fn load_topics(
    store: &Store,
    _now: i64,
) -> Result<HashMap<String, Arc<Topic>>, BrokerError> {
    let corrupt = |what: String| StoreError::Corrupt {
        tree: "entities",
        detail: what,
    };
    let mut topics = HashMap::new();
    for entry in store.entities().scan_prefix("sbtopic/") {
        let (key, value) = entry.map_err(StoreError::from)?;
        let name = String::from_utf8_lossy(&key["sbtopic/".len()..]).into_owned();
        let record: TopicRecord =
            serde_json::from_slice(&value).map_err(|e| corrupt(format!("topic `{name}`: {e}")))?;
        let mut dedup = Dedup::new(record.properties.dedup_window_ms());
        load_dedup(store, &name, &mut dedup)?;
        topics.insert(
            name.clone(),
            Topic {
                name,
                properties: RwLock::new(Arc::new(record.properties)),
                created_at_ms: record.created_at_ms,
                subscriptions: RwLock::new(BTreeMap::new()),
                dedup: Mutex::new(dedup),
            },
        );
    }
    for entry in store.entities().scan_prefix("sbrule/") {
        let (key, value) = entry.map_err(StoreError::from)?;
        let path = String::from_utf8_lossy(&key["sbrule/".len()..]).into_owned();
        let mut parts = path.splitn(3, '/');
        let (Some(topic), Some(sub), Some(rule)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(corrupt(format!("bad rule key `{path}`")).into());
        };
        let filter: RuleFilter =
            serde_json::from_slice(&value).map_err(|e| corrupt(format!("rule `{path}`: {e}")))?;
        if let Some(t) = topics.get_mut(topic) {
            t.subscriptions
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .entry(sub.to_string())
                .or_default()
                .insert(rule.to_string(), filter);
        }
    }
    for entry in store.entities().scan_prefix("sbsub/") {
        let (key, _) = entry.map_err(StoreError::from)?;
        let path = String::from_utf8_lossy(&key["sbsub/".len()..]).into_owned();
        if let Some((topic, sub)) = path.split_once('/')
            && let Some(t) = topics.get_mut(topic)
        {
            // A subscription whose rules were all deleted still exists.
            t.subscriptions
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .entry(sub.to_string())
                .or_default();
        }
    }
    Ok(topics.into_iter().map(|(k, v)| (k, Arc::new(v))).collect())
}

/// Forgets old duplicate-detection ids of every topic.
pub(super) fn maintain(broker: &Broker) -> Result<bool, BrokerError> {
    let topics: Vec<Arc<Topic>> = broker
        .topics
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .cloned()
        .collect();
    let mut batch = sled::Batch::default();
    let mut changed = false;
    for topic in topics {
        for id in topic
            .dedup
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .expire(now_ms())
        {
            batch.remove(dedup_key(&topic.name, &id));
            changed = true;
        }
    }
    if changed {
        broker
            .store
            .messages()
            .apply_batch(batch)
            .map_err(StoreError::from)?;
    }
    Ok(changed)
}

impl Broker {
    pub(super) fn topic(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        self.topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| TopicError::TopicNotFound(name.to_string()).into())
    }

    fn topic_info(topic: &Topic) -> TopicInfo {
        TopicInfo {
            name: topic.name.clone(),
            properties: (*topic.properties()).clone(),
            subscription_count: topic
                .subscriptions
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .len(),
            created_at_ms: topic.created_at_ms,
        }
    }

    /// Creates a Service Bus topic; fails if a queue or topic by that name exists.
    pub async fn create_topic(
        &self,
        name: &str,
        properties: TopicProperties,
    ) -> Result<TopicInfo, BrokerError> {
        validate_segment(name)?;
        properties.validate()?;
        if self.has_queue(name) {
            return Err(BrokerError::QueueExists(name.to_string()));
        }
        let topic = {
            let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
            if topics.contains_key(name) {
                return Err(BrokerError::QueueExists(name.to_string()));
            }
            let record = TopicRecord {
                properties: properties.clone(),
                created_at_ms: now_ms(),
            };
            self.store
                .entities()
                .insert(format!("sbtopic/{name}"), json(&record)?)
                .map_err(StoreError::from)?;
            let topic = Arc::new(Topic {
                name: name.to_string(),
                dedup: Mutex::new(Dedup::new(properties.dedup_window_ms())),
                properties: RwLock::new(Arc::new(properties)),
                created_at_ms: record.created_at_ms,
                subscriptions: RwLock::new(BTreeMap::new()),
            });
            topics.insert(name.to_string(), topic.clone());
            topic
        };
        self.store.commit().await?;
        Ok(Self::topic_info(&topic))
    }

    /// Changes a topic's options in place (Service Bus's `UpdateTopic`):
    /// later sends follow them. Duplicate detection cannot be switched on
    /// or off.
    pub async fn update_topic(
        &self,
        name: &str,
        properties: TopicProperties,
    ) -> Result<TopicInfo, BrokerError> {
        properties.validate()?;
        let topic = {
            // Held across the write so that two updates land in order.
            let topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
            let topic = topics
                .get(name)
                .cloned()
                .ok_or_else(|| TopicError::TopicNotFound(name.to_string()))?;
            let was = topic.properties().requires_duplicate_detection;
            if was != properties.requires_duplicate_detection {
                return Err(TopicError::InvalidProperty(format!(
                    "requiresDuplicateDetection cannot be changed on an existing entity (it is {was}); delete and create it"
                ))
                .into());
            }
            let record = TopicRecord {
                properties: properties.clone(),
                created_at_ms: topic.created_at_ms,
            };
            self.store
                .entities()
                .insert(format!("sbtopic/{name}"), json(&record)?)
                .map_err(StoreError::from)?;
            topic
                .dedup
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .set_window(properties.dedup_window_ms());
            *topic.properties.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(properties);
            topic
        };
        self.store.commit().await?;
        Ok(Self::topic_info(&topic))
    }

    /// Deletes a topic with its subscriptions and their messages.
    pub async fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        let topic = self
            .topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .ok_or_else(|| TopicError::TopicNotFound(name.to_string()))?;
        let subscriptions: Vec<String> = topic
            .subscriptions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        for sub in subscriptions {
            self.forget_subscription(name, &sub).await?;
        }
        self.store
            .entities()
            .remove(format!("sbtopic/{name}"))
            .map_err(StoreError::from)?;
        self.remove_prefixes(name, &[super::TAG_DEDUP])?;
        self.store.commit().await?;
        Ok(())
    }

    /// Every topic, sorted by name.
    pub fn list_topics(&self) -> Vec<TopicInfo> {
        let mut infos: Vec<TopicInfo> = self
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|t| Self::topic_info(t))
            .collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    /// One topic.
    pub fn get_topic(&self, name: &str) -> Result<TopicInfo, BrokerError> {
        Ok(Self::topic_info(&*self.topic(name)?))
    }

    /// Creates a subscription (its queue, with `properties`) with the `$Default` rule.
    pub async fn create_subscription(
        &self,
        topic: &str,
        name: &str,
        properties: QueueProperties,
    ) -> Result<SubscriptionInfo, BrokerError> {
        validate_segment(name)?;
        let topic = self.topic(topic)?;
        let exists = || TopicError::SubscriptionExists {
            topic: topic.name.clone(),
            subscription: name.to_string(),
        };
        if topic
            .subscriptions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
        {
            return Err(exists().into());
        }
        let queue = subscription_queue(&topic.name, name);
        match self.create_queue(&queue, properties).await {
            Err(BrokerError::QueueExists(_)) => return Err(exists().into()),
            other => other?,
        };
        {
            let mut subs = topic
                .subscriptions
                .write()
                .unwrap_or_else(|e| e.into_inner());
            let entities = self.store.entities();
            entities
                .insert(format!("sbsub/{}/{name}", topic.name), b"{}".as_slice())
                .map_err(StoreError::from)?;
            entities
                .insert(
                    format!("sbrule/{}/{name}/{DEFAULT_RULE}", topic.name),
                    json(&RuleFilter::True)?,
                )
                .map_err(StoreError::from)?;
            let mut rules = BTreeMap::new();
            rules.insert(DEFAULT_RULE.to_string(), RuleFilter::True);
            subs.insert(name.to_string(), rules);
        }
        self.store.commit().await?;
        self.subscription_info(&topic.name, name)
    }

    async fn forget_subscription(&self, topic: &str, name: &str) -> Result<(), BrokerError> {
        let entities = self.store.entities();
        entities
            .remove(format!("sbsub/{topic}/{name}"))
            .map_err(StoreError::from)?;
        for key in entities
            .scan_prefix(format!("sbrule/{topic}/{name}/"))
            .keys()
        {
            entities
                .remove(key.map_err(StoreError::from)?)
                .map_err(StoreError::from)?;
        }
        match self.delete_queue(&subscription_queue(topic, name)).await {
            Ok(()) | Err(BrokerError::QueueNotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes a subscription with its messages.
    pub async fn delete_subscription(&self, topic: &str, name: &str) -> Result<(), BrokerError> {
        let topic = self.topic(topic)?;
        let removed = topic
            .subscriptions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if removed.is_none() {
            return Err(TopicError::SubscriptionNotFound {
                topic: topic.name.clone(),
                subscription: name.to_string(),
            }
            .into());
        }
        self.forget_subscription(&topic.name, name).await?;
        self.store.commit().await?;
        Ok(())
    }

    /// One subscription with its counts and rules.
    pub fn subscription_info(
        &self,
        topic: &str,
        name: &str,
    ) -> Result<SubscriptionInfo, BrokerError> {
        let topic = self.topic(topic)?;
        let rules = topic
            .subscriptions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .map(|rules| {
                rules
                    .iter()
                    .map(|(name, filter)| RuleInfo {
                        name: name.clone(),
                        filter: filter.clone(),
                    })
                    .collect()
            })
            .ok_or_else(|| TopicError::SubscriptionNotFound {
                topic: topic.name.clone(),
                subscription: name.to_string(),
            })?;
        Ok(SubscriptionInfo {
            topic: topic.name.clone(),
            name: name.to_string(),
            queue: self.queue_info(&subscription_queue(&topic.name, name))?,
            rules,
        })
    }

    /// Every subscription of a topic.
    pub fn list_subscriptions(&self, topic: &str) -> Result<Vec<SubscriptionInfo>, BrokerError> {
        let names: Vec<String> = self
            .topic(topic)?
            .subscriptions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        names
            .iter()
            .map(|name| self.subscription_info(topic, name))
            .collect()
    }

    /// Runs `change` on a subscription's rules under the topic's lock; it
    /// also gets the subscription's path for error messages.
    fn with_rules<T>(
        &self,
        topic: &Topic,
        subscription: &str,
        change: impl FnOnce(&mut BTreeMap<String, RuleFilter>, String) -> Result<T, BrokerError>,
    ) -> Result<T, BrokerError> {
        let mut subs = topic
            .subscriptions
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let rules = subs
            .get_mut(subscription)
            .ok_or_else(|| TopicError::SubscriptionNotFound {
                topic: topic.name.clone(),
                subscription: subscription.to_string(),
            })?;
        change(rules, subscription_queue(&topic.name, subscription))
    }

    /// Adds a rule to a subscription (or replaces it when `replace`).
    pub async fn put_rule(
        &self,
        topic: &str,
        subscription: &str,
        rule: &str,
        filter: RuleFilter,
        replace: bool,
    ) -> Result<RuleInfo, BrokerError> {
        validate_rule_name(rule)?;
        filter
            .validate()
            .map_err(|e| TopicError::InvalidFilter(e.to_string()))?;
        let topic = self.topic(topic)?;
        self.with_rules(&topic, subscription, |rules, path| {
            if !replace && rules.contains_key(rule) {
                return Err(TopicError::RuleExists {
                    subscription: path,
                    rule: rule.to_string(),
                }
                .into());
            }
            self.store
                .entities()
                .insert(
                    format!("sbrule/{}/{subscription}/{rule}", topic.name),
                    json(&filter)?,
                )
                .map_err(StoreError::from)?;
            rules.insert(rule.to_string(), filter.clone());
            Ok(())
        })?;
        self.store.commit().await?;
        Ok(RuleInfo {
            name: rule.to_string(),
            filter,
        })
    }

    /// Removes a rule from a subscription.
    pub async fn delete_rule(
        &self,
        topic: &str,
        subscription: &str,
        rule: &str,
    ) -> Result<(), BrokerError> {
        let topic = self.topic(topic)?;
        self.with_rules(&topic, subscription, |rules, path| {
            if rules.remove(rule).is_none() {
                return Err(TopicError::RuleNotFound {
                    subscription: path,
                    rule: rule.to_string(),
                }
                .into());
            }
            self.store
                .entities()
                .remove(format!("sbrule/{}/{subscription}/{rule}", topic.name))
                .map_err(StoreError::from)?;
            Ok(())
        })?;
        self.store.commit().await?;
        Ok(())
    }

    /// Fans messages out to every subscription with a matching rule, in one
    /// durable batch.
    pub(super) async fn send_to_topic(
        &self,
        topic: &Topic,
        messages: Vec<NewMessage>,
    ) -> Result<(), BrokerError> {
        let now = now_ms();
        let properties = topic.properties();
        let ttl_ms = properties
            .default_message_time_to_live_secs
            .map(|s| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX));
        let mut accepted = Vec::with_capacity(messages.len());
        let mut dedup_batch = sled::Batch::default();
        {
            let mut dedup = topic.dedup.lock().unwrap_or_else(|e| e.into_inner());
            for mut message in messages {
                let size = message.size();
                if size > properties.max_message_size_bytes {
                    return Err(BrokerError::MessageTooLarge {
                        queue: topic.name.clone(),
                        size,
                        limit: properties.max_message_size_bytes,
                    });
                }
                if properties.requires_duplicate_detection
                    && let Some(id) = &message.message_id
                {
                    if dedup.is_duplicate(id, now) {
                        continue;
                    }
                    dedup.remember(id, now);
                    dedup_batch.insert(dedup_key(&topic.name, id), &now.to_be_bytes());
                }
                // Give every copy the same id, so subscriptions agree on it.
                message
                    .message_id
                    .get_or_insert_with(|| uuid::Uuid::new_v4().simple().to_string());
                message.time_to_live_ms = match (message.time_to_live_ms, ttl_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                accepted.push(message);
            }
        }
        self.store
            .messages()
            .apply_batch(dedup_batch)
            .map_err(StoreError::from)?;
        let mut deliveries: Vec<(String, Vec<NewMessage>)> = Vec::new();
        {
            let subs = topic
                .subscriptions
                .read()
                .unwrap_or_else(|e| e.into_inner());
            for (name, rules) in subs.iter() {
                let wanted: Vec<NewMessage> = accepted
                    .iter()
                    .filter(|m| {
                        let view = view_of(m, now);
                        rules.values().any(|rule| rule.matches(&view))
                    })
                    .cloned()
                    .collect();
                if !wanted.is_empty() {
                    deliveries.push((subscription_queue(&topic.name, name), wanted));
                }
            }
        }
        if deliveries.is_empty() {
            self.store.commit().await?;
        } else {
            self.send_to_many(deliveries).await?;
        }
        Ok(())
    }
}

fn view_of(message: &NewMessage, now: i64) -> FilterView<'_> {
    FilterView {
        message_id: message.message_id.as_deref().unwrap_or_default(),
        correlation_id: message.correlation_id.as_deref(),
        subject: message.subject.as_deref(),
        to: message.to.as_deref(),
        reply_to: message.reply_to.as_deref(),
        content_type: message.content_type.as_deref(),
        session_id: message.session_id.as_deref(),
        // Sequence numbers are assigned per subscription, after filtering.
        sequence_number: 0,
        enqueued_time_ms: now,
        user_properties: &message.user_properties,
    }
}

fn validate_rule_name(name: &str) -> Result<(), BrokerError> {
    let ok = (1..=50).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '$'));
    if ok {
        Ok(())
    } else {
        Err(BrokerError::InvalidName {
            name: name.to_string(),
            reason: "a rule name has 1 to 50 letters, digits, `.`, `-`, `_` or `$`",
        })
    }
}
