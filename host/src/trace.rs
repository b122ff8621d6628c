//! Correlation and workflow progress: the steps of one business transaction.
//!
//! Every message and event carries W3C trace context ([`TraceParent`]): a
//! message in its `traceparent` user property (`Diagnostic-Id`, which the
//! Azure SDKs set, is read too), an event in the CloudEvents `traceparent`
//! extension. Ingress gives one to whatever arrives without it; what a
//! handler sends or publishes continues the trace of what it handles (same
//! trace id, the invocation as parent).
//!
//! [`Traces`] records each step (an invocation, a send, a publish, a
//! delivery, a dead-letter) under the transaction's correlation id and its
//! trace id, so that `GET /api/traces/{id}` and `sluice trace` show the whole
//! flow, retries and dead letters included, even where a handler gave the
//! next message a correlation id of its own (the trace id joins the steps).
//! Steps are diagnostics: they are written without waiting for a commit and
//! kept for [`RETENTION`].
//!
//! Under load, successful steps are sampled, as Application Insights'
//! adaptive sampling does for Azure Functions: past
//! [`DEFAULT_MAX_STEPS_PER_SECOND`] a second (configurable), only flows
//! whose trace id falls in the kept fraction are recorded, and every step of
//! such a flow is (the decision is a hash of the trace id, so a flow is kept
//! whole or not at all). Failures (an abandon, an error, a dead-letter) are
//! always recorded. Without sampling, two random-key inserts per invocation
//! cost a quarter of the host's CPU at 20,000 invocations a second.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock;
use crate::store::{Store, StoreError};

/// The user property (and CloudEvents extension) holding trace context.
pub const TRACEPARENT: &str = "traceparent";
/// The application property the Azure Service Bus SDKs use for the same.
pub const DIAGNOSTIC_ID: &str = "Diagnostic-Id";
/// How long steps are kept.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
const SWEEP_INTERVAL: Duration = Duration::from_secs(3600);
/// Successful steps recorded per second before sampling starts.
pub const DEFAULT_MAX_STEPS_PER_SECOND: u32 = 1000;
/// Sampling fractions are in parts per million.
const PPM: u64 = 1_000_000;

/// W3C trace context: `00-<trace id>-<parent span id>-<flags>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits: the span this one continues.
    pub span_id: String,
}

fn random_hex(bytes: usize) -> String {
    use rand::Rng as _;
    let mut buf = vec![0u8; bytes];
    // A thread-local CSPRNG: ids are made several times per message, and a
    // system call each was measurable.
    rand::rng().fill_bytes(&mut buf);
    if buf.iter().all(|b| *b == 0) {
        buf[0] = 1;
    }
    hex::encode(buf)
}

impl TraceParent {
    /// A new trace.
    pub fn new_root() -> TraceParent {
        TraceParent {
            trace_id: random_hex(16),
            span_id: random_hex(8),
        }
    }

    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; `None` when malformed.
    pub fn parse(text: &str) -> Option<TraceParent> {
        let mut parts = text.trim().split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let valid = hex(version, 2)
            && version != "ff"
            && hex(trace_id, 32)
            && trace_id.bytes().any(|b| b != b'0')
            && hex(span_id, 16)
            && span_id.bytes().any(|b| b != b'0')
            && hex(flags, 2);
        valid.then(|| TraceParent {
            trace_id: trace_id.to_string(),
            span_id: span_id.to_string(),
        })
    }

    /// A child: the same trace, a new span.
    pub fn child(&self) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id.clone(),
            span_id: random_hex(8),
        }
    }

    /// The header / property value (sampled).
    pub fn header(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }

    /// The trace context a message's properties carry, if any.
    pub fn from_properties(properties: &[(String, String)]) -> Option<TraceParent> {
        properties
            .iter()
            .find(|(k, _)| {
                k.eq_ignore_ascii_case(TRACEPARENT) || k.eq_ignore_ascii_case(DIAGNOSTIC_ID)
            })
            .and_then(|(_, v)| TraceParent::parse(v))
    }
}

/// Gives a message's properties trace context when they carry none: a span
/// of `caller` (e.g. the sending HTTP request's `traceparent`), else a new trace.
pub fn ensure_traceparent(properties: &mut Vec<(String, String)>, caller: Option<&TraceParent>) {
    if TraceParent::from_properties(properties).is_none() {
        let context = caller.map_or_else(TraceParent::new_root, TraceParent::child);
        properties.retain(|(k, _)| !k.eq_ignore_ascii_case(TRACEPARENT));
        properties.push((TRACEPARENT.to_string(), context.header()));
    }
}

