//! In-memory index of one (sub-)queue: which messages are ready, locked,
//! deferred or waiting for a time, so that receive is `O(log n)`.
//!
//! The index is rebuilt from the store on start; locks live only here, so a
//! restart releases every lock (the delivery count, persisted at receive
//! time in a delivery log, stays incremented). The index also counts, per
//! delivery log, the messages whose latest count it holds, so the broker
//! can drop a log once nothing refers to it. In a session-enabled queue every ready message
//! is also filed under its session, so a session receiver finds the next
//! message of its session directly.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::message::{LockToken, MessageLock, MessageState, SequenceNumber};

#[derive(Clone, Debug)]
pub(super) struct Slot {
    pub(super) delivery_count: u32,
    pub(super) visible_at_ms: i64,
    pub(super) expires_at_ms: Option<i64>,
    pub(super) lock: Option<MessageLock>,
    pub(super) deferred: bool,
    pub(super) session: Option<Arc<str>>,
    /// The body's length, for the queue's size without reading the store.
    pub(super) body_bytes: u64,
    /// The delivery log holding this message's latest delivery count, if
    /// one does (the stored message record may hold an older count).
    delivery_log: Option<DeliveryLogId>,
}

/// Names one delivery log record: the delivery counts one receive wrote.
pub(super) type DeliveryLogId = u64;

impl Slot {
    pub(super) fn state(&self, now_ms: i64) -> MessageState {
        match self.lock {
            Some(lock) if lock.locked_until_ms > now_ms => MessageState::Locked,
            _ if self.deferred => MessageState::Deferred,
            _ if self.visible_at_ms > now_ms => MessageState::Scheduled,
            _ => MessageState::Active,
        }
    }

    fn expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }

    /// What the counts see: (holds a lock, deferred and free).
    fn class(&self) -> (bool, bool) {
        (self.lock.is_some(), self.deferred && self.lock.is_none())
    }
}

/// How many messages of an index are in each state (Service Bus's count details).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) active: usize,
    pub(super) locked: usize,
    pub(super) scheduled: usize,
    pub(super) deferred: usize,
}

/// What a message needs when it joins the index.
pub(super) struct NewSlot {
    pub(super) delivery_count: u32,
    pub(super) visible_at_ms: i64,
    pub(super) expires_at_ms: Option<i64>,
    pub(super) deferred: bool,
    pub(super) session: Option<Arc<str>>,
    pub(super) body_bytes: u64,
}

/// What the index says about the next receive.
pub(super) enum Next {
    /// This message is ready: lock or remove it.
    Ready(SequenceNumber),
    /// This message is available again but has used up its deliveries.
    Exhausted(SequenceNumber),
    /// This message's time-to-live has passed.
    Expired(SequenceNumber),
    /// Nothing now; something may become ready at this time (Unix ms).
    Wait(Option<i64>),
}

#[derive(Default)]
pub(super) struct Index {
    slots: BTreeMap<SequenceNumber, Slot>,
    ready: BTreeSet<SequenceNumber>,
    /// Ready messages by session (session-enabled queues only).
    sessions: HashMap<Arc<str>, BTreeSet<SequenceNumber>>,
    /// (time, seq): a lock expiry or a visibility time. Entries go stale when
    /// a lock is renewed or a message settled; they are checked on pop.
    timers: BTreeSet<(i64, SequenceNumber)>,
    /// (time, seq): time-to-live expiries.
    expiries: BTreeSet<(i64, SequenceNumber)>,
    /// Slots holding a lock (live once the timers have fired).
    locked: usize,
    /// Deferred slots not locked.
    deferred_free: usize,
    /// Slots whose latest count is in each delivery log.
    log_refs: HashMap<DeliveryLogId, u32>,
    /// Delivery logs no slot refers to any more; the broker deletes them.
    released_logs: Vec<DeliveryLogId>,
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

