//! Duplicate detection: message ids seen within an entity's window.
//!
//! Each remembered id is also stored (tag `u` under the entity's key
//! prefix) so that the window survives a restart; ids older than the window
//! are forgotten and their keys removed in the next write batch.

use std::collections::{HashMap, VecDeque};

/// Ids an entity has accepted recently.
#[derive(Default)]
pub(super) struct Dedup {
    window_ms: i64,
    seen: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

impl Dedup {
    pub(super) fn new(window_ms: i64) -> Dedup {
        Dedup {
            window_ms,
            ..Dedup::default()
        }
    }

    /// Changes the window; ids already remembered are judged by the new one.
    pub(super) fn set_window(&mut self, window_ms: i64) {
        self.window_ms = window_ms;
    }

    /// Whether `id` was accepted within the window before `now_ms`.
    pub(super) fn is_duplicate(&self, id: &str, now_ms: i64) -> bool {
        self.seen
            .get(id)
            .is_some_and(|&at| now_ms - at < self.window_ms)
    }

    /// Remembers `id` as accepted at `now_ms`.
    pub(super) fn remember(&mut self, id: &str, now_ms: i64) {
        self.seen.insert(id.to_string(), now_ms);
        self.order.push_back((now_ms, id.to_string()));
    }

    /// Forgets ids older than the window; returns them so their keys can be removed.
    pub(super) fn expire(&mut self, now_ms: i64) -> Vec<String> {
        let mut gone = Vec::new();
        while let Some((at, _)) = self.order.front() {
            if now_ms - *at < self.window_ms {
                break;
            }
            let Some((at, id)) = self.order.pop_front() else {
                break;
            };
            // Only forget it if it was not accepted again since.
            if self.seen.get(&id) == Some(&at) {
                self.seen.remove(&id);
                gone.push(id);
            }
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_a_duplicate_only_within_the_window() {
        let mut dedup = Dedup::new(1000);
        dedup.remember("a", 0);
        assert!(dedup.is_duplicate("a", 999));
        assert!(!dedup.is_duplicate("a", 1000));
        assert!(!dedup.is_duplicate("b", 1));
        assert_eq!(dedup.expire(1000), vec!["a".to_string()]);
        assert!(!dedup.is_duplicate("a", 1001));
    }
}
