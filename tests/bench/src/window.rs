//! Publishing with a window of unconfirmed messages, shared by the RabbitMQ
//! (publisher confirms) and JetStream (acked publish) drivers.
//!
//! The publisher issues messages in order while fewer than `window` are
//! unconfirmed; a collector task awaits the confirmations in the same order
//! as soon as they arrive, so each message's publish → confirm latency is
//! measured when its confirmation comes, not when the publisher next needs
//! a slot.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::stats::{self, Pace, Seen};

/// A pending confirmation.
pub(crate) type Confirm = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// When to publish: as fast as the window allows, or on a schedule.
pub(crate) enum Schedule<'a> {
    Flat,
    Paced {
        pace: &'a Pace,
        start: Instant,
        seen: &'a Mutex<Seen>,
    },
}

/// Publishes `n` messages; `publish(stamp)` sends one message whose body
/// carries `stamp` and returns its pending confirmation. Returns the time
/// until the last confirmation and the publish → confirm latencies.
pub(crate) async fn publish<P, F>(
    n: usize,
    window: usize,
    schedule: Schedule<'_>,
    limit: Duration,
    mut publish: P,
) -> anyhow::Result<(Duration, Histogram<u64>)>
where
    P: FnMut(u64) -> F,
    F: Future<Output = anyhow::Result<Confirm>>,
{
    let slots = Arc::new(Semaphore::new(window.max(1)));
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, OwnedSemaphorePermit, Confirm)>();
    let collector = tokio::spawn(async move {
        let mut latency = stats::histogram();
        while let Some((sent, permit, confirm)) = rx.recv().await {
            tokio::time::timeout(limit, confirm)
                .await
                .context("no confirmation within the time limit")??;
            stats::record(&mut latency, sent.elapsed());
            drop(permit);
        }
        anyhow::Ok(latency)
    });
    let start = Instant::now();
    let published = async {
        for i in 0..n {
            let stamp = match &schedule {
                Schedule::Flat => stats::now_stamp(),
                Schedule::Paced { pace, start, seen } => {
                    stats::stamp_of(pace.wait_for(*start, i, seen).await)
                }
            };
            let permit = tokio::time::timeout(limit, slots.clone().acquire_owned())
                .await
                .context("the confirmation window stayed full")?
                .context("window semaphore closed")?;
            let sent = Instant::now();
            let confirm = publish(stamp).await?;
            // The collector ends only after the sender is dropped; if it
            // failed, its error is reported below.
            if tx.send((sent, permit, confirm)).is_err() {
                break;
            }
        }
        anyhow::Ok(())
    }
    .await;
    drop(tx);
    let latency = collector
        .await
        .context("the confirm collector panicked")??;
    published?;
    Ok((start.elapsed(), latency))
}