    /// The counts at `now_ms`, without visiting every message: a ready
    /// message is active; after the timers due have fired, every lock held
    /// is live; what is neither ready, locked nor deferred waits for its
    /// time (scheduled, or backing off after an abandon).
    pub(super) fn counts(&mut self, now_ms: i64) -> Counts {
        self.fire_timers(now_ms);
        let active = self.ready.len();
        Counts {
            active,
            locked: self.locked,
            deferred: self.deferred_free,
            scheduled: self
                .slots
                .len()
                .saturating_sub(active + self.locked + self.deferred_free),
        }
    }

    /// Keeps the lock and deferral counts in step with a slot's change.
    fn tally(&mut self, before: (bool, bool), after: (bool, bool)) {
        let step = |count: &mut usize, was: bool, is: bool| match (was, is) {
            (false, true) => *count += 1,
            (true, false) => *count = count.saturating_sub(1),
            _ => {}
        };
        step(&mut self.locked, before.0, after.0);
        step(&mut self.deferred_free, before.1, after.1);
    }

    /// Adds a message that is unlocked.
    pub(super) fn insert(&mut self, seq: SequenceNumber, new: NewSlot, now_ms: i64) {
        if let Some(at) = new.expires_at_ms {
            self.expiries.insert((at, seq));
        }
        let old = self.slots.insert(
            seq,
            Slot {
                delivery_count: new.delivery_count,
                visible_at_ms: new.visible_at_ms,
                expires_at_ms: new.expires_at_ms,
                lock: None,
                deferred: new.deferred,
                session: new.session,
                body_bytes: new.body_bytes,
                delivery_log: None,
            },
        );
        let before = old.as_ref().map_or((false, false), Slot::class);
        self.release_log(old.and_then(|o| o.delivery_log));
        self.tally(before, (false, new.deferred));
        if !new.deferred {
            self.make_available(seq, new.visible_at_ms, now_ms);
        }
    }

    pub(super) fn remove(&mut self, seq: SequenceNumber) -> Option<Slot> {
        self.unready(seq);
        let slot = self.slots.remove(&seq)?;
        self.tally(slot.class(), (false, false));
        self.release_log(slot.delivery_log);
        Some(slot)
    }

    /// Notes that delivery log `log` now holds `seq`'s delivery count; the
    /// log that held it before loses a reference.
    pub(super) fn logged(&mut self, seq: SequenceNumber, log: DeliveryLogId) {
        let Some(slot) = self.slots.get_mut(&seq) else {
            return;
        };
        let old = slot.delivery_log.replace(log);
        *self.log_refs.entry(log).or_default() += 1;
        self.release_log(old);
    }

    /// Notes that `seq`'s stored record holds its latest delivery count
    /// again; the log that held it loses a reference.
    pub(super) fn unlogged(&mut self, seq: SequenceNumber) {
        let old = self.slots.get_mut(&seq).and_then(|s| s.delivery_log.take());
        self.release_log(old);
    }

    /// Replays a delivery log entry at load: counts only grow (a message
    /// record rewritten after the log holds the higher count already).
    pub(super) fn replay_delivery(&mut self, seq: SequenceNumber, count: u32, log: DeliveryLogId) {
        let Some(slot) = self.slots.get_mut(&seq) else {
            return; // settled after that receive
        };
        slot.delivery_count = slot.delivery_count.max(count);
        self.logged(seq, log);
    }

    /// Marks a log whose references are all gone for deletion. Replay at
    /// load may find a log no message refers to: it goes the same way.
    pub(super) fn release_unreferenced(&mut self, log: DeliveryLogId) {
        if !self.log_refs.contains_key(&log) {
            self.released_logs.push(log);
        }
    }

    fn release_log(&mut self, log: Option<DeliveryLogId>) {
        let Some(log) = log else { return };
        if let Some(refs) = self.log_refs.get_mut(&log) {
            *refs = refs.saturating_sub(1);
            if *refs == 0 {
                self.log_refs.remove(&log);
                self.released_logs.push(log);
            }
        }
    }

    /// Delivery logs no message refers to any more, to delete from the store.
    pub(super) fn take_released_logs(&mut self) -> Vec<DeliveryLogId> {
        std::mem::take(&mut self.released_logs)
    }

