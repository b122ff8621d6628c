//! The Service Bus REST data plane (and a few Sluice extensions of it).
//!
//! | request                                            | operation            |
//! |----------------------------------------------------|----------------------|
//! | `POST /{entity}/messages`                          | send (201); batch with `application/vnd.microsoft.servicebus.json` |
//! | `POST /{entity}/messages/head?timeout=N`           | peek-lock (201/204)  |
//! | `DELETE /{entity}/messages/head?timeout=N`         | receive-and-delete   |
//! | `DELETE /{entity}/messages/{seq}/{lockToken}`      | complete             |
//! | `PUT /{entity}/messages/{seq}/{lockToken}`         | abandon (unlock); JSON body `{"propertiesToModify":{..}}` optional |
//! | `POST /{entity}/messages/{seq}/{lockToken}`        | renew lock           |
//!
//! Sluice extensions, for what Service Bus offers only over AMQP:
//!
//! | request                                                        | operation |
//! |----------------------------------------------------------------|-----------|
//! | `POST .../messages/head?maxMessages=M`                         | batch receive: a JSON array like a batch send |
//! | `PUT .../messages/{seq}/{lockToken}?disposition=defer`         | defer     |
//! | `PUT .../messages/{seq}/{lockToken}?disposition=deadletter`    | dead-letter; reason in `DeadLetterReason` / `DeadLetterErrorDescription` headers or JSON body |
//! | `POST /{entity}/messages/{seq}`                                | receive a deferred message (peek-lock) |
//! | `DELETE /{entity}/messages/{seq}`                              | cancel a scheduled message |
//!
//! `{entity}` is a queue, a topic (send only), `queue/$DeadLetterQueue`, or
//! a subscription `topic/subscriptions/name`. Paths match
//! case-insensitively (`/Messages/Head`), as Service Bus clients send them.
//! Message properties travel in the `BrokerProperties` JSON header; user
//! properties as plain headers (string values quoted, as Service Bus does).

use crate::trace::{TRACEPARENT, TraceParent};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiRequest, ApiResult, empty};
use crate::broker::{
    DeadLetterInfo, EntityPath, LockToken, NewMessage, ReceiveMode, ReceivedMessage,
};
use crate::clock;
use crate::services::Sluice;

/// Largest send request (a batch may hold many messages).
const MAX_SEND_BYTES: usize = 4 * 1024 * 1024;
/// Largest settlement body (modified properties, dead-letter reason).
const MAX_SETTLE_BYTES: usize = 64 * 1024;
/// Service Bus's default receive timeout.
const DEFAULT_RECEIVE_TIMEOUT_SECS: u64 = 60;
/// Longest a receive may wait.
pub(crate) const MAX_RECEIVE_TIMEOUT_SECS: u64 = 240;
/// Most messages one batch receive returns.
pub(crate) const MAX_BATCH_RECEIVE: usize = 1000;
/// Media type of a batch send or receive.
const BATCH_CONTENT_TYPE: &str = "application/vnd.microsoft.servicebus.json";
/// `TimeToLive` Service Bus reports for messages that never expire (TimeSpan.MaxValue in seconds).
const INFINITE_TTL_SECS: f64 = 922_337_203_685.477_6;

/// Headers that are HTTP plumbing, not user properties.
const NOT_USER_PROPERTIES: [&str; 13] = [
    "host",
    "user-agent",
    "accept",
    "accept-encoding",
    "content-type",
    "content-length",
    "connection",
    "authorization",
    "brokerproperties",
    "transfer-encoding",
    "expect",
    "traceparent",
    "tracestate",
];

/// Message properties in the `BrokerProperties` header, as Service Bus names them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct BrokerProperties {
    message_id: Option<String>,
    correlation_id: Option<String>,
    label: Option<String>,
    content_type: Option<String>,
    scheduled_enqueue_time_utc: Option<String>,
    session_id: Option<String>,
    to: Option<String>,
    reply_to: Option<String>,
    /// Seconds, possibly fractional.
    time_to_live: Option<f64>,
}

/// One element of a batch send.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchItem {
    body: String,
    #[serde(default)]
    broker_properties: BrokerProperties,
    #[serde(default)]
    user_properties: serde_json::Map<String, Value>,
}

/// Optional JSON body of a settlement.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct SettleBody {
    properties_to_modify: serde_json::Map<String, Value>,
    dead_letter_reason: Option<String>,
    dead_letter_error_description: Option<String>,
}

