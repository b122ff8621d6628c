//! `sluice:handler/config` and `sluice:handler/secrets`: the function's
//! settings. Secret values are handed to the guest and nowhere else: this
//! file never logs them.

use super::HostContext;
use crate::runtime::bindings::{config, secrets};

impl config::Host for HostContext {
    async fn get(&mut self, key: String) -> Option<String> {
        self.settings.config.get(&key).cloned()
    }

    async fn get_all(&mut self) -> Vec<(String, String)> {
        self.settings
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl secrets::Host for HostContext {
    async fn get(&mut self, key: String) -> Option<String> {
        self.settings.secrets.get(&key).cloned()
    }
}
