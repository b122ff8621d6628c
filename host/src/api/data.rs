//! JSON data-plane operations beside the Service Bus REST ones: batch
//! receive, dead-letter resubmit, and sessions (which Service Bus offers
//! only over AMQP). The entity is named in the query (`?queue=` or
//! `?entity=`) because entity paths contain `/`.
//!
//! | request | does |
//! |---|---|
//! | `POST /api/receive?entity=E&max=N&timeout=S&mode=peekLock\|receiveAndDelete` | receive up to N (JSON, with lock tokens) |
//! | `POST /api/resubmit?queue=Q&max=N` | move dead letters back to the queue |
//! | `POST /api/sessions/accept?queue=Q[&sessionId=S][&timeout=S]` | accept a session (200) or none waiting (204) |
//! | `POST /api/sessions/receive?queue=Q&sessionId=S&lockToken=T[&max=N][&timeout=S][&mode=..]` | receive from a held session |
//! | `POST /api/sessions/renew?...`, `POST /api/sessions/release?...` | session lock |
//! | `GET`, `PUT`, `DELETE /api/sessions/state?...` | the session state (raw bytes) |

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::messaging::{MAX_BATCH_RECEIVE, MAX_RECEIVE_TIMEOUT_SECS, body_json};
use super::{ApiError, ApiRequest, ApiResult, empty, json};
use crate::broker::{
    EntityPath, LockToken, MessageLock, MessageRecord, MessageState, ReceiveMode, ReceivedMessage,
};
use crate::clock;
use crate::services::Sluice;

/// Largest session state.
const MAX_SESSION_STATE_BYTES: usize = 256 * 1024;

/// A message as the JSON API shows it.
pub(super) fn message_view(
    sequence_number: u64,
    state: Option<MessageState>,
    record: &MessageRecord,
    lock: Option<MessageLock>,
) -> Value {
    let mut view = json!({
        "sequenceNumber": sequence_number,
        "messageId": record.message_id,
        "deliveryCount": record.delivery_count,
        "enqueuedTime": clock::to_rfc3339(record.enqueued_at_ms),
        "correlationId": record.correlation_id,
        "subject": record.subject,
        "contentType": record.content_type,
        "sessionId": record.session_id,
        "to": record.to,
        "replyTo": record.reply_to,
        "userProperties": record.user_properties.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "lastError": record.last_error,
    });
    if let Some(state) = state {
        view["state"] = json!(state);
    }
    if record.visible_at_ms > record.enqueued_at_ms {
        view["scheduledEnqueueTime"] = json!(clock::to_rfc3339(record.visible_at_ms));
    }
    if let Some(at) = record.expires_at_ms {
        view["expiresAt"] = json!(clock::to_rfc3339(at));
    }
    if let Some(lock) = lock {
        view["lockToken"] = json!(lock.token.to_string());
        view["lockedUntil"] = json!(clock::to_rfc3339(lock.locked_until_ms));
    }
    if let Some(info) = &record.dead_letter {
        view["deadLetterReason"] = json!(info.reason);
        view["deadLetterDescription"] = json!(info.description);
    }
    if let (Some(view), Value::Object(body)) = (view.as_object_mut(), body_json(&record.body)) {
        view.extend(body);
    }
    view
}

fn received_views(messages: &[ReceivedMessage]) -> Vec<Value> {
    messages
        .iter()
        .map(|m| message_view(m.sequence_number, None, &m.record, m.lock))
        .collect()
}

fn required<'a>(request: &'a ApiRequest, name: &str) -> Result<&'a str, ApiError> {
    request
        .query
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| ApiError::bad_request(format!("query parameter `{name}` is required")))
}

fn lock_token(request: &ApiRequest) -> Result<LockToken, ApiError> {
    let text = required(request, "lockToken")?;
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("`{text}` is not a lock token")))
}

