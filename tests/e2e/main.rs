//! End-to-end tests: the real `sluice` binary as a child process, real
#![allow(missing_docs, reason = "test crate")]
//! components built by `sluice build`, real HTTP. See `tests/README.md`.

mod support;
mod webhook_receiver;

mod admin;
mod auth;
mod capabilities;
mod cli;
mod crash;
mod deploy;
mod events;
mod guests;
mod hostile;
mod http_triggers;
mod languages;
mod order_flow;
mod push_model;
mod queue_features;
mod queues;
mod restart;
mod sdks;
mod trace;
mod up;
mod webhooks;
