//! Sluice driven over its HTTP API, the way a Service Bus REST client does:
//! `POST /{queue}/messages` to send, `POST /{queue}/messages/head?maxMessages=M`
//! to peek-lock a batch, `DELETE` of each message's `Location` to complete.
//! Those go through the lean client in [`crate::http`]; management calls
//! (queues, deploys, counts) through `reqwest`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::Settings;
use crate::http::Pool;
use crate::stats::{self, OnReceipt, Pace, Sample};

/// How many messages one batch-send request carries.
const BATCH: usize = 100;
/// Batch-send requests in flight (100 messages each).
const BATCH_IN_FLIGHT: usize = 8;
/// Messages one receive asks for.
const RECEIVE_MAX: usize = 100;
/// Where the batch handler (tests/guests/batch) reports each invocation's size.
pub(crate) const BATCH_SIZES: &str = "batch-sizes";

/// A handler component for the Wasm scenarios.
#[derive(Clone, Copy)]
pub(crate) enum Handler<'a> {
    /// One message per invocation (`tests/guests/panics`).
    Single(&'a [u8]),
    /// Many per invocation (`tests/guests/batch`, reporting to `batch-sizes`).
    Batch(&'a [u8]),
}

#[derive(Clone)]
pub(crate) struct SluiceClient {
    http: reqwest::Client,
    /// Sends, receives and completes.
    wire: Arc<Pool>,
    url: String,
}

impl SluiceClient {
    pub(crate) fn new(url: &str, token: &str) -> anyhow::Result<SluiceClient> {
        let mut headers = header::HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            token
                .parse()
                .context("the SAS token is not a header value")?,
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            // Every concurrent request keeps its own keep-alive connection.
            .pool_max_idle_per_host(512)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        Ok(SluiceClient {
            http,
            wire: Arc::new(Pool::new(url, token)?),
            url: url.trim_end_matches('/').to_string(),
        })
    }

    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    async fn expect(
        response: reqwest::Result<reqwest::Response>,
        ok: &[StatusCode],
        what: &str,
    ) -> anyhow::Result<reqwest::Response> {
        let response = response.with_context(|| format!("{what}: request failed"))?;
        if !ok.contains(&response.status()) {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            bail!("{what}: {status}: {text}");
        }
        Ok(response)
    }

    /// Whether the host answers `GET /health` within 5 s.
    pub(crate) async fn healthy(&self) -> bool {
        let r = self
            .http
            .get(self.at("/health"))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        matches!(r, Ok(r) if r.status().is_success())
    }

    pub(crate) async fn create_queue(&self, name: &str) -> anyhow::Result<()> {
        let r = self
            .http
            .put(self.at(&format!("/api/queues/{name}")))
            .json(&json!({}))
            .send()
            .await;
        Self::expect(r, &[StatusCode::CREATED], &format!("create queue {name}")).await?;
        Ok(())
    }

    pub(crate) async fn delete_queue(&self, name: &str) -> anyhow::Result<()> {
        let r = self
            .http
            .delete(self.at(&format!("/api/queues/{name}")))
            .send()
            .await;
        Self::expect(
            r,
            &[StatusCode::OK, StatusCode::NO_CONTENT],
            &format!("delete queue {name}"),
        )
        .await?;
        Ok(())
    }

    /// `(messageCount, deadLetterMessageCount)` of a queue.
    async fn counts(&self, queue: &str) -> anyhow::Result<(u64, u64)> {
        let r = self
            .http
            .get(self.at(&format!("/api/queues/{queue}")))
            .send()
            .await;
        let info: Value = Self::expect(r, &[StatusCode::OK], &format!("queue {queue}"))
            .await?
            .json()
            .await
            .context("queue info is not JSON")?;
        let count = |key: &str| {
            info.get(key)
                .and_then(Value::as_u64)
                .with_context(|| format!("queue info has no {key}: {info}"))
        };
        Ok((count("messageCount")?, count("deadLetterMessageCount")?))
    }

    /// Polls every 20 ms until the queue holds no message; returns when it
    /// saw that, and the dead-letter count then.
    async fn wait_empty(&self, queue: &str, limit: Duration) -> anyhow::Result<(Instant, u64)> {
        let deadline = Instant::now() + limit;
        loop {
            let (count, dead) = self.counts(queue).await?;
            if count == 0 {
                return Ok((Instant::now(), dead));
            }
            if Instant::now() > deadline {
                bail!("{queue} still holds {count} messages after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn deploy(
        &self,
        function: &str,
        queue: &str,
        component: &[u8],
        max_concurrency: usize,
    ) -> anyhow::Result<()> {
        let r = self
            .http
            .put(self.at(&format!(
                "/api/functions/{function}?queue={queue}&maxConcurrency={max_concurrency}"
            )))
            .body(component.to_vec())
            .send()
            .await;
        Self::expect(
            r,
            &[StatusCode::OK, StatusCode::CREATED],
            &format!("deploy {function}"),
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn undeploy(&self, function: &str) -> anyhow::Result<()> {
        let r = self
            .http
            .delete(self.at(&format!("/api/functions/{function}")))
            .send()
            .await;
        Self::expect(
            r,
            &[StatusCode::OK, StatusCode::NO_CONTENT],
            &format!("delete function {function}"),
        )
        .await?;
        Ok(())
    }

    async fn send_one(&self, queue: &str, body: Vec<u8>) -> anyhow::Result<()> {
        self.wire
            .expect(
                Method::POST,
                &format!("/{queue}/messages"),
                Some("text/plain"),
                Bytes::from(body),
                &[StatusCode::CREATED],
                "send",
            )
            .await?;
        Ok(())
    }

    /// Sends `n` messages, one per request, `concurrency` requests in
    /// flight; returns the elapsed time and the send → 201 latencies.
    pub(crate) async fn send_many(
        &self,
        queue: &str,
        n: usize,
        concurrency: usize,
    ) -> anyhow::Result<(Duration, Histogram<u64>)> {
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..concurrency.max(1) {
            let (client, queue, next) = (self.clone(), queue.to_string(), next.clone());
            workers.spawn(async move {
                let mut latency = stats::histogram();
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let sent = Instant::now();
                    client
                        .send_one(&queue, stats::body(stats::stamp_of(sent)))
                        .await?;
                    stats::record(&mut latency, sent.elapsed());
                }
                anyhow::Ok(latency)
            });
        }
        let mut latency = stats::histogram();
        while let Some(worker) = workers.join_next().await {
            latency
                .add(worker.context("a send worker panicked")??)
                .context("merging histograms")?;
        }
        Ok((start.elapsed(), latency))
    }

    /// Sends `n` messages in batches of 100 (`application/vnd.microsoft.servicebus.json`).
    pub(crate) async fn send_batches(
        &self,
        queue: &str,
        n: usize,
    ) -> anyhow::Result<(Duration, Histogram<u64>)> {
        let batches = n.div_ceil(BATCH);
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..BATCH_IN_FLIGHT {
            let (client, queue, next) = (self.clone(), queue.to_string(), next.clone());
            workers.spawn(async move {
                let mut latency = stats::histogram();
                loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= batches {
                        break;
                    }
                    let count = BATCH.min(n - b * BATCH);
                    let sent = Instant::now();
                    let stamp = stats::stamp_of(sent);
                    let items: Vec<Value> = (0..count)
                        .map(|_| {
                            json!({ "Body": String::from_utf8_lossy(&stats::body(stamp)), "BrokerProperties": {} })
                        })
                        .collect();
                    client
                        .wire
                        .expect(
                            Method::POST,
                            &format!("/{queue}/messages"),
                            Some("application/vnd.microsoft.servicebus.json"),
                            serde_json::to_vec(&items)
                                .context("encoding a batch")?
                                .into(),
                            &[StatusCode::CREATED],
                            "batch send",
                        )
                        .await?;
                    stats::record(&mut latency, sent.elapsed());
                }
                anyhow::Ok(latency)
            });
        }
        let mut latency = stats::histogram();
        while let Some(worker) = workers.join_next().await {
            latency
                .add(worker.context("a batch worker panicked")??)
                .context("merging histograms")?;
        }
        Ok((start.elapsed(), latency))
    }

    /// Peek-locks and completes `n` messages: `receivers` long-polling
    /// receives of up to 100, each message completed by its own `DELETE`,
    /// `settlers` of those in flight. `on_receipt` sees every body.
    pub(crate) async fn receive_complete(
        &self,
        queue: &str,
        n: usize,
        settings: &Settings,
        on_receipt: OnReceipt,
    ) -> anyhow::Result<()> {
        let received = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(Mutex::new(None::<String>));
        let settlers = Arc::new(Semaphore::new(settings.settlers));
        let deadline = Instant::now() + settings.limit;
        // Set when the last message has been received: the other receivers
        // are then parked in a long poll on an empty queue, and waiting for
        // it to time out would add up to its timeout to the measurement.
        let all_received = Arc::new(tokio::sync::Notify::new());
        let mut receivers = tokio::task::JoinSet::new();
        for _ in 0..settings.receivers.max(1) {
            let (client, queue) = (self.clone(), queue.to_string());
            let (received, failed, settlers, on_receipt, all_received) = (
                received.clone(),
                failed.clone(),
                settlers.clone(),
                on_receipt.clone(),
                all_received.clone(),
            );
            receivers.spawn(async move {
                while received.load(Ordering::Relaxed) < n {
                    if Instant::now() > deadline {
                        bail!(
                            "received {} of {n} messages before the time limit",
                            received.load(Ordering::Relaxed)
                        );
                    }
                    let answer = client
                        .wire
                        .expect(
                            Method::POST,
                            &format!("/{queue}/messages/head?timeout=5&maxMessages={RECEIVE_MAX}"),
                            None,
                            Bytes::new(),
                            &[StatusCode::CREATED, StatusCode::NO_CONTENT],
                            "receive",
                        )
                        .await?;
                    if answer.status == StatusCode::NO_CONTENT {
                        continue;
                    }
                    let items: Vec<Value> =
                        serde_json::from_slice(&answer.body).context("a batch receive answer")?;
                    let count = items.len();
                    if received.fetch_add(count, Ordering::Relaxed) + count >= n {
                        all_received.notify_one();
                    }
                    for item in items {
                        let body = item
                            .get("Body")
                            .and_then(Value::as_str)
                            .context("a received message without Body")?;
                        on_receipt(body.as_bytes());
                        let location = item
                            .get("Location")
                            .and_then(Value::as_str)
                            .context("a peek-locked message without Location")?;
                        let path = settle_path(location)?;
                        let permit = settlers
                            .clone()
                            .acquire_owned()
                            .await
                            .context("settler semaphore closed")?;
                        let (client, failed) = (client.clone(), failed.clone());
                        tokio::spawn(async move {
                            let completed = client
                                .wire
                                .expect(
                                    Method::DELETE,
                                    &path,
                                    None,
                                    Bytes::new(),
                                    &[StatusCode::OK],
                                    "complete",
                                )
                                .await;
                            if let Err(e) = completed {
                                let mut slot = failed.lock().unwrap_or_else(|e| e.into_inner());
                                slot.get_or_insert(format!("{e:#}"));
                            }
                            drop(permit);
                        });
                    }
                }
                anyhow::Ok(())
            });
        }
        loop {
            tokio::select! {
                joined = receivers.join_next() => match joined {
                    Some(receiver) => receiver.context("a receiver panicked")??,
                    None => break,
                },
                () = all_received.notified() => {
                    // Only long polls on an empty queue are cut short.
                    receivers.abort_all();
                    break;
                }
            }
        }
        // Every completion has answered once all permits are back.
        let all = u32::try_from(settings.settlers).context("too many settlers")?;
        let _all = tokio::time::timeout(settings.limit, settlers.acquire_many(all))
            .await
            .context("completions did not finish in time")?
            .context("settler semaphore closed")?;
        if let Some(e) = failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bail!("a completion failed: {e}");
        }
        Ok(())
    }

    /// Sends and consumes `n` messages at once; the time until the last is completed.
    pub(crate) async fn send_and_consume(
        &self,
        queue: &str,
        n: usize,
        settings: &Settings,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let consume = self.receive_complete(queue, n, settings, stats::ignore_bodies());
        let send = self.send_many(queue, n, settings.concurrency);
        let (consumed, sent) = tokio::join!(consume, send);
        sent?;
        consumed?;
        Ok(start.elapsed())
    }

    /// Deploys the handler on a queue that already holds `n` messages and
    /// times until it is empty (from before the deploy request, so the
    /// figure includes deploying).
    pub(crate) async fn wasm_drain(
        &self,
        function: &str,
        queue: &str,
        n: usize,
        component: &[u8],
        settings: &Settings,
    ) -> anyhow::Result<Sample> {
        let start = Instant::now();
        self.deploy(function, queue, component, settings.concurrency)
            .await?;
        let deployed = start.elapsed();
        let (empty_at, dead) = self.wait_empty(queue, settings.limit).await?;
        let mut sample = Sample::new(n, empty_at - start, None);
        sample.note = Some(format!(
            "deploy answered in {:.0} ms{}",
            deployed.as_secs_f64() * 1e3,
            dead_note(dead)
        ));
        self.undeploy(function).await?;
        Ok(sample)
    }

    /// With the handler deployed, sends `n` messages and times until the
    /// queue is empty. One per request (64 in flight) for a handler; in
    /// batches of 100 for the batch handler, which reports each invocation
    /// to `batch-sizes`, so the note gives the mean batch size.
    pub(crate) async fn wasm_pipeline(
        &self,
        function: &str,
        queue: &str,
        n: usize,
        handler: Handler<'_>,
        settings: &Settings,
    ) -> anyhow::Result<Sample> {
        let (component, batched) = match handler {
            Handler::Single(component) => (component, false),
            Handler::Batch(component) => (component, true),
        };
        self.deploy(function, queue, component, settings.concurrency)
            .await?;
        let reported = if batched {
            self.counts(BATCH_SIZES).await?.0
        } else {
            0
        };
        let start = Instant::now();
        let (sent, _) = if batched {
            self.send_batches(queue, n).await?
        } else {
            self.send_many(queue, n, settings.concurrency).await?
        };
        let (empty_at, dead) = self.wait_empty(queue, settings.limit).await?;
        let mut sample = Sample::new(n, empty_at - start, None);
        let invocations = if batched {
            let invocations = self.counts(BATCH_SIZES).await?.0 - reported;
            format!(
                "; {invocations} invocations (mean batch {:.1})",
                n as f64 / invocations.max(1) as f64
            )
        } else {
            String::new()
        };
        sample.note = Some(format!(
            "sends done after {:.2} s{invocations}{}",
            sent.as_secs_f64(),
            dead_note(dead)
        ));
        self.undeploy(function).await?;
        Ok(sample)
    }

    /// A paced sender and HTTP consumers; latency from the scheduled send
    /// time to receipt, for messages scheduled after the warm-up.
    pub(crate) async fn latency(
        &self,
        queue: &str,
        pace: &Pace,
        settings: &Settings,
    ) -> anyhow::Result<Sample> {
        let n = pace.total();
        let start = pace.start();
        let (recorder, seen) = pace.recorder(start);
        let consumer = {
            let (client, queue, settings) = (self.clone(), queue.to_string(), settings.clone());
            tokio::spawn(async move {
                client
                    .receive_complete(&queue, n, &settings, recorder)
                    .await
            })
        };
        // Requests in flight are bounded; when they run out the sender falls
        // behind, and the bodies' scheduled times count that delay.
        let in_flight = Arc::new(Semaphore::new(settings.concurrency * 4));
        let failed = Arc::new(AtomicUsize::new(0));
        for i in 0..n {
            let due = pace.wait_for(start, i, &seen).await;
            let permit = in_flight
                .clone()
                .acquire_owned()
                .await
                .context("sender semaphore closed")?;
            let (client, queue, failed) = (self.clone(), queue.to_string(), failed.clone());
            tokio::spawn(async move {
                if client
                    .send_one(&queue, stats::body(stats::stamp_of(due)))
                    .await
                    .is_err()
                {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                drop(permit);
            });
        }
        // Every send has answered once all permits are back.
        let all = u32::try_from(settings.concurrency * 4).context("too many senders")?;
        let _all = tokio::time::timeout(settings.limit, in_flight.acquire_many(all))
            .await
            .context("paced sends did not finish in time")?
            .context("sender semaphore closed")?;
        let failed = failed.load(Ordering::Relaxed);
        if failed > 0 {
            consumer.abort();
            bail!("{failed} paced sends failed");
        }
        consumer.await.context("the consumer panicked")??;
        Ok(pace.sample(start, &seen))
    }
}

fn dead_note(dead: u64) -> String {
    if dead == 0 {
        String::new()
    } else {
        format!("; {dead} dead-lettered")
    }
}

/// The path part of a `Location` URL (`http://host/q/messages/1/token` → `/q/messages/1/token`).
fn settle_path(location: &str) -> anyhow::Result<String> {
    location
        .splitn(4, '/')
        .nth(3)
        .map(|p| format!("/{p}"))
        .with_context(|| format!("a Location without a path: {location}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settle_path_drops_scheme_and_host() {
        assert_eq!(
            settle_path("http://127.0.0.1:1/q/messages/7/abc").ok(),
            Some("/q/messages/7/abc".to_string())
        );
        assert!(settle_path("nonsense").is_err());
    }
}
