//! The sandbox: compile components once, run each invocation in a fresh,
//! isolated instance with a deadline and a memory cap.
//!
//! Read [`Runtime`] first. [`Runtime::compile`] validates an uploaded
//! component against one of the two worlds and pre-links it
//! ([`ComponentPre`]): the `handler` world (events and queue messages) or
//! the `http-handler` world (a standard `wasi:http/incoming-handler`).
//! [`Runtime::invoke`] and [`Runtime::serve_http`] instantiate it in a new
//! `Store` per call (pooling allocator: cheap), with WASI linked but granting
//! nothing (no files, env, clocks beyond the defaults, or sockets), and
//! guest stdout/stderr captured into the host's logs. Outbound `wasi:http`
//! reaches only the function's allowed hosts ([`outbound`]).
//!
//! A guest panic is a trap; the instance is discarded after every call, so
//! one bad invocation never poisons the next.

pub mod bindings;
mod engine;
mod outbound;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
pub use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use outbound::OutboundPolicy;

pub use bindings::{BatchHandlerPre, HandlerPre, Outcome};
pub use engine::{EPOCH_TICK, MAX_MEMORY_BYTES};

use crate::broker::ReceivedMessage;
use crate::capability::HostContext;
use crate::events::Event;

/// Bytes of guest stdout/stderr kept per invocation; the rest is dropped.
const MAX_CAPTURED_OUTPUT: usize = 64 * 1024;

/// Why a component was refused at deploy time.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// Not a component, or invalid wasm.
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    /// A component, but not one for the `sluice:handler` world.
    #[error("the component does not match the sluice:handler@0.1.0 world: {0}")]
    WrongWorld(String),
}

/// Which world a component targets, hence which triggers it can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComponentKind {
    /// `handler`: exports `handle-event` and `handle-message`.
    Handler,
    /// `batch-handler`: exports `handle-messages` (many queue messages per call).
    BatchHandler,
    /// `http-handler`: exports `wasi:http/incoming-handler`.
    Http,
}

impl std::fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ComponentKind::Handler => "a sluice:handler component (handle-event, handle-message)",
            ComponentKind::BatchHandler => "a sluice:handler batch component (handle-messages)",
            ComponentKind::Http => "an HTTP component (wasi:http/incoming-handler)",
        })
    }
}

/// A validated, pre-linked component of either world.
#[derive(Clone)]
pub enum ComponentPre {
    /// Serves events and queue messages.
    Handler(HandlerPre<InvocationState>),
    /// Serves queue messages, many per invocation.
    BatchHandler(BatchHandlerPre<InvocationState>),
    /// Serves HTTP requests.
    Http(ProxyPre<InvocationState>),
}

impl ComponentPre {
    /// The world it targets.
    pub fn kind(&self) -> ComponentKind {
        match self {
            ComponentPre::Handler(_) => ComponentKind::Handler,
            ComponentPre::BatchHandler(_) => ComponentKind::BatchHandler,
            ComponentPre::Http(_) => ComponentKind::Http,
        }
    }
}

/// A handler's HTTP response, read whole.
pub type HttpResponse = http::Response<Bytes>;

/// Why an invocation did not produce an outcome.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    /// It ran past its deadline.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// It asked for more linear memory than its cap.
    #[error("out of memory: the instance needed more than its {cap_mib} MiB memory cap")]
    OutOfMemory {
        /// The function's memory cap.
        cap_mib: usize,
    },
    /// It recursed past the wasm stack.
    #[error("trapped: stack overflow (deep recursion)")]
    StackOverflow,
    /// It trapped (panic, out-of-bounds, unreachable, ...).
    #[error("trapped: {0}")]
    Trap(String),
    /// The component serves another kind of trigger.
    #[error("the component is {0}; it cannot serve this trigger")]
    WrongKind(ComponentKind),
    /// A batch handler returned a different number of outcomes than it got messages.
    #[error("the batch handler returned {got} outcomes for {expected} messages")]
    OutcomeCount {
        /// Messages handed over.
        expected: usize,
        /// Outcomes returned.
        got: usize,
    },
    /// An HTTP handler returned without setting a response, or set an error.
    #[error("the HTTP handler gave no response: {0}")]
    NoResponse(String),
    /// An HTTP handler's response body was larger than the host takes.
    #[error("the HTTP handler's response body exceeds {0} bytes")]
    ResponseTooLarge(usize),
}

/// Per-invocation resource limits.
#[derive(Clone, Copy, Debug)]
pub struct InvocationLimits {
    /// Wall-clock deadline.
    pub timeout: Duration,
    /// Linear memory cap.
    pub memory_bytes: usize,
}