pub(super) async fn route(sluice: &Sluice, request: ApiRequest) -> ApiResult {
    let Some(at) = request
        .segments
        .iter()
        .rposition(|s| s.eq_ignore_ascii_case("messages"))
    else {
        return Err(ApiError::not_found(format!(
            "no such endpoint: {}",
            request.path
        )));
    };
    if at == 0 {
        return Err(ApiError::not_found(
            "the path names no entity before `/messages`",
        ));
    }
    let entity = EntityPath::parse(&request.segments[..at].join("/"));
    let rest: Vec<String> = request.segments[at + 1..].to_vec();
    match (request.method.clone(), rest.as_slice()) {
        (Method::POST, []) => send(sluice, &entity, request).await,
        (Method::POST, [head]) if head.eq_ignore_ascii_case("head") => {
            receive(sluice, &entity, request, ReceiveMode::PeekLock).await
        }
        (Method::DELETE, [head]) if head.eq_ignore_ascii_case("head") => {
            receive(sluice, &entity, request, ReceiveMode::ReceiveAndDelete).await
        }
        (Method::POST, [seq]) => {
            let seq = parse_seq(seq)?;
            let base = request.base_url();
            let mut received = sluice.broker.receive_deferred(&entity, &[seq]).await?;
            match received.pop() {
                Some(message) => message_response(StatusCode::CREATED, &base, &entity, &message),
                None => Err(ApiError::not_found(format!(
                    "message {seq} in `{entity}` is not deferred"
                ))),
            }
        }
        (Method::DELETE, [seq]) => {
            sluice
                .broker
                .cancel_scheduled(&entity.queue, &[parse_seq(seq)?])
                .await?;
            empty(StatusCode::OK)
        }
        (_, [seq, token]) => {
            let (seq, token) = (seq.clone(), token.clone());
            settle(sluice, &entity, request, &seq, &token).await
        }
        (method, _) => Err(ApiError::method_not_allowed(&method, &request.path)),
    }
}

fn parse_seq(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("`{text}` is not a sequence number")))
}

fn parse_broker_properties(text: Option<&str>) -> Result<BrokerProperties, ApiError> {
    match text {
        None => Ok(BrokerProperties::default()),
        Some(text) => serde_json::from_str(text).map_err(|e| {
            ApiError::bad_request(format!(
                "the BrokerProperties header is not valid JSON: {e}"
            ))
        }),
    }
}

fn new_message(
    body: Vec<u8>,
    props: BrokerProperties,
    content_type: Option<String>,
    mut user_properties: Vec<(String, String)>,
    caller: Option<&TraceParent>,
) -> Result<NewMessage, ApiError> {
    // Every message carries trace context: its own, else a span of the
    // sending request's, else a new trace.
    crate::trace::ensure_traceparent(&mut user_properties, caller);
    let scheduled_at_ms = match &props.scheduled_enqueue_time_utc {
        None => None,
        Some(text) => Some(parse_http_or_rfc3339(text).ok_or_else(|| {
            ApiError::bad_request(format!("ScheduledEnqueueTimeUtc is not a date: `{text}`"))
        })?),
    };
    let time_to_live_ms = match props.time_to_live {
        None => None,
        Some(secs) if secs.is_finite() && secs > 0.0 => {
            Some((secs * 1000.0).min(i64::MAX as f64) as i64)
        }
        Some(secs) => {
            return Err(ApiError::bad_request(format!(
                "TimeToLive must be a positive number of seconds, got {secs}"
            )));
        }
    };
    Ok(NewMessage {
        message_id: props.message_id,
        body,
        content_type: props.content_type.or(content_type),
        correlation_id: props.correlation_id,
        subject: props.label,
        user_properties,
        scheduled_at_ms,
        session_id: props.session_id,
        to: props.to,
        reply_to: props.reply_to,
        time_to_live_ms,
    })
}

fn parse_http_or_rfc3339(text: &str) -> Option<i64> {
    clock::parse_rfc3339(text).or_else(|| {
        let format = time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        );
        let t = time::PrimitiveDateTime::parse(text, format)
            .ok()?
            .assume_utc();
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
    })
}

/// Service Bus sends string properties quoted (`"High"`); store them bare.
fn unquote(value: &str) -> String {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
        .to_string()
}

fn json_properties(map: serde_json::Map<String, Value>) -> Vec<(String, String)> {
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect()
}

