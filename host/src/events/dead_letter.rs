//! Event Grid's view of a subscription's dead letters.
//!
//! Undeliverable events rest in the dead-letter sub-queue of the
//! subscription's delivery queue. Each delivery attempt records its outcome
//! in the message's user properties ([`AttemptRecord`]), so that when the
//! event is dead-lettered it carries what Event Grid writes into its
//! dead-letter blobs: `deadLetterReason`, `deliveryAttempts`,
//! `lastDeliveryOutcome`, `lastHttpStatusCode`, `publishTime` and
//! `lastDeliveryAttemptTime`, next to the event itself ([`render`]).

use serde_json::{Map, Value};

use crate::broker::PeekedMessage;
use crate::clock;

const LAST_OUTCOME: &str = "aeg-last-delivery-outcome";
const LAST_HTTP_STATUS: &str = "aeg-last-http-status-code";
const LAST_ATTEMPT_TIME: &str = "aeg-last-delivery-attempt-time";

/// Event Grid's outcome names for a delivery attempt.
pub mod outcome {
    /// The destination accepted the event.
    pub const SUCCEEDED: &str = "Succeeded";
    /// No answer within the delivery timeout.
    pub const TIMED_OUT: &str = "TimedOut";
    /// The endpoint answered 404, or the function or queue does not exist.
    pub const NOT_FOUND: &str = "NotFound";
    /// The endpoint answered 401.
    pub const UNAUTHORIZED: &str = "Unauthorized";
    /// The endpoint answered 403.
    pub const FORBIDDEN: &str = "Forbidden";
    /// The endpoint answered 400.
    pub const BAD_REQUEST: &str = "BadRequest";
    /// The endpoint answered 413.
    pub const PAYLOAD_TOO_LARGE: &str = "PayloadTooLarge";
    /// The endpoint answered 503 or 429.
    pub const BUSY: &str = "Busy";
    /// Any other failure (connection refused, 5xx, handler error).
    pub const GENERIC_ERROR: &str = "GenericError";
}

/// The outcome name for an HTTP status Event Grid got back.
pub fn outcome_of_status(status: u16) -> &'static str {
    match status {
        200..=299 => outcome::SUCCEEDED,
        400 => outcome::BAD_REQUEST,
        401 => outcome::UNAUTHORIZED,
        403 => outcome::FORBIDDEN,
        404 => outcome::NOT_FOUND,
        408 => outcome::TIMED_OUT,
        413 => outcome::PAYLOAD_TOO_LARGE,
        429 | 503 => outcome::BUSY,
        _ => outcome::GENERIC_ERROR,
    }
}

/// What one delivery attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRecord {
    /// An [`outcome`] name.
    pub outcome: &'static str,
    /// The endpoint's HTTP status, for webhooks that answered.
    pub http_status: Option<u16>,
    /// When the attempt ended (Unix ms).
    pub at_ms: i64,
}

impl AttemptRecord {
    /// An attempt that ended now.
    pub fn now(outcome: &'static str, http_status: Option<u16>) -> AttemptRecord {
        AttemptRecord {
            outcome,
            http_status,
            at_ms: clock::now_ms(),
        }
    }

    /// The user properties that keep it with the message.
    pub fn properties(&self) -> Vec<(String, String)> {
        let mut out = vec![
            (LAST_OUTCOME.to_string(), self.outcome.to_string()),
            (LAST_ATTEMPT_TIME.to_string(), clock::to_rfc3339(self.at_ms)),
        ];
        if let Some(status) = self.http_status {
            out.push((LAST_HTTP_STATUS.to_string(), status.to_string()));
        }
        out
    }
}

/// A dead-lettered event as Event Grid writes it: the event's own fields
/// plus the dead-letter metadata, and the `sequenceNumber` Sluice needs to
/// resubmit it.
pub fn render(message: &PeekedMessage) -> Value {
    let record = &message.record;
    let mut out = match serde_json::from_slice::<Value>(&record.body) {
        Ok(Value::Object(event)) => event,
        _ => {
            let mut raw = Map::new();
            raw.insert(
                "body".into(),
                String::from_utf8_lossy(&record.body).into_owned().into(),
            );
            raw
        }
    };
    let property = |name: &str| {
        record
            .user_properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let info = record.dead_letter.as_ref();
    out.insert(
        "deadLetterReason".into(),
        info.map(|i| i.reason.clone()).unwrap_or_default().into(),
    );
    out.insert(
        "deadLetterDescription".into(),
        info.map(|i| i.description.clone())
            .unwrap_or_default()
            .into(),
    );
    out.insert("deliveryAttempts".into(), record.delivery_count.into());
    out.insert(
        "lastDeliveryOutcome".into(),
        property(LAST_OUTCOME)
            .unwrap_or_else(|| outcome::GENERIC_ERROR.into())
            .into(),
    );
    out.insert(
        "lastHttpStatusCode".into(),
        property(LAST_HTTP_STATUS)
            .and_then(|s| s.parse::<u16>().ok())
            .map_or(Value::from(0), Value::from),
    );
    out.insert(
        "publishTime".into(),
        clock::to_rfc3339(record.enqueued_at_ms).into(),
    );
    out.insert(
        "lastDeliveryAttemptTime".into(),
        property(LAST_ATTEMPT_TIME).unwrap_or_default().into(),
    );
    out.insert("sequenceNumber".into(), message.sequence_number.into());
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_event_grid_outcome_names() {
        assert_eq!(outcome_of_status(200), "Succeeded");
        assert_eq!(outcome_of_status(404), "NotFound");
        assert_eq!(outcome_of_status(503), "Busy");
        assert_eq!(outcome_of_status(500), "GenericError");
    }

    #[test]
    fn attempt_properties_carry_status_only_when_there_was_one() {
        let with = AttemptRecord::now(outcome::NOT_FOUND, Some(404)).properties();
        assert!(
            with.iter()
                .any(|(k, v)| k == LAST_HTTP_STATUS && v == "404")
        );
        let without = AttemptRecord::now(outcome::TIMED_OUT, None).properties();
        assert!(!without.iter().any(|(k, _)| k == LAST_HTTP_STATUS));
    }
}
