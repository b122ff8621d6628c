//! Per-function key-value state: what a long-running workflow step keeps
//! between invocations.
//!
//! Each function has its own namespace in the store's `state` tree (key
//! `<function> 0x00 <key>`), so one function never sees another's keys.
//! Entries may carry an expiry; an expired entry reads as absent and is
//! removed lazily and by a periodic sweep. Every write is durable before it
//! returns (group commit). Compare-and-swap uses sled's own CAS on the
//! stored bytes, so concurrent invocations of one function never lose an
//! update.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock;
use crate::store::{self, Store, StoreError};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// How often expired entries are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
const TREE: &str = "state";

/// Why a key-value operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyValueError {
    /// A key or value breaks a limit.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A stored entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    value: Vec<u8>,
    expires_at_ms: Option<i64>,
}

impl Entry {
    fn live(self, now: i64) -> Option<Vec<u8>> {
        match self.expires_at_ms {
            Some(at) if at <= now => None,
            _ => Some(self.value),
        }
    }
}

/// The key-value state of every function.
pub struct KeyValue {
    store: Store,
}

fn storage_key(function: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(function.len() + 1 + key.len());
    out.extend_from_slice(function.as_bytes());
    out.push(0);
    out.extend_from_slice(key.as_bytes());
    out
}

fn check_key(key: &str) -> Result<(), KeyValueError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(KeyValueError::Invalid(format!(
            "a key must be 1 to {MAX_KEY_BYTES} bytes, got {}",
            key.len()
        )));
    }
    Ok(())
}

fn new_entry(value: Vec<u8>, ttl: Option<Duration>) -> Result<Entry, KeyValueError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(KeyValueError::Invalid(format!(
            "a value may be at most {MAX_VALUE_BYTES} bytes, got {}",
            value.len()
        )));
    }
    let expires_at_ms = ttl.map(|ttl| {
        clock::now_ms().saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
    });
    Ok(Entry {
        value,
        expires_at_ms,
    })
}

impl KeyValue {
    /// The state in `store`; call [`KeyValue::run_sweeper`] to drop expired entries.
    pub fn new(store: Store) -> KeyValue {
        KeyValue { store }
    }

    fn read(&self, raw_key: &[u8]) -> Result<Option<(sled::IVec, Entry)>, KeyValueError> {
        let Some(raw) = self.store.state().get(raw_key).map_err(StoreError::from)? else {
            return Ok(None);
        };
        let entry: Entry = store::decode(TREE, &raw)?;
        Ok(Some((raw, entry)))
    }

    /// The value of `key`, if set and not expired.
    pub fn get(&self, function: &str, key: &str) -> Result<Option<Vec<u8>>, KeyValueError> {
        check_key(key)?;
        let now = clock::now_ms();
        Ok(self
            .read(&storage_key(function, key))?
            .and_then(|(_, entry)| entry.live(now)))
    }

    /// Sets `key`, expiring after `ttl` if given; durable when it returns.
    pub async fn set(
        &self,
        function: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), KeyValueError> {
        check_key(key)?;
        let entry = new_entry(value, ttl)?;
        self.store
            .state()
            .insert(storage_key(function, key), store::encode(TREE, &entry)?)
            .map_err(StoreError::from)?;
        self.store.commit().await?;
        Ok(())
    }

    /// Deletes `key`; whether a live value was there.
    pub async fn delete(&self, function: &str, key: &str) -> Result<bool, KeyValueError> {
        check_key(key)?;
        let now = clock::now_ms();
        let removed = self
            .store
            .state()
            .remove(storage_key(function, key))
            .map_err(StoreError::from)?;
        self.store.commit().await?;
        Ok(match removed {
            Some(raw) => store::decode::<Entry>(TREE, &raw)?.live(now).is_some(),
            None => false,
        })
    }

