//! Publishing events to the host's topics.
//!
//! ```no_run
//! use sluice_sdk::publish::{publish, OutgoingEvent};
//!
//! # fn run() -> sluice_sdk::Result<()> {
//! let event = OutgoingEvent::new("orders.fulfilled")
//!     .with_subject("orders/A-1")
//!     .with_json(&serde_json::json!({ "id": "A-1" }))?;
//! publish("fulfilled", &event)?;
//! # Ok(())
//! # }
//! ```

use serde::Serialize;

use crate::__private::bindings::sluice::handler::{publisher, types};
use crate::__private::capability_error;
use crate::error::Result;

/// An event to publish to a topic.
///
/// Its data is JSON, `null` until set with [`OutgoingEvent::with_json`]. The
/// host generates the id unless [`OutgoingEvent::with_id`] sets one.
///
/// ```no_run
/// use sluice_sdk::publish::OutgoingEvent;
///
/// # fn run() -> sluice_sdk::Result<()> {
/// let event = OutgoingEvent::new("orders.cancelled")
///     .with_id("cancel-A-1")
///     .with_subject("orders/A-1")
///     .with_json(&serde_json::json!({ "id": "A-1", "reason": "customer request" }))?;
/// # let _ = event;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEvent {
    id: Option<String>,
    event_type: String,
    subject: Option<String>,
    data: Vec<u8>,
}

impl OutgoingEvent {
    /// An event of type `event_type` (e.g. `orders.fulfilled`) with `null` data.
    ///
    /// ```no_run
    /// let event = sluice_sdk::publish::OutgoingEvent::new("inventory.checked");
    /// # let _ = event;
    /// ```
    pub fn new(event_type: impl Into<String>) -> Self {
        Self {
            id: None,
            event_type: event_type.into(),
            subject: None,
            data: b"null".to_vec(),
        }
    }

    /// Sets the event id (unique per publisher); the host generates one otherwise.
    ///
    /// ```no_run
    /// use sluice_sdk::publish::OutgoingEvent;
    ///
    /// let event = OutgoingEvent::new("orders.fulfilled").with_id("fulfilled-A-1");
    /// # let _ = event;
    /// ```
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets what the event is about, e.g. `orders/A-1`.
    ///
    /// ```no_run
    /// use sluice_sdk::publish::OutgoingEvent;
    ///
    /// let event = OutgoingEvent::new("orders.fulfilled").with_subject("orders/A-1");
    /// # let _ = event;
    /// ```
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the data to `value` serialized as JSON.
    ///
    /// Fails only when `value` cannot be serialized (e.g. a map with
    /// non-string keys).
    ///
    /// ```no_run
    /// use serde::Serialize;
    /// use sluice_sdk::publish::OutgoingEvent;
    ///
    /// #[derive(Serialize)]
    /// struct Fulfilled { id: String, total_cents: u64 }
    ///
    /// # fn run() -> sluice_sdk::Result<()> {
    /// let data = Fulfilled { id: "A-1".into(), total_cents: 4200 };
    /// let event = OutgoingEvent::new("orders.fulfilled").with_json(&data)?;
    /// # let _ = event;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self> {
        self.data = serde_json::to_vec(value)?;
        Ok(self)
    }
}

/// Publishes `event` to `topic`; returns once the host has stored it durably.
///
/// Errors (all of them abandon the message if returned from the handler):
/// the topic does not exist (``topic `x` not found``), the event is malformed
/// (empty type, data too large), or the host cannot store it right now.
///
/// ```no_run
/// use sluice_sdk::{Message, Result, publish::{publish, OutgoingEvent}};
///
/// #[sluice_sdk::message_handler]
/// fn on_payment(message: Message) -> Result<()> {
///     let event = OutgoingEvent::new("payments.received")
///         .with_subject(format!("payments/{}", message.message_id));
///     publish("payments", &event)?;
///     Ok(())
/// }
/// # fn main() {}
/// ```
pub fn publish(topic: &str, event: &OutgoingEvent) -> Result<()> {
    let wit_event = types::OutgoingEvent {
        // The WIT contract spells "let the host pick" as an empty id.
        id: event.id.clone().unwrap_or_default(),
        event_type: event.event_type.clone(),
        subject: event.subject.clone(),
        data: event.data.clone(),
    };
    publisher::publish(topic, &wit_event)
        .map_err(|error| capability_error("topic", topic, "event", error))
}