fn receive_options(request: &ApiRequest) -> Result<(ReceiveMode, usize, Duration), ApiError> {
    let mode = match request.query.get("mode").map(String::as_str) {
        None | Some("peekLock") => ReceiveMode::PeekLock,
        Some("receiveAndDelete") => ReceiveMode::ReceiveAndDelete,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "mode must be peekLock or receiveAndDelete, got `{other}`"
            )));
        }
    };
    let max: usize = request.query_number("max")?.unwrap_or(1);
    if !(1..=MAX_BATCH_RECEIVE).contains(&max) {
        return Err(ApiError::bad_request(format!(
            "max must be between 1 and {MAX_BATCH_RECEIVE}, got {max}"
        )));
    }
    let timeout: u64 = request
        .query_number("timeout")?
        .unwrap_or(0)
        .min(MAX_RECEIVE_TIMEOUT_SECS);
    Ok((mode, max, Duration::from_secs(timeout)))
}

pub(super) async fn receive(sluice: &Sluice, request: ApiRequest) -> ApiResult {
    expect_method(&request, Method::POST)?;
    let entity = EntityPath::parse(required(&request, "entity")?);
    let (mode, max, wait) = receive_options(&request)?;
    let messages = sluice
        .broker
        .receive_batch(&entity, mode, max, wait)
        .await?;
    json(StatusCode::OK, &received_views(&messages))
}

pub(super) async fn resubmit(sluice: &Sluice, request: ApiRequest) -> ApiResult {
    expect_method(&request, Method::POST)?;
    let queue = required(&request, "queue")?.to_string();
    let max: usize = request.query_number("max")?.unwrap_or(usize::MAX);
    let moved = sluice.broker.resubmit_dead_letters(&queue, max).await?;
    json(
        StatusCode::OK,
        &json!({ "queue": queue, "resubmitted": moved }),
    )
}

fn expect_method(request: &ApiRequest, method: Method) -> Result<(), ApiError> {
    if request.method == method {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed(&request.method, &request.path))
    }
}

pub(super) async fn sessions(sluice: &Sluice, action: &str, request: ApiRequest) -> ApiResult {
    let queue = required(&request, "queue")?.to_string();
    let broker = &sluice.broker;
    match (action, request.method.clone()) {
        ("accept", Method::POST) => {
            let timeout: u64 = request
                .query_number("timeout")?
                .unwrap_or(0)
                .min(MAX_RECEIVE_TIMEOUT_SECS);
            let session = request.query.get("sessionId").map(String::as_str);
            match broker
                .accept_session(&queue, session, Duration::from_secs(timeout))
                .await?
            {
                Some(info) => json(StatusCode::OK, &info),
                None => empty(StatusCode::NO_CONTENT),
            }
        }
        (action, method) => {
            let session = required(&request, "sessionId")?.to_string();
            let token = lock_token(&request)?;
            match (action, method) {
                ("receive", Method::POST) => {
                    let (mode, max, wait) = receive_options(&request)?;
                    let messages = broker
                        .receive_from_session(&queue, &session, token, mode, max, wait)
                        .await?;
                    json(StatusCode::OK, &received_views(&messages))
                }
                ("renew", Method::POST) => {
                    let until = broker.renew_session_lock(&queue, &session, token)?;
                    json(
                        StatusCode::OK,
                        &json!({ "lockedUntil": clock::to_rfc3339(until) }),
                    )
                }
                ("release", Method::POST) => {
                    broker.release_session(&queue, &session, token)?;
                    empty(StatusCode::OK)
                }
                ("state", Method::GET) => match broker.session_state(&queue, &session, token)? {
                    Some(bytes) => {
                        let mut response = Response::new(Full::new(Bytes::from(bytes)));
                        *response.status_mut() = StatusCode::OK;
                        Ok(response)
                    }
                    None => empty(StatusCode::NO_CONTENT),
                },
                ("state", Method::PUT) => {
                    let body = request.body(MAX_SESSION_STATE_BYTES).await?;
                    broker
                        .set_session_state(&queue, &session, token, Some(body.to_vec()))
                        .await?;
                    empty(StatusCode::OK)
                }
                ("state", Method::DELETE) => {
                    broker
                        .set_session_state(&queue, &session, token, None)
                        .await?;
                    empty(StatusCode::OK)
                }
                (_, method) => Err(ApiError::method_not_allowed(&method, &request.path)),
            }
        }
    }
}
