//! Queues with Service Bus semantics: send, peek-lock, settle, dead-letter.
//!
//! Read [`Broker`] first: it owns every queue, keeps an in-memory
//! [`index`] of each for fast receive, and writes through to the
//! [`Store`](crate::store::Store). Message shapes are in [`message`].
//!
//! A queue `q` has a dead-letter sub-queue addressed as `q/$DeadLetterQueue`
//! ([`EntityPath`]). Each delivery under peek-lock counts towards the
//! queue's max delivery count; a message available again after that many
//! deliveries moves to the dead-letter queue with reason
//! `MaxDeliveryCountExceeded`.
//!
//! Durability: a send, receive, complete or dead-letter returns only once
//! it is on disk (group commit). Locks live in memory: after a crash every
//! locked message is delivered again, with its delivery count kept.

mod index;
pub mod message;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::clock::now_ms;
use crate::store::{self, Store, StoreError};
use index::{Index, Next};
pub use message::{
    DeadLetterInfo, LockToken, MessageLock, MessageRecord, MessageState, NewMessage, PeekedMessage,
    ReceiveMode, ReceivedMessage, SequenceNumber,
};

/// Deliveries before a message is dead-lettered, unless the queue says otherwise.
pub const DEFAULT_MAX_DELIVERY_COUNT: u32 = 10;
/// How long a peek-lock lasts unless renewed.
pub const DEFAULT_LOCK_DURATION_SECS: u64 = 60;
/// Service Bus caps locks at five minutes.
pub const MAX_LOCK_DURATION_SECS: u64 = 300;
/// Largest message body + properties a queue accepts by default (Service Bus standard tier).
pub const DEFAULT_MAX_MESSAGE_SIZE_BYTES: usize = 256 * 1024;
/// The dead-letter reason Service Bus uses for messages delivered too often.
pub const MAX_DELIVERY_COUNT_EXCEEDED: &str = "MaxDeliveryCountExceeded";
/// Suffix addressing a queue's dead-letter sub-queue.
pub const DEAD_LETTER_SUFFIX: &str = "$DeadLetterQueue";

const TREE: &str = "messages";

/// Why a broker operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// No queue by that name.
    #[error("queue `{0}` does not exist")]
    QueueNotFound(String),
    /// A queue by that name exists already.
    #[error("queue `{0}` already exists")]
    QueueExists(String),
    /// The name breaks the naming rules.
    #[error("invalid entity name `{name}`: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A queue property is out of range.
    #[error("invalid queue property: {0}")]
    InvalidProperty(String),
    /// The message is over the queue's size limit.
    #[error("message of {size} bytes exceeds the {limit}-byte limit of queue `{queue}`")]
    MessageTooLarge {
        /// The queue.
        queue: String,
        /// The message's size.
        size: usize,
        /// The queue's limit.
        limit: usize,
    },
    /// The lock token is unknown, expired or for another message.
    #[error(
        "the lock on message {sequence_number} in `{entity}` is lost or was never held; settle with a current lock token"
    )]
    LockLost {
        /// The entity path.
        entity: String,
        /// The message's sequence number.
        sequence_number: SequenceNumber,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Options of a queue, as set when it is created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct QueueProperties {
    /// Deliveries before a message is dead-lettered.
    pub max_delivery_count: u32,
    /// Peek-lock duration in seconds (1 ..= 300).
    pub lock_duration_secs: u64,
    /// Largest message (body + user properties) accepted.
    pub max_message_size_bytes: usize,
}

impl Default for QueueProperties {
    fn default() -> Self {
        QueueProperties {
            max_delivery_count: DEFAULT_MAX_DELIVERY_COUNT,
            lock_duration_secs: DEFAULT_LOCK_DURATION_SECS,
            max_message_size_bytes: DEFAULT_MAX_MESSAGE_SIZE_BYTES,
        }
    }
}

impl QueueProperties {
    fn validate(&self) -> Result<(), BrokerError> {
        if self.max_delivery_count == 0 {
            return Err(BrokerError::InvalidProperty(
                "maxDeliveryCount must be at least 1".into(),
            ));
        }
        if !(1..=MAX_LOCK_DURATION_SECS).contains(&self.lock_duration_secs) {
            return Err(BrokerError::InvalidProperty(format!(
                "lockDurationSecs must be between 1 and {MAX_LOCK_DURATION_SECS}, got {}",
                self.lock_duration_secs
            )));
        }
        if self.max_message_size_bytes == 0 {
            return Err(BrokerError::InvalidProperty(
                "maxMessageSizeBytes must be above 0".into(),
            ));
        }
        Ok(())
    }

    fn lock_duration_ms(&self) -> i64 {
        i64::try_from(self.lock_duration_secs * 1000).unwrap_or(i64::MAX)
    }
}

/// A queue, or its dead-letter sub-queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityPath {
    /// The queue's name.
    pub queue: String,
    /// Whether this addresses the dead-letter sub-queue.
    pub dead_letter: bool,
}

