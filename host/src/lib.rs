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
//!   out into per-subscription delivery queues; webhooks; the broker's
//!   system events (push model).
//! - [`keyvalue`]: each function's durable key-value state.
//! - [`runtime`]: wasmtime engine, component validation, one fresh instance
//!   per invocation with a deadline and a memory cap.
//! - [`capability`]: what guests may call (log, publish, send, receive,
//!   key-value, config, secrets).
//! - [`functions`]: deployed functions, precompiled and stored, with their
//!   config and secrets.
//! - [`dispatch`]: triggers that drain queues into handlers and settle.
//! - [`gateway`]: HTTP-triggered functions on the front door (`/api/{route}`),
//!   with per-function auth (SAS, API key, JWT) and per-caller rate limits.
//! - [`trace`]: W3C trace context on every message and event, and the
//!   recorded steps of each transaction (by correlation id).
//! - [`auth`]: shared access signatures and keys (pure checks); [`access`]
//!   keeps the policies durably.
//! - [`api`]: the HTTP front door (management, Service Bus REST, Event Grid publish).
//! - [`cli`]: the `sluice` command; [`build`] compiles handlers (Rust,
//!   Python, JavaScript); [`manifest`] reads an app's `sluice.toml` (for
//!   `sluice up`).
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
pub mod gateway;
pub mod keyvalue;
pub mod manifest;
pub mod runtime;
pub mod store;
pub mod telemetry;
pub mod trace;

mod services;

pub use services::{DeployError, Sluice, SluiceConfig};
