//! Durable state on disk: the one place that talks to sled.
//!
//! Everything Sluice must not forget lives in one sled database, split into
//! trees by concern:
//!
//! | tree         | key                              | value                          |
//! |--------------|----------------------------------|--------------------------------|
//! | `entities`   | `queue/<name>`, `topic/<name>`, `subscription/<topic>/<name>`, `settings/<function>` | JSON record |
//! | `messages`   | `<entity> 0x00 <tag> <seq:u64be>` | [`codec`]-encoded message     |
//! | `functions`  | `<function name>`                | JSON record                    |
//! | `components` | `<sha256 of component>`          | the uploaded component bytes   |
//! | `compiled`   | `<sha256>/<engine hash>`         | wasmtime's precompiled artifact |
//! | `state`      | `<function> 0x00 <key>`          | a function's key-value entry ([`crate::keyvalue`]) |
//! | `traces`     | `<correlation id> 0x00 <ms:i64be> <n:u64be>` | a workflow step ([`crate::trace`]) |
//!
//! All messages of all queues share one tree so that a fan-out to many
//! queues, or a move to a dead-letter queue, is a single atomic batch.
//!
//! **Durability contract.** A write is durable only after [`Store::commit`]
//! returns `Ok`. Writers apply their changes to sled first, then call
//! `commit`; concurrent callers share one fsync (group commit, see
//! [`commit`]). After an fsync error the store is poisoned and refuses
//! every later commit: the state on disk is unknown, and acknowledging more
//! writes would be a lie (the fsync-gate lesson; restart and recover).

mod codec;
mod commit;

pub use codec::{decode, encode};
pub use commit::Durability;

use std::path::Path;
use std::sync::Arc;

use commit::Committer;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// sled reported an I/O or corruption error.
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    /// An earlier flush failed; no write can be acknowledged until restart.
    #[error("the store is poisoned by an earlier failed flush ({0}); restart the host")]
    Poisoned(String),
    /// A stored record could not be decoded.
    #[error("corrupt record in `{tree}`: {detail}")]
    Corrupt {
        /// The tree holding the record.
        tree: &'static str,
        /// What was wrong with it.
        detail: String,
    },
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    entities: sled::Tree,
    messages: sled::Tree,
    functions: sled::Tree,
    components: sled::Tree,
    compiled: sled::Tree,
    state: sled::Tree,
    traces: sled::Tree,
    committer: Committer,
}

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path, durability: Durability) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            // The background flush only matters in `Durability::Interval` mode;
            // in fsync mode every acknowledged write is flushed by `commit`.
            .flush_every_ms(durability.flush_interval_ms())
            .open()?;
        let inner = Inner {
            entities: db.open_tree("entities")?,
            messages: db.open_tree("messages")?,
            functions: db.open_tree("functions")?,
            components: db.open_tree("components")?,
            compiled: db.open_tree("compiled")?,
            state: db.open_tree("state")?,
            traces: db.open_tree("traces")?,
            committer: Committer::start(db.clone(), durability),
            db,
        };
        Ok(Store {
            inner: Arc::new(inner),
        })
    }

    /// Queue, topic and subscription definitions.
    pub fn entities(&self) -> &sled::Tree {
        &self.inner.entities
    }

    /// Messages of every queue and dead-letter queue.
    pub fn messages(&self) -> &sled::Tree {
        &self.inner.messages
    }

    /// Deployed function definitions.
    pub fn functions(&self) -> &sled::Tree {
        &self.inner.functions
    }

    /// Uploaded components, by content hash.
    pub fn components(&self) -> &sled::Tree {
        &self.inner.components
    }

    /// Precompiled components, by content hash and engine compatibility hash.
    pub fn compiled(&self) -> &sled::Tree {
        &self.inner.compiled
    }

    /// Functions' key-value state.
    pub fn state(&self) -> &sled::Tree {
        &self.inner.state
    }

    /// Recorded workflow steps.
    pub fn traces(&self) -> &sled::Tree {
        &self.inner.traces
    }

    /// Waits until every change applied before this call is on disk.
    pub async fn commit(&self) -> Result<(), StoreError> {
        self.inner.committer.commit().await
    }

    /// Flushes synchronously; used on shutdown.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.inner.db.flush()?;
        Ok(())
    }
}
