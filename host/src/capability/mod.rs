//! What a guest may ask of the host: one file per WIT interface.
//!
//! [`HostContext`] is the per-invocation state the capabilities see: which
//! function is running, the correlation id of the message or event it
//! handles (inherited by everything it publishes or sends), and handles to
//! the broker and topics. Errors a guest can act on are returned as the WIT
//! `capability-error`; nothing here traps the guest.

mod log;
mod publisher;
mod receiver;
mod sender;

use std::sync::Arc;

use crate::broker::Broker;
use crate::events::Events;
use crate::runtime::bindings::types;

/// Per-invocation state behind the guest's imports.
pub struct HostContext {
    function: String,
    invocation_id: String,
    correlation_id: Option<String>,
    /// Log bytes this invocation may still write.
    log_budget: usize,
    /// Whether records were dropped for want of budget (reported once).
    log_dropped: bool,
    broker: Arc<Broker>,
    events: Arc<Events>,
}

impl HostContext {
    /// Context for one invocation of `function`.
    pub fn new(
        function: &str,
        invocation_id: String,
        correlation_id: Option<String>,
        log_budget: usize,
        broker: Arc<Broker>,
        events: Arc<Events>,
    ) -> HostContext {
        HostContext {
            function: function.to_string(),
            invocation_id,
            correlation_id,
            log_budget,
            log_dropped: false,
            broker,
            events,
        }
    }

    /// The function being invoked.
    pub fn function(&self) -> &str {
        &self.function
    }
}

impl types::Host for HostContext {}
