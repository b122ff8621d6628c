//! What every scenario measures, how repetitions are folded into medians, and
//! the table and ratios printed at the end.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;

/// Size of every message body.
pub(crate) const BODY_BYTES: usize = 1024;
/// Width of the timestamp at the start of every body (decimal nanoseconds).
const STAMP_DIGITS: usize = 20;

/// One clock for senders and consumers: they run in this process, so a
/// monotonic offset from a shared origin is exact and needs no wall clock.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Nanoseconds since the shared origin for `at`.
pub(crate) fn stamp_of(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(origin()).as_nanos()).unwrap_or(u64::MAX)
}

/// Nanoseconds since the shared origin, now.
pub(crate) fn now_stamp() -> u64 {
    stamp_of(Instant::now())
}

/// A 1 KiB ASCII body that starts with `stamp` (text, so Sluice's JSON batch
/// receive returns it unchanged).
pub(crate) fn body(stamp: u64) -> Vec<u8> {
    let mut body = format!("{stamp:0STAMP_DIGITS$}").into_bytes();
    body.resize(BODY_BYTES, b'x');
    body
}

/// The stamp a body starts with.
pub(crate) fn parse_stamp(body: &[u8]) -> anyhow::Result<u64> {
    let digits = body
        .get(..STAMP_DIGITS)
        .context("a body shorter than its timestamp")?;
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .context("a body that does not start with a timestamp")
}

/// Latencies in microseconds, from 1 µs to 10 minutes at 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3)
        .expect("constant bounds that hdrhistogram accepts")
}

/// Records `d` (saturating at the histogram's top) in microseconds.
pub(crate) fn record(h: &mut Histogram<u64>, d: Duration) {
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
    h.saturating_record(micros);
}

/// Called with each message body at the moment it is received.
pub(crate) type OnReceipt = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// A consumer that only counts on its caller's side.
pub(crate) fn ignore_bodies() -> OnReceipt {
    Arc::new(|_: &[u8]| {})
}

/// A steady send rate for the latency scenario: `rate` messages a second for
/// `warmup + measure`, latencies kept only for messages scheduled after the
/// warm-up.
#[derive(Debug, Clone)]
pub(crate) struct Pace {
    pub(crate) rate: u32,
    pub(crate) warmup: Duration,
    pub(crate) measure: Duration,
}

/// What the latency consumer saw.
pub(crate) struct Seen {
    latency: Histogram<u64>,
    received: usize,
    unreadable: usize,
    last_receipt: Option<Instant>,
    /// How far the sender fell behind its schedule at worst.
    pub(crate) sender_lag: Duration,
}

impl Pace {
    /// Messages in the whole run (warm-up included).
    pub(crate) fn total(&self) -> usize {
        (f64::from(self.rate) * (self.warmup + self.measure).as_secs_f64()).round() as usize
    }

    /// When the paced run starts: a moment from now, so that setting up
    /// channels and consumers does not make the sender start behind.
    pub(crate) fn start(&self) -> Instant {
        Instant::now() + Duration::from_millis(500)
    }

    /// When message `i` is due. Its body carries this time, not the actual
    /// send time, so a sender held up by a slow system does not hide the
    /// delay (no coordinated omission).
    pub(crate) fn due(&self, start: Instant, i: usize) -> Instant {
        start + Duration::from_secs_f64(i as f64 / f64::from(self.rate.max(1)))
    }

    /// Waits until message `i` is due and notes any lag behind the schedule.
    pub(crate) async fn wait_for(&self, start: Instant, i: usize, seen: &Mutex<Seen>) -> Instant {
        let due = self.due(start, i);
        tokio::time::sleep_until(due.into()).await;
        let lag = Instant::now().saturating_duration_since(due);
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.sender_lag = seen.sender_lag.max(lag);
        due
    }

