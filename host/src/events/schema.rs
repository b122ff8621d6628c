//! Event shapes on the wire and inside the host.
//!
//! Publishers send Event Grid schema (`application/json`, a JSON array) or
//! CloudEvents 1.0 (structured single, batch, or binary mode). Both are
//! normalised into [`Event`], which is what delivery queues store and what
//! handlers receive.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock;

/// An event schema, by Azure's names: what a topic accepts
/// (`inputSchema`) and what a subscription delivers (`eventDeliverySchema`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventSchema {
    /// Azure Event Grid schema.
    #[default]
    #[serde(rename = "EventGridSchema")]
    EventGrid,
    /// CloudEvents 1.0.
    #[serde(rename = "CloudEventSchemaV1_0")]
    CloudEvents,
}

/// An event, normalised.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Publisher-given id.
    pub id: String,
    /// The topic (Event Grid) or `source` (CloudEvents).
    pub source: String,
    /// The event type.
    pub event_type: String,
    /// What it is about.
    pub subject: Option<String>,
    /// When it happened, RFC 3339.
    pub time: String,
    /// Media type of the data.
    pub data_content_type: Option<String>,
    /// The payload: JSON (`data`).
    pub data: Option<Value>,
    /// The payload: bytes (`data_base64`, binary mode with a non-JSON type).
    pub data_base64: Option<String>,
    /// `dataVersion` (Event Grid).
    pub data_version: Option<String>,
    /// CloudEvents extension attributes.
    pub extensions: BTreeMap<String, Value>,
    /// The schema it was published in.
    pub schema: EventSchema,
}

/// A publish request that cannot be accepted; the message names the field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidEvent(pub String);

impl Event {
    /// The payload bytes a handler gets: JSON text, or the decoded base64.
    pub fn data_bytes(&self) -> Vec<u8> {
        if let Some(b64) = &self.data_base64 {
            return base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default();
        }
        match &self.data {
            None | Some(Value::Null) => Vec::new(),
            Some(value) => serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    /// The event rendered in another schema, mapped as Event Grid maps
    /// them: `topic` ↔ `source`, `eventType` ↔ `type`, `eventTime` ↔ `time`.
    pub fn to_wire_in(&self, schema: EventSchema) -> Value {
        if schema == self.schema {
            return self.to_wire();
        }
        Event {
            schema,
            data_version: self.data_version.clone(),
            ..self.clone()
        }
        .to_wire()
    }

    /// The event rendered in the schema it was published in.
    pub fn to_wire(&self) -> Value {
        let mut out = Map::new();
        match self.schema {
            EventSchema::EventGrid => {
                out.insert("id".into(), self.id.clone().into());
                out.insert("topic".into(), self.source.clone().into());
                out.insert(
                    "subject".into(),
                    self.subject.clone().unwrap_or_default().into(),
                );
                out.insert("eventType".into(), self.event_type.clone().into());
                out.insert("eventTime".into(), self.time.clone().into());
                out.insert("data".into(), self.data.clone().unwrap_or(Value::Null));
                out.insert(
                    "dataVersion".into(),
                    self.data_version.clone().unwrap_or_default().into(),
                );
                out.insert("metadataVersion".into(), "1".into());
            }
            EventSchema::CloudEvents => {
                out.insert("specversion".into(), "1.0".into());
                out.insert("id".into(), self.id.clone().into());
                out.insert("source".into(), self.source.clone().into());
                out.insert("type".into(), self.event_type.clone().into());
                if let Some(subject) = &self.subject {
                    out.insert("subject".into(), subject.clone().into());
                }
                out.insert("time".into(), self.time.clone().into());
                if let Some(ct) = &self.data_content_type {
                    out.insert("datacontenttype".into(), ct.clone().into());
                }
                if let Some(data) = &self.data {
                    out.insert("data".into(), data.clone());
                }
                if let Some(b64) = &self.data_base64 {
                    out.insert("data_base64".into(), b64.clone().into());
                }
                for (k, v) in &self.extensions {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        Value::Object(out)
    }
}

fn required_string(
    obj: &Map<String, Value>,
    field: &str,
    at: &str,
) -> Result<String, InvalidEvent> {
    match obj.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(InvalidEvent(format!("{at}: `{field}` must not be empty"))),
        Some(_) => Err(InvalidEvent(format!("{at}: `{field}` must be a string"))),
        None => Err(InvalidEvent(format!(
            "{at}: missing required property `{field}`"
        ))),
    }
}

fn optional_string(
    obj: &Map<String, Value>,
    field: &str,
    at: &str,
) -> Result<Option<String>, InvalidEvent> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(InvalidEvent(format!("{at}: `{field}` must be a string"))),
    }
}

fn checked_time(text: String, field: &str, at: &str) -> Result<String, InvalidEvent> {
    if clock::parse_rfc3339(&text).is_none() {
        return Err(InvalidEvent(format!(
            "{at}: `{field}` is not an RFC 3339 timestamp: `{text}`"
        )));
    }
    Ok(text)
}

fn as_array(body: &[u8]) -> Result<Vec<Value>, InvalidEvent> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(_) => Err(InvalidEvent(
            "the body must be a JSON array of events".into(),
        )),
        Err(e) => Err(InvalidEvent(format!("the body is not valid JSON: {e}"))),
    }
}

