//! CPU time spent by a server (its whole process group) and by this
//! benchmark, read from /proc: on a 2-core machine where client and server
//! share the cores, CPU per message says more than msg/s alone about where
//! the time goes.

use std::time::Duration;

/// Linux reports times in USER_HZ ticks, 100 a second on every mainstream
/// configuration (the kernel's `HZ` does not change it).
const TICKS_PER_SECOND: u64 = 100;

/// `(process group, user + system ticks)` from the text of `/proc/<pid>/stat`.
fn parse_stat(text: &str) -> Option<(u32, u64)> {
    // The command name (field 2) may hold spaces and parentheses: the
    // fields that follow start after the last `)`.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state, ppid, pgrp (index 2), ..., utime (11), stime (12).
    let group = fields.get(2)?.parse().ok()?;
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((group, user + system))
}

fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_micros(ticks * (1_000_000 / TICKS_PER_SECOND))
}

/// CPU time of every live process in process group `group`.
pub(crate) fn group(group: u32) -> Option<Duration> {
    let mut ticks = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // Processes may exit between listing and reading: skip those.
        if let Ok(text) = std::fs::read_to_string(entry.path().join("stat"))
            && let Some((g, t)) = parse_stat(&text)
            && g == group
        {
            ticks += t;
        }
    }
    Some(ticks_to_duration(ticks))
}

/// CPU time of this process (all its threads).
pub(crate) fn own() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat(&text).map(|(_, t)| ticks_to_duration(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_an_awkward_name() {
        let text = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(parse_stat(text), Some((42, 300)));
        assert_eq!(ticks_to_duration(300), Duration::from_secs(3));
    }

    #[test]
    fn own_cpu_is_readable() {
        assert!(own().is_some());
    }
}