    fn set_ready(&mut self, seq: SequenceNumber) {
        self.ready.insert(seq);
        if let Some(session) = self.slots.get(&seq).and_then(|s| s.session.clone()) {
            self.sessions.entry(session).or_default().insert(seq);
        }
    }

    fn unready(&mut self, seq: SequenceNumber) {
        if self.ready.remove(&seq)
            && let Some(session) = self.slots.get(&seq).and_then(|s| s.session.clone())
            && let Some(set) = self.sessions.get_mut(&session)
        {
            set.remove(&seq);
            if set.is_empty() {
                self.sessions.remove(&session);
            }
        }
    }

    /// The next receivable message, given `max_delivery_count` (`None`: no
    /// limit), among all messages or those of one session.
    pub(super) fn next(
        &mut self,
        now_ms: i64,
        max_delivery_count: Option<u32>,
        session: Option<&str>,
    ) -> Next {
        self.fire_timers(now_ms);
        let first = match session {
            None => self.ready.iter().next().copied(),
            Some(s) => self
                .sessions
                .get(s)
                .and_then(|set| set.iter().next().copied()),
        };
        if let Some(seq) = first {
            let Some(slot) = self.slots.get(&seq) else {
                self.unready(seq);
                return self.next(now_ms, max_delivery_count, session);
            };
            if slot.expired(now_ms) {
                return Next::Expired(seq);
            }
            let exhausted = max_delivery_count.is_some_and(|max| slot.delivery_count >= max);
            return if exhausted {
                Next::Exhausted(seq)
            } else {
                Next::Ready(seq)
            };
        }
        Next::Wait(self.timers.iter().next().map(|&(at, _)| at))
    }

    /// The session of the oldest ready message whose session `available` accepts.
    pub(super) fn next_session(
        &mut self,
        now_ms: i64,
        available: impl Fn(&str) -> bool,
    ) -> Option<Arc<str>> {
        self.fire_timers(now_ms);
        self.ready
            .iter()
            .filter_map(|seq| self.slots.get(seq)?.session.clone())
            .find(|s| available(s))
    }

    /// When the next timer fires (Unix ms), if any.
    pub(super) fn next_timer(&self) -> Option<i64> {
        self.timers.iter().next().map(|&(at, _)| at)
    }

    /// Unlocked messages whose time-to-live has passed.
    pub(super) fn take_expired(&mut self, now_ms: i64) -> Vec<SequenceNumber> {
        let mut expired = Vec::new();
        while let Some(&(at, seq)) = self.expiries.iter().next() {
            if at > now_ms {
                break;
            }
            self.expiries.remove(&(at, seq));
            match self.slots.get(&seq) {
                // A locked message expires when its lock is released (as
                // Service Bus does); `next` catches it then.
                Some(slot) if slot.lock.is_none_or(|l| l.locked_until_ms <= now_ms) => {
                    expired.push(seq)
                }
                _ => {}
            }
        }
        expired
    }