/// Parses an Event Grid schema publish body (a JSON array).
pub fn parse_event_grid(topic: &str, body: &[u8]) -> Result<Vec<Event>, InvalidEvent> {
    as_array(body)?
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("event[{i}]");
            match item {
                Value::Object(obj) => event_grid_event(topic, obj, &at),
                _ => Err(InvalidEvent(format!("{at}: must be a JSON object"))),
            }
        })
        .collect()
}

fn event_grid_event(
    topic: &str,
    obj: &Map<String, Value>,
    at: &str,
) -> Result<Event, InvalidEvent> {
    Ok(Event {
        id: required_string(obj, "id", at)?,
        source: topic.to_string(),
        event_type: required_string(obj, "eventType", at)?,
        subject: Some(required_string(obj, "subject", at)?),
        time: checked_time(required_string(obj, "eventTime", at)?, "eventTime", at)?,
        data_content_type: Some("application/json".into()),
        data: obj.get("data").cloned(),
        data_base64: None,
        data_version: Some(required_string(obj, "dataVersion", at)?),
        extensions: BTreeMap::new(),
        schema: EventSchema::EventGrid,
    })
}

/// Reads back an event rendered by [`Event::to_wire`] (what delivery
/// queues and dead-letter queues hold).
pub fn from_wire(body: &[u8]) -> Result<Event, InvalidEvent> {
    let at = "stored event";
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) if obj.contains_key("specversion") => cloud_event(&obj, at),
        Ok(Value::Object(obj)) => {
            let topic = obj
                .get("topic")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            event_grid_event(&topic, &obj, at)
        }
        Ok(_) => Err(InvalidEvent(format!("{at}: must be a JSON object"))),
        Err(e) => Err(InvalidEvent(format!("{at}: not valid JSON: {e}"))),
    }
}

const CLOUDEVENT_CONTEXT: [&str; 9] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "data",
];

fn cloud_event(obj: &Map<String, Value>, at: &str) -> Result<Event, InvalidEvent> {
    let version = required_string(obj, "specversion", at)?;
    if version != "1.0" {
        return Err(InvalidEvent(format!(
            "{at}: `specversion` must be \"1.0\", got \"{version}\""
        )));
    }
    let time = match optional_string(obj, "time", at)? {
        Some(t) => checked_time(t, "time", at)?,
        None => clock::to_rfc3339(clock::now_ms()),
    };
    let data_base64 = optional_string(obj, "data_base64", at)?;
    if let Some(b64) = &data_base64
        && base64::engine::general_purpose::STANDARD
            .decode(b64)
            .is_err()
    {
        return Err(InvalidEvent(format!(
            "{at}: `data_base64` is not valid base64"
        )));
    }
    let mut extensions = BTreeMap::new();
    for (k, v) in obj {
        if !CLOUDEVENT_CONTEXT.contains(&k.as_str()) && k != "data_base64" {
            extensions.insert(k.clone(), v.clone());
        }
    }
    Ok(Event {
        id: required_string(obj, "id", at)?,
        source: required_string(obj, "source", at)?,
        event_type: required_string(obj, "type", at)?,
        subject: optional_string(obj, "subject", at)?,
        time,
        data_content_type: optional_string(obj, "datacontenttype", at)?,
        data: obj.get("data").cloned(),
        data_base64,
        data_version: None,
        extensions,
        schema: EventSchema::CloudEvents,
    })
}