/// What kind of step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StepKind {
    /// A handler ran on a message or event.
    Invoke,
    /// A handler sent a message.
    Send,
    /// A handler published an event.
    Publish,
    /// An event subscription delivered to a queue or webhook.
    Deliver,
    /// The message or event was moved to a dead-letter queue.
    DeadLetter,
}

/// One step of a transaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// When it happened (an invocation: when it started), RFC 3339.
    pub at: String,
    /// The transaction it belongs to (set when recorded).
    #[serde(default)]
    pub correlation_id: String,
    /// What it was.
    pub kind: StepKind,
    /// The function, for invocations, sends and publishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// The entity it read from or wrote to.
    pub entity: String,
    /// `complete`, `abandon`, `dead-letter`, `error`, `sent`, `published`, `delivered`, ...
    pub outcome: String,
    /// Why, when it did not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How long it took.
    pub duration_ms: f64,
    /// The delivery count of the message or event handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_count: Option<u32>,
    /// The W3C trace id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// Where a step sorts: when it began, then the order stamps were taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StepStamp {
    /// Unix ms.
    pub at_ms: i64,
    n: u64,
}

/// The recorded steps, by correlation id.
pub struct Traces {
    store: Store,
    /// Orders steps recorded in the same millisecond.
    counter: AtomicU64,
    sampler: Mutex<Sampler>,
}

/// Adaptive sampling of successful steps: each window's kept fraction is
/// the budget over the successful steps offered in the window before.
/// Windows are a tenth of a second, so a burst is sampled within 100 ms.
#[derive(Debug)]
struct Sampler {
    /// Successful steps per second to keep; 0: keep every step.
    budget: u32,
    /// Start of the current window (Unix ms).
    window_start_ms: i64,
    /// Successful steps offered in the current window.
    offered: u64,
    /// Kept fraction, parts per million, for flows in this window.
    keep_ppm: u64,
}

/// The sampler's window.
const WINDOW_MS: i64 = 100;

impl Sampler {
    fn new(budget: u32) -> Sampler {
        Sampler {
            budget,
            window_start_ms: 0,
            offered: 0,
            keep_ppm: PPM,
        }
    }

    /// Whether a successful step of the flow with this hash is kept at `now_ms`.
    fn keeps(&mut self, flow_hash: u64, now_ms: i64) -> bool {
        if self.budget == 0 {
            return true;
        }
        let elapsed = now_ms - self.window_start_ms;
        if elapsed >= WINDOW_MS {
            // After a quiet window (nothing offered), keep everything again.
            let last = if elapsed >= 2 * WINDOW_MS {
                0
            } else {
                self.offered
            };
            let per_window = (u64::from(self.budget) * WINDOW_MS as u64 / 1000).max(1);
            self.keep_ppm = if last <= per_window {
                PPM
            } else {
                (per_window * PPM / last).max(1)
            };
            self.window_start_ms = now_ms;
            self.offered = 0;
        }
        self.offered += 1;
        flow_hash % PPM < self.keep_ppm
    }
}

/// A stable hash of a flow's id (its trace id, else its correlation id).
fn flow_hash(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish()
}

/// Steps are stored twice: under `c/<correlation id> 0x00` and under
/// `t/<trace id> 0x00`, each followed by the same `<ms:i64be><n:u64be>`.
fn key_prefix(index: &str, id: &str) -> Vec<u8> {
    let mut key = format!("{index}/{id}").into_bytes();
    key.push(0);
    key
}

/// The `<ms><n>` suffix that orders steps and identifies one across indexes.
fn step_suffix(key: &[u8]) -> Option<[u8; 16]> {
    let nul = key.iter().position(|b| *b == 0)?;
    <[u8; 16]>::try_from(key.get(nul + 1..nul + 17)?).ok()
}

impl Traces {
    /// The steps in `store`, keeping at most `max_steps_per_second`
    /// successful steps a second (0: every step; see the module docs); call
    /// [`Traces::run_sweeper`] to drop old ones.
    pub fn new(store: Store, max_steps_per_second: u32) -> Traces {
        Traces {
            store,
            counter: AtomicU64::new(0),
            sampler: Mutex::new(Sampler::new(max_steps_per_second)),
        }
    }