    /// Locks a message (ready or deferred) and counts the delivery.
    pub(super) fn lock(
        &mut self,
        seq: SequenceNumber,
        lock_duration_ms: i64,
        now_ms: i64,
    ) -> Option<(MessageLock, u32)> {
        self.unready(seq);
        let slot = self.slots.get_mut(&seq)?;
        let before = slot.class();
        let lock = MessageLock {
            token: LockToken::new(),
            locked_until_ms: now_ms + lock_duration_ms,
        };
        slot.lock = Some(lock);
        slot.delivery_count += 1;
        let (after, count) = (slot.class(), slot.delivery_count);
        self.tally(before, after);
        self.timers.insert((lock.locked_until_ms, seq));
        Some((lock, count))
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

    /// Releases a lock; the message is delivered again from `visible_at_ms`
    /// (a deferred message stays deferred).
    pub(super) fn unlock(&mut self, seq: SequenceNumber, visible_at_ms: i64, now_ms: i64) {
        let Some(slot) = self.slots.get_mut(&seq) else {
            return;
        };
        let before = slot.class();
        slot.lock = None;
        slot.visible_at_ms = visible_at_ms;
        let (after, deferred) = (slot.class(), slot.deferred);
        self.tally(before, after);
        if !deferred {
            self.make_available(seq, visible_at_ms, now_ms);
        }
    }

    /// Releases `token`'s lock on `seq` at once, if it still holds it.
    pub(super) fn release(&mut self, seq: SequenceNumber, token: LockToken, now_ms: i64) {
        if self.check_lock(seq, token, now_ms) {
            self.unlock(seq, now_ms, now_ms);
        }
    }

    /// Sets a locked message aside until it is received by sequence number.
    pub(super) fn defer(&mut self, seq: SequenceNumber) {
        if let Some(slot) = self.slots.get_mut(&seq) {
            let before = slot.class();
            slot.lock = None;
            slot.deferred = true;
            let after = slot.class();
            self.tally(before, after);
        }
        self.unready(seq);
    }

    /// Whether `seq` is deferred and not locked.
    pub(super) fn is_deferred_and_free(&self, seq: SequenceNumber, now_ms: i64) -> bool {
        self.slots
            .get(&seq)
            .is_some_and(|s| s.deferred && s.lock.is_none_or(|l| l.locked_until_ms <= now_ms))
    }

    fn make_available(&mut self, seq: SequenceNumber, visible_at_ms: i64, now_ms: i64) {
        if visible_at_ms <= now_ms {
            self.set_ready(seq);
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
                    let before = slot.class();
                    slot.lock = None;
                    let (after, deferred) = (slot.class(), slot.deferred);
                    self.tally(before, after);
                    if !deferred {
                        self.set_ready(seq);
                    }
                }
                None if slot.visible_at_ms == at && !slot.deferred => self.set_ready(seq),
                _ => {} // stale: renewed, or rescheduled
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(delivery_count: u32, visible_at_ms: i64) -> NewSlot {
        NewSlot {
            delivery_count,
            visible_at_ms,
            expires_at_ms: None,
            deferred: false,
            session: None,
            body_bytes: 0,
        }
    }

    /// The counts by visiting every slot, as the index had them before.
    fn counts_by_scan(index: &Index, now: i64) -> Counts {
        let mut counts = Counts::default();
        for (_, slot) in index.iter() {
            match slot.state(now) {
                MessageState::Locked => counts.locked += 1,
                MessageState::Scheduled => counts.scheduled += 1,
                MessageState::Deferred => counts.deferred += 1,
                MessageState::Active => counts.active += 1,
            }
        }
        counts
    }

    #[test]
    fn counts_kept_as_messages_change_state_match_a_full_scan() {
        let mut index = Index::default();
        let mut tokens: HashMap<SequenceNumber, LockToken> = HashMap::new();
        // A fixed pseudo-random walk over every operation that changes a state.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut now: i64 = 0;
        for step in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let seq = x % 64;
            now += ((x >> 8) % 3) as i64;
            match (x >> 16) % 8 {
                0 | 1 if index.get(seq).is_none() => {
                    let visible = now + ((x >> 24) % 4) as i64 * 5;
                    let deferred = (x >> 30).is_multiple_of(7);
                    index.insert(
                        seq,
                        NewSlot {
                            deferred,
                            ..slot(0, visible)
                        },
                        now,
                    );
                }
                2 => {
                    index.remove(seq);
                }
                3 => {
                    if let Next::Ready(ready) = index.next(now, None, None)
                        && let Some((lock, _)) = index.lock(ready, 7, now)
                    {
                        tokens.insert(ready, lock.token);
                    }
                }
                4 => {
                    if index.is_deferred_and_free(seq, now)
                        && let Some((lock, _)) = index.lock(seq, 7, now)
                    {
                        tokens.insert(seq, lock.token);
                    }
                }
                5 => {
                    if let Some(&token) = tokens.get(&seq)
                        && index.check_lock(seq, token, now)
                    {
                        index.unlock(seq, now + ((x >> 40) % 3) as i64 * 4, now);
                    }
                }
                6 => {
                    if let Some(&token) = tokens.get(&seq)
                        && index.check_lock(seq, token, now)
                    {
                        if (x >> 44).is_multiple_of(2) {
                            index.defer(seq);
                        } else {
                            index.renew(seq, 7, now);
                        }
                    }
                }
                _ => {}
            }
            let counts = index.counts(now);
            assert_eq!(counts, counts_by_scan(&index, now), "after step {step}");
        }
    }

    #[test]
    fn ready_messages_come_out_in_sequence_order() {
        let mut index = Index::default();
        index.insert(2, slot(0, 0), 10);
        index.insert(1, slot(0, 0), 10);
        assert!(matches!(index.next(10, Some(10), None), Next::Ready(1)));
    }

    #[test]
    fn expired_lock_makes_message_ready_again() {
        let mut index = Index::default();
        index.insert(1, slot(0, 0), 0);
        let (lock, count) = index.lock(1, 100, 0).expect("slot exists");
        assert_eq!(count, 1);
        assert!(matches!(
            index.next(50, Some(10), None),
            Next::Wait(Some(100))
        ));
        assert!(index.check_lock(1, lock.token, 99));
        assert!(matches!(index.next(100, Some(10), None), Next::Ready(1)));
        assert!(!index.check_lock(1, lock.token, 100));
    }

    #[test]
    fn renewed_lock_outlives_its_first_expiry() {
        let mut index = Index::default();
        index.insert(1, slot(0, 0), 0);
        let (lock, _) = index.lock(1, 100, 0).expect("slot exists");
        assert_eq!(index.renew(1, 100, 90), Some(190));
        assert!(matches!(
            index.next(150, Some(10), None),
            Next::Wait(Some(190))
        ));
        assert!(index.check_lock(1, lock.token, 150));
    }

    #[test]
    fn scheduled_message_waits_for_its_time() {
        let mut index = Index::default();
        index.insert(1, slot(0, 500), 0);
        assert!(matches!(
            index.next(499, Some(10), None),
            Next::Wait(Some(500))
        ));
        assert!(matches!(index.next(500, Some(10), None), Next::Ready(1)));
    }

    #[test]
    fn message_at_max_delivery_count_is_exhausted() {
        let mut index = Index::default();
        index.insert(1, slot(3, 0), 0);
        assert!(matches!(index.next(0, Some(3), None), Next::Exhausted(1)));
        assert!(matches!(index.next(0, None, None), Next::Ready(1)));
    }

    #[test]
    fn deferred_message_is_skipped_until_received_by_sequence_number() {
        let mut index = Index::default();
        index.insert(1, slot(0, 0), 0);
        index.insert(2, slot(0, 0), 0);
        index.lock(1, 100, 0).expect("slot");
        index.defer(1);
        assert!(matches!(index.next(200, None, None), Next::Ready(2)));
        assert!(index.is_deferred_and_free(1, 200));
        index.lock(1, 100, 200).expect("slot");
        index.unlock(1, 0, 250);
        assert!(
            index.is_deferred_and_free(1, 250),
            "abandoning a deferred message keeps it deferred"
        );
    }

    #[test]
    fn expired_message_is_reported_instead_of_delivered() {
        let mut index = Index::default();
        index.insert(
            1,
            NewSlot {
                expires_at_ms: Some(100),
                ..slot(0, 0)
            },
            0,
        );
        assert!(matches!(index.next(50, None, None), Next::Ready(1)));
        assert!(matches!(index.next(100, None, None), Next::Expired(1)));
        assert_eq!(index.take_expired(100), vec![1]);
    }

    #[test]
    fn session_messages_are_found_per_session_in_order() {
        let mut index = Index::default();
        for (seq, s) in [(1, "a"), (2, "b"), (3, "a")] {
            index.insert(
                seq,
                NewSlot {
                    session: Some(Arc::from(s)),
                    ..slot(0, 0)
                },
                0,
            );
        }
        assert!(matches!(index.next(0, None, Some("b")), Next::Ready(2)));
        assert_eq!(index.next_session(0, |s| s != "a").as_deref(), Some("b"));
        index.lock(1, 100, 0).expect("slot");
        assert!(matches!(index.next(0, None, Some("a")), Next::Ready(3)));
    }
}