    /// A receipt callback that records latencies of messages scheduled at or
    /// after `start + warmup`, and what it saw.
    pub(crate) fn recorder(&self, start: Instant) -> (OnReceipt, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen {
            latency: histogram(),
            received: 0,
            unreadable: 0,
            last_receipt: None,
            sender_lag: Duration::ZERO,
        }));
        let from = stamp_of(start + self.warmup);
        let shared = seen.clone();
        let on_receipt: OnReceipt = Arc::new(move |body: &[u8]| {
            let now = now_stamp();
            let mut seen = shared.lock().unwrap_or_else(|e| e.into_inner());
            seen.received += 1;
            seen.last_receipt = Some(Instant::now());
            match parse_stamp(body) {
                Ok(sent) if sent >= from => {
                    record(
                        &mut seen.latency,
                        Duration::from_nanos(now.saturating_sub(sent)),
                    );
                }
                Ok(_) => {}
                Err(_) => seen.unreadable += 1,
            }
        });
        (on_receipt, seen)
    }

    /// The sample: achieved rate over the whole run, latency percentiles
    /// over the measured part.
    pub(crate) fn sample(&self, start: Instant, seen: &Mutex<Seen>) -> Sample {
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        let end = seen.last_receipt.unwrap_or_else(Instant::now);
        let mut sample = Sample::new(
            seen.received,
            end.saturating_duration_since(start),
            Some(&seen.latency),
        );
        let mut notes = Vec::new();
        if seen.sender_lag > Duration::from_millis(20) {
            notes.push(format!(
                "sender fell behind schedule by up to {:.0} ms (counted in the latency)",
                seen.sender_lag.as_secs_f64() * 1e3
            ));
        }
        if seen.unreadable > 0 {
            notes.push(format!("{} bodies without a timestamp", seen.unreadable));
        }
        if !seen.latency.is_empty() {
            notes.push(format!(
                "max {:.1} ms over {} measured messages",
                seen.latency.max() as f64 / 1e3,
                seen.latency.len()
            ));
        }
        sample.note = (!notes.is_empty()).then(|| notes.join("; "));
        sample
    }
}

/// One scenario's result in one repetition.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// The repetition it belongs to (set when it is recorded).
    pub(crate) rep: usize,
    /// Messages moved.
    pub(crate) count: usize,
    /// Messages per second.
    pub(crate) rate: f64,
    /// Median and 99th percentile latency, when the scenario measures one.
    pub(crate) p50: Option<Duration>,
    pub(crate) p99: Option<Duration>,
    /// Anything worth knowing about this run (e.g. dead letters, lag).
    pub(crate) note: Option<String>,
    /// CPU time of the server's process group and of this benchmark during the run.
    pub(crate) server_cpu: Option<Duration>,
    pub(crate) client_cpu: Option<Duration>,
}

impl Sample {
    /// `count` messages in `elapsed`, with latencies from `latency` if any were recorded.
    pub(crate) fn new(count: usize, elapsed: Duration, latency: Option<&Histogram<u64>>) -> Sample {
        let (p50, p99) = match latency {
            Some(h) if !h.is_empty() => (
                Some(Duration::from_micros(h.value_at_quantile(0.50))),
                Some(Duration::from_micros(h.value_at_quantile(0.99))),
            ),
            _ => (None, None),
        };
        Sample {
            rep: 0,
            count,
            rate: count as f64 / elapsed.as_secs_f64().max(1e-9),
            p50,
            p99,
            note: None,
            server_cpu: None,
            client_cpu: None,
        }
    }
}

/// Systems in the order they are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum System {
    /// `sluice serve --durability fsync` (the default).
    Sluice,
    /// `sluice serve --durability interval:MS`.
    SluiceRelaxed,
    RabbitMq,
    JetStream,
}

impl System {
    pub(crate) fn label(self) -> &'static str {
        match self {
            System::Sluice => "Sluice (fsync)",
            System::SluiceRelaxed => "Sluice (interval)",
            System::RabbitMq => "RabbitMQ",
            System::JetStream => "NATS JetStream",
        }
    }
}

/// Scenarios in the order they are printed (`--scenarios` names them in
/// kebab case: `send`, `receive-complete`, ..., `latency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum Scenario {
    /// One message per request/publish, many in flight.
    Send,
    /// Sluice only: 100 messages per HTTP request.
    SendBatch,
    /// Drain a pre-filled queue: receive and settle each message.
    ReceiveComplete,
    /// Send and consume at once, timed until the last message is settled.
    SendAndConsume,
    /// Sluice only: deploy the handler on a pre-filled queue, time the drain.
    WasmDrain,
    /// Sluice only: handler deployed, send N, time until all are completed.
    WasmPipeline,
    /// Sluice only: deploy a batch handler on a pre-filled queue, time the drain.
    WasmBatchDrain,
    /// Sluice only: batch handler deployed, send N in batches of 100, time
    /// until all are completed.
    WasmBatchPipeline,
    /// Paced sender at a steady rate; end-to-end latency at receipt.
    Latency,
}

impl Scenario {
    pub(crate) fn label(self, rate: u32) -> String {
        match self {
            Scenario::Send => "send (1 msg/request, acked)".into(),
            Scenario::SendBatch => "send (batch 100 msgs/request)".into(),
            Scenario::ReceiveComplete => "receive+complete (pre-filled)".into(),
            Scenario::SendAndConsume => "send+receive+complete concurrently".into(),
            Scenario::WasmDrain => "wasm handler: deploy on pre-filled, drain".into(),
            Scenario::WasmPipeline => "send -> wasm handler -> complete".into(),
            Scenario::WasmBatchDrain => "wasm batch handler: deploy on pre-filled".into(),
            Scenario::WasmBatchPipeline => "send batches -> wasm batch handler".into(),
            Scenario::Latency => format!("end-to-end latency @ {rate} msg/s"),
        }
    }

