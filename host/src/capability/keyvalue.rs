//! `sluice:handler/keyvalue`: the function's own durable key-value state.

use std::time::Duration;

use super::HostContext;
use crate::keyvalue::KeyValueError;
use crate::runtime::bindings::keyvalue::Host;
use crate::runtime::bindings::types::CapabilityError;

fn refused(e: KeyValueError) -> CapabilityError {
    match e {
        KeyValueError::Invalid(why) => CapabilityError::Invalid(why),
        KeyValueError::Store(e) => CapabilityError::Unavailable(e.to_string()),
    }
}

fn ttl(ttl_ms: Option<u64>) -> Option<Duration> {
    ttl_ms.map(Duration::from_millis)
}

impl Host for HostContext {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, CapabilityError> {
        self.kv.get(&self.function, &key).map_err(refused)
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<(), CapabilityError> {
        self.kv
            .set(&self.function, &key, value, ttl(ttl_ms))
            .await
            .map_err(refused)
    }

    async fn delete(&mut self, key: String) -> Result<bool, CapabilityError> {
        self.kv.delete(&self.function, &key).await.map_err(refused)
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<bool, CapabilityError> {
        self.kv
            .compare_and_swap(
                &self.function,
                &key,
                expected.as_deref(),
                value,
                ttl(ttl_ms),
            )
            .await
            .map_err(refused)
    }
}
