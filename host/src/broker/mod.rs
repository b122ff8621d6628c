//! Queues and topics with Service Bus semantics.
//!
//! Read [`Broker`] first: it owns every queue, keeps an in-memory
//! [`index`] of each for fast receive, and writes through to the
//! [`Store`](crate::store::Store). Message shapes are in [`message`];
//! sessions in [`session`]; Service Bus topics, their subscriptions and
//! rule filters in [`topic`] and [`filter`]; duplicate detection in [`dedup`].
//!
//! A queue `q` has a dead-letter sub-queue addressed as `q/$DeadLetterQueue`
//! ([`EntityPath`]). Each delivery under peek-lock counts towards the
//! queue's max delivery count; a message available again after that many
//! deliveries moves to the dead-letter queue with reason
//! `MaxDeliveryCountExceeded`. Expired messages are dead-lettered with
//! `TTLExpiredException` when the queue says so, else dropped. A
//! background task ([`Broker::run_maintenance`]) expires messages,
//! forwards dead letters and forgets old duplicate-detection ids.
//!
//! Durability: a send, receive, complete or dead-letter returns only once
//! it is on disk (group commit). A send whose caller goes away during its
//! commit still completes ([`Accepted`]): what sled holds, receivers see.
//! Locks live in memory: after a crash every locked message is delivered
//! again, with its delivery count kept. A
//! peek-lock receive writes its messages' new delivery counts as one small
//! *delivery log* record ([`Broker::log_deliveries`]) rather than rewriting
//! every message record; loading replays the logs, and a log is deleted
//! once no message refers to it. A message sent while a peek-lock receiver
//! waits is handed to it directly ([`handoff`]): the send writes the record
//! with that first delivery counted, so one commit covers both.

mod dedup;
pub mod filter;
mod handoff;
mod index;
mod listeners;
pub mod message;
pub mod session;
pub mod topic;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::clock::now_ms;
use crate::store::{self, Store, StoreError};
use dedup::Dedup;
use handoff::{Waiter, Waiters, Waiting};
use index::{DeliveryLogId, Index, NewSlot, Next};
use listeners::Listeners;
pub use message::{
    DeadLetterInfo, LockToken, MessageLock, MessageRecord, MessageState, NewMessage, PeekedMessage,
    ReceiveMode, ReceivedMessage, SequenceNumber,
};
pub use session::SessionLockInfo;
pub use topic::{RuleInfo, SubscriptionInfo, TopicInfo, TopicProperties};

/// Deliveries before a message is dead-lettered, unless the queue says otherwise.
pub const DEFAULT_MAX_DELIVERY_COUNT: u32 = 10;
/// How long a peek-lock lasts unless renewed.
pub const DEFAULT_LOCK_DURATION_SECS: u64 = 60;
/// Service Bus caps locks at five minutes.
pub const MAX_LOCK_DURATION_SECS: u64 = 300;
/// Largest message body + properties a queue accepts by default (Service Bus standard tier).
pub const DEFAULT_MAX_MESSAGE_SIZE_BYTES: usize = 256 * 1024;
/// How long message ids are remembered for duplicate detection, by default.
pub const DEFAULT_DUPLICATE_DETECTION_WINDOW_SECS: u64 = 600;
/// Service Bus allows at most four forwarding hops.
pub const MAX_FORWARD_HOPS: usize = 4;
/// The dead-letter reason Service Bus uses for messages delivered too often.
pub const MAX_DELIVERY_COUNT_EXCEEDED: &str = "MaxDeliveryCountExceeded";
/// The dead-letter reason Service Bus uses for expired messages.
pub const TTL_EXPIRED: &str = "TTLExpiredException";
/// Suffix addressing a queue's dead-letter sub-queue.
pub const DEAD_LETTER_SUFFIX: &str = "$DeadLetterQueue";

const TREE: &str = "messages";
/// Sequence numbers reserved in the store at a time ([`QueueState::assign_sequence`]).
const SEQUENCE_BLOCK: SequenceNumber = 1024;
/// How often the maintenance task looks for expired messages and dead letters to forward.
const MAINTENANCE_INTERVAL: Duration = Duration::from_millis(500);

/// Why a broker operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// No queue or topic by that name.
    #[error("queue `{0}` does not exist")]
    QueueNotFound(String),
    /// A queue or topic by that name exists already.
    #[error("an entity named `{0}` already exists")]
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
    /// No such message (or not in the state the operation needs).
    #[error("message {sequence_number} in `{entity}` {why}")]
    MessageNotFound {
        /// The entity path.
        entity: String,
        /// The sequence number asked for.
        sequence_number: SequenceNumber,
        /// What was expected of it.
        why: &'static str,
    },
    /// A session-enabled queue needs a session receiver; a plain queue has no sessions.
    #[error("{0}")]
    Session(String),
    /// The session lock is unknown, expired or held by someone else.
    #[error("the lock on session `{session}` of `{queue}` is lost or held by another receiver")]
    SessionLockLost {
        /// The queue.
        queue: String,
        /// The session id.
        session: String,
    },
    /// Forwarding goes round in circles or too far.
    #[error("forwarding from `{0}` exceeds {MAX_FORWARD_HOPS} hops or loops")]
    ForwardLoop(String),
    /// A topic, subscription or rule operation failed.
    #[error(transparent)]
    Topic(#[from] topic::TopicError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Options of a queue (or of a topic subscription), as set when it is created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct QueueProperties {
    /// Deliveries before a message is dead-lettered.
    pub max_delivery_count: u32,
    /// Peek-lock duration in seconds (1 ..= 300).
    pub lock_duration_secs: u64,
    /// Largest message (body + user properties) accepted.
    pub max_message_size_bytes: usize,
    /// Time-to-live of messages that set none (none: forever).
    pub default_message_time_to_live_secs: Option<u64>,
    /// Expired messages go to the dead-letter queue instead of being dropped.
    pub dead_lettering_on_message_expiration: bool,
    /// Drop messages whose id was seen within the window.
    pub requires_duplicate_detection: bool,
    /// The duplicate-detection window in seconds.
    pub duplicate_detection_history_time_window_secs: u64,
    /// Messages need a session id and are received through sessions.
    pub requires_session: bool,
    /// Send everything arriving here on to this queue instead.
    pub forward_to: Option<String>,
    /// Send dead-lettered messages on to this queue instead of keeping them.
    pub forward_dead_lettered_messages_to: Option<String>,
}

impl Default for QueueProperties {
    fn default() -> Self {
        QueueProperties {
            max_delivery_count: DEFAULT_MAX_DELIVERY_COUNT,
            lock_duration_secs: DEFAULT_LOCK_DURATION_SECS,
            max_message_size_bytes: DEFAULT_MAX_MESSAGE_SIZE_BYTES,
            default_message_time_to_live_secs: None,
            dead_lettering_on_message_expiration: false,
            requires_duplicate_detection: false,
            duplicate_detection_history_time_window_secs: DEFAULT_DUPLICATE_DETECTION_WINDOW_SECS,
            requires_session: false,
            forward_to: None,
            forward_dead_lettered_messages_to: None,
        }
    }
}

impl QueueProperties {
    fn validate(&self) -> Result<(), BrokerError> {
        let bad = |what: String| Err(BrokerError::InvalidProperty(what));
        if self.max_delivery_count == 0 {
            return bad("maxDeliveryCount must be at least 1".into());
        }
        if !(1..=MAX_LOCK_DURATION_SECS).contains(&self.lock_duration_secs) {
            return bad(format!(
                "lockDurationSecs must be between 1 and {MAX_LOCK_DURATION_SECS}, got {}",
                self.lock_duration_secs
            ));
        }
        if self.max_message_size_bytes == 0 {
            return bad("maxMessageSizeBytes must be above 0".into());
        }
        if self.default_message_time_to_live_secs == Some(0) {
            return bad(
                "defaultMessageTimeToLiveSecs must be above 0 (leave it out for no expiry)".into(),
            );
        }
        if !(20..=7 * 24 * 3600).contains(&self.duplicate_detection_history_time_window_secs) {
            return bad(format!(
                "duplicateDetectionHistoryTimeWindowSecs must be between 20 and 604800, got {}",
                self.duplicate_detection_history_time_window_secs
            ));
        }
        for target in [&self.forward_to, &self.forward_dead_lettered_messages_to]
            .into_iter()
            .flatten()
        {
            validate_entity_name(target)?;
        }
        Ok(())
    }

