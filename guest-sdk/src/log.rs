//! Structured logging into the host's logs.
//!
//! Every record is tagged by the host with the function and invocation it
//! comes from. Logging never fails: records over the host's size limit are
//! truncated.
//!
//! ```no_run
//! use sluice_sdk::log;
//!
//! log::info("order accepted");
//! log::write(log::Level::Warn, "stock low", &[("sku", &"BOOK-1"), ("left", &2)]);
//! ```

use std::fmt::Display;

use crate::__private::bindings::sluice::handler::log as wit;

/// How important a log record is.
///
/// ```no_run
/// use sluice_sdk::log::{self, Level};
///
/// log::write(Level::Debug, "cache miss", &[]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing, usually filtered out.
    Trace,
    /// Details that help debugging.
    Debug,
    /// Normal operation worth recording.
    Info,
    /// Something unexpected that the handler coped with.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    // Not a `From` impl: that would show the hidden binding type in the docs.
    fn to_wit(self) -> wit::Level {
        match self {
            Level::Trace => wit::Level::Trace,
            Level::Debug => wit::Level::Debug,
            Level::Info => wit::Level::Info,
            Level::Warn => wit::Level::Warn,
            Level::Error => wit::Level::Error,
        }
    }
}

/// Writes one log record with structured `fields` (key, value) pairs.
///
/// Values are anything that implements [`Display`]; pass them by reference.
///
/// ```no_run
/// use sluice_sdk::log::{self, Level};
///
/// let order_id = String::from("A-1");
/// let total_cents: u64 = 4200;
/// log::write(
///     Level::Info,
///     "order validated",
///     &[("order_id", &order_id), ("total_cents", &total_cents)],
/// );
/// ```
pub fn write(level: Level, message: impl AsRef<str>, fields: &[(&str, &dyn Display)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(key, value)| ((*key).to_string(), value.to_string()))
        .collect();
    wit::write(level.to_wit(), message.as_ref(), &fields);
}

/// Writes a [`Level::Trace`] record.
///
/// ```no_run
/// sluice_sdk::log::trace("entering price lookup");
/// ```
pub fn trace(message: impl AsRef<str>) {
    write(Level::Trace, message, &[]);
}

/// Writes a [`Level::Debug`] record.
///
/// ```no_run
/// sluice_sdk::log::debug(format!("{} lines", 3));
/// ```
pub fn debug(message: impl AsRef<str>) {
    write(Level::Debug, message, &[]);
}

/// Writes a [`Level::Info`] record.
///
/// ```no_run
/// sluice_sdk::log::info("order accepted");
/// ```
pub fn info(message: impl AsRef<str>) {
    write(Level::Info, message, &[]);
}

/// Writes a [`Level::Warn`] record.
///
/// ```no_run
/// sluice_sdk::log::warn("price missing, using list price");
/// ```
pub fn warn(message: impl AsRef<str>) {
    write(Level::Warn, message, &[]);
}

/// Writes a [`Level::Error`] record.
///
/// ```no_run
/// sluice_sdk::log::error("payment provider rejected the card");
/// ```
pub fn error(message: impl AsRef<str>) {
    write(Level::Error, message, &[]);
}