async fn send(sluice: &Sluice, entity: &EntityPath, request: ApiRequest) -> ApiResult {
    if entity.dead_letter {
        return Err(ApiError::bad_request(
            "messages cannot be sent to a dead-letter queue",
        ));
    }
    let content_type = request.header("content-type").map(str::to_string);
    let props = parse_broker_properties(request.header("brokerproperties"))?;
    let user_properties: Vec<(String, String)> = request
        .headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            !NOT_USER_PROPERTIES.contains(&name)
                && !name.starts_with("x-ms-")
                && !name.starts_with("aeg-")
        })
        .filter_map(|(name, value)| {
            Some((name.as_str().to_string(), unquote(value.to_str().ok()?)))
        })
        .collect();
    let caller = request.header(TRACEPARENT).and_then(TraceParent::parse);
    let body = request.body(MAX_SEND_BYTES).await?;
    let messages = if content_type
        .as_deref()
        .is_some_and(|ct| ct.starts_with(BATCH_CONTENT_TYPE))
    {
        let items: Vec<BatchItem> = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "a batch must be a JSON array of {{Body, BrokerProperties, UserProperties}}: {e}"
            ))
        })?;
        if items.is_empty() {
            return Err(ApiError::bad_request("the batch holds no messages"));
        }
        items
            .into_iter()
            .map(|item| {
                new_message(
                    item.body.into_bytes(),
                    item.broker_properties,
                    None,
                    json_properties(item.user_properties),
                    caller.as_ref(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![new_message(
            body.to_vec(),
            props,
            content_type,
            user_properties,
            caller.as_ref(),
        )?]
    };
    sluice.broker.send(&entity.queue, messages).await?;
    empty(StatusCode::CREATED)
}

async fn receive(
    sluice: &Sluice,
    entity: &EntityPath,
    request: ApiRequest,
    mode: ReceiveMode,
) -> ApiResult {
    let timeout = request
        .query_number::<u64>("timeout")?
        .unwrap_or(DEFAULT_RECEIVE_TIMEOUT_SECS)
        .min(MAX_RECEIVE_TIMEOUT_SECS);
    let max: usize = request.query_number("maxMessages")?.unwrap_or(1);
    if !(1..=MAX_BATCH_RECEIVE).contains(&max) {
        return Err(ApiError::bad_request(format!(
            "maxMessages must be between 1 and {MAX_BATCH_RECEIVE}, got {max}"
        )));
    }
    let base = request.base_url();
    let messages = sluice
        .broker
        .receive_batch(entity, mode, max, Duration::from_secs(timeout))
        .await?;
    let status = if mode == ReceiveMode::PeekLock {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    if messages.is_empty() {
        return empty(StatusCode::NO_CONTENT);
    }
    if max == 1 {
        return message_response(status, &base, entity, &messages[0]);
    }
    let items: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "Body": String::from_utf8_lossy(&m.record.body),
                "BrokerProperties": broker_properties(entity, m),
                "UserProperties": m.record.user_properties.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<String, Value>>(),
                "Location": m.lock.map(|lock| format!("{base}/{entity}/messages/{}/{}", m.sequence_number, lock.token)),
            })
        })
        .collect();
    let mut response = super::json(status, &items)?;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(BATCH_CONTENT_TYPE),
    );
    Ok(response)
}

/// A received message's `BrokerProperties`, as Service Bus names them.
pub(crate) fn broker_properties(entity: &EntityPath, message: &ReceivedMessage) -> Value {
    let record = &message.record;
    let state = if entity.dead_letter {
        "Deadlettered"
    } else if record.deferred {
        "Deferred"
    } else {
        "Active"
    };
    let ttl = record.expires_at_ms.map_or(INFINITE_TTL_SECS, |at| {
        (at - record.visible_at_ms.max(record.enqueued_at_ms)) as f64 / 1000.0
    });
    let mut props = json!({
        "DeliveryCount": record.delivery_count,
        "EnqueuedSequenceNumber": message.sequence_number,
        "EnqueuedTimeUtc": clock::to_http_date(record.enqueued_at_ms),
        "MessageId": record.message_id,
        "SequenceNumber": message.sequence_number,
        "State": state,
        "TimeToLive": ttl,
    });
    let mut set = |name: &str, value: &Option<String>| {
        if let Some(v) = value {
            props[name] = json!(v);
        }
    };
    set("CorrelationId", &record.correlation_id);
    set("Label", &record.subject);
    set("SessionId", &record.session_id);
    set("To", &record.to);
    set("ReplyTo", &record.reply_to);
    if let Some(lock) = message.lock {
        props["LockToken"] = json!(lock.token.to_string());
        props["LockedUntilUtc"] = json!(clock::to_http_date(lock.locked_until_ms));
    }
    if record.visible_at_ms > record.enqueued_at_ms {
        props["ScheduledEnqueueTimeUtc"] = json!(clock::to_http_date(record.visible_at_ms));
    }
    if let Some(at) = record.expires_at_ms {
        props["ExpiresAtUtc"] = json!(clock::to_http_date(at));
    }
    if let Some(info) = &record.dead_letter {
        props["DeadLetterReason"] = json!(info.reason);
        props["DeadLetterErrorDescription"] = json!(info.description);
    }
    props
}