/// Parses structured-mode CloudEvents: one object or a batch array.
pub fn parse_cloud_events(body: &[u8], batch: bool) -> Result<Vec<Event>, InvalidEvent> {
    let items = if batch {
        as_array(body)?
    } else {
        match serde_json::from_slice::<Value>(body) {
            // Event Grid's SDKs send even a single CloudEvent as an array.
            Ok(Value::Array(items)) => items,
            Ok(other) => vec![other],
            Err(e) => return Err(InvalidEvent(format!("the body is not valid JSON: {e}"))),
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(obj) => cloud_event(obj, &format!("event[{i}]")),
            _ => Err(InvalidEvent(format!("event[{i}]: must be a JSON object"))),
        })
        .collect()
}

/// Parses a binary-mode CloudEvent: attributes in `ce-*` headers, data in the body.
pub fn parse_binary_cloud_event(
    headers: &[(String, String)],
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Event, InvalidEvent> {
    let mut obj = Map::new();
    for (name, value) in headers {
        if let Some(attr) = name.to_ascii_lowercase().strip_prefix("ce-") {
            obj.insert(attr.to_string(), Value::String(value.clone()));
        }
    }
    if let Some(ct) = content_type {
        obj.insert("datacontenttype".into(), Value::String(ct.to_string()));
    }
    let is_json = content_type.is_none_or(|ct| ct.contains("json"));
    if !body.is_empty() {
        if is_json {
            let data = serde_json::from_slice(body).map_err(|e| {
                InvalidEvent(format!(
                    "binary-mode event: the body is not valid JSON: {e}"
                ))
            })?;
            obj.insert("data".into(), data);
        } else {
            obj.insert(
                "data_base64".into(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
            );
        }
    }
    cloud_event(&obj, "binary-mode event")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_grid_event_missing_event_type_is_rejected_naming_the_field() {
        let body =
            br#"[{"id":"1","subject":"s","eventTime":"2026-01-01T00:00:00Z","dataVersion":"1"}]"#;
        let err = parse_event_grid("orders", body).expect_err("must fail");
        assert_eq!(err.0, "event[0]: missing required property `eventType`");
    }

    #[test]
    fn event_grid_event_round_trips_through_its_wire_form() {
        let body = br#"[{"id":"1","subject":"s","eventType":"t","eventTime":"2026-01-01T00:00:00Z","dataVersion":"1","data":{"a":[1]}}]"#;
        let events = parse_event_grid("orders", body).expect("valid");
        let wire = serde_json::to_vec(&events[0].to_wire()).expect("json");
        assert_eq!(from_wire(&wire).expect("round trip"), events[0]);
    }

    #[test]
    fn event_grid_event_with_bad_time_is_rejected() {
        let body =
            br#"[{"id":"1","subject":"s","eventType":"t","eventTime":"noon","dataVersion":"1"}]"#;
        let err = parse_event_grid("orders", body).expect_err("must fail");
        assert!(
            err.0.contains("`eventTime` is not an RFC 3339 timestamp"),
            "{}",
            err.0
        );
    }

    #[test]
    fn cloud_event_keeps_extensions_and_round_trips() {
        let body = br#"{"specversion":"1.0","id":"1","source":"/shop","type":"orders.created","traceparent":"00-ab","data":{"n":1}}"#;
        let events = parse_cloud_events(body, false).expect("valid");
        assert_eq!(
            events[0].extensions.get("traceparent"),
            Some(&Value::from("00-ab"))
        );
        assert_eq!(events[0].data_bytes(), br#"{"n":1}"#.to_vec());
        assert_eq!(events[0].to_wire()["type"], "orders.created");
        let wire = serde_json::to_vec(&events[0].to_wire()).expect("json");
        assert_eq!(from_wire(&wire).expect("round trip"), events[0]);
    }

    #[test]
    fn binary_mode_cloud_event_reads_attributes_from_headers() {
        let headers = vec![
            ("ce-specversion".to_string(), "1.0".to_string()),
            ("ce-id".to_string(), "7".to_string()),
            ("ce-source".to_string(), "/shop".to_string()),
            ("ce-type".to_string(), "orders.created".to_string()),
        ];
        let event = parse_binary_cloud_event(&headers, Some("text/plain"), b"hi").expect("valid");
        assert_eq!(event.id, "7");
        assert_eq!(event.data_bytes(), b"hi".to_vec());
    }
}
