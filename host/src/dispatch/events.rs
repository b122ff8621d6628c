//! Event subscription delivery: Event Grid's guarantees over a delivery queue.
//!
//! A subscription's worker takes events from its delivery queue under
//! peek-lock (a batch, for webhooks that batch), drops those past their
//! time-to-live into the dead-letter queue, and hands the rest to the
//! destination: a function, a queue, or a webhook POST. Every attempt's
//! outcome is written onto the message ([`AttemptRecord`]); a failed attempt
//! backs off on Event Grid's schedule (with jitter, and the minimum delays
//! webhooks' answers impose) until the subscription's max delivery attempts
//! are used up; answers Event Grid never retries (400, 401, 403, 413)
//! dead-letter at once ([`webhook`] classifies them).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::{Dispatcher, ERROR_PAUSE, RECEIVE_WAIT, WorkerKey};
use crate::broker::{DeadLetterInfo, EntityPath, NewMessage, ReceiveMode, ReceivedMessage};
use crate::clock;
use crate::events::dead_letter::{AttemptRecord, outcome, outcome_of_status};
use crate::events::{Destination, EventSchema, RetryPolicy, WebhookDestination, schema, webhook};
use crate::runtime::{Input, Outcome};
use crate::trace::{StepKind, TRACEPARENT};

/// Event Grid's dead-letter reason after the last attempt.
pub const MAX_DELIVERY_ATTEMPTS_EXCEEDED: &str = "MaxDeliveryAttemptsExceeded";
/// Event Grid's dead-letter reason for events past their time-to-live.
pub const TIME_TO_LIVE_EXCEEDED: &str = "TimeToLiveExceeded";
/// The dead-letter reason for an answer Event Grid does not retry (400, 401, 403, 413).
pub const NON_RETRIABLE_RESPONSE: &str = "DeliveryFailedWithNonRetriableError";
/// Retries wait up to this fraction longer than the schedule says, so that
/// events failed together do not come back together.
const JITTER: f64 = 0.1;

/// One subscription's delivery settings, from its worker key.
pub(super) struct Target<'a> {
    pub(super) name: &'a str,
    /// The queue or URL delivered to (recorded as a step); `None` for
    /// functions, whose invocations are recorded themselves.
    pub(super) delivered_to: Option<&'a str>,
    pub(super) schema: EventSchema,
    pub(super) max_attempts: u32,
    pub(super) ttl_minutes: u32,
}

/// What one attempt for a group of events came to.
enum Verdict {
    Delivered,
    Retry {
        attempt: AttemptRecord,
        reason: String,
        min_delay: Option<Duration>,
    },
    DeadLetter {
        attempt: AttemptRecord,
        info: DeadLetterInfo,
    },
}