impl EntityPath {
    /// Parses `q` or `q/$DeadLetterQueue` (suffix matched case-insensitively).
    pub fn parse(path: &str) -> EntityPath {
        let trimmed = path.trim_matches('/');
        match trimmed.rsplit_once('/') {
            Some((queue, last)) if last.eq_ignore_ascii_case(DEAD_LETTER_SUFFIX) => EntityPath {
                queue: queue.to_string(),
                dead_letter: true,
            },
            _ => EntityPath {
                queue: trimmed.to_string(),
                dead_letter: false,
            },
        }
    }

    /// The active sub-queue of `queue`.
    pub fn active(queue: &str) -> EntityPath {
        EntityPath {
            queue: queue.to_string(),
            dead_letter: false,
        }
    }

    /// The dead-letter sub-queue of `queue`.
    pub fn dead_letter(queue: &str) -> EntityPath {
        EntityPath {
            queue: queue.to_string(),
            dead_letter: true,
        }
    }
}

impl std::fmt::Display for EntityPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.dead_letter {
            write!(f, "{}/{DEAD_LETTER_SUFFIX}", self.queue)
        } else {
            f.write_str(&self.queue)
        }
    }
}

/// Checks an entity name: 1–260 characters of letters, digits, `.`, `-`,
/// `_`, and `/` between non-empty segments.
pub fn validate_entity_name(name: &str) -> Result<(), BrokerError> {
    let invalid = |reason| BrokerError::InvalidName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() || name.len() > 260 {
        return Err(invalid("must be 1 to 260 characters long"));
    }
    if name.split('/').any(str::is_empty) {
        return Err(invalid("segments separated by `/` must not be empty"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
    {
        return Err(invalid(
            "only letters, digits, `.`, `-`, `_` and `/` are allowed",
        ));
    }
    Ok(())
}

/// Counts of a queue, as the management API shows them.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueInfo {
    /// The queue's name.
    pub name: String,
    /// Its options.
    pub properties: QueueProperties,
    /// Messages waiting or locked.
    pub active_message_count: usize,
    /// Messages locked by a receiver right now.
    pub locked_message_count: usize,
    /// Messages waiting for a later time.
    pub scheduled_message_count: usize,
    /// Messages in the dead-letter sub-queue.
    pub dead_letter_message_count: usize,
}

/// What an abandon led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abandoned {
    /// The message will be delivered again.
    WillRedeliver,
    /// It had used its deliveries and was dead-lettered.
    DeadLettered,
}

struct Queue {
    name: String,
    properties: QueueProperties,
    state: Mutex<QueueState>,
    /// Woken whenever a message may have become receivable.
    arrivals: Notify,
}

struct QueueState {
    next_sequence: SequenceNumber,
    active: Index,
    dead_letters: Index,
    deleted: bool,
}

impl Queue {
    fn state(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding the lock leaves the index as consistent as
        // each single statement made it; keep serving rather than cascade.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl QueueState {
    fn index(&mut self, dead_letter: bool) -> &mut Index {
        if dead_letter {
            &mut self.dead_letters
        } else {
            &mut self.active
        }
    }
}

/// Owns every queue. Cheap to share behind an `Arc`.
pub struct Broker {
    store: Store,
    queues: RwLock<HashMap<String, Arc<Queue>>>,
}

// ---- store keys ---------------------------------------------------------

const TAG_ACTIVE: u8 = b'm';
const TAG_DEAD_LETTER: u8 = b'd';
const TAG_NEXT_SEQUENCE: u8 = b'n';

fn key_prefix(queue: &str, tag: u8) -> Vec<u8> {
    let mut key = Vec::with_capacity(queue.len() + 10);
    key.extend_from_slice(queue.as_bytes());
    key.push(0);
    key.push(tag);
    key
}

fn message_key(queue: &str, dead_letter: bool, seq: SequenceNumber) -> Vec<u8> {
    let mut key = key_prefix(
        queue,
        if dead_letter {
            TAG_DEAD_LETTER
        } else {
            TAG_ACTIVE
        },
    );
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn queue_record_key(name: &str) -> String {
    format!("queue/{name}")
}

impl Broker {
    /// Loads every queue from the store and rebuilds its index.
    pub fn open(store: Store) -> Result<Broker, BrokerError> {
        let mut queues = HashMap::new();
        let now = now_ms();
        for entry in store.entities().scan_prefix("queue/") {
            let (key, value) = entry.map_err(StoreError::from)?;
            let name = String::from_utf8_lossy(&key["queue/".len()..]).into_owned();
            let properties: QueueProperties =
                serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                    tree: "entities",
                    detail: format!("queue `{name}`: {e}"),
                })?;
            let state = load_state(&store, &name, now)?;
            queues.insert(
                name.clone(),
                Arc::new(Queue {
                    name,
                    properties,
                    state: Mutex::new(state),
                    arrivals: Notify::new(),
                }),
            );
        }
        Ok(Broker {
            store,
            queues: RwLock::new(queues),
        })
    }

    fn queue(&self, name: &str) -> Result<Arc<Queue>, BrokerError> {
        self.queues
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::QueueNotFound(name.to_string()))
    }

    /// Whether a queue exists.
    pub fn has_queue(&self, name: &str) -> bool {
        self.queue(name).is_ok()
    }

    /// Creates a queue; fails if it exists.
    pub async fn create_queue(
        &self,
        name: &str,
        properties: QueueProperties,
    ) -> Result<QueueInfo, BrokerError> {
        validate_entity_name(name)?;
        properties.validate()?;
        let queue = {
            let mut queues = self.queues.write().unwrap_or_else(|e| e.into_inner());
            if queues.contains_key(name) {
                return Err(BrokerError::QueueExists(name.to_string()));
            }
            let record = serde_json::to_vec(&properties).map_err(|e| StoreError::Corrupt {
                tree: "entities",
                detail: e.to_string(),
            })?;
            self.store
                .entities()
                .insert(queue_record_key(name), record)
                .map_err(StoreError::from)?;
            let queue = Arc::new(Queue {
                name: name.to_string(),
                properties,
                state: Mutex::new(QueueState {
                    next_sequence: 1,
                    active: Index::default(),
                    dead_letters: Index::default(),
                    deleted: false,
                }),
                arrivals: Notify::new(),
            });
            queues.insert(name.to_string(), queue.clone());
            queue
        };
        self.store.commit().await?;
        Ok(info(&queue))
    }

    /// Deletes a queue and every message in it.
    pub async fn delete_queue(&self, name: &str) -> Result<(), BrokerError> {
        let queue = {
            let mut queues = self.queues.write().unwrap_or_else(|e| e.into_inner());
            queues
                .remove(name)
                .ok_or_else(|| BrokerError::QueueNotFound(name.to_string()))?
        };
        {
            let mut state = queue.state();
            state.deleted = true;
            self.store
                .entities()
                .remove(queue_record_key(name))
                .map_err(StoreError::from)?;
            let mut batch = sled::Batch::default();
            for tag in [TAG_ACTIVE, TAG_DEAD_LETTER, TAG_NEXT_SEQUENCE] {
                for key in self
                    .store
                    .messages()
                    .scan_prefix(key_prefix(name, tag))
                    .keys()
                {
                    batch.remove(key.map_err(StoreError::from)?);
                }
            }
            self.store
                .messages()
                .apply_batch(batch)
                .map_err(StoreError::from)?;
        }
        queue.arrivals.notify_waiters();
        self.store.commit().await?;
        Ok(())
    }

    /// Every queue with its counts, sorted by name.
    pub fn list_queues(&self) -> Vec<QueueInfo> {
        let queues: Vec<Arc<Queue>> = self
            .queues
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let mut infos: Vec<QueueInfo> = queues.iter().map(|q| info(q.as_ref())).collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    /// One queue with its counts.
    pub fn queue_info(&self, name: &str) -> Result<QueueInfo, BrokerError> {
        Ok(info(&*self.queue(name)?))
    }

    /// Sends messages to one queue; returns their sequence numbers once durable.
    pub async fn send(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<SequenceNumber>, BrokerError> {
        let mut sent = self
            .send_to_many(vec![(queue.to_string(), messages)])
            .await?;
        Ok(sent.pop().unwrap_or_default())
    }

    /// Sends to several queues atomically (one batch, one fsync): the fan-out
    /// of a topic. Returns the sequence numbers per queue, in order.
    pub async fn send_to_many(
        &self,
        deliveries: Vec<(String, Vec<NewMessage>)>,
    ) -> Result<Vec<Vec<SequenceNumber>>, BrokerError> {
        // Resolve and check everything before touching the store.
        let mut targets = Vec::with_capacity(deliveries.len());
        for (name, messages) in deliveries {
            let queue = self.queue(&name)?;
            for message in &messages {
                let size = message.size();
                if size > queue.properties.max_message_size_bytes {
                    return Err(BrokerError::MessageTooLarge {
                        queue: name,
                        size,
                        limit: queue.properties.max_message_size_bytes,
                    });
                }
            }
            targets.push((queue, messages));
        }
        let (queues, mut batches): (Vec<Arc<Queue>>, Vec<Vec<NewMessage>>) =
            targets.into_iter().unzip();
        // Lock queues in name order so concurrent fan-outs cannot deadlock.
        let mut order: Vec<usize> = (0..queues.len()).collect();
        order.sort_by(|&a, &b| queues[a].name.cmp(&queues[b].name));
        order.dedup_by(|a, b| queues[*a].name == queues[*b].name);

        let now = now_ms();
        let mut batch = sled::Batch::default();
        let mut assigned: Vec<Vec<(SequenceNumber, i64)>> = vec![Vec::new(); queues.len()];
        {
            let mut guards: HashMap<&str, MutexGuard<'_, QueueState>> = HashMap::new();
            for &i in &order {
                guards.insert(queues[i].name.as_str(), queues[i].state());
            }
            for (i, queue) in queues.iter().enumerate() {
                let Some(state) = guards.get_mut(queue.name.as_str()) else {
                    continue;
                };
                if state.deleted {
                    return Err(BrokerError::QueueNotFound(queue.name.clone()));
                }
                for message in batches[i].drain(..) {
                    let seq = state.next_sequence;
                    state.next_sequence += 1;
                    let record = message.into_record(now);
                    assigned[i].push((seq, record.visible_at_ms));
                    batch.insert(
                        message_key(&queue.name, false, seq),
                        store::encode(TREE, &record)?,
                    );
                }
                batch.insert(
                    key_prefix(&queue.name, TAG_NEXT_SEQUENCE),
                    &state.next_sequence.to_be_bytes(),
                );
            }
            self.store
                .messages()
                .apply_batch(batch)
                .map_err(StoreError::from)?;
        }
        self.store.commit().await?;
        // Only now may receivers see them: they are durable.
        let now = now_ms();
        for (i, queue) in queues.iter().enumerate() {
            let mut state = queue.state();
            for &(seq, visible_at) in &assigned[i] {
                state.active.insert(seq, 0, visible_at, now);
            }
            drop(state);
            queue.arrivals.notify_waiters();
        }
        Ok(assigned
            .into_iter()
            .map(|seqs| seqs.into_iter().map(|(seq, _)| seq).collect())
            .collect())
    }

    /// Receives one message, waiting up to `wait` for one to arrive.
    pub async fn receive(
        &self,
        path: &EntityPath,
        mode: ReceiveMode,
        wait: Duration,
    ) -> Result<Option<ReceivedMessage>, BrokerError> {
        let queue = self.queue(&path.queue)?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register for wake-ups before looking, so no arrival is missed.
            let arrival = queue.arrivals.notified();
            tokio::pin!(arrival);
            arrival.as_mut().enable();

            let next_time = match self.try_receive(&queue, path, mode)? {
                Attempt::Got(message) => {
                    // Removal (receive-and-delete) and the delivery count
                    // (peek-lock) are durable before the receiver sees the
                    // message: a crash neither resurrects a deleted message
                    // nor forgets a delivery.
                    self.store.commit().await?;
                    return Ok(Some(*message));
                }
                Attempt::Empty(next_time) => next_time,
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let mut sleep_until = deadline;
            if let Some(at) = next_time {
                let in_ms = u64::try_from(at - now_ms()).unwrap_or(0);
                sleep_until = sleep_until.min(now + Duration::from_millis(in_ms));
            }
            tokio::select! {
                _ = &mut arrival => {}
                _ = tokio::time::sleep_until(sleep_until) => {}
            }
        }
    }

    fn try_receive(
        &self,
        queue: &Queue,
        path: &EntityPath,
        mode: ReceiveMode,
    ) -> Result<Attempt, BrokerError> {
        let max = (!path.dead_letter).then_some(queue.properties.max_delivery_count);
        let mut state = queue.state();
        if state.deleted {
            return Err(BrokerError::QueueNotFound(queue.name.clone()));
        }
        loop {
            let now = now_ms();
            match state.index(path.dead_letter).next(now, max) {
                Next::Wait(at) => return Ok(Attempt::Empty(at)),
                Next::Exhausted(seq) => {
                    let count = state.active.get(seq).map_or(0, |s| s.delivery_count);
                    self.move_to_dead_letter(&queue.name, &mut state, seq, |record| {
                        exceeded_info(count, record)
                    })?;
                }
                Next::Ready(seq) => {
                    let key = message_key(&queue.name, path.dead_letter, seq);
                    let Some(bytes) = self.store.messages().get(&key).map_err(StoreError::from)?
                    else {
                        // Index and store disagree: trust the store.
                        state.index(path.dead_letter).remove(seq);
                        continue;
                    };
                    let mut record: MessageRecord = store::decode(TREE, &bytes)?;
                    return match mode {
                        ReceiveMode::ReceiveAndDelete => {
                            state.index(path.dead_letter).remove(seq);
                            self.store
                                .messages()
                                .remove(&key)
                                .map_err(StoreError::from)?;
                            record.delivery_count += 1;
                            Ok(Attempt::Got(Box::new(ReceivedMessage {
                                sequence_number: seq,
                                lock: None,
                                record,
                            })))
                        }
                        ReceiveMode::PeekLock => {
                            let lock_ms = queue.properties.lock_duration_ms();
                            let Some((lock, count)) =
                                state.index(path.dead_letter).lock(seq, lock_ms, now)
                            else {
                                continue;
                            };
                            record.delivery_count = count;
                            // Persist the count: after a crash the redelivery
                            // still counts this attempt.
                            self.store
                                .messages()
                                .insert(key, store::encode(TREE, &record)?)
                                .map_err(StoreError::from)?;
                            Ok(Attempt::Got(Box::new(ReceivedMessage {
                                sequence_number: seq,
                                lock: Some(lock),
                                record,
                            })))
                        }
                    };
                }
            }
        }
    }

    /// Moves an active message to the dead-letter sub-queue (caller holds the state lock).
    fn move_to_dead_letter(
        &self,
        queue: &str,
        state: &mut QueueState,
        seq: SequenceNumber,
        why: impl FnOnce(&MessageRecord) -> DeadLetterInfo,
    ) -> Result<(), BrokerError> {
        let from = message_key(queue, false, seq);
        let Some(bytes) = self.store.messages().get(&from).map_err(StoreError::from)? else {
            state.active.remove(seq);
            return Ok(());
        };
        let mut record: MessageRecord = store::decode(TREE, &bytes)?;
        let info = why(&record);
        tracing::info!(queue, seq, reason = %info.reason, description = %info.description, "message dead-lettered");
        if let Some(slot) = state.active.get(seq) {
            record.delivery_count = slot.delivery_count;
        }
        record.dead_letter = Some(info);
        let mut batch = sled::Batch::default();
        batch.remove(from);
        batch.insert(message_key(queue, true, seq), store::encode(TREE, &record)?);
        self.store
            .messages()
            .apply_batch(batch)
            .map_err(StoreError::from)?;
        state.active.remove(seq);
        state
            .dead_letters
            .insert(seq, record.delivery_count, 0, now_ms());
        Ok(())
    }

    fn locked<'q>(
        &self,
        queue: &'q Queue,
        path: &EntityPath,
        seq: SequenceNumber,
        token: LockToken,
    ) -> Result<MutexGuard<'q, QueueState>, BrokerError> {
        let mut state = queue.state();
        if state.deleted
            || !state
                .index(path.dead_letter)
                .check_lock(seq, token, now_ms())
        {
            return Err(BrokerError::LockLost {
                entity: path.to_string(),
                sequence_number: seq,
            });
        }
        Ok(state)
    }

    /// Completes a locked message: it is removed for good.
    pub async fn complete(
        &self,
        path: &EntityPath,
        seq: SequenceNumber,
        token: LockToken,
    ) -> Result<(), BrokerError> {
        let queue = self.queue(&path.queue)?;
        {
            let mut state = self.locked(&queue, path, seq, token)?;
            self.store
                .messages()
                .remove(message_key(&queue.name, path.dead_letter, seq))
                .map_err(StoreError::from)?;
            state.index(path.dead_letter).remove(seq);
        }
        self.store.commit().await?;
        Ok(())
    }

    /// Releases a locked message so it is delivered again after `retry_after`,
    /// or dead-letters it when it has used its deliveries.
    pub async fn abandon(
        &self,
        path: &EntityPath,
        seq: SequenceNumber,
        token: LockToken,
        reason: Option<&str>,
        retry_after: Duration,
    ) -> Result<Abandoned, BrokerError> {
        let queue = self.queue(&path.queue)?;
        let outcome = {
            let mut state = self.locked(&queue, path, seq, token)?;
            let count = state
                .index(path.dead_letter)
                .get(seq)
                .map_or(0, |s| s.delivery_count);
            if !path.dead_letter && count >= queue.properties.max_delivery_count {
                let reason = reason.map(str::to_string);
                self.move_to_dead_letter(&queue.name, &mut state, seq, |record| {
                    let mut record = record.clone();
                    if reason.is_some() {
                        record.last_error = reason;
                    }
                    exceeded_info(count, &record)
                })?;
                Abandoned::DeadLettered
            } else {
                let now = now_ms();
                let delay = i64::try_from(retry_after.as_millis()).unwrap_or(i64::MAX);
                let visible_at = now.saturating_add(delay);
                if reason.is_some() || delay > 0 {
                    // Keep the reason and backoff across restarts (not waited for).
                    let key = message_key(&queue.name, path.dead_letter, seq);
                    if let Some(bytes) =
                        self.store.messages().get(&key).map_err(StoreError::from)?
                    {
                        let mut record: MessageRecord = store::decode(TREE, &bytes)?;
                        record.last_error = reason.map(str::to_string).or(record.last_error);
                        record.visible_at_ms = visible_at;
                        record.delivery_count = count;
                        self.store
                            .messages()
                            .insert(key, store::encode(TREE, &record)?)
                            .map_err(StoreError::from)?;
                    }
                }
                state.index(path.dead_letter).unlock(seq, visible_at, now);
                Abandoned::WillRedeliver
            }
        };
        queue.arrivals.notify_waiters();
        if outcome == Abandoned::DeadLettered {
            self.store.commit().await?;
        }
        Ok(outcome)
    }

    /// Moves a locked message to the dead-letter sub-queue with a reason.
    pub async fn dead_letter(
        &self,
        path: &EntityPath,
        seq: SequenceNumber,
        token: LockToken,
        info: DeadLetterInfo,
    ) -> Result<(), BrokerError> {
        let queue = self.queue(&path.queue)?;
        {
            let mut state = self.locked(&queue, path, seq, token)?;
            if path.dead_letter {
                // Already dead-lettered: Service Bus only releases the lock.
                state.dead_letters.unlock(seq, 0, now_ms());
            } else {
                self.move_to_dead_letter(&queue.name, &mut state, seq, |_| info)?;
            }
        }
        self.store.commit().await?;
        Ok(())
    }

    /// Extends the lock on a message; returns the new expiry (Unix ms).
    pub fn renew_lock(
        &self,
        path: &EntityPath,
        seq: SequenceNumber,
        token: LockToken,
    ) -> Result<i64, BrokerError> {
        let queue = self.queue(&path.queue)?;
        let mut state = self.locked(&queue, path, seq, token)?;
        let lock_ms = queue.properties.lock_duration_ms();
        state
            .index(path.dead_letter)
            .renew(seq, lock_ms, now_ms())
            .ok_or_else(|| BrokerError::LockLost {
                entity: path.to_string(),
                sequence_number: seq,
            })
    }

    /// Looks at up to `max` messages from sequence number `from`, without locking.
    pub fn peek(
        &self,
        path: &EntityPath,
        from: SequenceNumber,
        max: usize,
    ) -> Result<Vec<PeekedMessage>, BrokerError> {
        let queue = self.queue(&path.queue)?;
        let mut state = queue.state();
        let now = now_ms();
        let start = message_key(&queue.name, path.dead_letter, from);
        let end = key_prefix(
            &queue.name,
            if path.dead_letter {
                TAG_DEAD_LETTER
            } else {
                TAG_ACTIVE
            } + 1,
        );
        let index = state.index(path.dead_letter);
        let mut out = Vec::new();
        for entry in self.store.messages().range(start..end) {
            if out.len() >= max {
                break;
            }
            let (key, bytes) = entry.map_err(StoreError::from)?;
            let Some(seq_bytes) = key.get(key.len().saturating_sub(8)..) else {
                continue;
            };
            let seq = SequenceNumber::from_be_bytes(seq_bytes.try_into().unwrap_or_default());
            // Not yet in the index: a send whose commit is still in flight.
            let Some(slot) = index.get(seq) else { continue };
            let mut record: MessageRecord = store::decode(TREE, &bytes)?;
            record.delivery_count = slot.delivery_count;
            out.push(PeekedMessage {
                sequence_number: seq,
                state: slot.state(now),
                record,
            });
        }
        Ok(out)
    }
}

