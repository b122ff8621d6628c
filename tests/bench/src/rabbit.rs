//! RabbitMQ through `lapin`: a classic durable queue, persistent messages
//! (delivery mode 2), publisher confirms with up to 1000 unconfirmed, and a
//! consumer with manual acks and prefetch 100.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

use crate::Settings;
use crate::stats::{self, OnReceipt, Pace, Sample};
use crate::window::{self, Confirm, Schedule};

/// AMQP delivery mode of a persistent message.
const PERSISTENT: u8 = 2;
/// Unacknowledged deliveries the broker may push to the consumer.
const PREFETCH: u16 = 100;

pub(crate) struct Rabbit {
    /// Publishers and consumers use separate connections, as applications do,
    /// so neither's flow control stalls the other.
    publisher: Connection,
    consumer: Connection,
}

impl Rabbit {
    pub(crate) async fn connect(url: &str) -> anyhow::Result<Rabbit> {
        let connect = || async {
            Connection::connect(url, ConnectionProperties::default())
                .await
                .with_context(|| format!("connecting to RabbitMQ at {url}"))
        };
        Ok(Rabbit {
            publisher: connect().await?,
            consumer: connect().await?,
        })
    }

    async fn declare(channel: &Channel, queue: &str) -> anyhow::Result<()> {
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("declaring queue {queue}"))?;
        Ok(())
    }

    pub(crate) async fn delete_queue(&self, queue: &str) -> anyhow::Result<()> {
        let channel = self.publisher.create_channel().await?;
        channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
            .with_context(|| format!("deleting queue {queue}"))?;
        let _ = channel.close(200, "done".into()).await;
        Ok(())
    }

    /// Publishes `n` persistent messages with confirms.
    pub(crate) async fn send(
        &self,
        queue: &str,
        n: usize,
        schedule: Schedule<'_>,
        settings: &Settings,
    ) -> anyhow::Result<(Duration, Histogram<u64>)> {
        let channel = self.publisher.create_channel().await?;
        Self::declare(&channel, queue).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("enabling publisher confirms")?;
        let result = window::publish(n, settings.window, schedule, settings.limit, |stamp| {
            let channel = channel.clone();
            let queue = queue.to_string();
            async move {
                let confirm = channel
                    .basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions::default(),
                        &stats::body(stamp),
                        BasicProperties::default().with_delivery_mode(PERSISTENT),
                    )
                    .await
                    .context("publishing")?;
                let confirm: Confirm = Box::pin(async move {
                    let confirmation = confirm.await.context("awaiting a confirm")?;
                    if !confirmation.is_ack() {
                        bail!("the broker refused a message: {confirmation:?}");
                    }
                    Ok(())
                });
                anyhow::Ok(confirm)
            }
        })
        .await;
        let _ = channel.close(200, "done".into()).await;
        result
    }

    /// Consumes and acks `n` messages, then waits until the broker has
    /// processed the acks (acks have no reply; a synchronous call on the same
    /// channel is answered after them).
    pub(crate) async fn consume(
        &self,
        queue: &str,
        n: usize,
        settings: &Settings,
        on_receipt: OnReceipt,
    ) -> anyhow::Result<()> {
        let channel = self.consumer.create_channel().await?;
        Self::declare(&channel, queue).await?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .context("setting prefetch")?;
        let mut consumer = channel
            .basic_consume(
                queue.into(),
                "sluice-bench".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .context("starting a consumer")?;
        let deadline = Instant::now() + settings.limit;
        let mut done = 0;
        while done < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let delivery = tokio::time::timeout(left, consumer.next())
                .await
                .with_context(|| format!("consumed {done} of {n} before the time limit"))?
                .context("the consumer was cancelled")?
                .context("a delivery failed")?;
            on_receipt(&delivery.data);
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .context("acking")?;
            done += 1;
        }
        let left = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions::durable().passive(),
                FieldTable::default(),
            )
            .await
            .context("checking the queue after the acks")?
            .message_count();
        let _ = channel.close(200, "done".into()).await;
        if left != 0 {
            bail!("{left} messages left in {queue} after consuming {n}");
        }
        Ok(())
    }

    /// Publishes and consumes `n` messages at once; the time until the last ack.
    pub(crate) async fn send_and_consume(
        &self,
        queue: &str,
        n: usize,
        settings: &Settings,
    ) -> anyhow::Result<Duration> {
        // Declared first so the consumer finds it.
        let channel = self.publisher.create_channel().await?;
        Self::declare(&channel, queue).await?;
        let _ = channel.close(200, "done".into()).await;
        let start = Instant::now();
        let (sent, consumed) = tokio::join!(
            self.send(queue, n, Schedule::Flat, settings),
            self.consume(queue, n, settings, stats::ignore_bodies())
        );
        sent?;
        consumed?;
        Ok(start.elapsed())
    }

    /// A paced publisher and a consumer; latency from scheduled send to delivery.
    pub(crate) async fn latency(
        &self,
        queue: &str,
        pace: &Pace,
        settings: &Settings,
    ) -> anyhow::Result<Sample> {
        let channel = self.publisher.create_channel().await?;
        Self::declare(&channel, queue).await?;
        let _ = channel.close(200, "done".into()).await;
        let n = pace.total();
        let start = pace.start();
        let (recorder, seen) = pace.recorder(start);
        let schedule = Schedule::Paced {
            pace,
            start,
            seen: &seen,
        };
        let (sent, consumed) = tokio::join!(
            self.send(queue, n, schedule, settings),
            self.consume(queue, n, settings, recorder)
        );
        sent?;
        consumed?;
        Ok(pace.sample(start, &seen))
    }
}