/// The store's memory limiter: refuses growth past the cap and remembers
/// that it did, so the trap that follows is reported as out of memory.
struct MemoryCap {
    limits: StoreLimits,
    refused: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum);
        if !matches!(allowed, Ok(true)) {
            self.refused = true;
        }
        allowed
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }
}

/// What a handler is invoked with.
pub enum Input<'a> {
    /// An event from a topic subscription.
    Event(&'a Event),
    /// Messages from a queue: exactly one for a `handler` component, one
    /// or more for a `batch-handler` component.
    Messages(&'a [ReceivedMessage]),
}

/// An input matched with the export that takes it.
enum Call<'a> {
    Event(&'a HandlerPre<InvocationState>, &'a Event),
    Message(&'a HandlerPre<InvocationState>, &'a ReceivedMessage),
    Batch(&'a BatchHandlerPre<InvocationState>, &'a [ReceivedMessage]),
}

/// Everything a `Store` holds for one invocation.
pub struct InvocationState {
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryCap,
    http: WasiHttpCtx,
    outbound: OutboundPolicy,
    host: HostContext,
}

impl WasiHttpView for InvocationState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl WasiView for InvocationState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The engine plus the linker every component is checked against.
pub struct Runtime {
    engine: Engine,
    linker: Linker<InvocationState>,
}

impl Runtime {
    /// Builds the engine and links WASI plus the Sluice capabilities.
    pub fn new() -> anyhow::Result<Runtime> {
        let engine = engine::new_engine()?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        bindings::Handler::add_to_linker::<_, wasmtime::component::HasSelf<HostContext>>(
            &mut linker,
            |state: &mut InvocationState| &mut state.host,
        )?;
        Ok(Runtime { engine, linker })
    }

