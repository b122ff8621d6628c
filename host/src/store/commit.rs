//! Group commit: many writers, one fsync.
//!
//! Writers apply their changes to sled, then ask the committer to make them
//! durable. A dedicated thread takes every request waiting at that moment,
//! flushes once, and answers them all. Requests that arrive during a flush
//! wait for the next one, so each acknowledged write was applied before the
//! flush that covered it started. Throughput is then bounded by the disk's
//! bandwidth, not by fsyncs per second.

use std::sync::mpsc;

use tokio::sync::oneshot;

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

type Waiter = oneshot::Sender<Result<(), String>>;

pub(super) struct Committer {
    requests: Option<mpsc::Sender<Waiter>>,
    durability: Durability,
}

impl Committer {
    pub(super) fn start(db: sled::Db, durability: Durability) -> Committer {
        let requests = match durability {
            Durability::Interval(_) => None,
            Durability::Fsync => {
                let (tx, rx) = mpsc::channel::<Waiter>();
                std::thread::Builder::new()
                    .name("sluice-commit".into())
                    .spawn(move || run(db, rx))
                    .ok()
                    .map(|_| tx)
            }
        };
        Committer {
            requests,
            durability,
        }
    }

    pub(super) async fn commit(&self) -> Result<(), StoreError> {
        if let Durability::Interval(_) = self.durability {
            return Ok(());
        }
        let Some(requests) = &self.requests else {
            return Err(StoreError::Poisoned(
                "the commit thread could not start".into(),
            ));
        };
        let (tx, rx) = oneshot::channel();
        requests
            .send(tx)
            .map_err(|_| StoreError::Poisoned("the commit thread has stopped".into()))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(StoreError::Poisoned(reason)),
            Err(_) => Err(StoreError::Poisoned("the commit thread has stopped".into())),
        }
    }
}

/// The commit loop; ends when the store is dropped.
fn run(db: sled::Db, requests: mpsc::Receiver<Waiter>) {
    let mut poisoned: Option<String> = None;
    while let Ok(first) = requests.recv() {
        let mut waiters = vec![first];
        waiters.extend(requests.try_iter());
        let outcome = match &poisoned {
            Some(reason) => Err(reason.clone()),
            None => db.flush().map(|_| ()).map_err(|e| {
                let reason = format!("flush failed: {e}");
                tracing::error!(%reason, "store poisoned; refusing further writes");
                poisoned = Some(reason.clone());
                reason
            }),
        };
        for waiter in waiters {
            // A waiter that gave up (its request was cancelled) needs no answer.
            let _ = waiter.send(outcome.clone());
        }
    }
}
