//! Sessions: FIFO per session id, one receiver per session at a time.
//!
//! In a queue created with `requiresSession`, every message carries a
//! session id. A receiver first *accepts* a session (a named one, or the
//! next one with messages waiting and no holder), which gives it a session
//! lock; while it holds the lock, it alone receives that session's
//! messages, in order. The lock is renewable and lapses like a message
//! lock. Each session has a small durable state (opaque bytes) that the
//! holder may read and replace — where a workflow keeps its progress.

use std::time::Duration;

use serde::Serialize;

use super::{
    Broker, BrokerError, EntityPath, LockToken, QueueState, ReceiveMode, ReceivedMessage,
    TAG_SESSION_STATE, key_prefix,
};
use crate::clock::now_ms;
use crate::store::StoreError;

/// A held session lock.
#[derive(Clone, Debug)]
pub(super) struct SessionLock {
    token: LockToken,
    locked_until_ms: i64,
}

/// What a receiver gets when it accepts a session.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionLockInfo {
    /// The session id.
    pub session_id: String,
    /// Present it to receive, renew, release and use the session state.
    #[serde(serialize_with = "token_text")]
    pub lock_token: LockToken,
    /// The lock lapses at this time (Unix ms) unless renewed.
    pub locked_until_ms: i64,
}

fn token_text<S: serde::Serializer>(token: &LockToken, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(token)
}

/// Whether `token` holds a live lock on `session`.
pub(super) fn holds(state: &QueueState, session: &str, token: LockToken, now: i64) -> bool {
    state
        .sessions
        .get(session)
        .is_some_and(|l| l.token == token && l.locked_until_ms > now)
}

fn state_key(queue: &str, session: &str) -> Vec<u8> {
    let mut key = key_prefix(queue, TAG_SESSION_STATE);
    key.extend_from_slice(session.as_bytes());
    key
}

impl Broker {
    fn session_queue(&self, queue: &str) -> Result<std::sync::Arc<super::Queue>, BrokerError> {
        let queue = self.queue(queue)?;
        if !queue.properties().requires_session {
            return Err(BrokerError::Session(format!(
                "queue `{}` is not session-enabled (create it with requiresSession)",
                queue.name
            )));
        }
        Ok(queue)
    }

    /// Accepts a session: `session_id`, or else the next session with
    /// messages waiting that no one holds (waiting up to `wait` for one).
    pub async fn accept_session(
        &self,
        queue: &str,
        session_id: Option<&str>,
        wait: Duration,
    ) -> Result<Option<SessionLockInfo>, BrokerError> {
        let queue = self.session_queue(queue)?;
        let lock_ms = queue.properties().lock_duration_ms();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let arrival = queue.arrivals.notified();
            tokio::pin!(arrival);
            arrival.as_mut().enable();
            let next_time = {
                let mut state = queue.state();
                if state.deleted {
                    return Err(BrokerError::QueueNotFound(queue.name.clone()));
                }
                let now = now_ms();
                let free = |state: &QueueState, id: &str| {
                    state
                        .sessions
                        .get(id)
                        .is_none_or(|l| l.locked_until_ms <= now)
                };
                let chosen = match session_id {
                    Some(id) if free(&state, id) => Some(std::sync::Arc::<str>::from(id)),
                    Some(_) => None,
                    None => {
                        let held: Vec<String> = state
                            .sessions
                            .iter()
                            .filter(|(_, l)| l.locked_until_ms > now)
                            .map(|(id, _)| id.clone())
                            .collect();
                        state
                            .active
                            .next_session(now, |id| !held.iter().any(|h| h == id))
                    }
                };
                if let Some(id) = chosen {
                    let lock = SessionLock {
                        token: LockToken::new(),
                        locked_until_ms: now + lock_ms,
                    };
                    state.sessions.insert(id.to_string(), lock.clone());
                    return Ok(Some(SessionLockInfo {
                        session_id: id.to_string(),
                        lock_token: lock.token,
                        locked_until_ms: lock.locked_until_ms,
                    }));
                }
                state.active.next_timer()
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let mut sleep_until = deadline;
            if let Some(at) = next_time {
                let in_ms = u64::try_from(at - now_ms()).unwrap_or(0);
                sleep_until = sleep_until.min(now + Duration::from_millis(in_ms));
            }
            tokio::select! {
                _ = &mut arrival => {}
                _ = tokio::time::sleep_until(sleep_until) => {}
            }
        }
    }

    fn with_session<T>(
        &self,
        queue: &str,
        session: &str,
        token: LockToken,
        f: impl FnOnce(&super::Queue, &mut QueueState) -> Result<T, BrokerError>,
    ) -> Result<T, BrokerError> {
        let queue = self.session_queue(queue)?;
        let mut state = queue.state();
        if !holds(&state, session, token, now_ms()) {
            return Err(BrokerError::SessionLockLost {
                queue: queue.name.clone(),
                session: session.to_string(),
            });
        }
        f(&queue, &mut state)
    }

    /// Receives up to `max` messages of a held session, in order.
    pub async fn receive_from_session(
        &self,
        queue: &str,
        session: &str,
        token: LockToken,
        mode: ReceiveMode,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, BrokerError> {
        let queue = self.session_queue(queue)?;
        let path = EntityPath::active(&queue.name);
        self.receive_from(
            &queue,
            &path,
            mode,
            Some((session, token)),
            max.max(1),
            wait,
        )
        .await
    }

    /// Extends a session lock; returns the new expiry (Unix ms).
    pub fn renew_session_lock(
        &self,
        queue: &str,
        session: &str,
        token: LockToken,
    ) -> Result<i64, BrokerError> {
        self.with_session(queue, session, token, |queue, state| {
            let until = now_ms() + queue.properties().lock_duration_ms();
            if let Some(lock) = state.sessions.get_mut(session) {
                lock.locked_until_ms = until;
            }
            Ok(until)
        })
    }

    /// Gives a session back so another receiver can accept it.
    pub fn release_session(
        &self,
        queue: &str,
        session: &str,
        token: LockToken,
    ) -> Result<(), BrokerError> {
        let released = self.with_session(queue, session, token, |queue, state| {
            state.sessions.remove(session);
            Ok(queue.name.clone())
        })?;
        if let Ok(queue) = self.queue(&released) {
            queue.arrivals.notify_waiters();
        }
        Ok(())
    }

    /// The state of a held session.
    pub fn session_state(
        &self,
        queue: &str,
        session: &str,
        token: LockToken,
    ) -> Result<Option<Vec<u8>>, BrokerError> {
        self.with_session(queue, session, token, |queue, _| {
            Ok(self
                .store
                .messages()
                .get(state_key(&queue.name, session))
                .map_err(StoreError::from)?
                .map(|v| v.to_vec()))
        })
    }

    /// Replaces (or with `None`, clears) the state of a held session; durable on return.
    pub async fn set_session_state(
        &self,
        queue: &str,
        session: &str,
        token: LockToken,
        value: Option<Vec<u8>>,
    ) -> Result<(), BrokerError> {
        self.with_session(queue, session, token, |queue, _| {
            let key = state_key(&queue.name, session);
            match value {
                Some(bytes) => self.store.messages().insert(key, bytes).map(|_| ()),
                None => self.store.messages().remove(key).map(|_| ()),
            }
            .map_err(StoreError::from)?;
            Ok(())
        })?;
        self.store.commit().await?;
        Ok(())
    }
}