    fn lock_duration_ms(&self) -> i64 {
        i64::try_from(self.lock_duration_secs * 1000).unwrap_or(i64::MAX)
    }

    fn ttl_ms(&self) -> Option<i64> {
        self.default_message_time_to_live_secs
            .map(|secs| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX))
    }

    fn dedup_window_ms(&self) -> i64 {
        i64::try_from(self.duplicate_detection_history_time_window_secs * 1000).unwrap_or(i64::MAX)
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
    /// Messages in the queue (active, locked, scheduled and deferred).
    pub message_count: usize,
    /// Messages ready or locked (Service Bus's "active").
    pub active_message_count: usize,
    /// Messages locked by a receiver right now.
    pub locked_message_count: usize,
    /// Messages waiting for a later time.
    pub scheduled_message_count: usize,
    /// Messages set aside by a receiver.
    pub deferred_message_count: usize,
    /// Messages in the dead-letter sub-queue.
    pub dead_letter_message_count: usize,
    /// Messages waiting to be forwarded (always 0: forwarding is immediate).
    pub transfer_message_count: usize,
    /// Bytes of message bodies held.
    pub size_in_bytes: u64,
    /// When the queue was created (Unix ms).
    pub created_at_ms: i64,
}

/// What an abandon led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abandoned {
    /// The message will be delivered again.
    WillRedeliver,
    /// It had used its deliveries and was dead-lettered.
    DeadLettered,
}

/// A queue's definition as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueueRecord {
    #[serde(flatten)]
    properties: QueueProperties,
    #[serde(default)]
    created_at_ms: i64,
}

struct Queue {
    name: String,
    /// Replaced whole by [`Broker::update_queue`]; readers take a snapshot.
    properties: RwLock<Arc<QueueProperties>>,
    created_at_ms: i64,
    state: Mutex<QueueState>,
    /// Writers apply their sled changes after releasing `state` (a sled
    /// write can block in `Log::reserve`; holding a std mutex there stalls
    /// every async worker that touches the queue), holding this shared.
    /// Deleting the queue takes it exclusively, so no write lands after its
    /// keys were removed. An async lock: waiting never blocks a worker.
    writes: tokio::sync::RwLock<()>,
    /// Woken whenever a message may have become receivable.
    arrivals: Notify,
    /// Receivers of the queue and of its dead-letter sub-queue.
    listeners: [Listeners; 2],
}

struct QueueState {
    next_sequence: SequenceNumber,
    /// End (exclusive) of the block of sequence numbers the store has
    /// reserved; see [`QueueState::assign_sequence`].
    sequence_reserved: SequenceNumber,
    /// The id the next delivery log record gets (never reused).
    next_delivery_log: DeliveryLogId,
    active: Index,
    dead_letters: Index,
    deleted: bool,
    dedup: Dedup,
    sessions: HashMap<String, session::SessionLock>,
    size_in_bytes: u64,
    /// Peek-lock receivers waiting for a send ([`handoff`]).
    waiters: Waiters,
}

impl Queue {
    fn new(
        name: String,
        properties: QueueProperties,
        created_at_ms: i64,
        state: QueueState,
    ) -> Queue {
        Queue {
            name,
            properties: RwLock::new(Arc::new(properties)),
            created_at_ms,
            state: Mutex::new(state),
            writes: tokio::sync::RwLock::new(()),
            arrivals: Notify::new(),
            listeners: [Listeners::new(), Listeners::new()],
        }
    }

    /// The queue's options as they are now.
    fn properties(&self) -> Arc<QueueProperties> {
        self.properties
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn state(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding the lock leaves the index as consistent as
        // each single statement made it; keep serving rather than cascade.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl QueueState {
    fn new(properties: &QueueProperties) -> QueueState {
        QueueState {
            next_sequence: 1,
            sequence_reserved: 0,
            next_delivery_log: 1,
            active: Index::default(),
            dead_letters: Index::default(),
            deleted: false,
            dedup: Dedup::new(properties.dedup_window_ms()),
            sessions: HashMap::new(),
            size_in_bytes: 0,
            waiters: Waiters::default(),
        }
    }

    /// Hands out the queue's next sequence number. Numbers come from blocks
    /// of [`SEQUENCE_BLOCK`]: the store keeps only the end of the current
    /// block, written when a block opens, so sends write the counter once per
    /// block rather than once each, and after a restart numbering resumes at
    /// the stored end (a gap, never a repeat). The write happens under the
    /// queue lock, so the stored end only grows, and before the caller's
    /// commit, which makes it durable with the messages numbered from it.
    fn assign_sequence(
        &mut self,
        store: &Store,
        queue: &str,
    ) -> Result<SequenceNumber, BrokerError> {
        let seq = self.next_sequence;
        if seq >= self.sequence_reserved {
            let end = seq + SEQUENCE_BLOCK;
            store
                .messages()
                .insert(key_prefix(queue, TAG_NEXT_SEQUENCE), &end.to_be_bytes())
                .map_err(StoreError::from)?;
            self.sequence_reserved = end;
        }
        self.next_sequence += 1;
        Ok(seq)
    }

    fn index(&mut self, dead_letter: bool) -> &mut Index {
        if dead_letter {
            &mut self.dead_letters
        } else {
            &mut self.active
        }
    }
}

/// Owns every queue and Service Bus topic. Cheap to share behind an `Arc`.
pub struct Broker {
    store: Store,
    queues: RwLock<HashMap<String, Arc<Queue>>>,
    topics: RwLock<HashMap<String, Arc<topic::Topic>>>,
    /// Wakes the maintenance task early (a dead letter waits to be forwarded).
    maintenance: Notify,
}

// ---- store keys ---------------------------------------------------------

const TAG_ACTIVE: u8 = b'm';
const TAG_DEAD_LETTER: u8 = b'd';
const TAG_NEXT_SEQUENCE: u8 = b'n';
const TAG_DEDUP: u8 = b'u';
const TAG_SESSION_STATE: u8 = b's';
const TAG_DELIVERIES: u8 = b'c';

fn key_prefix(entity: &str, tag: u8) -> Vec<u8> {
    let mut key = Vec::with_capacity(entity.len() + 10);
    key.extend_from_slice(entity.as_bytes());
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

/// Key of a delivery log record: the sub-queue it counts, then its id.
fn delivery_log_key(queue: &str, dead_letter: bool, id: DeliveryLogId) -> Vec<u8> {
    let mut key = key_prefix(queue, TAG_DELIVERIES);
    key.push(u8::from(dead_letter));
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// What a delivery log record holds: (sequence number, delivery count).
type DeliveryLog = Vec<(SequenceNumber, u32)>;
/// Receives of at least this many messages log their delivery counts in
/// one record; smaller ones rewrite each message record (fewer writes:
/// a log also has to be deleted later).
const DELIVERY_LOG_MIN_MESSAGES: usize = 4;

fn dedup_key(entity: &str, id: &str) -> Vec<u8> {
    let mut key = key_prefix(entity, TAG_DEDUP);
    key.extend_from_slice(id.as_bytes());
    key
}

fn queue_record_key(name: &str) -> String {
    format!("queue/{name}")
}

fn corrupt(detail: String) -> StoreError {
    StoreError::Corrupt { tree: TREE, detail }
}

fn new_slot(record: &MessageRecord, dead_letter: bool) -> NewSlot {
    NewSlot {
        delivery_count: record.delivery_count,
        visible_at_ms: if dead_letter { 0 } else { record.visible_at_ms },
        // Dead letters do not expire.
        expires_at_ms: if dead_letter {
            None
        } else {
            record.expires_at_ms
        },
        deferred: record.deferred,
        session: record.session_id.as_deref().map(Arc::from),
        body_bytes: record.body.len() as u64,
    }
}

/// What [`Broker::try_take`] found.
struct Taken<'q> {
    messages: Vec<ReceivedMessage>,
    /// What taking them changed, to apply once the state lock is released.
    writes: Writes,
    /// When the next message becomes receivable, if one is waiting for a time.
    next_time: Option<i64>,
    /// A receiver that found nothing, registered for a handoff.
    waiting: Option<Waiting<'q>>,
}

/// A message a send numbered, to enter into the index once it is durable.
struct Assigned {
    seq: SequenceNumber,
    slot: NewSlot,
    body_bytes: u64,
    /// The waiter (index into the send's handoffs) it goes to, and the
    /// record it gets.
    handoff: Option<(usize, MessageRecord)>,
}

/// Messages a send wrote to sled, on their way into the index: they enter
/// it once their commit is durable. That happens even if the send's caller
/// goes away during the commit (an HTTP client hanging up): dropped
/// unfinished, the rest runs as a task of its own, so a stored message is
/// never left invisible until the next start.
struct Accepted {
    store: Store,
    queues: Vec<Arc<Queue>>,
    assigned: Vec<Vec<Assigned>>,
    /// Per queue, the waiters its messages go to.
    handoffs: Vec<Vec<Waiter>>,
    finished: bool,
    /// Off in the task that finishes a dropped one (no second task).
    finish_if_dropped: bool,
}

impl Accepted {
    /// Waits for the commit, then lets receivers see the messages; returns
    /// their sequence numbers per queue.
    async fn commit(mut self) -> Result<Vec<Vec<SequenceNumber>>, BrokerError> {
        let committed = self.store.commit().await;
        // A failed commit poisoned the store; nothing enters the index.
        self.finished = true;
        committed?;
        Ok(self.publish())
    }

    /// Enters the messages into their queues' indexes and hands the
    /// waiters theirs.
    fn publish(&mut self) -> Vec<Vec<SequenceNumber>> {
        let now = now_ms();
        let mut result = Vec::with_capacity(self.queues.len());
        for (i, queue) in self.queues.iter().enumerate() {
            let lock_ms = queue.properties().lock_duration_ms();
            let mut handed: Vec<Vec<ReceivedMessage>> = self.handoffs[i]
                .iter()
                .map(|w| Vec::with_capacity(w.max))
                .collect();
            let mut queued = false;
            let mut state = queue.state();
            // Deleted during the commit: nothing to hand out.
            let deleted = state.deleted;
            let mut seqs = Vec::with_capacity(self.assigned[i].len());
            for Assigned {
                seq,
                slot,
                body_bytes,
                handoff,
            } in self.assigned[i].drain(..)
            {
                state.active.insert(seq, slot, now);
                state.size_in_bytes += body_bytes;
                seqs.push(seq);
                // Its time-to-live may have run out during the commit.
                let handoff = handoff.filter(|(_, record)| {
                    !deleted && record.expires_at_ms.is_none_or(|at| at > now)
                });
                let locked = handoff.and_then(|(waiter, record)| {
                    let (lock, _) = state.active.lock(seq, lock_ms, now)?;
                    Some((waiter, lock, record))
                });
                match locked {
                    Some((waiter, lock, record)) => handed[waiter].push(ReceivedMessage {
                        sequence_number: seq,
                        lock: Some(lock),
                        record,
                    }),
                    None => queued = true,
                }
            }
            drop(state);
            for (waiter, messages) in self.handoffs[i].drain(..).zip(handed) {
                if let Err(undelivered) = waiter.deliver(messages) {
                    // The receiver left after the send took it.
                    handoff::release(queue, &undelivered);
                    queued = true;
                }
            }
            if queued {
                queue.arrivals.notify_waiters();
            }
            result.push(seqs);
        }
        result
    }
}

impl Drop for Accepted {
    fn drop(&mut self) {
        if self.finished || !self.finish_if_dropped {
            return;
        }
        let rest = Accepted {
            store: self.store.clone(),
            queues: std::mem::take(&mut self.queues),
            assigned: std::mem::take(&mut self.assigned),
            handoffs: std::mem::take(&mut self.handoffs),
            finished: false,
            finish_if_dropped: false,
        };
        // Without a runtime the process is ending: the next start finds them.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = rest.commit().await {
                    tracing::warn!(error = %e, "a cancelled send's commit failed");
                }
            });
        }
    }
}