    /// The engine (for benchmarks that compare against raw wasmtime).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A key that changes whenever precompiled artifacts become incompatible.
    pub fn compatibility_key(&self) -> String {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut hasher = DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    /// Compiles and validates an uploaded component (CPU-heavy: call from a
    /// blocking thread). Returns the pre-linked component and the precompiled bytes.
    pub fn compile(&self, bytes: &[u8]) -> Result<(ComponentPre, Vec<u8>), PrepareError> {
        if !wasmparser_is_component(bytes) {
            return Err(PrepareError::Invalid(
                "the upload is not a component (a core module or other bytes?); build it with `sluice build`".into(),
            ));
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| PrepareError::Invalid(format!("{e:#}")))?;
        let pre = self.prepare(&component)?;
        let compiled = component.serialize().map_err(|e| {
            PrepareError::Invalid(format!("cannot serialise compiled component: {e:#}"))
        })?;
        Ok((pre, compiled))
    }

    /// Loads a component this engine precompiled earlier.
    pub fn load_precompiled(&self, compiled: &[u8]) -> Result<ComponentPre, PrepareError> {
        // SAFETY: the bytes come from `Component::serialize` of an engine with
        // the same compatibility key (checked by the caller through the store
        // key, and again by wasmtime's header check), stored in our own database.
        #[expect(unsafe_code, reason = "deserialising our own precompiled artifact")]
        let component = unsafe { Component::deserialize(&self.engine, compiled) }
            .map_err(|e| PrepareError::Invalid(format!("{e:#}")))?;
        self.prepare(&component)
    }

    fn prepare(&self, component: &Component) -> Result<ComponentPre, PrepareError> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| PrepareError::WrongWorld(format!("{e:#}")))?;
        let handler_error = match HandlerPre::new(pre.clone()) {
            Ok(handler) => return Ok(ComponentPre::Handler(handler)),
            Err(e) => e,
        };
        if let Ok(batch) = BatchHandlerPre::new(pre.clone()) {
            return Ok(ComponentPre::BatchHandler(batch));
        }
        match ProxyPre::new(pre) {
            Ok(proxy) => Ok(ComponentPre::Http(proxy)),
            Err(_) => Err(PrepareError::WrongWorld(format!(
                "{handler_error:#}; it exports neither the `handler` world's handle-event and \
                 handle-message, nor the `batch-handler` world's handle-messages, nor \
                 `wasi:http/incoming-handler@0.2` (the `http-handler` world)"
            ))),
        }
    }

    /// A fresh store for one invocation: nothing granted, output captured,
    /// memory capped, the deadline armed.
    fn new_store(
        &self,
        limits: InvocationLimits,
        host: HostContext,
    ) -> (Store<InvocationState>, CapturedOutput) {
        let output = CapturedOutput {
            function: host.function().to_string(),
            stdout: MemoryOutputPipe::new(MAX_CAPTURED_OUTPUT),
            stderr: MemoryOutputPipe::new(MAX_CAPTURED_OUTPUT),
        };
        // No preopens, no env, no args, no network: nothing is granted.
        let wasi = WasiCtx::builder()
            .stdout(output.stdout.clone())
            .stderr(output.stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = InvocationState {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap {
                limits: StoreLimitsBuilder::new()
                    .memory_size(limits.memory_bytes)
                    .trap_on_grow_failure(true)
                    .build(),
                refused: false,
            },
            http: WasiHttpCtx::new(),
            outbound: OutboundPolicy::allowing(host.function(), host.allowed_hosts()),
            host,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.memory);
        let deadline = Instant::now() + limits.timeout;
        // Yield every tick so a busy guest shares its thread; trap at the deadline.
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::Trap::Interrupt.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        (store, output)
    }

    /// Runs one invocation in a fresh instance: one outcome per input
    /// message (one for an event), in order.
    pub async fn invoke(
        &self,
        pre: &ComponentPre,
        limits: InvocationLimits,
        host: HostContext,
        input: Input<'_>,
    ) -> Result<Vec<Outcome>, InvocationError> {
        let call = match (pre, input) {
            (ComponentPre::Handler(pre), Input::Event(event)) => Call::Event(pre, event),
            (ComponentPre::Handler(pre), Input::Messages([message])) => Call::Message(pre, message),
            (ComponentPre::BatchHandler(pre), Input::Messages(messages))
                if !messages.is_empty() =>
            {
                Call::Batch(pre, messages)
            }
            _ => return Err(InvocationError::WrongKind(pre.kind())),
        };
        let expected = match call {
            Call::Batch(_, messages) => messages.len(),
            Call::Event(..) | Call::Message(..) => 1,
        };
        let (mut store, output) = self.new_store(limits, host);
        // Epoch interruption stops wasm code at the deadline; the timeout
        // also ends a guest blocked in a host call (a sleep, a slow request).
        let deadline = tokio::time::Instant::now() + limits.timeout;
        let result = tokio::time::timeout_at(deadline, async {
            match call {
                Call::Event(pre, event) => {
                    let handler = pre.instantiate_async(&mut store).await?;
                    let event = bindings::event_to_wit(event);
                    let outcome = handler.call_handle_event(&mut store, &event).await?;
                    Ok(vec![outcome])
                }
                Call::Message(pre, message) => {
                    let handler = pre.instantiate_async(&mut store).await?;
                    let message = bindings::message_to_wit(message);
                    let outcome = handler.call_handle_message(&mut store, &message).await?;
                    Ok(vec![outcome])
                }
                Call::Batch(pre, messages) => {
                    let handler = pre.instantiate_async(&mut store).await?;
                    let messages: Vec<_> = messages.iter().map(bindings::message_to_wit).collect();
                    handler.call_handle_messages(&mut store, &messages).await
                }
            }
        })
        .await;
        output.forward();
        let outcomes = match result {
            Err(_) => return Err(InvocationError::Timeout(limits.timeout)),
            Ok(result) => result.map_err(|e| classify(&e, &store, limits))?,
        };
        if outcomes.len() != expected {
            return Err(InvocationError::OutcomeCount {
                expected,
                got: outcomes.len(),
            });
        }
        Ok(outcomes.into_iter().map(Outcome::from).collect())
    }

    /// Serves one HTTP request in a fresh instance of an HTTP component; the
    /// response body is read whole, up to `max_response_bytes`. The
    /// function's deadline bounds everything: the response head, the body,
    /// and work the guest does after answering; past it the instance is
    /// dropped, and so it is when the caller goes away (the future is
    /// dropped), so no instance outlives its request.
    pub async fn serve_http(
        &self,
        pre: &ComponentPre,
        limits: InvocationLimits,
        host: HostContext,
        request: http::Request<Bytes>,
        scheme: Scheme,
        max_response_bytes: usize,
    ) -> Result<HttpResponse, InvocationError> {
        let ComponentPre::Http(proxy) = pre else {
            return Err(InvocationError::WrongKind(pre.kind()));
        };
        let deadline = tokio::time::Instant::now() + limits.timeout;
        let timeout = InvocationError::Timeout(limits.timeout);
        let (mut store, output) = self.new_store(limits, host);
        let request = request.map(|body| {
            Full::new(body).map_err(|never| -> wasmtime_wasi_http::Error { match never {} })
        });
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let resources = store
            .data_mut()
            .http()
            .new_incoming_request(scheme, request)
            .and_then(|request| {
                let out = store.data_mut().http().new_response_outparam(sender)?;
                Ok((request, out))
            });
        let (request, out) = resources.map_err(|e| InvocationError::Trap(format!("{e:#}")))?;
        let proxy = proxy.clone();
        // The guest keeps running while its body streams out, so it runs in
        // a task of its own, aborted when this future ends or is dropped.
        let mut guest = AbortOnDrop(tokio::spawn(async move {
            let result = async {
                let instance = proxy.instantiate_async(&mut store).await?;
                instance
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, request, out)
                    .await
            }
            .await;
            let error = result.err().map(|e| classify(&e, &store, limits));
            output.forward();
            error
        }));
        let head = match tokio::time::timeout_at(deadline, receiver).await {
            Err(_) => return Err(timeout),
            Ok(Ok(Ok(response))) => response,
            Ok(Ok(Err(code))) => {
                return Err(InvocationError::NoResponse(format!(
                    "it answered with the error code {code:?}"
                )));
            }
            // The outparam was dropped unset: the guest returned or trapped.
            Ok(Err(_)) => {
                return Err(guest
                    .outcome(deadline, limits.timeout)
                    .await
                    .unwrap_or_else(|| {
                        InvocationError::NoResponse("it returned without setting one".into())
                    }));
            }
        };
        let (parts, body) = head.into_parts();
        let collected =
            tokio::time::timeout_at(deadline, Limited::new(body, max_response_bytes).collect())
                .await;
        let body = match collected {
            Ok(Ok(body)) => body.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(InvocationError::ResponseTooLarge(max_response_bytes));
            }
            Ok(Err(e)) => {
                // A body cut short: the guest trapped (or timed out) mid-write.
                return Err(guest
                    .outcome(deadline, limits.timeout)
                    .await
                    .unwrap_or_else(|| {
                        InvocationError::NoResponse(format!("its body ended with an error: {e}"))
                    }));
            }
            Err(_) => return Err(timeout),
        };
        // Work after the answer (a send, a log line) may finish, within the deadline.
        if let Some(error) = guest.outcome(deadline, limits.timeout).await {
            // The whole response was written before the guest failed: the
            // caller gets it, the failure is logged.
            tracing::warn!(error = %error, "HTTP handler failed after writing its response");
        }
        Ok(http::Response::from_parts(parts, body))
    }
}

