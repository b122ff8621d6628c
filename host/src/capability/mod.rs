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
use crate::trace::{Step, StepKind, StepStamp, TraceParent, Traces};

/// The host services capabilities reach; cloned into every invocation.
#[derive(Clone)]
pub struct HostServices {
    /// Queues (send, receive, settle).
    pub broker: Arc<Broker>,
    /// Topics (publish).
    pub events: Arc<Events>,
    /// Functions' key-value state.
    pub kv: Arc<KeyValue>,
    /// Recorded workflow steps.
    pub traces: Arc<Traces>,
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
    /// The invocation's span: what it sends or publishes continues it.
    pub trace: TraceParent,
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
    trace: TraceParent,
    broker: Arc<Broker>,
    events: Arc<Events>,
    kv: Arc<KeyValue>,
    traces: Arc<Traces>,
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
            trace: invocation.trace,
            broker: services.broker,
            events: services.events,
            kv: services.kv,
            traces: services.traces,
        }
    }

    /// Records a send or publish of this invocation as a step of its
    /// transaction, at `stamp` (taken before the operation, so that what it
    /// caused sorts after it).
    fn record(&self, kind: StepKind, entity: &str, stamp: StepStamp, result: Result<(), String>) {
        let Some(correlation_id) = &self.correlation_id else {
            return;
        };
        let (outcome, reason) = match result {
            Ok(()) => (
                match kind {
                    StepKind::Publish => "published",
                    _ => "sent",
                },
                None,
            ),
            Err(reason) => ("error", Some(reason)),
        };
        self.traces.record_stamped(
            correlation_id,
            &Step {
                correlation_id: String::new(),
                at: crate::clock::to_rfc3339(stamp.at_ms),
                kind,
                function: Some(self.function.clone()),
                entity: entity.to_string(),
                outcome: outcome.to_string(),
                reason,
                duration_ms: 0.0,
                delivery_count: None,
                trace_id: Some(self.trace.trace_id.clone()),
            },
            stamp,
        );
    }

    /// The function being invoked.
    pub fn function(&self) -> &str {
        &self.function
    }

    /// The hosts the function may call over outbound HTTP.
    pub fn allowed_hosts(&self) -> &[String] {
        &self.settings.allowed_hosts
    }
}

impl types::Host for HostContext {}
