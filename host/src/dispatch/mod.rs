//! Triggers: drain queues into handlers and settle by their outcome.
//!
//! Read [`Dispatcher`] first. It runs one worker per trigger: a queue
//! trigger of a function, or an event subscription (whose destination is a
//! function or a queue). [`Dispatcher::reconcile`] compares the workers
//! running with the functions and subscriptions defined and starts or
//! stops workers to match; it runs after every change.
//!
//! A queue trigger's worker takes as many concurrency permits of its
//! function as are free (up to [`PREFETCH`] messages' worth), receives
//! that many messages under peek-lock in one call (one commit: Service
//! Bus's prefetch), and invokes the handler in a task per permit while
//! renewing the locks: one message per invocation, or up to the function's
//! `maxMessageBatchSize` for a batch handler (Azure Functions' `cardinality:
//! many`), which returns one outcome per message. The outcome settles the
//! message: complete → complete; abandon, error, trap or timeout → abandon
//! (a failed batch invocation abandons all of its messages); dead-letter →
//! dead-letter. Completions
//! go to the worker's settler, which completes every one waiting in one
//! batch (one commit for many settles). Event subscriptions follow Event
//! Grid's delivery rules instead ([`events`]).

mod events;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::broker::{
    Abandoned, Broker, EntityPath, LockToken, MAX_DELIVERY_COUNT_EXCEEDED, ReceiveMode,
    ReceivedMessage, SequenceNumber, SessionLockInfo,
};
use crate::capability::{HostContext, HostServices, Invocation};
use crate::clock;
use crate::events::{Destination, EventSchema, Events, ProvisioningState, Subscription};
use crate::functions::{Functions, Trigger};
use crate::runtime::{ComponentKind, Input, Outcome};
use crate::trace::{Step, StepKind, TraceParent};

/// How long one receive call waits before a worker looks around again.
const RECEIVE_WAIT: Duration = Duration::from_secs(5);
/// How long a session with no new messages is kept before it is released.
const SESSION_IDLE: Duration = Duration::from_secs(1);
/// Pause after a failed receive (queue deleted, store trouble).
const ERROR_PAUSE: Duration = Duration::from_secs(1);
/// Most messages one receive takes under peek-lock (each with a permit).
const PREFETCH: usize = 100;
/// Most completions one settle batch carries.
const SETTLE_BATCH: usize = 256;
pub use events::{MAX_DELIVERY_ATTEMPTS_EXCEEDED, NON_RETRIABLE_RESPONSE, TIME_TO_LIVE_EXCEEDED};

