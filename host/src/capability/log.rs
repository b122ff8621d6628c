//! `sluice:handler/log`: guest log records become host tracing events,
//! tagged with the function and invocation. One record is capped, and so
//! is an invocation's whole volume (the function's `maxLogKib`): past it,
//! records are dropped and one warning says so, so a log flood costs the
//! host a bounded amount.

use super::HostContext;
use crate::runtime::bindings::log::{Host, Level};

/// Longest message kept; guests cannot flood the host's log with one record.
const MAX_MESSAGE_BYTES: usize = 8 * 1024;

impl Host for HostContext {
    async fn write(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        let mut message = message;
        if message.len() > MAX_MESSAGE_BYTES {
            let mut end = MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str("… (truncated)");
        }
        let fields = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let function = self.function.as_str();
        let invocation = self.invocation_id.as_str();
        let cost = message.len() + fields.len();
        if cost > self.log_budget {
            if !self.log_dropped {
                self.log_dropped = true;
                tracing::warn!(target: "sluice::guest", function, invocation, "log limit reached: further records of this invocation are dropped (raise maxLogKib to keep more)");
            }
            return;
        }
        self.log_budget -= cost;
        match level {
            Level::Trace => {
                tracing::trace!(target: "sluice::guest", function, invocation, fields, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "sluice::guest", function, invocation, fields, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "sluice::guest", function, invocation, fields, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "sluice::guest", function, invocation, fields, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "sluice::guest", function, invocation, fields, "{message}")
            }
        }
    }
}
