//! What a guest may ask of the host: one file per WIT interface.
//!
//! [`HostContext`] is the per-invocation state the capabilities see: which
//! function is running ([`Invocation`]: its name, invocation id, the
//! correlation id of the message or event it handles, inherited by
//! everything it publishes or sends, its log budget and settings) and
//! handles to the host's services ([`HostServices`]). Errors a guest can
//! act on are returned as the WIT `capability-error`; nothing here traps
//! the guest.

mod config;
mod keyvalue;
mod log;
mod publisher;
mod receiver;
mod sender;

use std::sync::Arc;

use crate::broker::Broker;
use crate::events::Events;
use crate::functions::FunctionSettings;
use crate::keyvalue::KeyValue;
use crate::runtime::bindings::types;

/// The host services capabilities reach; cloned into every invocation.
#[derive(Clone)]
pub struct HostServices {
    /// Queues (send, receive, settle).
    pub broker: Arc<Broker>,
    /// Topics (publish).
    pub events: Arc<Events>,
    /// Functions' key-value state.
    pub kv: Arc<KeyValue>,
}

/// Who is being invoked, and with what.
pub struct Invocation {
    /// The function.
    pub function: String,
    /// This invocation's id (in every log record).
    pub invocation_id: String,
    /// Inherited by what the handler sends or publishes.
    pub correlation_id: Option<String>,
    /// Log bytes the invocation may write.
    pub log_budget: usize,
    /// The function's config and secrets, as of the invocation's start.
    pub settings: Arc<FunctionSettings>,
}

/// Per-invocation state behind the guest's imports.
pub struct HostContext {
    function: String,
    invocation_id: String,
    correlation_id: Option<String>,
    /// Log bytes this invocation may still write.
    log_budget: usize,
    /// Whether records were dropped for want of budget (reported once).
    log_dropped: bool,
    settings: Arc<FunctionSettings>,
    broker: Arc<Broker>,
    events: Arc<Events>,
    kv: Arc<KeyValue>,
}

impl HostContext {
    /// Context for one invocation.
    pub fn new(invocation: Invocation, services: HostServices) -> HostContext {
        HostContext {
            function: invocation.function,
            invocation_id: invocation.invocation_id,
            correlation_id: invocation.correlation_id,
            log_budget: invocation.log_budget,
            log_dropped: false,
            settings: invocation.settings,
            broker: services.broker,
            events: services.events,
            kv: services.kv,
        }
    }

    /// The function being invoked.
    pub fn function(&self) -> &str {
        &self.function
    }
}

impl types::Host for HostContext {}