/// Knobs of delivery.
#[derive(Clone, Copy, Debug)]
pub struct DispatchSettings {
    /// Multiplies Event Grid's retry schedule: 1.0 in production, small in
    /// tests so hours become milliseconds.
    pub retry_time_scale: f64,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        DispatchSettings {
            retry_time_scale: 1.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum WorkerKey {
    QueueTrigger {
        function: String,
        queue: String,
    },
    Subscription {
        topic: String,
        name: String,
        destination: Destination,
        retry: (u32, u32),
        schema: EventSchema,
    },
}

impl WorkerKey {
    fn queue(&self) -> String {
        match self {
            WorkerKey::QueueTrigger { queue, .. } => queue.clone(),
            WorkerKey::Subscription { topic, name, .. } => {
                crate::events::delivery_queue(topic, name)
            }
        }
    }

    fn function(&self) -> Option<&str> {
        match self {
            WorkerKey::QueueTrigger { function, .. } => Some(function),
            WorkerKey::Subscription {
                destination: Destination::Function(f),
                ..
            } => Some(f),
            WorkerKey::Subscription { .. } => None,
        }
    }
}

/// Runs the triggers.
pub struct Dispatcher {
    broker: Arc<Broker>,
    events: Arc<Events>,
    functions: Arc<Functions>,
    /// What invocations' capabilities reach.
    services: HostServices,
    settings: DispatchSettings,
    workers: Mutex<HashMap<WorkerKey, JoinHandle<()>>>,
}

/// What a delivery attempt came to, before settlement.
type Attempt = Result<Outcome, String>;

/// Hands completed messages to a worker's settler.
type Settler = tokio::sync::mpsc::UnboundedSender<(SequenceNumber, LockToken)>;

impl Dispatcher {
    /// A dispatcher with no workers yet; call [`Dispatcher::reconcile`].
    pub fn new(
        services: HostServices,
        functions: Arc<Functions>,
        settings: DispatchSettings,
    ) -> Dispatcher {
        Dispatcher {
            broker: services.broker.clone(),
            events: services.events.clone(),
            services,
            functions,
            settings,
            workers: Mutex::new(HashMap::new()),
        }
    }

    /// Starts and stops workers to match the functions and subscriptions defined.
    pub fn reconcile(self: &Arc<Self>) {
        let mut wanted: Vec<WorkerKey> = Vec::new();
        for record in self.functions.list() {
            if let Trigger::Queue(queue) = record.trigger {
                wanted.push(WorkerKey::QueueTrigger {
                    function: record.name,
                    queue,
                });
            }
        }
        for subscription in self.events.all_subscriptions() {
            if subscription.provisioning_state != ProvisioningState::Succeeded {
                continue;
            }
            let schema = subscription.delivery_schema();
            let Subscription {
                topic, name, spec, ..
            } = subscription;
            let retry = (
                spec.retry_policy.max_delivery_attempts,
                spec.retry_policy.event_time_to_live_in_minutes,
            );
            wanted.push(WorkerKey::Subscription {
                topic,
                name,
                destination: spec.destination,
                retry,
                schema,
            });
        }
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        workers.retain(|key, handle| {
            let keep = wanted.contains(key);
            if !keep {
                // Invocations already running are separate tasks and finish.
                handle.abort();
                tracing::debug!(?key, "trigger stopped");
            }
            keep
        });
        for key in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = workers.entry(key) {
                let key = slot.key().clone();
                tracing::debug!(?key, "trigger started");
                slot.insert(tokio::spawn(self.clone().run_worker(key)));
            }
        }
    }

    /// Stops every worker.
    pub fn shutdown(&self) {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        for (_, handle) in workers.drain() {
            handle.abort();
        }
    }

    async fn run_worker(self: Arc<Self>, key: WorkerKey) {
        if matches!(key, WorkerKey::Subscription { .. }) {
            return self.run_subscription_worker(key).await;
        }
        let path = EntityPath::active(&key.queue());
        let sessions = self
            .broker
            .queue_info(&path.queue)
            .is_ok_and(|q| q.properties.requires_session);
        if sessions {
            return self.run_session_worker(key).await;
        }
        let (settle, settles) = tokio::sync::mpsc::unbounded_channel();
        // Ends when the worker and every delivery it started have dropped
        // their senders, so completions of running handlers still land.
        tokio::spawn(self.clone().run_settler(path.clone(), settles));
        loop {
            let per_invocation = self.messages_per_invocation(&key);
            let mut permits = self.permits(&key, (PREFETCH / per_invocation).max(1)).await;
            // First take what is ready without waiting, with every free
            // permit; only an empty queue is waited on, with one permit, so
            // an idle trigger does not sit on its function's whole capacity.
            let mut received = self
                .broker
                .receive_batch(
                    &path,
                    ReceiveMode::PeekLock,
                    permits.len() * per_invocation,
                    Duration::ZERO,
                )
                .await;
            if matches!(&received, Ok(m) if m.is_empty()) {
                permits.truncate(1);
                received = self
                    .broker
                    .receive_batch(&path, ReceiveMode::PeekLock, per_invocation, RECEIVE_WAIT)
                    .await;
            }
            match received {
                Ok(messages) => {
                    // Permits beyond the messages received are dropped (returned).
                    let mut messages = messages.into_iter().peekable();
                    for permit in permits {
                        if messages.peek().is_none() {
                            break;
                        }
                        let batch: Vec<ReceivedMessage> =
                            messages.by_ref().take(per_invocation).collect();
                        let this = self.clone();
                        let key = key.clone();
                        let settle = settle.clone();
                        tokio::spawn(async move {
                            this.deliver(&key, batch, Some(&settle)).await;
                            drop(permit);
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(queue = %path, error = %e, "trigger cannot receive");
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
        }
    }

    /// Completes the messages handlers completed, all that wait in one batch.
    async fn run_settler(
        self: Arc<Self>,
        path: EntityPath,
        mut settles: tokio::sync::mpsc::UnboundedReceiver<(SequenceNumber, LockToken)>,
    ) {
        let mut batch = Vec::with_capacity(SETTLE_BATCH);
        while settles.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
            match self.broker.complete_batch(&path, &batch).await {
                Ok(outcomes) => {
                    for (&(seq, _), outcome) in batch.iter().zip(outcomes) {
                        if let Err(e) = outcome {
                            tracing::warn!(entity = %path, seq, error = %e, "settlement failed; the message will be delivered again");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(entity = %path, count = batch.len(), error = %e, "settlement failed; the messages will be delivered again");
                }
            }
            batch.clear();
        }
    }

    /// How many messages one invocation of the key's function takes: its
    /// `maxMessageBatchSize` for a batch handler, else one.
    fn messages_per_invocation(&self, key: &WorkerKey) -> usize {
        match key.function().and_then(|f| self.functions.get(f)) {
            Some(function) if function.handler.kind() == ComponentKind::BatchHandler => {
                usize::try_from(function.record.limits.max_message_batch_size).unwrap_or(1)
            }
            _ => 1,
        }
        .max(1)
    }

    /// Up to `max` concurrency permits of the key's function, one per
    /// invocation: waits for the first, takes the others that are free.
    /// One pseudo-permit (`None`) when there is no function to limit.
    async fn permits(
        &self,
        key: &WorkerKey,
        max: usize,
    ) -> Vec<Option<tokio::sync::OwnedSemaphorePermit>> {
        let Some(first) = self.permit(key).await else {
            return vec![None];
        };
        let mut permits = vec![Some(first)];
        if let Some(function) = key.function().and_then(|f| self.functions.get(f)) {
            while permits.len() < max {
                match function.concurrency.clone().try_acquire_owned() {
                    Ok(permit) => permits.push(Some(permit)),
                    Err(_) => break,
                }
            }
        }
        permits
    }

    /// A concurrency permit of the key's function; `None` when there is no
    /// function (queue or webhook destinations) or it is not deployed (its
    /// deliveries then fail and follow the retry policy).
    async fn permit(&self, key: &WorkerKey) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let function = self.functions.get(key.function()?)?;
        function.concurrency.clone().acquire_owned().await.ok()
    }

    /// A queue trigger on a session-enabled queue: each accepted session is
    /// drained in order by one invocation at a time, sessions in parallel
    /// up to the function's concurrency.
    async fn run_session_worker(self: Arc<Self>, key: WorkerKey) {
        let queue = key.queue();
        loop {
            let Some(function) = key.function().and_then(|name| self.functions.get(name)) else {
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            };
            let Ok(permit) = function.concurrency.clone().acquire_owned().await else {
                continue;
            };
            match self.broker.accept_session(&queue, None, RECEIVE_WAIT).await {
                Ok(Some(session)) => {
                    let this = self.clone();
                    let key = key.clone();
                    tokio::spawn(async move {
                        this.drain_session(&key, session).await;
                        drop(permit);
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(queue, error = %e, "session trigger cannot accept a session");
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
        }
    }

    async fn drain_session(&self, key: &WorkerKey, session: SessionLockInfo) {
        let queue = key.queue();
        let (id, token) = (session.session_id.as_str(), session.lock_token);
        loop {
            // Each message renews the session lock, so a long session keeps it.
            if let Err(e) = self.broker.renew_session_lock(&queue, id, token) {
                tracing::warn!(queue, session = id, error = %e, "session lock lost");
                return;
            }
            match self
                .broker
                .receive_from_session(&queue, id, token, ReceiveMode::PeekLock, 1, SESSION_IDLE)
                .await
            {
                // Settled in place: the next receive of the session must
                // not see this message still locked.
                Ok(messages) if !messages.is_empty() => self.deliver(key, messages, None).await,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(queue, session = id, error = %e, "session receive failed");
                    return;
                }
            }
        }
        if let Err(e) = self.broker.release_session(&queue, id, token) {
            tracing::debug!(queue, session = id, error = %e, "session already released");
        }
    }

    /// Invokes the handler for messages (one, or a batch for a batch
    /// handler) and settles each by its outcome; a completion goes to
    /// `settler` when there is one, else it is settled here.
    async fn deliver(
        &self,
        key: &WorkerKey,
        messages: Vec<ReceivedMessage>,
        settler: Option<&Settler>,
    ) {
        let path = EntityPath::active(&key.queue());
        let Some(function) = key.function() else {
            return;
        };
        let attempts = self
            .invoke_with_renewal(&path, &messages, function, Input::Messages(&messages))
            .await;
        for (message, attempt) in messages.iter().zip(attempts) {
            if let (Ok(Outcome::Complete), Some(settler), Some(lock)) =
                (&attempt, settler, message.lock)
                && settler.send((message.sequence_number, lock.token)).is_ok()
            {
                continue;
            }
            self.settle(&path, message, attempt).await;
        }
    }

    /// Invokes a function while keeping the messages' locks alive: one
    /// attempt per message, in order. `input` is made of `messages` (or,
    /// for an event subscription, of the one message carrying the event).
    async fn invoke_with_renewal(
        &self,
        path: &EntityPath,
        messages: &[ReceivedMessage],
        function: &str,
        input: Input<'_>,
    ) -> Vec<Attempt> {
        let Some(deployed) = self.functions.get(function) else {
            let missing = format!("function `{function}` is not deployed");
            return messages.iter().map(|_| Err(missing.clone())).collect();
        };
        let Some(first) = messages.first() else {
            return Vec::new();
        };
        // One message: the invocation is a span of the trace it carries (a
        // new one when it carries none), its step joins that trace, and what
        // it sends inherits its correlation id. A batch belongs to no single
        // transaction: its sends start their own trace, and each message's
        // step joins the trace that message carries.
        let (correlation_id, trace, step_trace_ids) = match messages {
            [message] => {
                let trace = TraceParent::from_properties(&message.record.user_properties)
                    .unwrap_or_else(TraceParent::new_root)
                    .child();
                let trace_id = trace.trace_id.clone();
                (Some(correlation_of(message)), trace, vec![Some(trace_id)])
            }
            _ => {
                let carried = messages
                    .iter()
                    .map(|m| {
                        TraceParent::from_properties(&m.record.user_properties).map(|t| t.trace_id)
                    })
                    .collect();
                (None, TraceParent::new_root(), carried)
            }
        };
        let invocation_id = uuid::Uuid::new_v4().simple().to_string();
        // Debug, not info: the fmt layer renders an enabled span's fields
        // as it opens, per invocation (~4% of one-message throughput).
        // Warnings below name the invocation themselves.
        let span = tracing::debug_span!(
            "invoke",
            function,
            version = deployed.record.version,
            invocation = %invocation_id,
            entity = %path,
            seq = first.sequence_number,
            messages = messages.len(),
            delivery_count = first.record.delivery_count,
        );
        let host = HostContext::new(
            Invocation {
                function: function.to_string(),
                invocation_id,
                correlation_id,
                log_budget: deployed.record.limits.log_budget_bytes(),
                settings: self.functions.settings(function),
                trace,
            },
            self.services.clone(),
        );
        let started = Instant::now();
        let stamps: Vec<_> = messages
            .iter()
            .map(|_| self.services.traces.stamp())
            .collect();
        let invocation = self
            .functions
            .runtime()
            .invoke(
                &deployed.handler,
                deployed.record.limits.invocation(),
                host,
                input,
            )
            .instrument(span.clone());
        let renewal = self.renew_locks_forever(path, messages);
        let result = tokio::select! {
            result = invocation => result,
            () = renewal => unreachable_renewal(),
        };
        let _enter = span.enter();
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let attempts: Vec<Attempt> = match result {
            Ok(outcomes) => {
                // Debug, not info: one line per invocation costs real throughput;
                // the trace steps below keep the record.
                tracing::debug!(?outcomes, elapsed_ms, "handler finished");
                outcomes.into_iter().map(Ok).collect()
            }
            Err(e) => {
                tracing::warn!(
                    function,
                    entity = %path,
                    seq = first.sequence_number,
                    messages = messages.len(),
                    error = %e,
                    elapsed_ms,
                    "handler failed"
                );
                let reason = e.to_string();
                messages.iter().map(|_| Err(reason.clone())).collect()
            }
        };
        let steps = messages
            .iter()
            .zip(&attempts)
            .zip(stamps)
            .zip(step_trace_ids);
        for (((message, attempt), stamp), trace_id) in steps {
            let failed = !matches!(attempt, Ok(Outcome::Complete));
            let correlation_id = correlation_of(message);
            self.services.traces.record_lazily(
                &correlation_id,
                trace_id.as_deref(),
                failed,
                stamp,
                || {
                    let (outcome, reason) = match attempt {
                        Ok(Outcome::Complete) => ("complete", None),
                        Ok(Outcome::Abandon(reason)) => ("abandon", Some(reason.clone())),
                        Ok(Outcome::DeadLetter(info)) => (
                            "dead-letter",
                            Some(format!("{}: {}", info.reason, info.description)),
                        ),
                        Err(reason) => ("error", Some(reason.clone())),
                    };
                    Step {
                        correlation_id: String::new(),
                        at: clock::to_rfc3339(stamp.at_ms),
                        kind: StepKind::Invoke,
                        function: Some(function.to_string()),
                        entity: path.to_string(),
                        outcome: outcome.to_string(),
                        reason,
                        duration_ms: elapsed_ms,
                        delivery_count: Some(message.record.delivery_count),
                        trace_id: trace_id.clone(),
                    }
                },
            );
        }
        attempts
    }

    /// Records that `message` moved to `queue`'s dead-letter queue.
    fn record_dead_letter(
        &self,
        message: &ReceivedMessage,
        queue: &str,
        reason: &str,
        description: &str,
    ) {
        self.record_step(
            message,
            StepKind::DeadLetter,
            queue,
            "dead-lettered",
            Some(format!("{reason}: {description}")),
        );
    }

    /// Records a step (a delivery, a dead-letter) that no function made.
    fn record_step(
        &self,
        message: &ReceivedMessage,
        kind: StepKind,
        entity: &str,
        outcome: &str,
        reason: Option<String>,
    ) {
        self.services.traces.record(
            &correlation_of(message),
            &Step {
                correlation_id: String::new(),
                at: clock::to_rfc3339(clock::now_ms()),
                kind,
                function: None,
                entity: entity.to_string(),
                outcome: outcome.to_string(),
                reason,
                duration_ms: 0.0,
                delivery_count: Some(message.record.delivery_count),
                trace_id: TraceParent::from_properties(&message.record.user_properties)
                    .map(|t| t.trace_id),
            },
        );
    }

    /// Renews the messages' locks at half their remaining time, until
    /// dropped. A lock that cannot be renewed is given up (its message may
    /// be delivered again); the others are kept.
    async fn renew_locks_forever(&self, path: &EntityPath, messages: &[ReceivedMessage]) {
        let mut locks: Vec<_> = messages
            .iter()
            .filter_map(|m| {
                m.lock
                    .map(|lock| (m.sequence_number, lock.token, lock.locked_until_ms))
            })
            .collect();
        while let Some(earliest) = locks.iter().map(|&(_, _, until)| until).min() {
            let half = u64::try_from((earliest - clock::now_ms()) / 2)
                .unwrap_or(0)
                .max(100);
            tokio::time::sleep(Duration::from_millis(half)).await;
            locks.retain_mut(|(seq, token, until)| {
                match self.broker.renew_lock(path, *seq, *token) {
                    Ok(next) => {
                        *until = next;
                        true
                    }
                    Err(e) => {
                        tracing::warn!(entity = %path, seq = *seq, error = %e, "lock renewal failed; the message may be delivered again");
                        false
                    }
                }
            });
        }
        std::future::pending().await
    }

    /// Settles a message by the handler's outcome.
    async fn settle(&self, path: &EntityPath, message: &ReceivedMessage, attempt: Attempt) {
        let seq = message.sequence_number;
        let Some(lock) = message.lock else { return };
        let result = match attempt {
            Ok(Outcome::Complete) => self.broker.complete(path, seq, lock.token).await,
            Ok(Outcome::DeadLetter(info)) => {
                let (reason, description) = (info.reason.clone(), info.description.clone());
                let done = self
                    .broker
                    .dead_letter(path, seq, lock.token, info, &[])
                    .await;
                if done.is_ok() {
                    self.record_dead_letter(message, &path.queue, &reason, &description);
                }
                done
            }
            Ok(Outcome::Abandon(reason)) | Err(reason) => {
                let abandoned = self
                    .broker
                    .abandon(path, seq, lock.token, Some(&reason), Duration::ZERO, &[])
                    .await;
                if let Ok(Abandoned::DeadLettered) = abandoned {
                    self.record_dead_letter(
                        message,
                        &path.queue,
                        MAX_DELIVERY_COUNT_EXCEEDED,
                        &reason,
                    );
                }
                abandoned.map(|_| ())
            }
        };
        if let Err(e) = result {
            tracing::warn!(entity = %path, seq, error = %e, "settlement failed; the message will be delivered again");
        }
    }
}

/// The transaction a message belongs to: its correlation id, else its own id.
fn correlation_of(message: &ReceivedMessage) -> String {
    message
        .record
        .correlation_id
        .clone()
        .unwrap_or_else(|| message.record.message_id.clone())
}

fn unreachable_renewal() -> Result<Vec<Outcome>, crate::runtime::InvocationError> {
    // `renew_locks_forever` never completes; this arm only satisfies the types.
    Err(crate::runtime::InvocationError::Trap(
        "lock renewal ended unexpectedly".into(),
    ))
}
