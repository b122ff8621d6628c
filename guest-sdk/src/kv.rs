//! The function's own durable key-value state: what a workflow step keeps
//! between invocations. Each function has one namespace; every write is
//! durable before it returns.
//!
//! ```no_run
//! use sluice_sdk::kv;
//!
//! # fn run() -> sluice_sdk::Result<()> {
//! // A counter that concurrent invocations never lose an increment of.
//! loop {
//!     let current = kv::get("orders-seen")?;
//!     let next = current
//!         .as_deref()
//!         .and_then(|b| std::str::from_utf8(b).ok())
//!         .and_then(|s| s.parse::<u64>().ok())
//!         .unwrap_or(0)
//!         + 1;
//!     if kv::compare_and_swap("orders-seen", current.as_deref(), next.to_string().as_bytes(), None)? {
//!         break;
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use crate::__private::bindings::sluice::handler::keyvalue;
use crate::__private::capability_error;
use crate::error::Result;

fn ttl_ms(ttl: Option<Duration>) -> Option<u64> {
    ttl.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
}

/// The value of `key`; `None` when unset or expired.
pub fn get(key: &str) -> Result<Option<Vec<u8>>> {
    keyvalue::get(key).map_err(|e| capability_error("key", key, "read", e))
}

/// Sets `key`; with `ttl` it expires (then reads as unset).
pub fn set(key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
    keyvalue::set(key, value, ttl_ms(ttl)).map_err(|e| capability_error("key", key, "value", e))
}

/// Deletes `key`; whether it was set.
pub fn delete(key: &str) -> Result<bool> {
    keyvalue::delete(key).map_err(|e| capability_error("key", key, "delete", e))
}

/// Sets `key` to `value` only if it currently holds `expected` (`None`:
/// unset); whether it did.
pub fn compare_and_swap(
    key: &str,
    expected: Option<&[u8]>,
    value: &[u8],
    ttl: Option<Duration>,
) -> Result<bool> {
    keyvalue::compare_and_swap(key, expected, value, ttl_ms(ttl))
        .map_err(|e| capability_error("key", key, "value", e))
}