enum Attempt {
    Got(Box<ReceivedMessage>),
    Empty(Option<i64>),
}

fn exceeded_info(count: u32, record: &MessageRecord) -> DeadLetterInfo {
    let mut description = format!("message could not be consumed after {count} delivery attempts");
    if let Some(error) = &record.last_error {
        description.push_str("; last error: ");
        description.push_str(error);
    }
    DeadLetterInfo {
        reason: MAX_DELIVERY_COUNT_EXCEEDED.to_string(),
        description,
    }
}

fn info(queue: &Queue) -> QueueInfo {
    let state = queue.state();
    let now = now_ms();
    let (mut locked, mut scheduled) = (0, 0);
    for (_, slot) in state.active.iter() {
        match slot.state(now) {
            MessageState::Locked => locked += 1,
            MessageState::Scheduled => scheduled += 1,
            MessageState::Active => {}
        }
    }
    QueueInfo {
        name: queue.name.clone(),
        properties: queue.properties.clone(),
        active_message_count: state.active.len(),
        locked_message_count: locked,
        scheduled_message_count: scheduled,
        dead_letter_message_count: state.dead_letters.len(),
    }
}

/// Rebuilds a queue's index from the store.
fn load_state(store: &Store, name: &str, now: i64) -> Result<QueueState, BrokerError> {
    let mut state = QueueState {
        next_sequence: 1,
        active: Index::default(),
        dead_letters: Index::default(),
        deleted: false,
    };
    if let Some(bytes) = store
        .messages()
        .get(key_prefix(name, TAG_NEXT_SEQUENCE))
        .map_err(StoreError::from)?
    {
        let raw: [u8; 8] = bytes.as_ref().try_into().map_err(|_| StoreError::Corrupt {
            tree: TREE,
            detail: format!("next sequence number of `{name}` is not 8 bytes"),
        })?;
        state.next_sequence = SequenceNumber::from_be_bytes(raw);
    }
    for (tag, dead_letter) in [(TAG_ACTIVE, false), (TAG_DEAD_LETTER, true)] {
        let prefix = key_prefix(name, tag);
        for entry in store.messages().scan_prefix(&prefix) {
            let (key, bytes) = entry.map_err(StoreError::from)?;
            let raw: [u8; 8] = key[prefix.len()..]
                .try_into()
                .map_err(|_| StoreError::Corrupt {
                    tree: TREE,
                    detail: format!("bad message key in `{name}`"),
                })?;
            let seq = SequenceNumber::from_be_bytes(raw);
            let record: MessageRecord = store::decode(TREE, &bytes)?;
            let visible_at = if dead_letter { 0 } else { record.visible_at_ms };
            state
                .index(dead_letter)
                .insert(seq, record.delivery_count, visible_at, now);
            // Never hand out a sequence number twice, even if the counter lagged.
            state.next_sequence = state.next_sequence.max(seq + 1);
        }
    }
    Ok(state)
}
