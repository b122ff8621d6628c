//! In-memory index of one (sub-)queue: which messages are ready, locked or
//! waiting for a time, so that receive is `O(log n)`.
//!
//! The index is rebuilt from the store on start; locks live only here, so a
//! restart releases every lock (the delivery count, already persisted at
//! receive time, stays incremented).

use std::collections::{BTreeMap, BTreeSet};

use super::message::{LockToken, MessageLock, MessageState, SequenceNumber};

#[derive(Clone, Debug)]
pub(super) struct Slot {
    pub(super) delivery_count: u32,
    pub(super) visible_at_ms: i64,
    pub(super) lock: Option<MessageLock>,
}

impl Slot {
    pub(super) fn state(&self, now_ms: i64) -> MessageState {
        match self.lock {
            Some(lock) if lock.locked_until_ms > now_ms => MessageState::Locked,
            _ if self.visible_at_ms > now_ms => MessageState::Scheduled,
            _ => MessageState::Active,
        }
    }
}

/// What the index says about the next receive.
pub(super) enum Next {
    /// This message is ready: lock or remove it.
    Ready(SequenceNumber),
    /// This message is available again but has used up its deliveries.
    Exhausted(SequenceNumber),
    /// Nothing now; something may become ready at this time (Unix ms).
    Wait(Option<i64>),
}

#[derive(Default)]
pub(super) struct Index {
    slots: BTreeMap<SequenceNumber, Slot>,
    ready: BTreeSet<SequenceNumber>,
    /// (time, seq): a lock expiry or a visibility time. Entries go stale when
    /// a lock is renewed or a message settled; they are checked on pop.
    timers: BTreeSet<(i64, SequenceNumber)>,
}

impl Index {
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(super) fn get(&self, seq: SequenceNumber) -> Option<&Slot> {
        self.slots.get(&seq)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&SequenceNumber, &Slot)> {
        self.slots.iter()
    }

    /// Adds a message that is unlocked.
    pub(super) fn insert(
        &mut self,
        seq: SequenceNumber,
        delivery_count: u32,
        visible_at_ms: i64,
        now_ms: i64,
    ) {
        self.slots.insert(
            seq,
            Slot {
                delivery_count,
                visible_at_ms,
                lock: None,
            },
        );
        self.make_available(seq, visible_at_ms, now_ms);
    }

    pub(super) fn remove(&mut self, seq: SequenceNumber) -> Option<Slot> {
        self.ready.remove(&seq);
        self.slots.remove(&seq)
    }

    /// The next receivable message, given `max_delivery_count` (`None`: no limit).
    pub(super) fn next(&mut self, now_ms: i64, max_delivery_count: Option<u32>) -> Next {
        self.fire_timers(now_ms);
        if let Some(&seq) = self.ready.iter().next() {
            let exhausted = match (self.slots.get(&seq), max_delivery_count) {
                (Some(slot), Some(max)) => slot.delivery_count >= max,
                _ => false,
            };
            return if exhausted {
                Next::Exhausted(seq)
            } else {
                Next::Ready(seq)
            };
        }
        Next::Wait(self.timers.iter().next().map(|&(at, _)| at))
    }

    /// Locks a ready message and counts the delivery.
    pub(super) fn lock(
        &mut self,
        seq: SequenceNumber,
        lock_duration_ms: i64,
        now_ms: i64,
    ) -> Option<(MessageLock, u32)> {
        let slot = self.slots.get_mut(&seq)?;
        self.ready.remove(&seq);
        let lock = MessageLock {
            token: LockToken::new(),
            locked_until_ms: now_ms + lock_duration_ms,
        };
        slot.lock = Some(lock);
        slot.delivery_count += 1;
        self.timers.insert((lock.locked_until_ms, seq));
        Some((lock, slot.delivery_count))
    }

    /// Checks that `token` holds a live lock on `seq`.
    pub(super) fn check_lock(&self, seq: SequenceNumber, token: LockToken, now_ms: i64) -> bool {
        matches!(
            self.slots.get(&seq).and_then(|s| s.lock),
            Some(lock) if lock.token == token && lock.locked_until_ms > now_ms
        )
    }

