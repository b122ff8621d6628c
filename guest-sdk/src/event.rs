//! Events delivered from topics.

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// An event delivered from a topic subscription (Event Grid schema or
/// CloudEvents 1.0, normalised by the host).
///
/// ```no_run
/// use sluice_sdk::Event;
///
/// #[sluice_sdk::event_handler]
/// fn on_event(event: Event) {
///     sluice_sdk::log::info(format!("{} from {} ({})", event.event_type, event.source, event.id));
/// }
/// # fn main() {}
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Unique id given by the publisher.
    pub id: String,
    /// Where the event comes from: the topic (Event Grid) or `source` (CloudEvents).
    pub source: String,
    /// The event type, e.g. `orders.created`.
    pub event_type: String,
    /// What the event is about, e.g. `orders/42`.
    pub subject: Option<String>,
    /// When it happened, RFC 3339.
    pub time: String,
    /// Media type of `data`; `application/json` when absent.
    pub data_content_type: Option<String>,
    /// The payload, as the publisher sent it (JSON text for JSON events).
    pub data: Vec<u8>,
    /// CloudEvents extension attributes and Event Grid `dataVersion`, as strings.
    pub extensions: Vec<(String, String)>,
}

impl Event {
    /// Deserializes the JSON payload into `T`.
    ///
    /// The payload cannot change between deliveries, so a payload that does
    /// not parse as `T` is a dead-letter error (reason `InvalidData`, the
    /// serde message as description) rather than a retry.
    ///
    /// ```no_run
    /// use serde::Deserialize;
    /// use sluice_sdk::{Event, Result};
    ///
    /// #[derive(Deserialize)]
    /// struct Shipped { order_id: String, carrier: String }
    ///
    /// #[sluice_sdk::event_handler]
    /// fn on_shipped(event: Event) -> Result<()> {
    ///     let shipped: Shipped = event.data()?;
    ///     sluice_sdk::log::info(format!("{} shipped by {}", shipped.order_id, shipped.carrier));
    ///     Ok(())
    /// }
    /// # fn main() {}
    /// ```
    pub fn data<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.data).map_err(|error| {
            Error::dead_letter(
                "InvalidData",
                format!(
                    "data of event `{}` is not a valid `{}`: {error}",
                    self.id,
                    std::any::type_name::<T>()
                ),
            )
        })
    }

    /// The value of the extension attribute `name` (CloudEvents extensions,
    /// Event Grid `dataVersion`), if present.
    ///
    /// ```no_run
    /// use sluice_sdk::Event;
    ///
    /// #[sluice_sdk::event_handler]
    /// fn on_event(event: Event) {
    ///     let tenant = event.extension("tenant").unwrap_or("default");
    ///     sluice_sdk::log::info(format!("event for tenant {tenant}"));
    /// }
    /// # fn main() {}
    /// ```
    pub fn extension(&self, name: &str) -> Option<&str> {
        find(&self.extensions, name)
    }
}

/// The first value stored under `name` in a WIT property list.
pub(crate) fn find<'a>(properties: &'a [(String, String)], name: &str) -> Option<&'a str> {
    properties
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Outcome;

    fn event(data: &str) -> Event {
        Event {
            id: "e-1".to_string(),
            source: "orders".to_string(),
            event_type: "orders.created".to_string(),
            subject: None,
            time: "2026-01-01T00:00:00Z".to_string(),
            data_content_type: None,
            data: data.as_bytes().to_vec(),
            extensions: vec![("tenant".to_string(), "acme".to_string())],
        }
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Order {
        id: String,
    }

    #[test]
    fn data_parses_json() {
        let order: Order = event(r#"{"id":"A-1"}"#).data().expect("valid order");
        assert_eq!(
            order,
            Order {
                id: "A-1".to_string()
            }
        );
    }

    #[test]
    fn data_that_does_not_parse_is_dead_lettered() {
        let error = event(r#"{"nope":1}"#).data::<Order>().err();
        let outcome = error.map(Error::into_outcome);
        let Some(Outcome::DeadLetter {
            reason,
            description,
        }) = outcome
        else {
            panic!("expected a dead letter, got {outcome:?}");
        };
        assert_eq!(reason, "InvalidData");
        assert!(description.contains("missing field `id`"), "{description}");
    }

    #[test]
    fn extension_finds_by_name() {
        let event = event("{}");
        assert_eq!(event.extension("tenant"), Some("acme"));
        assert_eq!(event.extension("missing"), None);
    }
}
