//! Messages received from queues.

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::event::find;

/// A message received from a queue under a peek-lock: the host completes,
/// abandons or dead-letters it according to the handler's outcome.
///
/// ```no_run
/// use sluice_sdk::Message;
///
/// #[sluice_sdk::message_handler]
/// fn on_message(message: Message) {
///     sluice_sdk::log::info(format!(
///         "message {} (#{}, attempt {})",
///         message.message_id, message.sequence_number, message.delivery_count
///     ));
/// }
/// # fn main() {}
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The message body, as sent.
    pub body: Vec<u8>,
    /// The sender's id (duplicate detection key); generated when absent.
    pub message_id: String,
    /// Position in its queue; strictly increasing per entity.
    pub sequence_number: u64,
    /// How many times this message has been delivered, this time included.
    pub delivery_count: u32,
    /// When the queue accepted it, RFC 3339.
    pub enqueued_time: String,
    /// Correlates the steps of one business transaction.
    pub correlation_id: Option<String>,
    /// Media type of `body`.
    pub content_type: Option<String>,
    /// Application label (Service Bus `Label`/`Subject`).
    pub subject: Option<String>,
    /// Application-defined properties.
    pub user_properties: Vec<(String, String)>,
}

impl Message {
    /// Deserializes the JSON body into `T`.
    ///
    /// The body cannot change between deliveries, so a body that does not
    /// parse as `T` is a dead-letter error (reason `InvalidBody`, the serde
    /// message as description) rather than a retry.
    ///
    /// ```no_run
    /// use serde::Deserialize;
    /// use sluice_sdk::{Message, Result};
    ///
    /// #[derive(Deserialize)]
    /// struct Refund { order_id: String, amount_cents: u64 }
    ///
    /// #[sluice_sdk::message_handler]
    /// fn on_refund(message: Message) -> Result<()> {
    ///     let refund: Refund = message.json()?;
    ///     sluice_sdk::log::info(format!("refund {} for {}", refund.amount_cents, refund.order_id));
    ///     Ok(())
    /// }
    /// # fn main() {}
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|error| {
            Error::dead_letter(
                "InvalidBody",
                format!(
                    "body of message `{}` is not a valid `{}`: {error}",
                    self.message_id,
                    std::any::type_name::<T>()
                ),
            )
        })
    }

    /// The body as UTF-8 text.
    ///
    /// A body that is not UTF-8 is a dead-letter error (reason `InvalidBody`).
    ///
    /// ```no_run
    /// use sluice_sdk::{Message, Result};
    ///
    /// #[sluice_sdk::message_handler]
    /// fn on_message(message: Message) -> Result<()> {
    ///     let text = message.text()?;
    ///     sluice_sdk::log::info(format!("got {} characters", text.chars().count()));
    ///     Ok(())
    /// }
    /// # fn main() {}
    /// ```
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.body).map_err(|error| {
            Error::dead_letter(
                "InvalidBody",
                format!(
                    "body of message `{}` is not UTF-8 text: {error}",
                    self.message_id
                ),
            )
        })
    }

    /// The value of the user property `name`, if present.
    ///
    /// ```no_run
    /// use sluice_sdk::Message;
    ///
    /// #[sluice_sdk::message_handler]
    /// fn on_message(message: Message) {
    ///     if let Some(customer) = message.property("customer") {
    ///         sluice_sdk::log::info(format!("message for {customer}"));
    ///     }
    /// }
    /// # fn main() {}
    /// ```
    pub fn property(&self, name: &str) -> Option<&str> {
        find(&self.user_properties, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Outcome;

    fn message(body: &[u8]) -> Message {
        Message {
            body: body.to_vec(),
            message_id: "m-1".to_string(),
            sequence_number: 7,
            delivery_count: 1,
            enqueued_time: "2026-01-01T00:00:00Z".to_string(),
            correlation_id: None,
            content_type: None,
            subject: None,
            user_properties: vec![("customer".to_string(), "ada".to_string())],
        }
    }

    #[test]
    fn json_parses_the_body() {
        let value: serde_json::Value = message(br#"{"a":1}"#).json().expect("valid json");
        assert_eq!(value["a"], 1);
    }

    #[test]
    fn text_that_is_not_utf8_is_dead_lettered() {
        let outcome = message(&[0xff, 0xfe]).text().err().map(Error::into_outcome);
        assert!(
            matches!(&outcome, Some(Outcome::DeadLetter { reason, .. }) if reason == "InvalidBody"),
            "{outcome:?}"
        );
    }

    #[test]
    fn property_finds_by_name() {
        let message = message(b"");
        assert_eq!(message.property("customer"), Some("ada"));
        assert_eq!(message.property("missing"), None);
    }
}
