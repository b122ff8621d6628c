//! `POST /topics/{topic}/api/events`: the Event Grid publish endpoint.
//!
//! Accepts what the Event Grid SDKs and CloudEvents clients send: an Event
//! Grid schema array (`application/json`), CloudEvents in structured mode
//! (`application/cloudevents+json`, or a batch with
//! `application/cloudevents-batch+json`) or binary mode (`ce-*` headers).
//! The topic's input schema decides which of the two it takes (400 for the
//! other). Answers 200 with an empty body once every delivery is durable.

use hyper::{Method, StatusCode};

use super::{ApiError, ApiRequest, ApiResult, empty};
use crate::events::{EventSchema, schema};
use crate::services::Sluice;

/// Event Grid's limit for one publish request.
pub(crate) const MAX_PUBLISH_BYTES: usize = 1024 * 1024;

pub(super) fn is_publish_path(segments: &[String]) -> bool {
    segments.len() == 4
        && segments[2].eq_ignore_ascii_case("api")
        && segments[3].eq_ignore_ascii_case("events")
}

pub(super) async fn route(sluice: &Sluice, request: ApiRequest) -> ApiResult {
    if request.method != Method::POST {
        return Err(ApiError::method_not_allowed(&request.method, &request.path));
    }
    let topic = request.segments[1].clone();
    if !sluice.events.has_topic(&topic) {
        return Err(ApiError::not_found(format!(
            "topic `{topic}` does not exist"
        )));
    }
    let content_type = request
        .header("content-type")
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    let binary_mode = request.headers.contains_key("ce-specversion");
    let headers: Vec<(String, String)> = request
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let body = request.body(MAX_PUBLISH_BYTES).await.map_err(|e| {
        if e.status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(format!(
                "the publish request exceeds Event Grid's limit of {MAX_PUBLISH_BYTES} bytes"
            ))
        } else {
            e
        }
    })?;
    let cloud_events = binary_mode
        || content_type.starts_with("application/cloudevents")
        || looks_like_cloud_events(&body);
    let expected = sluice.events.topic(&topic)?.input_schema;
    match (expected, cloud_events) {
        (EventSchema::EventGrid, true) => {
            return Err(ApiError::bad_request(format!(
                "topic `{topic}` accepts the Event Grid schema (inputSchema EventGridSchema), not CloudEvents; \
                 publish an array of Event Grid events or create the topic with inputSchema CloudEventSchemaV1_0"
            )));
        }
        (EventSchema::CloudEvents, false) if content_type.starts_with("application/json") => {
            return Err(ApiError::bad_request(format!(
                "topic `{topic}` accepts CloudEvents 1.0 (inputSchema CloudEventSchemaV1_0), not the Event Grid schema; \
                 send application/cloudevents+json, application/cloudevents-batch+json or binary mode"
            )));
        }
        _ => {}
    }
    let events = if binary_mode {
        vec![
            schema::parse_binary_cloud_event(&headers, Some(&content_type), &body)
                .map_err(|e| ApiError::bad_request(e.0))?,
        ]
    } else if content_type.starts_with("application/cloudevents-batch+json") {
        schema::parse_cloud_events(&body, true).map_err(|e| ApiError::bad_request(e.0))?
    } else if cloud_events {
        schema::parse_cloud_events(&body, false).map_err(|e| ApiError::bad_request(e.0))?
    } else if content_type.starts_with("application/json") {
        schema::parse_event_grid(&topic, &body).map_err(|e| ApiError::bad_request(e.0))?
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "content type `{content_type}` is not accepted; use application/json (Event Grid schema), \
                 application/cloudevents+json or application/cloudevents-batch+json"
            ),
        ));
    };
    if events.is_empty() {
        return Err(ApiError::bad_request("the request holds no events"));
    }
    let report = sluice.events.publish(&topic, events).await?;
    tracing::debug!(
        topic,
        events = report.events,
        deliveries = report.deliveries,
        "published"
    );
    empty(StatusCode::OK)
}

/// A JSON array whose first element has `specversion`: CloudEvents sent as plain JSON.
fn looks_like_cloud_events(body: &[u8]) -> bool {
    matches!(
        serde_json::from_slice::<serde_json::Value>(body),
        Ok(serde_json::Value::Array(items)) if items.first().is_some_and(|e| e.get("specversion").is_some())
    )
}
