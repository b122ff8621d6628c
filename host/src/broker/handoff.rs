//! Direct handoff: a message sent while a peek-lock receiver waits goes
//! straight to that receiver, locked, its first delivery counted in the
//! send's own write.
//!
//! Without it the waiting receiver wakes, reads the record back, writes the
//! new delivery count and waits for a second commit (an fsync under the
//! default durability) before it answers. With it the send writes the
//! record once, with delivery count 1, so the one commit that makes the
//! send durable makes the delivery durable too: a crash after the receiver
//! saw the message redelivers it with delivery count 2, as if it had been
//! taken from the queue.
//!
//! A receiver registers as a [`Waiter`] under the queue's state lock, in
//! the same critical section that found nothing to take, so a send sees
//! either the waiter or (through the index) nothing missed. A send takes
//! waiters oldest first, only while nothing older is receivable, and hands
//! each up to its `max` messages after its commit. Messages whose receiver
//! left before it had them (the request was cancelled) are released at
//! once ([`release`]), their delivery still counted: the same as a receive
//! whose answer was lost on the way.

use std::collections::VecDeque;

use tokio::sync::oneshot;

use super::Queue;
use super::message::ReceivedMessage;
use crate::clock::now_ms;

/// A peek-lock receiver waiting for messages.
pub(super) struct Waiter {
    id: u64,
    /// How many messages it takes at most.
    pub(super) max: usize,
    delivered: oneshot::Sender<Vec<ReceivedMessage>>,
}

impl Waiter {
    /// Hands the receiver its messages; gives them back if it has left.
    pub(super) fn deliver(
        self,
        messages: Vec<ReceivedMessage>,
    ) -> Result<(), Vec<ReceivedMessage>> {
        self.delivered.send(messages)
    }
}

/// The waiters of one queue, oldest first (kept in its state).
#[derive(Default)]
pub(super) struct Waiters {
    waiting: VecDeque<Waiter>,
    next_id: u64,
}

impl Waiters {
    /// Registers a receiver for up to `max` messages.
    fn register(&mut self, max: usize) -> (u64, oneshot::Receiver<Vec<ReceivedMessage>>) {
        let (delivered, receiver) = oneshot::channel();
        let id = self.next_id;
        self.next_id += 1;
        self.waiting.push_back(Waiter {
            id,
            max: max.max(1),
            delivered,
        });
        (id, receiver)
    }

    /// Removes waiter `id`; false if a send took it already.
    fn withdraw(&mut self, id: u64) -> bool {
        match self.waiting.iter().position(|w| w.id == id) {
            Some(at) => self.waiting.remove(at).is_some(),
            None => false,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The oldest waiter still listening.
    pub(super) fn take(&mut self) -> Option<Waiter> {
        while let Some(waiter) = self.waiting.pop_front() {
            if !waiter.delivered.is_closed() {
                return Some(waiter);
            }
        }
        None
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.waiting.len()
    }
}

/// A receiver's registration; dropping it (the receive was cancelled)
/// withdraws it.
pub(super) struct Waiting<'q> {
    queue: &'q Queue,
    id: u64,
    delivered: oneshot::Receiver<Vec<ReceivedMessage>>,
    registered: bool,
}

impl<'q> Waiting<'q> {
    /// Registers a receiver of `queue` (caller holds its state lock and
    /// passes the waiters in it).
    pub(super) fn register(queue: &'q Queue, waiters: &mut Waiters, max: usize) -> Waiting<'q> {
        let (id, delivered) = waiters.register(max);
        Waiting {
            queue,
            id,
            delivered,
            registered: true,
        }
    }

    /// Resolves when a send handed this receiver messages (`None`: the send
    /// failed before its commit, and the receiver should look again).
    pub(super) async fn delivered(&mut self) -> Option<Vec<ReceivedMessage>> {
        let messages = (&mut self.delivered).await.ok();
        self.registered = false;
        messages
    }

    /// Stops waiting. If a send took this waiter already, waits for it to
    /// commit and returns its messages (`None`: nothing was handed, or the
    /// send failed).
    pub(super) async fn withdraw(mut self) -> Option<Vec<ReceivedMessage>> {
        self.registered = false;
        if self.queue.state().waiters.withdraw(self.id) {
            return None;
        }
        (&mut self.delivered).await.ok()
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.registered {
            self.queue.state().waiters.withdraw(self.id);
        }
        // Handed over but never taken: the receive was cancelled.
        self.delivered.close();
        if let Ok(messages) = self.delivered.try_recv() {
            release(self.queue, &messages);
        }
    }
}

/// Gives back to `queue` handed messages no receiver got: their locks are
/// released, so they are receivable again right away.
pub(super) fn release(queue: &Queue, messages: &[ReceivedMessage]) {
    let now = now_ms();
    {
        let mut state = queue.state();
        for message in messages {
            if let Some(lock) = message.lock {
                state
                    .active
                    .release(message.sequence_number, lock.token, now);
            }
        }
    }
    queue.arrivals.notify_waiters();
}
