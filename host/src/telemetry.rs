//! Logging: `tracing` to stderr, filtered by `SLUICE_LOG` (or `RUST_LOG`).
//!
//! Each invocation runs in an `invoke` span carrying the function, version,
//! invocation id, entity, sequence number and delivery count, so every line
//! a handler logs can be traced back to the message that caused it.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `default_filter` applies when no env var is set.
pub fn init(default_filter: &str) {
    let filter = std::env::var("SLUICE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