    /// What the p50/p99 columns mean for this scenario.
    fn latency_meaning(self) -> &'static str {
        match self {
            Scenario::Send | Scenario::SendBatch => "send -> ack",
            Scenario::Latency => "send -> receipt",
            _ => "",
        }
    }
}

/// Every sample of the run, by system and scenario.
#[derive(Default)]
pub(crate) struct Results {
    samples: BTreeMap<(System, Scenario), Vec<Sample>>,
    /// `(repetition, error)`.
    errors: BTreeMap<(System, Scenario), Vec<(usize, String)>>,
    /// Things that happened to a system outside any one scenario.
    incidents: Vec<(System, String)>,
}

/// A scenario folded over its repetitions.
struct Summary {
    rate: f64,
    min: f64,
    max: f64,
    p50: Option<Duration>,
    p99: Option<Duration>,
    /// CPU microseconds per message.
    server_us: Option<f64>,
    client_us: Option<f64>,
    runs: usize,
}

fn median<T: Copy + PartialOrd>(mut values: Vec<T>) -> Option<T> {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    // The lower middle for an even count: with 3 repetitions this is the
    // plain median; with a failed run it stays one of the measured values.
    let n = values.len();
    (n > 0).then(|| values[(n - 1) / 2])
}

impl Results {
    pub(crate) fn add(&mut self, system: System, scenario: Scenario, sample: Sample) {
        self.samples
            .entry((system, scenario))
            .or_default()
            .push(sample);
    }

    pub(crate) fn fail(
        &mut self,
        system: System,
        scenario: Scenario,
        rep: usize,
        error: &anyhow::Error,
    ) {
        self.errors
            .entry((system, scenario))
            .or_default()
            .push((rep, format!("{error:#}")));
    }

    pub(crate) fn incident(&mut self, system: System, what: String) {
        self.incidents.push((system, what));
    }

    fn summary(&self, system: System, scenario: Scenario) -> Option<Summary> {
        let samples = self.samples.get(&(system, scenario))?;
        let rates: Vec<f64> = samples.iter().map(|s| s.rate).collect();
        Some(Summary {
            rate: median(rates.clone())?,
            min: rates.iter().copied().fold(f64::INFINITY, f64::min),
            max: rates.iter().copied().fold(0.0, f64::max),
            p50: median(samples.iter().filter_map(|s| s.p50).collect()),
            p99: median(samples.iter().filter_map(|s| s.p99).collect()),
            server_us: median(
                samples
                    .iter()
                    .filter_map(|s| per_message(s.server_cpu, s.count))
                    .collect(),
            ),
            client_us: median(
                samples
                    .iter()
                    .filter_map(|s| per_message(s.client_cpu, s.count))
                    .collect(),
            ),
            runs: samples.len(),
        })
    }

