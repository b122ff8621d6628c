//! The Service Bus REST data plane.
//!
//! | request                                            | operation            |
//! |----------------------------------------------------|----------------------|
//! | `POST /{entity}/messages`                          | send (201)           |
//! | `POST /{entity}/messages/head?timeout=N`           | peek-lock (201/204)  |
//! | `DELETE /{entity}/messages/head?timeout=N`         | receive-and-delete   |
//! | `DELETE /{entity}/messages/{seq}/{lockToken}`      | complete             |
//! | `PUT /{entity}/messages/{seq}/{lockToken}`         | abandon (unlock)     |
//! | `POST /{entity}/messages/{seq}/{lockToken}`        | renew lock           |
//!
//! `{entity}` is a queue, `queue/$DeadLetterQueue`, or an event
//! subscription's delivery queue `topic/subscriptions/name`. Paths match
//! case-insensitively (`/Messages/Head`), as Service Bus clients send them.
//! Message properties travel in the `BrokerProperties` JSON header; user
//! properties as plain headers.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode, header};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiRequest, ApiResult, empty};
use crate::broker::{EntityPath, LockToken, NewMessage, ReceiveMode, ReceivedMessage};
use crate::clock;
use crate::services::Sluice;

/// Largest send request (a batch may hold many messages).
const MAX_SEND_BYTES: usize = 4 * 1024 * 1024;
/// Service Bus's default receive timeout.
const DEFAULT_RECEIVE_TIMEOUT_SECS: u64 = 60;
/// Longest a receive may wait.
const MAX_RECEIVE_TIMEOUT_SECS: u64 = 240;
/// Media type of a batch send.
const BATCH_CONTENT_TYPE: &str = "application/vnd.microsoft.servicebus.json";

/// Headers that are HTTP plumbing, not user properties.
const NOT_USER_PROPERTIES: [&str; 12] = [
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
}

/// One element of a batch send.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchItem {
    body: String,
    #[serde(default)]
    broker_properties: BrokerProperties,
    #[serde(default)]
    user_properties: serde_json::Map<String, serde_json::Value>,
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
        (method, [seq, token]) => settle(sluice, &entity, &method, seq, token).await,
        (method, _) => Err(ApiError::method_not_allowed(&method, &request.path)),
    }
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
    user_properties: Vec<(String, String)>,
) -> Result<NewMessage, ApiError> {
    let scheduled_at_ms = match &props.scheduled_enqueue_time_utc {
        None => None,
        Some(text) => Some(parse_http_or_rfc3339(text).ok_or_else(|| {
            ApiError::bad_request(format!("ScheduledEnqueueTimeUtc is not a date: `{text}`"))
        })?),
    };
    Ok(NewMessage {
        message_id: props.message_id,
        body,
        content_type: props.content_type.or(content_type),
        correlation_id: props.correlation_id,
        subject: props.label,
        user_properties,
        scheduled_at_ms,
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
                let properties = item
                    .user_properties
                    .into_iter()
                    .map(|(k, v)| match v {
                        serde_json::Value::String(s) => (k, s),
                        other => (k, other.to_string()),
                    })
                    .collect();
                new_message(
                    item.body.into_bytes(),
                    item.broker_properties,
                    None,
                    properties,
                )
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![new_message(
            body.to_vec(),
            props,
            content_type,
            user_properties,
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
    let host = request.host();
    let Some(message) = sluice
        .broker
        .receive(entity, mode, Duration::from_secs(timeout))
        .await?
    else {
        return empty(StatusCode::NO_CONTENT);
    };
    let status = if mode == ReceiveMode::PeekLock {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    message_response(status, &host, entity, &message)
}

/// A received message as Service Bus REST returns it.
fn message_response(
    status: StatusCode,
    host: &str,
    entity: &EntityPath,
    message: &ReceivedMessage,
) -> ApiResult {
    let record = &message.record;
    let mut props = json!({
        "DeliveryCount": record.delivery_count,
        "EnqueuedSequenceNumber": message.sequence_number,
        "EnqueuedTimeUtc": clock::to_http_date(record.enqueued_at_ms),
        "MessageId": record.message_id,
        "SequenceNumber": message.sequence_number,
        "State": if entity.dead_letter { "Deadlettered" } else { "Active" },
        "TimeToLive": 922_337_203_685.477_6_f64,
    });
    if let Some(lock) = message.lock {
        props["LockToken"] = json!(lock.token.to_string());
        props["LockedUntilUtc"] = json!(clock::to_http_date(lock.locked_until_ms));
    }
    if let Some(c) = &record.correlation_id {
        props["CorrelationId"] = json!(c);
    }
    if let Some(l) = &record.subject {
        props["Label"] = json!(l);
    }
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
    insert("brokerproperties", props.to_string());
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
                "http://{host}/{entity}/messages/{}/{}",
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
    method: &Method,
    seq: &str,
    token: &str,
) -> ApiResult {
    let seq: u64 = seq
        .parse()
        .map_err(|_| ApiError::bad_request(format!("`{seq}` is not a sequence number")))?;
    let token: LockToken = token
        .parse()
        .map_err(|_| ApiError::bad_request(format!("`{token}` is not a lock token")))?;
    match *method {
        Method::DELETE => sluice.broker.complete(entity, seq, token).await?,
        Method::PUT => {
            sluice
                .broker
                .abandon(entity, seq, token, None, Duration::ZERO)
                .await?;
        }
        Method::POST => {
            sluice.broker.renew_lock(entity, seq, token)?;
        }
        _ => {
            return Err(ApiError::method_not_allowed(
                method,
                &format!("/{entity}/messages/{seq}/{token}"),
            ));
        }
    }
    empty(StatusCode::OK)
}

/// Decodes a body given as base64 in JSON views (non-UTF-8 payloads).
pub(crate) fn body_json(body: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(body) {
        Ok(text) => json!({ "body": text }),
        Err(_) => json!({ "bodyBase64": base64::engine::general_purpose::STANDARD.encode(body) }),
    }
}
