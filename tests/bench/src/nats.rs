//! NATS JetStream through `async-nats`: a file-storage stream with work-queue
//! retention (a message is removed once acked, as in a queue), acked publish
//! with up to 1000 unacknowledged, and a durable pull consumer with explicit
//! acks fetching batches of 100.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use hdrhistogram::Histogram;

use crate::Settings;
use crate::stats::{self, OnReceipt, Pace, Sample};
use crate::window::{self, Confirm, Schedule};

/// Messages one pull request asks for.
const FETCH: usize = 100;

pub(crate) struct JetStream {
    client: async_nats::Client,
    context: jetstream::Context,
}

/// A stream's name and its one subject.
pub(crate) struct Names {
    stream: String,
    subject: String,
}

impl Names {
    /// Names for `tag` (letters, digits and `-` only).
    pub(crate) fn new(tag: &str) -> Names {
        let tag = tag.replace('-', "_");
        Names {
            stream: format!("BENCH_{tag}"),
            subject: format!("bench.{tag}"),
        }
    }
}

impl JetStream {
    pub(crate) async fn connect(url: &str) -> anyhow::Result<JetStream> {
        let client = async_nats::connect(url)
            .await
            .with_context(|| format!("connecting to NATS at {url}"))?;
        let context = jetstream::new(client.clone());
        Ok(JetStream { client, context })
    }

    pub(crate) async fn create_stream(&self, names: &Names) -> anyhow::Result<()> {
        self.context
            .create_stream(stream::Config {
                name: names.stream.clone(),
                subjects: vec![names.subject.clone()],
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::WorkQueue,
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating stream {}", names.stream))?;
        Ok(())
    }

    pub(crate) async fn delete_stream(&self, names: &Names) -> anyhow::Result<()> {
        self.context
            .delete_stream(&names.stream)
            .await
            .with_context(|| format!("deleting stream {}", names.stream))?;
        Ok(())
    }

    /// Publishes `n` messages, each acknowledged by the server.
    pub(crate) async fn send(
        &self,
        names: &Names,
        n: usize,
        schedule: Schedule<'_>,
        settings: &Settings,
    ) -> anyhow::Result<(Duration, Histogram<u64>)> {
        window::publish(n, settings.window, schedule, settings.limit, |stamp| {
            let (context, subject) = (self.context.clone(), names.subject.clone());
            async move {
                let ack = context
                    .publish(subject, Bytes::from(stats::body(stamp)))
                    .await
                    .context("publishing")?;
                let confirm: Confirm = Box::pin(async move {
                    ack.await.context("awaiting a publish ack")?;
                    Ok(())
                });
                anyhow::Ok(confirm)
            }
        })
        .await
    }

    /// Consumes and acks `n` messages with a durable pull consumer, then
    /// waits until the stream is empty (acks have no reply; with work-queue
    /// retention an acked message leaves the stream).
    pub(crate) async fn consume(
        &self,
        names: &Names,
        n: usize,
        settings: &Settings,
        on_receipt: OnReceipt,
    ) -> anyhow::Result<()> {
        let mut stream = self
            .context
            .get_stream(&names.stream)
            .await
            .with_context(|| format!("opening stream {}", names.stream))?;
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some("sluice-bench".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            })
            .await
            .context("creating a durable pull consumer")?;
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(FETCH)
            .messages()
            .await
            .context("starting to pull")?;
        let deadline = Instant::now() + settings.limit;
        let mut done = 0;
        while done < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = tokio::time::timeout(left, messages.next())
                .await
                .with_context(|| format!("consumed {done} of {n} before the time limit"))?
                .context("the pull stream ended")?
                .map_err(|e| anyhow::anyhow!("a pull failed: {e}"))?;
            on_receipt(&message.payload);
            message
                .ack()
                .await
                .map_err(|e| anyhow::anyhow!("acking: {e}"))?;
            done += 1;
        }
        drop(messages);
        self.client.flush().await.context("flushing the acks")?;
        loop {
            let left = stream.info().await.context("stream info")?.state.messages;
            if left == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{left} messages left in {} after consuming {n}",
                    names.stream
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Publishes and consumes `n` messages at once; the time until the last ack is applied.
    pub(crate) async fn send_and_consume(
        &self,
        names: &Names,
        n: usize,
        settings: &Settings,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let (sent, consumed) = tokio::join!(
            self.send(names, n, Schedule::Flat, settings),
            self.consume(names, n, settings, stats::ignore_bodies())
        );
        sent?;
        consumed?;
        Ok(start.elapsed())
    }

    /// A paced publisher and a consumer; latency from scheduled send to receipt.
    pub(crate) async fn latency(
        &self,
        names: &Names,
        pace: &Pace,
        settings: &Settings,
    ) -> anyhow::Result<Sample> {
        let n = pace.total();
        let start = pace.start();
        let (recorder, seen) = pace.recorder(start);
        let schedule = Schedule::Paced {
            pace,
            start,
            seen: &seen,
        };
        let (sent, consumed) = tokio::join!(
            self.send(names, n, schedule, settings),
            self.consume(names, n, settings, recorder)
        );
        sent?;
        consumed?;
        Ok(pace.sample(start, &seen))
    }
}