    /// Whether a step of the flow `correlation_id` (or `trace_id`) is
    /// recorded: failures always, successes as the sampler says.
    fn sampled(&self, correlation_id: &str, trace_id: Option<&str>, failed: bool) -> bool {
        if failed {
            return true;
        }
        let flow = flow_hash(trace_id.unwrap_or(correlation_id));
        self.sampler
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keeps(flow, clock::now_ms())
    }

    /// Records a step of the transaction `correlation_id`. Best effort: a
    /// failure is logged, never returned to the caller's business.
    pub fn record(&self, correlation_id: &str, step: &Step) {
        self.record_stamped(correlation_id, step, self.stamp());
    }

    /// A place in the order of steps, taken now. A step that starts
    /// something (an invocation, a send) takes its stamp before, so that
    /// what it causes always sorts after it.
    pub fn stamp(&self) -> StepStamp {
        StepStamp {
            at_ms: clock::now_ms(),
            n: self.counter.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Records a step at a stamp taken earlier with [`Traces::stamp`].
    pub fn record_stamped(&self, correlation_id: &str, step: &Step, stamp: StepStamp) {
        let (trace_id, failed) = (step.trace_id.as_deref(), step.reason.is_some());
        self.record_lazily(correlation_id, trace_id, failed, stamp, || step.clone());
    }

    /// Records a step that is built only when the sampler keeps it (a
    /// failed one always is): under load most successful steps are
    /// dropped, and building them costs more than deciding.
    pub fn record_lazily(
        &self,
        correlation_id: &str,
        trace_id: Option<&str>,
        failed: bool,
        stamp: StepStamp,
        step: impl FnOnce() -> Step,
    ) {
        if !self.sampled(correlation_id, trace_id, failed) {
            return;
        }
        let mut suffix = stamp.at_ms.to_be_bytes().to_vec();
        suffix.extend_from_slice(&stamp.n.to_be_bytes());
        let step = Step {
            correlation_id: correlation_id.to_string(),
            ..step()
        };
        let result = serde_json::to_vec(&step)
            .map_err(|e| e.to_string())
            .and_then(|value| {
                // Two plain inserts, not a `sled::Batch`: a batch takes sled's
                // global write lock (every invocation records a step). The
                // two are independent indexes of the same step.
                let mut indexes = vec![key_prefix("c", correlation_id)];
                indexes.extend(step.trace_id.as_deref().map(|t| key_prefix("t", t)));
                for mut key in indexes {
                    key.extend_from_slice(&suffix);
                    self.store
                        .traces()
                        .insert(key, value.as_slice())
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            });
        if let Err(e) = result {
            tracing::warn!(correlation_id, error = %e, "cannot record a trace step");
        }
    }

    fn scan(
        &self,
        index: &str,
        id: &str,
        into: &mut BTreeMap<[u8; 16], Step>,
    ) -> Result<(), StoreError> {
        for entry in self.store.traces().scan_prefix(key_prefix(index, id)) {
            let (key, value) = entry?;
            let Some(suffix) = step_suffix(&key) else {
                continue;
            };
            match serde_json::from_slice(&value) {
                Ok(step) => {
                    into.insert(suffix, step);
                }
                Err(e) => tracing::warn!(id, error = %e, "unreadable trace step skipped"),
            }
        }
        Ok(())
    }

    /// The whole flow `id` belongs to, in order: the steps recorded under it
    /// as a correlation id (or else as a trace id), and every step sharing a
    /// trace id with them.
    pub fn steps(&self, id: &str) -> Result<Vec<Step>, StoreError> {
        let mut steps = BTreeMap::new();
        self.scan("c", id, &mut steps)?;
        let mut trace_ids: Vec<String> =
            steps.values().filter_map(|s| s.trace_id.clone()).collect();
        if steps.is_empty() {
            trace_ids.push(id.to_string());
        }
        trace_ids.sort();
        trace_ids.dedup();
        for trace_id in trace_ids {
            self.scan("t", &trace_id, &mut steps)?;
        }
        Ok(steps.into_values().collect())
    }

    /// Drops steps older than the retention; how many.
    pub fn sweep(&self) -> Result<usize, StoreError> {
        let horizon = clock::now_ms() - i64::try_from(RETENTION.as_millis()).unwrap_or(i64::MAX);
        let mut count = 0;
        for entry in self.store.traces().iter() {
            let (key, _) = entry?;
            let Some(at) = step_suffix(&key)
                .and_then(|s| <[u8; 8]>::try_from(&s[..8]).ok())
                .map(i64::from_be_bytes)
            else {
                continue;
            };
            if at < horizon {
                self.store.traces().remove(key)?;
                count += 1;
            }
        }
        Ok(count)
    }

    /// Sweeps old steps every hour, forever.
    pub async fn run_sweeper(self: Arc<Self>) {
        loop {
            tokio::time::sleep(SWEEP_INTERVAL).await;
            match self.sweep() {
                Ok(0) => {}
                Ok(n) => tracing::debug!(removed = n, "old trace steps swept"),
                Err(e) => tracing::warn!(error = %e, "trace sweep failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_keeps_everything_within_its_budget() {
        let mut sampler = Sampler::new(100);
        let kept = (0..10u64)
            .filter(|i| sampler.keeps(flow_hash(&i.to_string()), 1_000))
            .count();
        assert_eq!(kept, 10);
    }

    #[test]
    fn sampler_over_budget_keeps_about_the_budget_and_whole_flows() {
        let mut sampler = Sampler::new(1_000);
        // A window of 1,000 flows (10,000 a second) sets the next one's fraction to 10%.
        for i in 0..1_000u64 {
            sampler.keeps(flow_hash(&format!("warm-{i}")), 1_000);
        }
        let flows: Vec<u64> = (0..10_000u64)
            .map(|i| flow_hash(&format!("flow-{i}")))
            .collect();
        // Each flow has two steps in the same window: both or neither kept.
        let mut kept = 0;
        for &flow in &flows {
            let first = sampler.keeps(flow, 1_110);
            let second = sampler.keeps(flow, 1_150);
            assert_eq!(first, second, "a flow is kept whole or not at all");
            kept += usize::from(first);
        }
        assert!((700..1_300).contains(&kept), "kept {kept} of 10,000 flows");
    }

    #[test]
    fn sampler_keeps_everything_again_after_a_quiet_window() {
        let mut sampler = Sampler::new(10);
        for i in 0..1_000u64 {
            sampler.keeps(flow_hash(&i.to_string()), 1_000);
        }
        assert!(sampler.keep_ppm == PPM, "the first window keeps all");
        sampler.keeps(0, 1_100);
        assert!(
            sampler.keep_ppm < PPM / 50,
            "an over-budget window lowers the fraction"
        );
        assert!(
            sampler.keeps(flow_hash("late"), 5_000),
            "idle time resets it"
        );
        assert_eq!(sampler.keep_ppm, PPM);
    }

    #[test]
    fn unlimited_sampler_keeps_every_step() {
        let mut sampler = Sampler::new(0);
        assert!((0..100_000u64).all(|i| sampler.keeps(i, 1_000 + (i as i64 % 300))));
    }

    #[test]
    fn traceparent_round_trips_and_children_keep_the_trace_id() {
        let root = TraceParent::new_root();
        let parsed = TraceParent::parse(&root.header()).expect("valid");
        assert_eq!(parsed, root);
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
    }

    #[test]
    fn malformed_traceparents_are_rejected() {
        for bad in [
            "",
            "00-abc-def-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
        assert!(
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_some()
        );
    }

    #[test]
    fn ensure_keeps_a_valid_context_and_replaces_a_missing_or_bad_one() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string();
        let mut props = vec![("Diagnostic-Id".to_string(), valid.clone())];
        ensure_traceparent(&mut props, None);
        assert_eq!(props.len(), 1);
        let mut props = vec![(TRACEPARENT.to_string(), "garbage".to_string())];
        ensure_traceparent(&mut props, None);
        assert_eq!(props.len(), 1);
        assert!(TraceParent::from_properties(&props).is_some());
        let caller = TraceParent::parse(&valid).expect("valid");
        let mut props = Vec::new();
        ensure_traceparent(&mut props, Some(&caller));
        let got = TraceParent::from_properties(&props).expect("set");
        assert_eq!(
            got.trace_id, caller.trace_id,
            "continues the caller's trace"
        );
    }
}
