//! # Sluice host
//!
//! One process that owns durable queues, event topics and a WebAssembly
//! sandbox, and invokes user handlers (components of the `sluice:handler`
//! world) whenever an event is published or a message arrives.
//!
//! A tour, from the bottom up (dependencies point one way: api/cli →
//! [`Sluice`] → dispatch → broker / events / functions → store):
//!
//! - [`store`]: the sled database and its durability contract (group commit).
//! - [`broker`]: queues with Service Bus semantics: peek-lock, settle,
//!   delivery count, dead-letter sub-queues.
//! - [`events`]: Event Grid-style topics and subscriptions; publishing fans
//!   out into per-subscription delivery queues.
//! - [`runtime`]: wasmtime engine, component validation, one fresh instance
//!   per invocation with a deadline and a memory cap.
//! - [`capability`]: what guests may call (log, publish, send).
//! - [`functions`]: deployed functions, precompiled and stored.
//! - [`dispatch`]: triggers that drain queues into handlers and settle.
//! - [`auth`]: shared access signatures and keys (pure checks); [`access`]
//!   keeps the policies durably.
//! - [`api`]: the HTTP front door (management, Service Bus REST, Event Grid publish).
//! - [`cli`]: the `sluice` command; [`build`] compiles handlers (Rust, Python, JavaScript).
//!
//! [`Sluice`] ties the services together; [`Sluice::open`] is where a host starts.

pub mod access;
pub mod api;
pub mod auth;
pub mod broker;
pub mod build;
pub mod capability;
pub mod cli;
pub mod clock;
pub mod dispatch;
pub mod events;
pub mod functions;
pub mod runtime;
pub mod store;
pub mod telemetry;

mod services;

pub use services::{DeployError, Sluice, SluiceConfig};
