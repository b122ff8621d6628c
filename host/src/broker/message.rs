//! What a queue holds: stored messages, what senders give, what receivers get.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Position of a message in its queue; strictly increasing per entity.
pub type SequenceNumber = u64;

/// Proves that a receiver holds the lock on a message (peek-lock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LockToken(uuid::Uuid);

impl LockToken {
    pub(crate) fn new() -> LockToken {
        LockToken(uuid::Uuid::new_v4())
    }
}

impl fmt::Display for LockToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for LockToken {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(LockToken)
    }
}

/// Why a message sits in a dead-letter queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterInfo {
    /// Short machine-readable reason, e.g. `MaxDeliveryCountExceeded`.
    pub reason: String,
    /// Human-readable explanation.
    pub description: String,
}

/// A message as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MessageRecord {
    /// Sender-given id (generated when absent).
    pub message_id: String,
    /// The payload.
    #[serde(with = "body_bytes")]
    pub body: Vec<u8>,
    /// Media type of the body.
    pub content_type: Option<String>,
    /// Correlates the steps of one business transaction.
    pub correlation_id: Option<String>,
    /// Application label (`Label` / `Subject`).
    pub subject: Option<String>,
    /// Application properties.
    pub user_properties: Vec<(String, String)>,
    /// When the queue accepted it (Unix ms).
    pub enqueued_at_ms: i64,
    /// Not delivered before this time (Unix ms): scheduled or backing off.
    pub visible_at_ms: i64,
    /// Deliveries so far.
    pub delivery_count: u32,
    /// Why the last delivery attempt failed, if it did.
    pub last_error: Option<String>,
    /// Set once the message is dead-lettered.
    pub dead_letter: Option<DeadLetterInfo>,
    /// Messages with the same session id are delivered in order to one receiver.
    pub session_id: Option<String>,
    /// Application routing: where the message is for.
    pub to: Option<String>,
    /// Application routing: where replies go.
    pub reply_to: Option<String>,
    /// When the message expires (Unix ms), from its own or its queue's time-to-live.
    pub expires_at_ms: Option<i64>,
    /// Set aside by a receiver; delivered only when received by sequence number.
    pub deferred: bool,
}

/// A message a sender hands to the broker.
#[derive(Clone, Debug, Default)]
pub struct NewMessage {
    /// Sender-given id; generated when absent.
    pub message_id: Option<String>,
    /// The payload.
    pub body: Vec<u8>,
    /// Media type of the body.
    pub content_type: Option<String>,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// Application label.
    pub subject: Option<String>,
    /// Application properties.
    pub user_properties: Vec<(String, String)>,
    /// Scheduled enqueue time (Unix ms), if later than now.
    pub scheduled_at_ms: Option<i64>,
    /// Session id (required by session-enabled queues).
    pub session_id: Option<String>,
    /// Application routing: where the message is for.
    pub to: Option<String>,
    /// Application routing: where replies go.
    pub reply_to: Option<String>,
    /// Time-to-live in milliseconds (capped by the queue's default).
    pub time_to_live_ms: Option<i64>,
}

impl NewMessage {
    /// A message with this body and nothing else set.
    pub fn with_body(body: impl Into<Vec<u8>>) -> NewMessage {
        NewMessage {
            body: body.into(),
            ..NewMessage::default()
        }
    }

    /// Bytes this message takes against the queue's max message size.
    pub(crate) fn size(&self) -> usize {
        // Body plus application properties: what Service Bus counts against the limit.
        self.body.len()
            + self
                .user_properties
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }

    pub(crate) fn into_record(self, now_ms: i64, queue_ttl_ms: Option<i64>) -> MessageRecord {
        let ttl = match (self.time_to_live_ms, queue_ttl_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let visible_at_ms = self.scheduled_at_ms.unwrap_or(now_ms).max(now_ms);
        MessageRecord {
            message_id: self
                .message_id
                .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
            body: self.body,
            content_type: self.content_type,
            correlation_id: self.correlation_id,
            subject: self.subject,
            user_properties: self.user_properties,
            enqueued_at_ms: now_ms,
            visible_at_ms,
            delivery_count: 0,
            last_error: None,
            dead_letter: None,
            session_id: self.session_id,
            to: self.to,
            reply_to: self.reply_to,
            // A scheduled message's time-to-live starts when it becomes visible.
            expires_at_ms: ttl.map(|ttl| visible_at_ms.saturating_add(ttl)),
            deferred: false,
        }
    }
}

/// The lock a peek-lock receiver holds.
#[derive(Clone, Copy, Debug)]
pub struct MessageLock {
    /// Present it to complete, abandon, renew or dead-letter.
    pub token: LockToken,
    /// The lock expires at this time (Unix ms) unless renewed.
    pub locked_until_ms: i64,
}

/// A message handed to a receiver.
#[derive(Clone, Debug)]
pub struct ReceivedMessage {
    /// Its sequence number.
    pub sequence_number: SequenceNumber,
    /// The lock (peek-lock), or `None` (receive-and-delete, peek).
    pub lock: Option<MessageLock>,
    /// The message, with the delivery count including this delivery.
    pub record: MessageRecord,
}

/// How a receiver takes a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiveMode {
    /// Lock it; the receiver settles it later.
    PeekLock,
    /// Remove it at once.
    ReceiveAndDelete,
}

/// Where a message is in its life, as peek shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum MessageState {
    /// Waiting for a receiver.
    Active,
    /// Locked by a receiver.
    Locked,
    /// Not deliverable before its visible time (scheduled or backing off).
    Scheduled,
    /// Set aside; delivered only when received by sequence number.
    Deferred,
}

/// A message seen by peek (no lock taken).
#[derive(Clone, Debug)]
pub struct PeekedMessage {
    /// Its sequence number.
    pub sequence_number: SequenceNumber,
    /// Where it is in its life.
    pub state: MessageState,
    /// The message.
    pub record: MessageRecord,
}

/// The body as one byte string rather than a sequence of `u8`s: postcard
/// writes both the same way (length, then the bytes), so stored records are
/// unchanged, but this copies the bytes at once instead of visiting each one.
mod body_bytes {
    use serde::{Deserializer, Serializer, de};

    pub(super) fn serialize<S: Serializer>(body: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(body)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(Bytes)
    }

    struct Bytes;

    impl<'de> de::Visitor<'de> for Bytes {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        // Formats without byte strings (JSON) give a sequence of numbers.
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod body_bytes_tests {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct AsBytes(#[serde(with = "super::body_bytes")] Vec<u8>);

    #[test]
    fn stored_format_is_that_of_a_plain_vec() {
        let body: Vec<u8> = (0..=255).collect();
        let plain = postcard::to_stdvec(&body).expect("encode");
        let bytes = postcard::to_stdvec(&AsBytes(body.clone())).expect("encode");
        assert_eq!(plain, bytes);
        let back: AsBytes = postcard::from_bytes(&plain).expect("decode");
        assert_eq!(back.0, body);
        let json: AsBytes = serde_json::from_str("[1,2,3]").expect("json");
        assert_eq!(json.0, vec![1, 2, 3]);
    }
}