    /// Sets `key` to `value` only if its current value is `expected` (`None`:
    /// absent or expired). Returns whether it did; durable when it returns.
    pub async fn compare_and_swap(
        &self,
        function: &str,
        key: &str,
        expected: Option<&[u8]>,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<bool, KeyValueError> {
        check_key(key)?;
        let entry = store::encode(TREE, &new_entry(value, ttl)?)?;
        let raw_key = storage_key(function, key);
        loop {
            let current = self.read(&raw_key)?;
            let now = clock::now_ms();
            let live = current.as_ref().and_then(|(_, e)| e.clone().live(now));
            if live.as_deref() != expected {
                return Ok(false);
            }
            // Swap against the exact bytes read: a concurrent writer in
            // between makes sled refuse, and the loop looks again.
            let old = current.map(|(raw, _)| raw);
            let swapped = self
                .store
                .state()
                .compare_and_swap(&raw_key, old, Some(entry.clone()))
                .map_err(StoreError::from)?;
            if swapped.is_ok() {
                self.store.commit().await?;
                return Ok(true);
            }
        }
    }

    /// Removes every key of `function` (when it is deleted).
    pub async fn clear(&self, function: &str) -> Result<usize, KeyValueError> {
        let prefix = storage_key(function, "");
        let mut batch = sled::Batch::default();
        let mut count = 0;
        for entry in self.store.state().scan_prefix(&prefix) {
            let (key, _) = entry.map_err(StoreError::from)?;
            batch.remove(key);
            count += 1;
        }
        self.store
            .state()
            .apply_batch(batch)
            .map_err(StoreError::from)?;
        self.store.commit().await?;
        Ok(count)
    }

    /// Drops expired entries now; how many.
    pub fn sweep(&self) -> Result<usize, KeyValueError> {
        let now = clock::now_ms();
        let mut count = 0;
        for item in self.store.state().iter() {
            let (key, raw) = item.map_err(StoreError::from)?;
            let entry: Entry = store::decode(TREE, &raw)?;
            if entry.live(now).is_none() {
                // Only if unchanged since read: a fresh write wins.
                let _ = self
                    .store
                    .state()
                    .compare_and_swap(&key, Some(raw), None::<Vec<u8>>)
                    .map_err(StoreError::from)?;
                count += 1;
            }
        }
        Ok(count)
    }

    /// Sweeps expired entries every minute, forever.
    pub async fn run_sweeper(self: Arc<Self>) {
        loop {
            tokio::time::sleep(SWEEP_INTERVAL).await;
            match self.sweep() {
                Ok(0) => {}
                Ok(n) => tracing::debug!(expired = n, "key-value entries swept"),
                Err(e) => tracing::warn!(error = %e, "key-value sweep failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, KeyValue) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), store::Durability::Fsync).expect("store");
        (dir, KeyValue::new(store))
    }

    #[tokio::test]
    async fn functions_do_not_see_each_others_keys() {
        let (_dir, kv) = open();
        kv.set("a", "k", b"1".to_vec(), None).await.expect("set");
        assert_eq!(kv.get("a", "k").expect("get"), Some(b"1".to_vec()));
        assert_eq!(kv.get("b", "k").expect("get"), None);
    }

    #[tokio::test]
    async fn expired_entry_reads_as_absent_and_is_swept() {
        let (_dir, kv) = open();
        kv.set("f", "k", b"v".to_vec(), Some(Duration::from_millis(1)))
            .await
            .expect("set");
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(kv.get("f", "k").expect("get"), None);
        assert_eq!(kv.sweep().expect("sweep"), 1);
    }

    #[tokio::test]
    async fn compare_and_swap_writes_only_over_the_expected_value() {
        let (_dir, kv) = open();
        assert!(
            kv.compare_and_swap("f", "n", None, b"1".to_vec(), None)
                .await
                .expect("cas")
        );
        assert!(
            !kv.compare_and_swap("f", "n", None, b"2".to_vec(), None)
                .await
                .expect("cas")
        );
        assert!(
            kv.compare_and_swap("f", "n", Some(b"1"), b"2".to_vec(), None)
                .await
                .expect("cas")
        );
        assert_eq!(kv.get("f", "n").expect("get"), Some(b"2".to_vec()));
        assert!(kv.delete("f", "n").await.expect("delete"));
        assert!(!kv.delete("f", "n").await.expect("delete"));
    }

    #[tokio::test]
    async fn oversized_values_and_empty_keys_are_refused() {
        let (_dir, kv) = open();
        let big = vec![0u8; MAX_VALUE_BYTES + 1];
        assert!(matches!(
            kv.set("f", "k", big, None).await,
            Err(KeyValueError::Invalid(_))
        ));
        assert!(matches!(kv.get("f", ""), Err(KeyValueError::Invalid(_))));
    }
}
