//! Write [Sluice](https://example.invalid/sluice) handlers in Rust: a typed
//! [`Event`] or [`Message`] comes in, an [`Outcome`] goes out.
//!
//! A handler is a plain function marked with [`event_handler`] (for events
//! delivered by a topic subscription), [`message_handler`] (for messages
//! received from a queue), [`message_batch_handler`] (for many queue
//! messages per invocation) or [`http_handler`] (for requests to the
//! function's route on the host's front door; see [`http`]). The crate is built as a `cdylib` for
//! `wasm32-unknown-unknown` (or `wasm32-wasip2`) and turned into a WebAssembly
//! component by `sluice build`.
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use sluice_sdk::{Event, Error, send::{self, OutgoingMessage}};
//!
//! #[derive(Deserialize, Serialize)]
//! struct Order { id: String, total_cents: u64 }
//!
//! #[sluice_sdk::event_handler]
//! fn validate(event: Event) -> Result<(), Error> {
//!     let order: Order = event.data()?;
//!     if order.total_cents == 0 {
//!         return Err(Error::dead_letter("InvalidOrder", "total must be above zero"));
//!     }
//!     send::send("fulfil", &OutgoingMessage::json(&order)?)?;
//!     Ok(())
//! }
//! # fn main() {}
//! ```
//!
//! # A short tour
//!
//! - **Inputs**: [`Event`] (id, source, type, subject, JSON data, extensions)
//!   and [`Message`] (body, ids, delivery count, user properties). Read the
//!   payload with [`Event::data`], [`Message::json`] or [`Message::text`].
//! - **Outcomes**: return anything that implements [`IntoOutcome`]: `()`
//!   (complete), an [`Outcome`], or a [`Result`] of those.
//!   `Err(error)` abandons the message so the host delivers it again, unless the
//!   error was made with [`Error::dead_letter`], which moves it to the
//!   dead-letter queue at once.
//! - **Capabilities**: [`log`] writes structured records into the host's logs,
//!   [`publish`] publishes events to topics, [`send`] sends messages to queues,
//!   [`receive`] pulls a batch from a queue and settles it (the push model),
//!   [`kv`] keeps the function's durable state, [`config`] reads its
//!   configuration and secrets.
//!   Every capability error is an [`Error`], so `?` just works.
//! - **Panics** are traps: the invocation fails as a whole (the SDK logs the
//!   panic message first). Prefer returning an `Err`, which says what to do.
//!
//! One crate holds one handler: a component exports exactly one entry point
//! per trigger kind, and the macro fills in the other one with a dead-letter
//! outcome (reason `UnsupportedTrigger`).

pub mod config;
mod error;
mod event;
pub mod http;
pub mod kv;
pub mod log;
mod message;
mod outcome;
pub mod publish;
pub mod receive;
pub mod send;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

// Lets the generated bindings (and the macro output) name this crate as
// `::sluice_sdk` from inside the crate too.
extern crate self as sluice_sdk;

pub use error::{Error, Result};
pub use event::Event;
pub use message::Message;
pub use outcome::{IntoBatchOutcome, IntoOutcome, Outcome};
pub use sluice_sdk_macro::{event_handler, http_handler, message_batch_handler, message_handler};

/// The version of this SDK, as released.
///
/// The WIT contract a component was built against is `sluice:handler@0.1.0`;
/// this constant identifies the Rust SDK on top of it (useful in log lines).
///
/// ```no_run
/// sluice_sdk::log::write(
///     sluice_sdk::log::Level::Debug,
///     "handler started",
///     &[("sdk", &sluice_sdk::SDK_VERSION)],
/// );
/// ```
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
