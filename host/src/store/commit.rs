//! Group commit: many writers, one fsync.
//!
//! Writers apply their changes to sled, then ask the committer to make them
//! durable. A dedicated thread flushes whenever anything was asked since
//! its last flush started, and then wakes every writer that flush covers in
//! one go. Each request takes a ticket: the number of the first flush that
//! starts after it; a request made during a flush waits for the next one,
//! so each acknowledged write was applied before the flush that covered it
//! started. Throughput is then bounded by the disk's bandwidth, not by
//! fsyncs per second.
//!
//! Why not a channel with one reply per writer: each reply is a separate
//! wake-up from a foreign thread, and a request costs an allocation. Here a
//! request is a mutex round and the thread's condvar signal (skipped while
//! it is flushing); the answer is one counter store and one broadcast.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::Notify;

use super::StoreError;

/// When an acknowledged write is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledge only after an fsync covering the write (the default).
    #[default]
    Fsync,
    /// Acknowledge at once; sled flushes in the background every `n` ms.
    /// A crash loses up to that much acknowledged work.
    Interval(u64),
}

impl Durability {
    pub(super) fn flush_interval_ms(self) -> Option<u64> {
        match self {
            Durability::Fsync => Some(500),
            Durability::Interval(ms) => Some(ms.max(1)),
        }
    }
}

/// What the committing thread and the writers share.
struct Shared {
    requests: Mutex<Requests>,
    /// Signals the thread that a request is waiting.
    wake: Condvar,
    /// The number of the last flush that completed (successfully or not).
    done: AtomicU64,
    /// Broadcast after every flush.
    flushed: Notify,
    /// Set (before `done` moves) once a flush failed; never cleared.
    poisoned: Mutex<Option<String>>,
}

struct Requests {
    /// The number of the flush that will start next.
    next: u64,
    /// Whether anyone asked for flush `next`.
    wanted: bool,
    /// The thread is waiting on `wake` (else it finds `wanted` by itself).
    idle: bool,
    /// The store was dropped: the thread ends.
    closed: bool,
}

pub(super) struct Committer {
    shared: Option<Arc<Shared>>,
    durability: Durability,
}

impl Committer {
    pub(super) fn start(db: sled::Db, durability: Durability) -> Committer {
        let shared = match durability {
            Durability::Interval(_) => None,
            Durability::Fsync => {
                let shared = Arc::new(Shared {
                    requests: Mutex::new(Requests {
                        next: 1,
                        wanted: false,
                        idle: false,
                        closed: false,
                    }),
                    wake: Condvar::new(),
                    done: AtomicU64::new(0),
                    flushed: Notify::new(),
                    poisoned: Mutex::new(None),
                });
                let thread = shared.clone();
                std::thread::Builder::new()
                    .name("sluice-commit".into())
                    .spawn(move || run(db, &thread))
                    .ok()
                    .map(|_| shared)
            }
        };
        Committer { shared, durability }
    }

    pub(super) async fn commit(&self) -> Result<(), StoreError> {
        if let Durability::Interval(_) = self.durability {
            return Ok(());
        }
        let Some(shared) = &self.shared else {
            return Err(StoreError::Poisoned(
                "the commit thread could not start".into(),
            ));
        };
        let ticket = {
            let mut requests = lock(&shared.requests);
            if requests.closed {
                return Err(StoreError::Poisoned("the commit thread has stopped".into()));
            }
            requests.wanted = true;
            if requests.idle {
                requests.idle = false;
                shared.wake.notify_one();
            }
            requests.next
        };
        loop {
            // Registered before the check, so a broadcast in between is not missed.
            let flushed = shared.flushed.notified();
            tokio::pin!(flushed);
            flushed.as_mut().enable();
            if shared.done.load(Ordering::Acquire) >= ticket {
                break;
            }
            flushed.await;
        }
        match &*lock(&shared.poisoned) {
            Some(reason) => Err(StoreError::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            lock(&shared.requests).closed = true;
            shared.wake.notify_one();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values stay consistent at every statement; keep going.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The commit loop; ends when the store is dropped.
fn run(db: sled::Db, shared: &Shared) {
    loop {
        let number = {
            let mut requests = lock(&shared.requests);
            while !requests.wanted && !requests.closed {
                requests.idle = true;
                requests = shared
                    .wake
                    .wait(requests)
                    .unwrap_or_else(|e| e.into_inner());
            }
            if requests.closed && !requests.wanted {
                return;
            }
            // Requests from now on wait for the flush after this one.
            let number = requests.next;
            requests.next += 1;
            requests.wanted = false;
            number
        };
        let already = lock(&shared.poisoned).is_some();
        if !already && let Err(e) = db.flush() {
            let reason = format!("flush failed: {e}");
            tracing::error!(%reason, "store poisoned; refusing further writes");
            *lock(&shared.poisoned) = Some(reason);
        }
        shared.done.store(number, Ordering::Release);
        shared.flushed.notify_waiters();
    }
}