/// A received message as Service Bus REST returns it.
fn message_response(
    status: StatusCode,
    base: &str,
    entity: &EntityPath,
    message: &ReceivedMessage,
) -> ApiResult {
    let record = &message.record;
    let mut response = Response::new(Full::new(Bytes::from(record.body.clone())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let mut insert = |name: &str, value: String| {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            header::HeaderValue::from_str(&value),
        ) {
            headers.insert(name, value);
        }
    };
    insert(
        "brokerproperties",
        broker_properties(entity, message).to_string(),
    );
    insert(
        "content-type",
        record
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into()),
    );
    if let Some(lock) = message.lock {
        insert(
            "location",
            format!(
                "{base}/{entity}/messages/{}/{}",
                message.sequence_number, lock.token
            ),
        );
    }
    for (name, value) in &record.user_properties {
        insert(name, format!("\"{value}\""));
    }
    if let Some(info) = &record.dead_letter {
        insert("deadletterreason", format!("\"{}\"", info.reason));
        insert(
            "deadlettererrordescription",
            format!("\"{}\"", info.description),
        );
    }
    Ok(response)
}

async fn settle(
    sluice: &Sluice,
    entity: &EntityPath,
    request: ApiRequest,
    seq: &str,
    token: &str,
) -> ApiResult {
    let seq = parse_seq(seq)?;
    let token: LockToken = token
        .parse()
        .map_err(|_| ApiError::bad_request(format!("`{token}` is not a lock token")))?;
    let method = request.method.clone();
    let disposition = request
        .query
        .get("disposition")
        .map(|d| d.to_ascii_lowercase());
    let header_reason = request.header("deadletterreason").map(unquote);
    let header_description = request.header("deadlettererrordescription").map(unquote);
    match method {
        Method::DELETE => sluice.broker.complete(entity, seq, token).await?,
        Method::POST => {
            sluice.broker.renew_lock(entity, seq, token)?;
        }
        Method::PUT => {
            let body = request.body(MAX_SETTLE_BYTES).await?;
            let settle: SettleBody = if body.iter().all(u8::is_ascii_whitespace) {
                SettleBody::default()
            } else {
                serde_json::from_slice(&body)
                    .map_err(|e| ApiError::bad_request(format!("invalid settlement body: {e}")))?
            };
            match disposition.as_deref() {
                None | Some("abandon") => {
                    let modify = json_properties(settle.properties_to_modify);
                    sluice
                        .broker
                        .abandon(entity, seq, token, None, Duration::ZERO, &modify)
                        .await?;
                }
                Some("defer") => sluice.broker.defer(entity, seq, token).await?,
                Some("deadletter") => {
                    let info = DeadLetterInfo {
                        reason: settle
                            .dead_letter_reason
                            .or(header_reason)
                            .unwrap_or_else(|| "DeadLetteredByReceiver".into()),
                        description: settle
                            .dead_letter_error_description
                            .or(header_description)
                            .unwrap_or_default(),
                    };
                    sluice
                        .broker
                        .dead_letter(entity, seq, token, info, &[])
                        .await?;
                }
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "unknown disposition `{other}`; use abandon, defer or deadletter"
                    )));
                }
            }
        }
        ref other => {
            return Err(ApiError::method_not_allowed(
                other,
                &format!("/{entity}/messages/{seq}/{token}"),
            ));
        }
    }
    empty(StatusCode::OK)
}

/// Decodes a body given as base64 in JSON views (non-UTF-8 payloads).
pub(crate) fn body_json(body: &[u8]) -> Value {
    match std::str::from_utf8(body) {
        Ok(text) => json!({ "body": text }),
        Err(_) => json!({ "bodyBase64": base64::engine::general_purpose::STANDARD.encode(body) }),
    }
}