    /// Extends a live lock; returns the new expiry.
    pub(super) fn renew(
        &mut self,
        seq: SequenceNumber,
        lock_duration_ms: i64,
        now_ms: i64,
    ) -> Option<i64> {
        let slot = self.slots.get_mut(&seq)?;
        let lock = slot.lock.as_mut()?;
        lock.locked_until_ms = now_ms + lock_duration_ms;
        let until = lock.locked_until_ms;
        self.timers.insert((until, seq));
        Some(until)
    }

    /// Releases a lock; the message is delivered again from `visible_at_ms`.
    pub(super) fn unlock(&mut self, seq: SequenceNumber, visible_at_ms: i64, now_ms: i64) {
        if let Some(slot) = self.slots.get_mut(&seq) {
            slot.lock = None;
            slot.visible_at_ms = visible_at_ms;
            self.make_available(seq, visible_at_ms, now_ms);
        }
    }

    fn make_available(&mut self, seq: SequenceNumber, visible_at_ms: i64, now_ms: i64) {
        if visible_at_ms <= now_ms {
            self.ready.insert(seq);
        } else {
            self.timers.insert((visible_at_ms, seq));
        }
    }

    /// Moves messages whose time has come into `ready`: expired locks and
    /// reached visibility times.
    fn fire_timers(&mut self, now_ms: i64) {
        while let Some(&(at, seq)) = self.timers.iter().next() {
            if at > now_ms {
                break;
            }
            self.timers.remove(&(at, seq));
            let Some(slot) = self.slots.get_mut(&seq) else {
                continue; // settled since
            };
            match slot.lock {
                Some(lock) if lock.locked_until_ms == at => {
                    // The receiver let the lock lapse: deliver it again.
                    slot.lock = None;
                    self.ready.insert(seq);
                }
                None if slot.visible_at_ms == at => {
                    self.ready.insert(seq);
                }
                _ => {} // stale: renewed, or rescheduled
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_messages_come_out_in_sequence_order() {
        let mut index = Index::default();
        index.insert(2, 0, 0, 10);
        index.insert(1, 0, 0, 10);
        assert!(matches!(index.next(10, Some(10)), Next::Ready(1)));
    }

    #[test]
    fn expired_lock_makes_message_ready_again() {
        let mut index = Index::default();
        index.insert(1, 0, 0, 0);
        let (lock, count) = index.lock(1, 100, 0).expect("slot exists");
        assert_eq!(count, 1);
        assert!(matches!(index.next(50, Some(10)), Next::Wait(Some(100))));
        assert!(index.check_lock(1, lock.token, 99));
        assert!(matches!(index.next(100, Some(10)), Next::Ready(1)));
        assert!(!index.check_lock(1, lock.token, 100));
    }

    #[test]
    fn renewed_lock_outlives_its_first_expiry() {
        let mut index = Index::default();
        index.insert(1, 0, 0, 0);
        let (lock, _) = index.lock(1, 100, 0).expect("slot exists");
        assert_eq!(index.renew(1, 100, 90), Some(190));
        assert!(matches!(index.next(150, Some(10)), Next::Wait(Some(190))));
        assert!(index.check_lock(1, lock.token, 150));
    }

    #[test]
    fn scheduled_message_waits_for_its_time() {
        let mut index = Index::default();
        index.insert(1, 0, 500, 0);
        assert!(matches!(index.next(499, Some(10)), Next::Wait(Some(500))));
        assert!(matches!(index.next(500, Some(10)), Next::Ready(1)));
    }

    #[test]
    fn message_at_max_delivery_count_is_exhausted() {
        let mut index = Index::default();
        index.insert(1, 3, 0, 0);
        assert!(matches!(index.next(0, Some(3)), Next::Exhausted(1)));
        assert!(matches!(index.next(0, None), Next::Ready(1)));
    }
}
