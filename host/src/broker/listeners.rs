//! Who is listening on an entity: the receivers waiting on it now and when
//! the last one left. The push model asks this to decide that messages wait
//! "with no listeners" ([`crate::events::system`]).

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use crate::clock::now_ms;

/// Receivers of one entity (a queue or its dead-letter sub-queue).
#[derive(Debug)]
pub(crate) struct Listeners {
    receiving: AtomicUsize,
    last_seen_ms: AtomicI64,
}

/// Holds a receiver's place while it receives; leaving records the time.
pub(crate) struct Listening<'a>(&'a Listeners);

impl Listeners {
    /// No one listening; "since" now, so a new entity is not listener-less
    /// before it had a chance.
    pub(crate) fn new() -> Listeners {
        Listeners {
            receiving: AtomicUsize::new(0),
            last_seen_ms: AtomicI64::new(now_ms()),
        }
    }

    /// A receiver starts receiving.
    pub(crate) fn enter(&self) -> Listening<'_> {
        self.receiving.fetch_add(1, Ordering::AcqRel);
        Listening(self)
    }

    /// Since when (Unix ms) no receiver has been here; `None` while one is.
    pub(crate) fn idle_since(&self) -> Option<i64> {
        (self.receiving.load(Ordering::Acquire) == 0)
            .then(|| self.last_seen_ms.load(Ordering::Acquire))
    }
}

impl Drop for Listening<'_> {
    fn drop(&mut self) {
        self.0.last_seen_ms.store(now_ms(), Ordering::Release);
        self.0.receiving.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_is_not_idle_while_a_receiver_waits() {
        let listeners = Listeners::new();
        let guard = listeners.enter();
        assert_eq!(listeners.idle_since(), None);
        drop(guard);
        assert!(listeners.idle_since().is_some());
    }
}