/// A task that is aborted when its handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<Option<InvocationError>>);

impl AbortOnDrop {
    /// What the guest task came to, waiting no longer than `deadline`.
    async fn outcome(
        &mut self,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Option<InvocationError> {
        match tokio::time::timeout_at(deadline, &mut self.0).await {
            Ok(Ok(error)) => error,
            Ok(Err(e)) => Some(InvocationError::Trap(format!(
                "the invocation aborted: {e}"
            ))),
            Err(_) => Some(InvocationError::Timeout(timeout)),
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why an invocation failed, from its error and what the store saw.
fn classify(
    error: &wasmtime::Error,
    store: &Store<InvocationState>,
    limits: InvocationLimits,
) -> InvocationError {
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => InvocationError::Timeout(limits.timeout),
        Some(wasmtime::Trap::StackOverflow) => InvocationError::StackOverflow,
        // A refused grow traps (or makes the guest's allocator abort).
        _ if store.data().memory.refused => InvocationError::OutOfMemory {
            cap_mib: limits.memory_bytes >> 20,
        },
        _ => InvocationError::Trap(format!("{error:#}")),
    }
}

/// A guest's stdout and stderr, forwarded to the host's log when it ends.
struct CapturedOutput {
    function: String,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl CapturedOutput {
    fn forward(&self) {
        forward_output(&self.function, "stdout", &self.stdout);
        forward_output(&self.function, "stderr", &self.stderr);
    }
}

fn wasmparser_is_component(bytes: &[u8]) -> bool {
    // Component binaries share the magic with core modules; the layer field
    // (bytes 6..8) is 1 for components.
    bytes.len() >= 8 && bytes[0..4] == *b"\0asm" && bytes[6..8] == [1, 0]
}

fn forward_output(function: &str, stream: &str, pipe: &MemoryOutputPipe) {
    let contents = pipe.contents();
    if contents.is_empty() {
        return;
    }
    for line in String::from_utf8_lossy(&contents).lines() {
        tracing::info!(target: "sluice::guest", function, stream, "{line}");
    }
}