impl Dispatcher {
    /// Drains one event subscription's delivery queue, forever.
    pub(super) async fn run_subscription_worker(self: Arc<Self>, key: WorkerKey) {
        let path = EntityPath::active(&key.queue());
        let batch = match &key {
            WorkerKey::Subscription {
                destination: Destination::Webhook(hook),
                ..
            } => usize::try_from(hook.max_events_per_batch).unwrap_or(1),
            _ => 1,
        };
        loop {
            let permit = self.permit(&key).await;
            match self
                .broker
                .receive_batch(&path, ReceiveMode::PeekLock, batch, RECEIVE_WAIT)
                .await
            {
                Ok(messages) if messages.is_empty() => {}
                // Functions run in parallel up to their concurrency; queue and
                // webhook deliveries go in order.
                Ok(messages) if key.function().is_some() => {
                    let this = self.clone();
                    let key = key.clone();
                    tokio::spawn(async move {
                        this.deliver_events(&key, messages).await;
                        drop(permit);
                    });
                }
                Ok(messages) => self.deliver_events(&key, messages).await,
                Err(e) => {
                    tracing::warn!(queue = %path, error = %e, "subscription cannot receive");
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
        }
    }

    async fn deliver_events(&self, key: &WorkerKey, messages: Vec<ReceivedMessage>) {
        let WorkerKey::Subscription {
            name,
            destination,
            retry: (max_attempts, ttl_minutes),
            schema,
            ..
        } = key
        else {
            return;
        };
        let delivered_to = match destination {
            Destination::Function(_) => None,
            Destination::Queue(queue) => Some(queue.as_str()),
            Destination::Webhook(hook) => Some(hook.endpoint_url.as_str()),
        };
        let target = Target {
            name,
            delivered_to,
            schema: *schema,
            max_attempts: *max_attempts,
            ttl_minutes: *ttl_minutes,
        };
        let path = EntityPath::active(&key.queue());
        let mut due = Vec::with_capacity(messages.len());
        for message in messages {
            match self.expired_or_malformed(&target, &message) {
                Some(info) => {
                    self.settle_event(&path, &target, &message, dead(info))
                        .await
                }
                None => due.push(message),
            }
        }
        match destination {
            Destination::Webhook(hook) => {
                for group in size_groups(&due, hook) {
                    let verdict = self.post(&target, hook, group).await;
                    for message in group {
                        self.settle_event(&path, &target, message, verdict.clone_for_settle())
                            .await;
                    }
                }
            }
            Destination::Function(function) => {
                for message in &due {
                    let verdict = self.invoke_for_event(&path, function, message).await;
                    self.settle_event(&path, &target, message, verdict).await;
                }
            }
            Destination::Queue(queue) => {
                for message in &due {
                    let verdict = self.forward_event(queue, message).await;
                    self.settle_event(&path, &target, message, verdict).await;
                }
            }
        }
    }

    /// A reason to dead-letter before any attempt: past the time-to-live, or unreadable.
    fn expired_or_malformed(
        &self,
        target: &Target<'_>,
        message: &ReceivedMessage,
    ) -> Option<DeadLetterInfo> {
        if let Err(e) = schema::from_wire(&message.record.body) {
            return Some(DeadLetterInfo {
                reason: "MalformedEvent".into(),
                description: format!("the stored event cannot be read: {e}"),
            });
        }
        let age_ms = clock::now_ms() - message.record.enqueued_at_ms;
        (age_ms > i64::from(target.ttl_minutes) * 60_000).then(|| DeadLetterInfo {
            reason: TIME_TO_LIVE_EXCEEDED.into(),
            description: format!(
                "event not delivered within its time-to-live of {} minutes",
                target.ttl_minutes
            ),
        })
    }

    async fn invoke_for_event(
        &self,
        path: &EntityPath,
        function: &str,
        message: &ReceivedMessage,
    ) -> Verdict {
        let event = match schema::from_wire(&message.record.body) {
            Ok(event) => event,
            Err(e) => return retry(outcome::GENERIC_ERROR, None, e.to_string()),
        };
        if self.functions.get(function).is_none() {
            return retry(
                outcome::NOT_FOUND,
                None,
                format!("function `{function}` is not deployed"),
            );
        }
        let attempt = self
            .invoke_with_renewal(
                path,
                std::slice::from_ref(message),
                function,
                Input::Event(&event),
            )
            .await
            .pop()
            .unwrap_or_else(|| Err("the handler gave no outcome".into()));
        match attempt {
            Ok(Outcome::Complete) => Verdict::Delivered,
            Ok(Outcome::DeadLetter(info)) => Verdict::DeadLetter {
                attempt: AttemptRecord::now(outcome::GENERIC_ERROR, None),
                info,
            },
            Ok(Outcome::Abandon(reason)) | Err(reason) => {
                retry(outcome::GENERIC_ERROR, None, reason)
            }
        }
    }

    async fn forward_event(&self, queue: &str, message: &ReceivedMessage) -> Verdict {
        let record = &message.record;
        let event_type = record.subject.clone().unwrap_or_default();
        let forwarded = NewMessage {
            message_id: Some(record.message_id.clone()),
            body: record.body.clone(),
            content_type: Some("application/json".into()),
            correlation_id: record.correlation_id.clone(),
            subject: schema::from_wire(&record.body).ok().and_then(|e| e.subject),
            // The event's trace context travels on with it.
            user_properties: std::iter::once(("aeg-event-type".to_string(), event_type))
                .chain(
                    record
                        .user_properties
                        .iter()
                        .filter(|(k, _)| k == TRACEPARENT)
                        .cloned(),
                )
                .collect(),
            ..NewMessage::default()
        };
        match self.broker.send(queue, vec![forwarded]).await {
            Ok(_) => Verdict::Delivered,
            Err(e) => {
                let outcome = if matches!(e, crate::broker::BrokerError::QueueNotFound(_)) {
                    outcome::NOT_FOUND
                } else {
                    outcome::GENERIC_ERROR
                };
                retry(
                    outcome,
                    None,
                    format!("cannot deliver to queue `{queue}`: {e}"),
                )
            }
        }
    }

    /// POSTs a group of events to the webhook, in the subscription's schema.
    async fn post(
        &self,
        target: &Target<'_>,
        hook: &WebhookDestination,
        group: &[ReceivedMessage],
    ) -> Verdict {
        let events: Vec<Value> = group
            .iter()
            .filter_map(|m| serde_json::from_slice(&m.record.body).ok())
            .collect();
        let single_cloud_event = target.schema == EventSchema::CloudEvents
            && hook.max_events_per_batch == 1
            && events.len() == 1;
        let (body, content_type) = match target.schema {
            EventSchema::EventGrid => (Value::Array(events), webhook::EVENT_GRID_CONTENT_TYPE),
            EventSchema::CloudEvents if single_cloud_event => (
                events.into_iter().next().unwrap_or(Value::Null),
                webhook::CLOUD_EVENTS_CONTENT_TYPE,
            ),
            EventSchema::CloudEvents => (
                Value::Array(events),
                "application/cloudevents-batch+json; charset=utf-8",
            ),
        };
        let first = group.first();
        let previous_attempts = first.map_or(0, |m| m.record.delivery_count.saturating_sub(1));
        let data_version = first
            .and_then(|m| schema::from_wire(&m.record.body).ok())
            .and_then(|e| e.data_version);
        let mut headers = webhook::delivery_headers(
            target.name,
            webhook::NOTIFICATION,
            previous_attempts,
            data_version.as_deref(),
        );
        if target.schema == EventSchema::CloudEvents {
            headers.push(("Origin".into(), webhook::EVENT_GRID_ORIGIN.into()));
        }
        let delivery = webhook::Delivery {
            url: &hook.endpoint_url,
            body: serde_json::to_vec(&body).unwrap_or_default(),
            content_type,
            headers,
            timeout: webhook::DELIVERY_TIMEOUT,
        };
        match webhook::deliver(self.events.http(), delivery).await {
            webhook::DeliveryOutcome::Delivered { .. } => Verdict::Delivered,
            webhook::DeliveryOutcome::Retry {
                status,
                reason,
                min_delay,
            } => Verdict::Retry {
                attempt: AttemptRecord::now(
                    status.map_or(
                        if reason.contains("timed out") {
                            outcome::TIMED_OUT
                        } else {
                            outcome::GENERIC_ERROR
                        },
                        outcome_of_status,
                    ),
                    status,
                ),
                reason,
                min_delay,
            },
            webhook::DeliveryOutcome::DeadLetter { status, reason } => Verdict::DeadLetter {
                attempt: AttemptRecord::now(outcome_of_status(status), Some(status)),
                info: DeadLetterInfo {
                    reason: NON_RETRIABLE_RESPONSE.into(),
                    description: reason,
                },
            },
        }
    }

    /// Settles one event by the verdict, with Event Grid's retry policy.
    async fn settle_event(
        &self,
        path: &EntityPath,
        target: &Target<'_>,
        message: &ReceivedMessage,
        verdict: Verdict,
    ) {
        let seq = message.sequence_number;
        let Some(lock) = message.lock else { return };
        let count = message.record.delivery_count;
        if let Some(to) = target.delivered_to {
            let (outcome, reason) = match &verdict {
                Verdict::Delivered => ("delivered", None),
                Verdict::Retry { reason, .. } => ("failed", Some(reason.clone())),
                Verdict::DeadLetter { info, .. } => ("failed", Some(info.description.clone())),
            };
            self.record_step(message, StepKind::Deliver, to, outcome, reason);
        }
        if let Verdict::DeadLetter { info, .. } = &verdict {
            self.record_dead_letter(message, &path.queue, &info.reason, &info.description);
        }
        let result = match verdict {
            Verdict::Delivered => self.broker.complete(path, seq, lock.token).await,
            Verdict::DeadLetter { attempt, info } => {
                self.broker
                    .dead_letter(path, seq, lock.token, info, &attempt.properties())
                    .await
            }
            Verdict::Retry {
                attempt, reason, ..
            } if count >= target.max_attempts => {
                let info = DeadLetterInfo {
                    reason: MAX_DELIVERY_ATTEMPTS_EXCEEDED.into(),
                    description: format!(
                        "not delivered after {count} attempts; last error: {reason}"
                    ),
                };
                self.record_dead_letter(message, &path.queue, &info.reason, &info.description);
                self.broker
                    .dead_letter(path, seq, lock.token, info, &attempt.properties())
                    .await
            }
            Verdict::Retry {
                attempt,
                reason,
                min_delay,
            } => {
                let delay = self.backoff(count, min_delay);
                tracing::debug!(entity = %path, seq, count, ?delay, %reason, "event delivery failed; retrying");
                self.broker
                    .abandon(
                        path,
                        seq,
                        lock.token,
                        Some(&reason),
                        delay,
                        &attempt.properties(),
                    )
                    .await
                    .map(|_| ())
            }
        };
        if let Err(e) = result {
            tracing::warn!(entity = %path, seq, error = %e, "settlement failed; the event will be delivered again");
        }
    }

    /// The wait before the next attempt after `failed` attempts.
    fn backoff(&self, failed: u32, min_delay: Option<Duration>) -> Duration {
        backoff(
            failed,
            min_delay,
            self.settings.retry_time_scale,
            unit_random(),
        )
    }
}

impl Verdict {
    /// The same verdict for the next event of a batch (attempt records are
    /// values; the batch shares one attempt).
    fn clone_for_settle(&self) -> Verdict {
        match self {
            Verdict::Delivered => Verdict::Delivered,
            Verdict::Retry {
                attempt,
                reason,
                min_delay,
            } => Verdict::Retry {
                attempt: attempt.clone(),
                reason: reason.clone(),
                min_delay: *min_delay,
            },
            Verdict::DeadLetter { attempt, info } => Verdict::DeadLetter {
                attempt: attempt.clone(),
                info: info.clone(),
            },
        }
    }
}

fn retry(outcome: &'static str, status: Option<u16>, reason: String) -> Verdict {
    Verdict::Retry {
        attempt: AttemptRecord::now(outcome, status),
        reason,
        min_delay: None,
    }
}

fn dead(info: DeadLetterInfo) -> Verdict {
    Verdict::DeadLetter {
        attempt: AttemptRecord::now(outcome::GENERIC_ERROR, None),
        info,
    }
}

/// Event Grid's schedule plus up to [`JITTER`] more (`unit` in `[0, 1)`
/// picks how much), at least `min_delay`, all scaled by `scale` (1 in
/// production, small in tests).
fn backoff(failed: u32, min_delay: Option<Duration>, scale: f64, unit: f64) -> Duration {
    let scheduled = RetryPolicy::backoff_secs(failed) as f64 * (1.0 + JITTER * unit);
    let floor = min_delay.map_or(0.0, |d| d.as_secs_f64());
    Duration::try_from_secs_f64(scheduled.max(floor) * scale).unwrap_or(Duration::ZERO)
}

/// Splits received events into POSTs of at most the preferred size; an
/// event larger than it goes alone.
fn size_groups<'m>(
    messages: &'m [ReceivedMessage],
    hook: &WebhookDestination,
) -> Vec<&'m [ReceivedMessage]> {
    let limit = usize::try_from(hook.preferred_batch_size_in_kilobytes).unwrap_or(64) * 1024;
    let mut groups = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, message) in messages.iter().enumerate() {
        let len = message.record.body.len();
        if i > start && size + len > limit {
            groups.push(&messages[start..i]);
            (start, size) = (i, 0);
        }
        size += len;
    }
    if start < messages.len() {
        groups.push(&messages[start..]);
    }
    groups
}

/// A random number in `[0, 1)`; 0 if the OS random source fails (no jitter
/// is better than no retry).
fn unit_random() -> f64 {
    let mut bytes = [0u8; 4];
    match getrandom::fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_the_schedule_with_at_most_ten_percent_jitter() {
        assert_eq!(backoff(1, None, 1.0, 0.0), Duration::from_secs(10));
        let most = backoff(2, None, 1.0, 0.999_999);
        assert!(
            most > Duration::from_secs(30) && most < Duration::from_secs(33),
            "{most:?}"
        );
        assert_eq!(backoff(12, None, 1.0, 0.0), Duration::from_secs(43_200));
    }

    #[test]
    fn backoff_respects_the_minimum_delay_an_answer_imposes_and_the_time_scale() {
        let not_found = Some(Duration::from_secs(300));
        assert_eq!(backoff(1, not_found, 1.0, 0.5), Duration::from_secs(300));
        assert_eq!(backoff(1, not_found, 0.01, 0.0), Duration::from_secs(3));
    }

    #[test]
    fn unit_random_stays_in_the_unit_interval() {
        for _ in 0..100 {
            let r = unit_random();
            assert!((0.0..1.0).contains(&r), "{r}");
        }
    }
}