/// Writes that need not be atomic together (delivery counts, removals of
/// settled messages), collected under a queue's state lock and applied
/// after it is released. One by one rather than as a `sled::Batch`: a
/// batch takes sled's global write lock, which stalls every other reader
/// and writer of the database while it is applied.
#[derive(Default)]
struct Writes(Vec<(Vec<u8>, Option<Vec<u8>>)>);

impl Writes {
    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.0.push((key, Some(value)));
    }

    fn remove(&mut self, key: Vec<u8>) {
        self.0.push((key, None));
    }

    fn apply(self, tree: &sled::Tree) -> Result<(), StoreError> {
        for (key, value) in self.0 {
            match value {
                Some(value) => tree.insert(key, value)?,
                None => tree.remove(key)?,
            };
        }
        Ok(())
    }
}

impl Broker {
    /// Loads every queue and topic from the store and rebuilds the indexes.
    pub fn open(store: Store) -> Result<Broker, BrokerError> {
        let mut queues = HashMap::new();
        let now = now_ms();
        for entry in store.entities().scan_prefix("queue/") {
            let (key, value) = entry.map_err(StoreError::from)?;
            let name = String::from_utf8_lossy(&key["queue/".len()..]).into_owned();
            let record: QueueRecord =
                serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                    tree: "entities",
                    detail: format!("queue `{name}`: {e}"),
                })?;
            let state = load_state(&store, &name, &record.properties, now)?;
            queues.insert(
                name.clone(),
                Arc::new(Queue::new(
                    name,
                    record.properties,
                    record.created_at_ms,
                    state,
                )),
            );
        }
        let topics = topic::load_topics(&store, now)?;
        Ok(Broker {
            store,
            queues: RwLock::new(queues),
            topics: RwLock::new(topics),
            maintenance: Notify::new(),
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

    /// Whether a queue or topic by this name exists.
    pub fn has_entity(&self, name: &str) -> bool {
        self.has_queue(name) || self.topic(name).is_ok()
    }

    /// Creates a queue; fails if a queue or topic by that name exists.
    pub async fn create_queue(
        &self,
        name: &str,
        properties: QueueProperties,
    ) -> Result<QueueInfo, BrokerError> {
        validate_entity_name(name)?;
        properties.validate()?;
        if self.topic(name).is_ok() {
            return Err(BrokerError::QueueExists(name.to_string()));
        }
        let queue = {
            let mut queues = self.queues.write().unwrap_or_else(|e| e.into_inner());
            if queues.contains_key(name) {
                return Err(BrokerError::QueueExists(name.to_string()));
            }
            let created_at_ms = now_ms();
            self.write_queue_record(name, &properties, created_at_ms)?;
            let state = QueueState::new(&properties);
            let queue = Arc::new(Queue::new(
                name.to_string(),
                properties,
                created_at_ms,
                state,
            ));
            queues.insert(name.to_string(), queue.clone());
            queue
        };
        self.store.commit().await?;
        Ok(info(&queue))
    }

    /// Changes a queue's options in place, as Service Bus's
    /// `UpdateQueue` does: new locks, deliveries, sends and expiries follow
    /// the new values; messages already in the queue keep their expiry.
    /// Sessions and duplicate detection cannot be switched on or off.
    pub async fn update_queue(
        &self,
        name: &str,
        properties: QueueProperties,
    ) -> Result<QueueInfo, BrokerError> {
        properties.validate()?;
        let queue = {
            // Held across the write so that two updates land in order.
            let queues = self.queues.write().unwrap_or_else(|e| e.into_inner());
            let queue = queues
                .get(name)
                .cloned()
                .ok_or_else(|| BrokerError::QueueNotFound(name.to_string()))?;
            let current = queue.properties();
            for (field, was, is) in [
                (
                    "requiresSession",
                    current.requires_session,
                    properties.requires_session,
                ),
                (
                    "requiresDuplicateDetection",
                    current.requires_duplicate_detection,
                    properties.requires_duplicate_detection,
                ),
            ] {
                if was != is {
                    return Err(BrokerError::InvalidProperty(format!(
                        "{field} cannot be changed on an existing entity (it is {was}); delete and create it"
                    )));
                }
            }
            self.write_queue_record(name, &properties, queue.created_at_ms)?;
            queue.state().dedup.set_window(properties.dedup_window_ms());
            *queue.properties.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(properties);
            queue
        };
        self.store.commit().await?;
        // A lower max delivery count or a forward target may apply at once.
        queue.arrivals.notify_waiters();
        self.maintenance.notify_one();
        Ok(info(&queue))
    }

    fn write_queue_record(
        &self,
        name: &str,
        properties: &QueueProperties,
        created_at_ms: i64,
    ) -> Result<(), BrokerError> {
        let record = QueueRecord {
            properties: properties.clone(),
            created_at_ms,
        };
        let json = serde_json::to_vec(&record).map_err(|e| StoreError::Corrupt {
            tree: "entities",
            detail: e.to_string(),
        })?;
        self.store
            .entities()
            .insert(queue_record_key(name), json)
            .map_err(StoreError::from)?;
        Ok(())
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
            // Waits for writes in flight (see `Queue::writes`); later ones see `deleted`.
            let _writes = queue.writes.write().await;
            queue.state().deleted = true;
            self.store
                .entities()
                .remove(queue_record_key(name))
                .map_err(StoreError::from)?;
            self.remove_prefixes(
                name,
                &[
                    TAG_ACTIVE,
                    TAG_DEAD_LETTER,
                    TAG_NEXT_SEQUENCE,
                    TAG_DEDUP,
                    TAG_SESSION_STATE,
                    TAG_DELIVERIES,
                ],
            )?;
        }
        queue.arrivals.notify_waiters();
        self.store.commit().await?;
        Ok(())
    }

    fn remove_prefixes(&self, entity: &str, tags: &[u8]) -> Result<(), BrokerError> {
        let mut batch = sled::Batch::default();
        for &tag in tags {
            for key in self
                .store
                .messages()
                .scan_prefix(key_prefix(entity, tag))
                .keys()
            {
                batch.remove(key.map_err(StoreError::from)?);
            }
        }
        self.store
            .messages()
            .apply_batch(batch)
            .map_err(StoreError::from)?;
        Ok(())
    }

    /// A snapshot of the queues (the map's lock is not held afterwards).
    fn all_queues(&self) -> Vec<Arc<Queue>> {
        self.queues
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Every queue with its counts, sorted by name (topic subscriptions included).
    pub fn list_queues(&self) -> Vec<QueueInfo> {
        let queues = self.all_queues();
        let mut infos: Vec<QueueInfo> = queues.iter().map(|q| info(q)).collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    /// One queue with its counts.
    pub fn queue_info(&self, name: &str) -> Result<QueueInfo, BrokerError> {
        Ok(info(&*self.queue(name)?))
    }

    /// Entities holding messages that no receiver has asked for since
    /// `idle_since_ms` (Unix ms): the queue itself when it has active
    /// messages, its dead-letter sub-queue when that has any.
    pub fn unattended(&self, idle_since_ms: i64) -> Vec<(EntityPath, QueueInfo)> {
        let queues = self.all_queues();
        let mut out = Vec::new();
        for queue in queues {
            let info = info(&queue);
            let waiting = [
                info.active_message_count > info.locked_message_count,
                info.dead_letter_message_count > 0,
            ];
            for (dead_letter, has_messages) in [false, true].into_iter().zip(waiting) {
                let idle = queue.listeners[usize::from(dead_letter)]
                    .idle_since()
                    .is_some_and(|since| since <= idle_since_ms);
                if has_messages && idle {
                    let path = if dead_letter {
                        EntityPath::dead_letter(&queue.name)
                    } else {
                        EntityPath::active(&queue.name)
                    };
                    out.push((path, info.clone()));
                }
            }
        }
        out
    }

    /// Sends messages to a queue or a topic; returns the sequence numbers of
    /// the messages a queue accepted (duplicates and topic fan-outs give none)
    /// once they are durable.
    pub async fn send(
        &self,
        entity: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<SequenceNumber>, BrokerError> {
        if let Ok(topic) = self.topic(entity) {
            self.send_to_topic(&topic, messages).await?;
            return Ok(Vec::new());
        }
        let mut sent = self
            .send_to_many(vec![(entity.to_string(), messages)])
            .await?;
        Ok(sent.pop().unwrap_or_default())
    }

    /// Follows `forward_to` from `name` to the queue that keeps the messages.
    fn resolve_forwarding(&self, name: &str) -> Result<Arc<Queue>, BrokerError> {
        let mut queue = self.queue(name)?;
        for _ in 0..=MAX_FORWARD_HOPS {
            match &queue.properties().forward_to {
                None => return Ok(queue),
                Some(next) => queue = self.queue(next)?,
            }
        }
        Err(BrokerError::ForwardLoop(name.to_string()))
    }

    /// Sends to several queues atomically (one batch, one fsync): the fan-out
    /// of a topic. Returns the sequence numbers per queue, in order; a
    /// duplicate (duplicate detection) is accepted and dropped.
    pub async fn send_to_many(
        &self,
        deliveries: Vec<(String, Vec<NewMessage>)>,
    ) -> Result<Vec<Vec<SequenceNumber>>, BrokerError> {
        // Resolve and check everything before touching the store.
        let mut queues = Vec::with_capacity(deliveries.len());
        let mut batches = Vec::with_capacity(deliveries.len());
        for (name, messages) in deliveries {
            let queue = self.resolve_forwarding(&name)?;
            let limit = self.queue(&name)?.properties().max_message_size_bytes;
            for message in &messages {
                let size = message.size();
                if size > limit {
                    return Err(BrokerError::MessageTooLarge {
                        queue: name,
                        size,
                        limit,
                    });
                }
                if queue.properties().requires_session && message.session_id.is_none() {
                    return Err(BrokerError::Session(format!(
                        "queue `{}` requires sessions: give every message a SessionId",
                        queue.name
                    )));
                }
            }
            queues.push(queue);
            batches.push(messages);
        }
        // Lock queues in name order so concurrent fan-outs cannot deadlock.
        let mut order: Vec<usize> = (0..queues.len()).collect();
        order.sort_by(|&a, &b| queues[a].name.cmp(&queues[b].name));
        order.dedup_by(|a, b| queues[*a].name == queues[*b].name);

        // Shared write guards first (async, in name order), then the state
        // locks; sled is written only after the state locks are released.
        let mut writes = Vec::with_capacity(order.len());
        for &i in &order {
            writes.push(queues[i].writes.read().await);
        }
        let now = now_ms();
        let mut batch = sled::Batch::default();
        // The common single message without duplicate detection is written
        // with a plain insert: a batch takes sled's global write lock.
        let mut single: Option<(Vec<u8>, Vec<u8>)> = None;
        let mut writes_in_batch = 0usize;
        let mut assigned: Vec<Vec<Assigned>> = (0..queues.len()).map(|_| Vec::new()).collect();
        let mut handoffs: Vec<Vec<Waiter>> = (0..queues.len()).map(|_| Vec::new()).collect();
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
                // Room left with the waiter taken last.
                let mut room = 0usize;
                // Waiters are handed new messages only while nothing older
                // is receivable (say, an abandoned message whose wake-up
                // they have not handled yet): that one goes first.
                let nothing_ready = !state.waiters.is_empty()
                    && matches!(
                        state
                            .active
                            .next(now, Some(queue.properties().max_delivery_count), None),
                        Next::Wait(_)
                    );
                for message in batches[i].drain(..) {
                    if queue.properties().requires_duplicate_detection
                        && let Some(id) = &message.message_id
                    {
                        if state.dedup.is_duplicate(id, now) {
                            tracing::debug!(queue = %queue.name, message_id = %id, "duplicate dropped");
                            continue;
                        }
                        state.dedup.remember(id, now);
                        batch.insert(dedup_key(&queue.name, id), &now.to_be_bytes());
                        writes_in_batch += 2;
                    }
                    let seq = state.assign_sequence(&self.store, &queue.name)?;
                    let mut record = message.into_record(now, queue.properties().ttl_ms());
                    let slot = new_slot(&record, false);
                    let may_hand_over = nothing_ready
                        && record.visible_at_ms <= now
                        && record.expires_at_ms.is_none_or(|at| at > now);
                    if may_hand_over
                        && room == 0
                        && let Some(waiter) = state.waiters.take()
                    {
                        room = waiter.max;
                        handoffs[i].push(waiter);
                    }
                    // The record goes to a waiting receiver: it is written
                    // with the delivery that receiver is about to get.
                    let handed_to = (may_hand_over && room > 0).then(|| {
                        room -= 1;
                        record.delivery_count = 1;
                        handoffs[i].len() - 1
                    });
                    let (key, value) = (
                        message_key(&queue.name, false, seq),
                        store::encode(TREE, &record)?,
                    );
                    assigned[i].push(Assigned {
                        seq,
                        slot,
                        body_bytes: record.body.len() as u64,
                        handoff: handed_to.map(|waiter| (waiter, record)),
                    });
                    writes_in_batch += 1;
                    if writes_in_batch == 1 {
                        single = Some((key, value));
                    } else {
                        if let Some((key, value)) = single.take() {
                            batch.insert(key, value);
                        }
                        batch.insert(key, value);
                    }
                }
            }
        }
        match single {
            Some((key, value)) => self.store.messages().insert(key, value).map(|_| ()),
            None => self.store.messages().apply_batch(batch),
        }
        .map_err(StoreError::from)?;
        drop(writes);
        Accepted {
            store: self.store.clone(),
            queues,
            assigned,
            handoffs,
            finished: false,
            finish_if_dropped: true,
        }
        .commit()
        .await
    }

    /// Receives one message, waiting up to `wait` for one to arrive.
    pub async fn receive(
        &self,
        path: &EntityPath,
        mode: ReceiveMode,
        wait: Duration,
    ) -> Result<Option<ReceivedMessage>, BrokerError> {
        Ok(self.receive_batch(path, mode, 1, wait).await?.pop())
    }

    /// Receives up to `max` messages: waits up to `wait` for the first, then
    /// takes what else is ready without waiting (long polling, no busy loop).
    pub async fn receive_batch(
        &self,
        path: &EntityPath,
        mode: ReceiveMode,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, BrokerError> {
        let queue = self.queue(&path.queue)?;
        if queue.properties().requires_session && !path.dead_letter {
            return Err(BrokerError::Session(format!(
                "queue `{}` requires sessions: accept a session, then receive from it",
                queue.name
            )));
        }
        self.receive_from(&queue, path, mode, None, max.max(1), wait)
            .await
    }

    /// The receive loop shared by queue and session receivers.
    async fn receive_from(
        &self,
        queue: &Queue,
        path: &EntityPath,
        mode: ReceiveMode,
        session: Option<(&str, LockToken)>,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, BrokerError> {
        let deadline = tokio::time::Instant::now() + wait;
        let _listening = queue.listeners[usize::from(path.dead_letter)].enter();
        // A plain peek-lock receiver of the queue can be handed a message
        // by the send itself ([`handoff`]).
        let may_wait_for_handoff =
            mode == ReceiveMode::PeekLock && session.is_none() && !path.dead_letter;
        loop {
            // Register for wake-ups before looking, so no arrival is missed.
            let arrival = queue.arrivals.notified();
            tokio::pin!(arrival);
            arrival.as_mut().enable();

            let writes = queue.writes.read().await;
            let handoff = may_wait_for_handoff && tokio::time::Instant::now() < deadline;
            let Taken {
                messages: taken,
                writes: batch,
                next_time,
                waiting,
            } = self.try_take(queue, path, mode, session, max, handoff)?;
            if !taken.is_empty() {
                // The index changed under the state lock; sled is written
                // after it is released (see `Queue::writes`). Removal
                // (receive-and-delete) and the delivery count (peek-lock)
                // are durable before the receiver sees the message: a crash
                // neither resurrects a deleted message nor forgets a delivery.
                batch.apply(self.store.messages())?;
                drop(writes);
                self.store.commit().await?;
                return Ok(taken);
            }
            drop(writes);
            let now = tokio::time::Instant::now();
            if now >= deadline {
                let handed = match waiting {
                    Some(waiting) => waiting.withdraw().await,
                    None => None,
                };
                return Ok(handed.unwrap_or_default());
            }
            let mut sleep_until = deadline;
            if let Some(at) = next_time {
                let in_ms = u64::try_from(at - now_ms()).unwrap_or(0);
                sleep_until = sleep_until.min(now + Duration::from_millis(in_ms));
            }
            let mut waiting = waiting;
            let handed = async {
                match waiting.as_mut() {
                    Some(waiting) => waiting.delivered().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                handed = handed => {
                    // Committed by the send; `None`: its write failed.
                    match handed {
                        Some(messages) if !messages.is_empty() => return Ok(messages),
                        _ => continue,
                    }
                }
                _ = &mut arrival => {}
                _ = tokio::time::sleep_until(sleep_until) => {}
            }
            if let Some(waiting) = waiting
                && let Some(messages) = waiting.withdraw().await
                && !messages.is_empty()
            {
                return Ok(messages);
            }
        }
    }

    /// Takes up to `max` receivable messages under the state lock.
    fn try_take<'q>(
        &self,
        queue: &'q Queue,
        path: &EntityPath,
        mode: ReceiveMode,
        session: Option<(&str, LockToken)>,
        max: usize,
        wait_for_handoff: bool,
    ) -> Result<Taken<'q>, BrokerError> {
        let mut batch = Writes::default();
        let limit = (!path.dead_letter).then_some(queue.properties().max_delivery_count);
        let mut state = queue.state();
        if state.deleted {
            return Err(BrokerError::QueueNotFound(queue.name.clone()));
        }
        let mut taken = Vec::new();
        let next_time = loop {
            let now = now_ms();
            if let Some((id, token)) = session
                && !session::holds(&state, id, token, now)
            {
                return Err(BrokerError::SessionLockLost {
                    queue: queue.name.clone(),
                    session: id.to_string(),
                });
            }
            if taken.len() >= max {
                break None;
            }
            match state
                .index(path.dead_letter)
                .next(now, limit, session.map(|(id, _)| id))
            {
                Next::Wait(at) => break at,
                Next::Exhausted(seq) => {
                    let count = state.active.get(seq).map_or(0, |s| s.delivery_count);
                    self.move_to_dead_letter(queue, &mut state, seq, |record| {
                        exceeded_info(count, record)
                    })?;
                }
                Next::Expired(seq) => self.expire(queue, &mut state, seq)?,
                Next::Ready(seq) => {
                    let key = message_key(&queue.name, path.dead_letter, seq);
                    let Some(bytes) = self.store.messages().get(&key).map_err(StoreError::from)?
                    else {
                        // Index and store disagree: trust the store.
                        state.index(path.dead_letter).remove(seq);
                        continue;
                    };
                    let mut record: MessageRecord = store::decode(TREE, &bytes)?;
                    match mode {
                        ReceiveMode::ReceiveAndDelete => {
                            // The index has the latest count; the record may not.
                            if let Some(slot) = state.index(path.dead_letter).remove(seq) {
                                record.delivery_count = slot.delivery_count;
                            }
                            state.size_in_bytes =
                                state.size_in_bytes.saturating_sub(record.body.len() as u64);
                            batch.remove(key);
                            record.delivery_count += 1;
                            taken.push(ReceivedMessage {
                                sequence_number: seq,
                                lock: None,
                                record,
                            });
                        }
                        ReceiveMode::PeekLock => {
                            if let Some(message) = self.lock_record(
                                queue,
                                &mut state,
                                path.dead_letter,
                                seq,
                                record,
                                now,
                            ) {
                                taken.push(message);
                            }
                        }
                    }
                }
            }
        };
        // Only a receive that took something applies `batch`; the logs an
        // empty one would release wait for the next write.
        if !taken.is_empty() {
            let locked = match mode {
                ReceiveMode::PeekLock => &taken[..],
                ReceiveMode::ReceiveAndDelete => &[],
            };
            self.log_deliveries(queue, &mut state, path.dead_letter, locked, &mut batch)?;
        }
        // Found nothing: wait for a send in the same critical section, so
        // none slips between this look and the registration.
        let waiting = (taken.is_empty() && wait_for_handoff)
            .then(|| Waiting::register(queue, &mut state.waiters, max));
        Ok(Taken {
            messages: taken,
            writes: batch,
            next_time,
            waiting,
        })
    }

    /// Adds to `batch` the new delivery counts of the messages one receive
    /// `locked`, then the deletion of every delivery log no message refers
    /// to any more (caller holds the state lock). A receive of a few
    /// messages rewrites their records; a larger one writes one small log
    /// record instead of a record per message. Deletions come last, after
    /// whatever made those logs unreferenced: sled recovers a prefix of its
    /// log, so a log's deletion never survives a crash without the write
    /// that superseded it (a later count, or the message's removal).
    fn log_deliveries(
        &self,
        queue: &Queue,
        state: &mut QueueState,
        dead_letter: bool,
        locked: &[ReceivedMessage],
        batch: &mut Writes,
    ) -> Result<(), BrokerError> {
        if locked.len() >= DELIVERY_LOG_MIN_MESSAGES {
            let id = state.next_delivery_log;
            state.next_delivery_log += 1;
            let index = state.index(dead_letter);
            let mut log = DeliveryLog::with_capacity(locked.len());
            for message in locked {
                index.logged(message.sequence_number, id);
                log.push((message.sequence_number, message.record.delivery_count));
            }
            batch.insert(
                delivery_log_key(&queue.name, dead_letter, id),
                store::encode(TREE, &log)?,
            );
        } else {
            for message in locked {
                state.index(dead_letter).unlogged(message.sequence_number);
                batch.insert(
                    message_key(&queue.name, dead_letter, message.sequence_number),
                    store::encode(TREE, &message.record)?,
                );
            }
        }
        queue_released_logs(&queue.name, state, dead_letter, batch);
        Ok(())
    }

    /// Locks a message for a receiver and counts the delivery (caller holds
    /// the state lock and makes the count durable with
    /// [`Broker::log_deliveries`] before the receiver sees the message, so
    /// that after a crash the redelivery still counts this attempt).
    fn lock_record(
        &self,
        queue: &Queue,
        state: &mut QueueState,
        dead_letter: bool,
        seq: SequenceNumber,
        mut record: MessageRecord,
        now: i64,
    ) -> Option<ReceivedMessage> {
        let lock_ms = queue.properties().lock_duration_ms();
        let (lock, count) = state.index(dead_letter).lock(seq, lock_ms, now)?;
        record.delivery_count = count;
        Some(ReceivedMessage {
            sequence_number: seq,
            lock: Some(lock),
            record,
        })
    }

    /// Handles a message past its time-to-live (caller holds the state lock).
    fn expire(
        &self,
        queue: &Queue,
        state: &mut QueueState,
        seq: SequenceNumber,
    ) -> Result<(), BrokerError> {
        if queue.properties().dead_lettering_on_message_expiration {
            self.move_to_dead_letter(queue, state, seq, |_| DeadLetterInfo {
                reason: TTL_EXPIRED.to_string(),
                description: "The message expired and was dead lettered.".to_string(),
            })
        } else {
            tracing::debug!(queue = %queue.name, seq, "expired message dropped");
            self.remove_message(queue, state, false, seq)
        }
    }

    fn remove_message(
        &self,
        queue: &Queue,
        state: &mut QueueState,
        dead_letter: bool,
        seq: SequenceNumber,
    ) -> Result<(), BrokerError> {
        self.store
            .messages()
            .remove(message_key(&queue.name, dead_letter, seq))
            .map_err(StoreError::from)?;
        if let Some(slot) = state.index(dead_letter).remove(seq) {
            state.size_in_bytes = state.size_in_bytes.saturating_sub(slot.body_bytes);
        }
        remove_released_logs(&self.store, &queue.name, state)
    }

    /// Moves an active message to the dead-letter sub-queue (caller holds the state lock).
    fn move_to_dead_letter(
        &self,
        queue: &Queue,
        state: &mut QueueState,
        seq: SequenceNumber,
        why: impl FnOnce(&MessageRecord) -> DeadLetterInfo,
    ) -> Result<(), BrokerError> {
        let from = message_key(&queue.name, false, seq);
        let Some(bytes) = self.store.messages().get(&from).map_err(StoreError::from)? else {
            state.active.remove(seq);
            return Ok(());
        };
        let mut record: MessageRecord = store::decode(TREE, &bytes)?;
        let info = why(&record);
        tracing::info!(queue = %queue.name, seq, reason = %info.reason, description = %info.description, "message dead-lettered");
        if let Some(slot) = state.active.get(seq) {
            record.delivery_count = slot.delivery_count;
        }
        record.dead_letter = Some(info);
        record.deferred = false;
        let mut batch = sled::Batch::default();
        batch.remove(from);
        batch.insert(
            message_key(&queue.name, true, seq),
            store::encode(TREE, &record)?,
        );
        self.store
            .messages()
            .apply_batch(batch)
            .map_err(StoreError::from)?;
        state.active.remove(seq);
        state
            .dead_letters
            .insert(seq, new_slot(&record, true), now_ms());
        remove_released_logs(&self.store, &queue.name, state)?;
        queue.arrivals.notify_waiters();
        if queue
            .properties()
            .forward_dead_lettered_messages_to
            .is_some()
        {
            self.maintenance.notify_one();
        }
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

    /// Rewrites a stored message (not waited for; the caller commits if it must).
    fn update_record(
        &self,
        queue: &str,
        dead_letter: bool,
        seq: SequenceNumber,
        change: impl FnOnce(&mut MessageRecord),
    ) -> Result<(), BrokerError> {
        let key = message_key(queue, dead_letter, seq);
        if let Some(bytes) = self.store.messages().get(&key).map_err(StoreError::from)? {
            let mut record: MessageRecord = store::decode(TREE, &bytes)?;
            change(&mut record);
            self.store
                .messages()
                .insert(key, store::encode(TREE, &record)?)
                .map_err(StoreError::from)?;
        }
        Ok(())
    }

    /// Completes a locked message: it is removed for good.
    pub async fn complete(
        &self,
        path: &EntityPath,
        seq: SequenceNumber,
        token: LockToken,
    ) -> Result<(), BrokerError> {
        self.complete_batch(path, &[(seq, token)])
            .await?
            .pop()
            .unwrap_or(Ok(()))
    }

    /// Completes many locked messages of one entity with one state lock,
    /// one sled batch and one commit (the dispatcher's settle batching).
    /// The outer error is the store's; the inner ones, one per message in
    /// order, are lost locks.
    pub async fn complete_batch(
        &self,
        path: &EntityPath,
        settles: &[(SequenceNumber, LockToken)],
    ) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
        let queue = self.queue(&path.queue)?;
        let writes = queue.writes.read().await;
        let mut batch = Writes::default();
        let mut outcomes = Vec::with_capacity(settles.len());
        let mut any = false;
        {
            let mut state = queue.state();
            let now = now_ms();
            for &(seq, token) in settles {
                if state.deleted || !state.index(path.dead_letter).check_lock(seq, token, now) {
                    outcomes.push(Err(BrokerError::LockLost {
                        entity: path.to_string(),
                        sequence_number: seq,
                    }));
                    continue;
                }
                if let Some(slot) = state.index(path.dead_letter).remove(seq) {
                    state.size_in_bytes = state.size_in_bytes.saturating_sub(slot.body_bytes);
                }
                batch.remove(message_key(&queue.name, path.dead_letter, seq));
                outcomes.push(Ok(()));
                any = true;
            }
            if any {
                queue_released_logs(&queue.name, &mut state, path.dead_letter, &mut batch);
            }
        }
        if any {
            // Settled sequence numbers are never handed out again, so
            // nothing can touch these keys between the unlock and this write.
            batch.apply(self.store.messages())?;
            drop(writes);
            self.store.commit().await?;
        }
        Ok(outcomes)
    }

    /// Releases a locked message so it is delivered again after `retry_after`,
    /// or dead-letters it when it has used its deliveries. `modify` sets user
    /// properties on the message (Service Bus's `propertiesToModify`).
    pub async fn abandon(
        &self,
        path: &EntityPath,
        seq: SequenceNumber,
        token: LockToken,
        reason: Option<&str>,
        retry_after: Duration,
        modify: &[(String, String)],
    ) -> Result<Abandoned, BrokerError> {
        let queue = self.queue(&path.queue)?;
        let outcome = {
            let mut state = self.locked(&queue, path, seq, token)?;
            let count = state
                .index(path.dead_letter)
                .get(seq)
                .map_or(0, |s| s.delivery_count);
            let now = now_ms();
            let delay = i64::try_from(retry_after.as_millis()).unwrap_or(i64::MAX);
            let visible_at = now.saturating_add(delay);
            let exhausted = !path.dead_letter && count >= queue.properties().max_delivery_count;
            if reason.is_some() || delay > 0 || !modify.is_empty() {
                // Keep the reason, the new properties and the backoff across restarts.
                self.update_record(&queue.name, path.dead_letter, seq, |record| {
                    if let Some(reason) = reason {
                        record.last_error = Some(reason.to_string());
                    }
                    set_properties(record, modify);
                    record.visible_at_ms = visible_at;
                    record.delivery_count = count;
                })?;
            }
            if exhausted {
                self.move_to_dead_letter(&queue, &mut state, seq, |record| {
                    exceeded_info(count, record)
                })?;
                Abandoned::DeadLettered
            } else {
                state.index(path.dead_letter).unlock(seq, visible_at, now);
                Abandoned::WillRedeliver
            }
        };
        queue.arrivals.notify_waiters();
        self.store.commit().await?;
        Ok(outcome)
    }

    /// Moves a locked message to the dead-letter sub-queue with a reason;
    /// `modify` sets user properties on it (Service Bus's `propertiesToModify`).
    pub async fn dead_letter(
        &self,
        path: &EntityPath,
        seq: SequenceNumber,
        token: LockToken,
        info: DeadLetterInfo,
        modify: &[(String, String)],
    ) -> Result<(), BrokerError> {
        let queue = self.queue(&path.queue)?;
        {
            let mut state = self.locked(&queue, path, seq, token)?;
            if !modify.is_empty() {
                self.update_record(&queue.name, path.dead_letter, seq, |record| {
                    set_properties(record, modify);
                })?;
            }
            if path.dead_letter {
                // Already dead-lettered: Service Bus only releases the lock.
                state.dead_letters.unlock(seq, 0, now_ms());
                queue.arrivals.notify_waiters();
            } else {
                self.move_to_dead_letter(&queue, &mut state, seq, |_| info)?;
            }
        }
        self.store.commit().await?;
        Ok(())
    }

    /// Sets a locked message aside: it is delivered again only when received
    /// by its sequence number ([`Broker::receive_deferred`]).
    pub async fn defer(
        &self,
        path: &EntityPath,
        seq: SequenceNumber,
        token: LockToken,
    ) -> Result<(), BrokerError> {
        let queue = self.queue(&path.queue)?;
        {
            let mut state = self.locked(&queue, path, seq, token)?;
            self.update_record(&queue.name, path.dead_letter, seq, |record| {
                record.deferred = true
            })?;
            state.index(path.dead_letter).defer(seq);
        }
        self.store.commit().await?;
        Ok(())
    }

    /// Receives deferred messages by sequence number, under peek-lock.
    pub async fn receive_deferred(
        &self,
        path: &EntityPath,
        seqs: &[SequenceNumber],
    ) -> Result<Vec<ReceivedMessage>, BrokerError> {
        let queue = self.queue(&path.queue)?;
        let mut received = Vec::with_capacity(seqs.len());
        let writes = queue.writes.read().await;
        let mut batch = Writes::default();
        {
            let mut state = queue.state();
            let now = now_ms();
            for &seq in seqs {
                if !state.index(path.dead_letter).is_deferred_and_free(seq, now) {
                    return Err(BrokerError::MessageNotFound {
                        entity: path.to_string(),
                        sequence_number: seq,
                        why: "is not deferred, or is locked by another receiver",
                    });
                }
            }
            for &seq in seqs {
                let key = message_key(&queue.name, path.dead_letter, seq);
                let Some(bytes) = self.store.messages().get(&key).map_err(StoreError::from)? else {
                    continue;
                };
                let record: MessageRecord = store::decode(TREE, &bytes)?;
                if let Some(message) =
                    self.lock_record(&queue, &mut state, path.dead_letter, seq, record, now)
                {
                    received.push(message);
                }
            }
            self.log_deliveries(&queue, &mut state, path.dead_letter, &received, &mut batch)?;
        }
        batch.apply(self.store.messages())?;
        drop(writes);
        self.store.commit().await?;
        Ok(received)
    }

    /// Cancels scheduled messages that have not become visible yet.
    pub async fn cancel_scheduled(
        &self,
        queue: &str,
        seqs: &[SequenceNumber],
    ) -> Result<(), BrokerError> {
        let queue = self.queue(queue)?;
        {
            let mut state = queue.state();
            let now = now_ms();
            for &seq in seqs {
                let scheduled = state.active.get(seq).is_some_and(|slot| {
                    slot.state(now) == MessageState::Scheduled && slot.delivery_count == 0
                });
                if !scheduled {
                    return Err(BrokerError::MessageNotFound {
                        entity: queue.name.clone(),
                        sequence_number: seq,
                        why: "is not a scheduled message that is still waiting",
                    });
                }
            }
            for &seq in seqs {
                self.remove_message(&queue, &mut state, false, seq)?;
            }
        }
        self.store.commit().await?;
        Ok(())
    }

    /// Moves dead-lettered messages back to the queue as new messages (new
    /// sequence numbers, delivery count 0); up to `max`, oldest first.
    /// Returns how many were moved.
    pub async fn resubmit_dead_letters(
        &self,
        queue: &str,
        max: usize,
    ) -> Result<usize, BrokerError> {
        let queue = self.queue(queue)?;
        let moved = {
            let mut state = queue.state();
            let now = now_ms();
            let seqs: Vec<SequenceNumber> = state
                .dead_letters
                .iter()
                .filter(|(_, slot)| slot.state(now) != MessageState::Locked)
                .map(|(&seq, _)| seq)
                .take(max)
                .collect();
            let mut batch = sled::Batch::default();
            let mut moves = Vec::with_capacity(seqs.len());
            for seq in seqs {
                let from = message_key(&queue.name, true, seq);
                let Some(bytes) = self.store.messages().get(&from).map_err(StoreError::from)?
                else {
                    continue;
                };
                let mut record: MessageRecord = store::decode(TREE, &bytes)?;
                record.dead_letter = None;
                record.delivery_count = 0;
                record.last_error = None;
                record.deferred = false;
                record.enqueued_at_ms = now;
                record.visible_at_ms = now;
                record.expires_at_ms = queue
                    .properties()
                    .ttl_ms()
                    .map(|ttl| now.saturating_add(ttl));
                let new_seq = state.assign_sequence(&self.store, &queue.name)?;
                batch.remove(from);
                batch.insert(
                    message_key(&queue.name, false, new_seq),
                    store::encode(TREE, &record)?,
                );
                moves.push((seq, new_seq, new_slot(&record, false)));
            }
            self.store
                .messages()
                .apply_batch(batch)
                .map_err(StoreError::from)?;
            let count = moves.len();
            for (old, new, slot) in moves {
                state.dead_letters.remove(old);
                state.active.insert(new, slot, now);
            }
            remove_released_logs(&self.store, &queue.name, &mut state)?;
            count
        };
        self.store.commit().await?;
        queue.arrivals.notify_waiters();
        Ok(moved)
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
        let lock_ms = queue.properties().lock_duration_ms();
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
            let Some(raw) = key
                .get(key.len().saturating_sub(8)..)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
            else {
                continue;
            };
            let seq = SequenceNumber::from_be_bytes(raw);
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

    /// Background upkeep, run until the broker is dropped: expires messages,
    /// forwards dead letters, forgets old duplicate-detection ids.
    pub async fn run_maintenance(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(MAINTENANCE_INTERVAL) => {}
                () = self.maintenance.notified() => {}
            }
            if let Err(e) = self.maintain().await {
                tracing::warn!(error = %e, "broker maintenance failed; retrying");
            }
        }
    }

    async fn maintain(&self) -> Result<(), BrokerError> {
        let queues = self.all_queues();
        let mut changed = false;
        for queue in &queues {
            {
                let mut state = queue.state();
                if state.deleted {
                    continue;
                }
                let now = now_ms();
                for seq in state.active.take_expired(now) {
                    self.expire(queue, &mut state, seq)?;
                    changed = true;
                }
                let forgotten = state.dedup.expire(now);
                if !forgotten.is_empty() {
                    let mut batch = sled::Batch::default();
                    for id in forgotten {
                        batch.remove(dedup_key(&queue.name, &id));
                    }
                    self.store
                        .messages()
                        .apply_batch(batch)
                        .map_err(StoreError::from)?;
                }
            }
            if let Some(target) = &queue.properties().forward_dead_lettered_messages_to {
                changed |= self.forward_dead_letters(queue, target).await?;
            }
        }
        changed |= topic::maintain(self)?;
        if changed {
            self.store.commit().await?;
        }
        Ok(())
    }

    /// Sends a queue's unlocked dead letters on to `target`, then removes
    /// them: at least once (a crash in between sends them again).
    async fn forward_dead_letters(&self, queue: &Queue, target: &str) -> Result<bool, BrokerError> {
        let pending = self.peek(&EntityPath::dead_letter(&queue.name), 0, 100)?;
        let pending: Vec<PeekedMessage> = pending
            .into_iter()
            .filter(|m| m.state != MessageState::Locked)
            .collect();
        if pending.is_empty() {
            return Ok(false);
        }
        let messages = pending
            .iter()
            .map(|m| {
                let record = &m.record;
                let mut user_properties = record.user_properties.clone();
                if let Some(info) = &record.dead_letter {
                    user_properties.push(("DeadLetterReason".into(), info.reason.clone()));
                    user_properties.push((
                        "DeadLetterErrorDescription".into(),
                        info.description.clone(),
                    ));
                }
                NewMessage {
                    message_id: Some(record.message_id.clone()),
                    body: record.body.clone(),
                    content_type: record.content_type.clone(),
                    correlation_id: record.correlation_id.clone(),
                    subject: record.subject.clone(),
                    user_properties,
                    scheduled_at_ms: None,
                    session_id: record.session_id.clone(),
                    to: record.to.clone(),
                    reply_to: record.reply_to.clone(),
                    time_to_live_ms: None,
                }
            })
            .collect();
        if let Err(e) = self.send(target, messages).await {
            tracing::warn!(queue = %queue.name, target, error = %e, "cannot forward dead letters yet");
            return Ok(false);
        }
        let mut state = queue.state();
        for m in &pending {
            if state
                .dead_letters
                .get(m.sequence_number)
                .is_some_and(|s| s.state(now_ms()) != MessageState::Locked)
            {
                self.remove_message(queue, &mut state, true, m.sequence_number)?;
            }
        }
        Ok(true)
    }
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
    let mut state = queue.state();
    // Counted by the index as messages change state: a queue of a million
    // messages answers as fast as an empty one, and holds its lock as briefly.
    let counts = state.active.counts(now_ms());
    QueueInfo {
        name: queue.name.clone(),
        properties: (*queue.properties()).clone(),
        message_count: state.active.len() + state.dead_letters.len(),
        // Service Bus counts locked messages as active.
        active_message_count: counts.active + counts.locked,
        locked_message_count: counts.locked,
        scheduled_message_count: counts.scheduled,
        deferred_message_count: counts.deferred,
        dead_letter_message_count: state.dead_letters.len(),
        transfer_message_count: 0,
        size_in_bytes: state.size_in_bytes,
        created_at_ms: queue.created_at_ms,
    }
}

/// Rebuilds a queue's index from the store.
fn load_state(
    store: &Store,
    name: &str,
    properties: &QueueProperties,
    now: i64,
) -> Result<QueueState, BrokerError> {
    let mut state = QueueState::new(properties);
    if let Some(bytes) = store
        .messages()
        .get(key_prefix(name, TAG_NEXT_SEQUENCE))
        .map_err(StoreError::from)?
    {
        let raw: [u8; 8] = bytes
            .as_ref()
            .try_into()
            .map_err(|_| corrupt(format!("next sequence number of `{name}` is not 8 bytes")))?;
        // The end of the last reserved block (older stores: the next number).
        state.next_sequence = SequenceNumber::from_be_bytes(raw);
        state.sequence_reserved = state.next_sequence;
    }
    for (tag, dead_letter) in [(TAG_ACTIVE, false), (TAG_DEAD_LETTER, true)] {
        let prefix = key_prefix(name, tag);
        for entry in store.messages().scan_prefix(&prefix) {
            let (key, bytes) = entry.map_err(StoreError::from)?;
            let raw: [u8; 8] = key[prefix.len()..]
                .try_into()
                .map_err(|_| corrupt(format!("bad message key in `{name}`")))?;
            let seq = SequenceNumber::from_be_bytes(raw);
            let record: MessageRecord = store::decode(TREE, &bytes)?;
            state.size_in_bytes += record.body.len() as u64;
            state
                .index(dead_letter)
                .insert(seq, new_slot(&record, dead_letter), now);
            // Never hand out a sequence number twice, even if the counter lagged.
            state.next_sequence = state.next_sequence.max(seq + 1);
        }
    }
    replay_delivery_logs(store, name, &mut state)?;
    load_dedup(store, name, &mut state.dedup)?;
    Ok(state)
}

/// Applies the delivery logs to the rebuilt index, oldest first (a message
/// keeps its highest count), and deletes the logs no message needs.
fn replay_delivery_logs(
    store: &Store,
    name: &str,
    state: &mut QueueState,
) -> Result<(), BrokerError> {
    let prefix = key_prefix(name, TAG_DELIVERIES);
    let mut logs = Vec::new();
    for entry in store.messages().scan_prefix(&prefix) {
        let (key, bytes) = entry.map_err(StoreError::from)?;
        let (dead_letter, id) = match &key[prefix.len()..] {
            [flag @ (0 | 1), id @ ..] if id.len() == 8 => {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(id);
                (*flag == 1, DeliveryLogId::from_be_bytes(raw))
            }
            _ => return Err(corrupt(format!("bad delivery log key in `{name}`")).into()),
        };
        let log: DeliveryLog = store::decode(TREE, &bytes)?;
        logs.push((id, dead_letter, log));
    }
    // Ids grow with time whichever sub-queue they count.
    logs.sort_unstable_by_key(|&(id, _, _)| id);
    for (id, dead_letter, log) in logs {
        let index = state.index(dead_letter);
        for (seq, count) in log {
            index.replay_delivery(seq, count, id);
        }
        index.release_unreferenced(id);
        state.next_delivery_log = state.next_delivery_log.max(id + 1);
    }
    remove_released_logs(store, name, state)
}

/// Adds to `batch` the deletion of the delivery logs of one sub-queue that
/// no message refers to any more; after the writes that released them.
fn queue_released_logs(queue: &str, state: &mut QueueState, dead_letter: bool, batch: &mut Writes) {
    for id in state.index(dead_letter).take_released_logs() {
        batch.remove(delivery_log_key(queue, dead_letter, id));
    }
}

/// Deletes the delivery logs no message of `queue` refers to any more, now
/// (caller holds the state lock and has written what released them).
fn remove_released_logs(
    store: &Store,
    queue: &str,
    state: &mut QueueState,
) -> Result<(), BrokerError> {
    for dead_letter in [false, true] {
        for id in state.index(dead_letter).take_released_logs() {
            store
                .messages()
                .remove(delivery_log_key(queue, dead_letter, id))
                .map_err(StoreError::from)?;
        }
    }
    Ok(())
}

/// Reloads remembered message ids (duplicate detection) of an entity.
fn load_dedup(store: &Store, entity: &str, dedup: &mut Dedup) -> Result<(), BrokerError> {
    let prefix = key_prefix(entity, TAG_DEDUP);
    let mut seen: Vec<(i64, String)> = Vec::new();
    for entry in store.messages().scan_prefix(&prefix) {
        let (key, value) = entry.map_err(StoreError::from)?;
        let raw: [u8; 8] = value
            .as_ref()
            .try_into()
            .map_err(|_| corrupt(format!("bad duplicate-detection entry in `{entity}`")))?;
        seen.push((
            i64::from_be_bytes(raw),
            String::from_utf8_lossy(&key[prefix.len()..]).into_owned(),
        ));
    }
    seen.sort();
    for (at, id) in seen {
        dedup.remember(&id, at);
    }
    Ok(())
}

/// Sets (or adds) user properties on a record.
fn set_properties(record: &mut MessageRecord, modify: &[(String, String)]) {
    for (k, v) in modify {
        match record
            .user_properties
            .iter_mut()
            .find(|(name, _)| name == k)
        {
            Some(slot) => slot.1 = v.clone(),
            None => record.user_properties.push((k.clone(), v.clone())),
        }
    }
}

#[cfg(test)]
mod tests;