    /// The table, the ratios and the notes, as text.
    pub(crate) fn render(&self, rate: u32, repetitions: usize) -> String {
        let mut out = String::new();
        let header = [
            "system",
            "scenario",
            "msg/s (median)",
            "min..max msg/s",
            "p50 ms",
            "p99 ms",
            "latency is",
            "server CPU us/msg",
            "bench CPU us/msg",
            "runs",
        ];
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut keys: Vec<(System, Scenario)> = self
            .samples
            .keys()
            .chain(self.errors.keys())
            .copied()
            .collect();
        keys.sort();
        keys.dedup();
        for (system, scenario) in keys {
            let failed = self.errors.get(&(system, scenario)).map_or(0, Vec::len);
            let mut row = vec![system.label().to_string(), scenario.label(rate)];
            match self.summary(system, scenario) {
                Some(s) => row.extend([
                    format!("{:.0}", s.rate),
                    format!("{:.0}..{:.0}", s.min, s.max),
                    ms(s.p50),
                    ms(s.p99),
                    if s.p50.is_some() {
                        scenario.latency_meaning().to_string()
                    } else {
                        String::new()
                    },
                    s.server_us.map_or("-".into(), |us| format!("{us:.0}")),
                    s.client_us.map_or("-".into(), |us| format!("{us:.0}")),
                    format!("{}/{repetitions}", s.runs),
                ]),
                None => row.extend([
                    "failed".into(),
                    String::new(),
                    "-".into(),
                    "-".into(),
                    String::new(),
                    "-".into(),
                    "-".into(),
                    format!("0/{repetitions}"),
                ]),
            }
            if failed > 0 {
                row[9].push_str(&format!(" ({failed} failed)"));
            }
            rows.push(row);
        }
        out.push_str(&table(&header, &rows));

        out.push_str("\nRatios (medians; msg/s: above 1 means Sluice is faster; p99: below 1 means Sluice is lower)\n");
        let mut ratio_rows = Vec::new();
        for (ours, theirs) in [
            (System::Sluice, System::RabbitMq),
            (System::SluiceRelaxed, System::JetStream),
        ] {
            let pairs = [
                (Scenario::Send, Scenario::Send, "send msg/s"),
                (
                    Scenario::ReceiveComplete,
                    Scenario::ReceiveComplete,
                    "receive+complete msg/s",
                ),
                (
                    Scenario::SendAndConsume,
                    Scenario::SendAndConsume,
                    "send+consume msg/s",
                ),
                (
                    Scenario::WasmPipeline,
                    Scenario::SendAndConsume,
                    "send->wasm->complete vs their send+consume msg/s",
                ),
                // Each system's fastest acknowledged path: Service Bus
                // batches (100 per request, a batch per invocation) against
                // their pipelined publishes with one ack each.
                (
                    Scenario::SendBatch,
                    Scenario::Send,
                    "batch send vs their pipelined send msg/s",
                ),
                (
                    Scenario::WasmBatchPipeline,
                    Scenario::SendAndConsume,
                    "batches->wasm batch->complete vs their send+consume",
                ),
            ];
            for (a, b, what) in pairs {
                let value = match (self.summary(ours, a), self.summary(theirs, b)) {
                    (Some(x), Some(y)) if y.rate > 0.0 => format!("{:.2}", x.rate / y.rate),
                    _ => "n/a".into(),
                };
                ratio_rows.push(vec![
                    format!("{} / {}", ours.label(), theirs.label()),
                    what.to_string(),
                    value,
                ]);
            }
            let p99 = match (
                self.summary(ours, Scenario::Latency).and_then(|s| s.p99),
                self.summary(theirs, Scenario::Latency).and_then(|s| s.p99),
            ) {
                (Some(x), Some(y)) if !y.is_zero() => {
                    format!("{:.2}", x.as_secs_f64() / y.as_secs_f64())
                }
                _ => "n/a".into(),
            };
            ratio_rows.push(vec![
                format!("{} / {}", ours.label(), theirs.label()),
                format!("p99 latency @ {rate} msg/s"),
                p99,
            ]);
        }
        out.push_str(&table(&["pair", "figure", "ratio"], &ratio_rows));

        let mut notes: Vec<String> = self
            .incidents
            .iter()
            .map(|(system, what)| format!("{}: {what}", system.label()))
            .collect();
        for ((system, scenario), samples) in &self.samples {
            for s in samples {
                if let Some(note) = &s.note {
                    notes.push(format!(
                        "{} / {} run {}: {note}",
                        system.label(),
                        scenario.label(rate),
                        s.rep
                    ));
                }
            }
        }
        for ((system, scenario), errors) in &self.errors {
            for (rep, e) in errors {
                notes.push(format!(
                    "{} / {} run {rep} FAILED: {e}",
                    system.label(),
                    scenario.label(rate)
                ));
            }
        }
        if !notes.is_empty() {
            out.push_str("\nNotes\n");
            for n in notes {
                out.push_str(&format!("- {n}\n"));
            }
        }
        out
    }
}

fn per_message(cpu: Option<Duration>, count: usize) -> Option<f64> {
    cpu.filter(|_| count > 0)
        .map(|cpu| cpu.as_secs_f64() * 1e6 / count as f64)
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".into(), |d| format!("{:.2}", d.as_secs_f64() * 1e3))
}

/// Left-aligned text columns, numbers right-aligned.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.len());
            }
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            let numeric = cell
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit() || c == '-');
            if numeric {
                s.push_str(&format!("{cell:>w$}"));
            } else {
                s.push_str(&format!("{cell:<w$}"));
            }
            s.push_str(if i + 1 < cells.len() { " | " } else { "\n" });
        }
        s
    };
    let mut out = line(header.to_vec());
    out.push_str(&line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_their_stamp_and_are_one_kib() {
        let b = body(123_456_789);
        assert_eq!(b.len(), BODY_BYTES);
        assert_eq!(parse_stamp(&b).ok(), Some(123_456_789));
        assert!(parse_stamp(b"short").is_err());
    }

    #[test]
    fn median_of_three_is_the_middle() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median::<f64>(vec![]), None);
    }
}
