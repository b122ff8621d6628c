//! The function's configuration and secrets, from its settings
//! (`sluice function settings NAME --config k=v --secret k=v`, or
//! `sluice deploy ... --config k=v --secret k=v`).
//!
//! ```no_run
//! use sluice_sdk::config;
//!
//! let endpoint = config::get("crm-endpoint").unwrap_or_else(|| "http://localhost".into());
//! let token = config::secret("crm-token");
//! # let _ = (endpoint, token);
//! ```

use crate::__private::bindings::sluice::handler::{config, secrets};

/// A configuration value; `None` when unset.
pub fn get(key: &str) -> Option<String> {
    config::get(key)
}

/// Every configuration value.
pub fn all() -> Vec<(String, String)> {
    config::get_all()
}

/// A secret; `None` when unset. The host never shows or logs secret values:
/// do not log them either.
pub fn secret(key: &str) -> Option<String> {
    secrets::get(key)
}
