//! Broker behaviour seen from the store: what a restart finds.
//!
//! A "restart" here opens a copy of the data directory taken while the
//! first broker still runs, after its writes were acknowledged: what a
//! `kill -9` at that moment leaves on disk (sled keeps its directory
//! locked while the first one lives).

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::store::Durability;

fn open(dir: &Path) -> Broker {
    let store = Store::open(dir, Durability::Fsync).expect("store opens");
    Broker::open(store).expect("broker opens")
}

/// The data directory as a crash right now would leave it, opened.
fn crash_copy(dir: &Path) -> (tempfile::TempDir, Broker) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("create dir");
        for entry in std::fs::read_dir(from).expect("read dir") {
            let entry = entry.expect("dir entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("file type").is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).expect("copy file");
            }
        }
    }
    let copied = tempfile::tempdir().expect("temp dir");
    copy(dir, copied.path());
    let broker = open(copied.path());
    (copied, broker)
}

fn message(body: &str) -> NewMessage {
    NewMessage {
        body: body.as_bytes().to_vec(),
        ..NewMessage::default()
    }
}

/// Delivery log records of `queue` in the store.
fn delivery_logs(broker: &Broker, queue: &str) -> usize {
    broker
        .store
        .messages()
        .scan_prefix(key_prefix(queue, TAG_DELIVERIES))
        .count()
}

async fn peek_lock(broker: &Broker, path: &EntityPath, max: usize) -> Vec<ReceivedMessage> {
    broker
        .receive_batch(path, ReceiveMode::PeekLock, max, Duration::from_millis(100))
        .await
        .expect("receive")
}

/// Sends `n` messages to a new queue `q`.
async fn queue_with(broker: &Broker, n: usize) {
    broker
        .create_queue("q", QueueProperties::default())
        .await
        .expect("create");
    let messages = (0..n).map(|i| message(&i.to_string())).collect();
    broker.send("q", messages).await.expect("send");
}

async fn abandon(broker: &Broker, path: &EntityPath, message: &ReceivedMessage) {
    let lock = message.lock.expect("locked");
    broker
        .abandon(
            path,
            message.sequence_number,
            lock.token,
            None,
            Duration::ZERO,
            &[],
        )
        .await
        .expect("abandon");
}

async fn complete(broker: &Broker, path: &EntityPath, messages: &[ReceivedMessage]) {
    let settles: Vec<_> = messages
        .iter()
        .map(|m| (m.sequence_number, m.lock.expect("locked").token))
        .collect();
    let outcomes = broker
        .complete_batch(path, &settles)
        .await
        .expect("complete");
    assert!(outcomes.iter().all(Result::is_ok));
}

#[tokio::test]
async fn delivery_counts_of_small_and_large_receives_survive_a_crash() {
    let path = EntityPath::parse("q");
    // A receive of 2 rewrites the two records; one of 6 writes one log.
    for (n, logs) in [(2, 0), (DELIVERY_LOG_MIN_MESSAGES + 2, 1)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = open(dir.path());
        queue_with(&first, n).await;
        let received = peek_lock(&first, &path, 10).await;
        assert_eq!(received.len(), n);
        assert!(received.iter().all(|m| m.record.delivery_count == 1));
        assert_eq!(delivery_logs(&first, "q"), logs, "receive of {n}");

        let (_copy, broker) = crash_copy(dir.path());
        // The locks died with the process; the deliveries they counted did not.
        let second = peek_lock(&broker, &path, 10).await;
        let counts: Vec<u32> = second.iter().map(|m| m.record.delivery_count).collect();
        assert_eq!(counts, vec![2; n], "receive of {n}");
        let peeked = broker.peek(&path, 1, 10).expect("peek");
        assert!(peeked.iter().all(|m| m.record.delivery_count == 2));
    }
}

#[tokio::test]
async fn a_delivery_log_is_deleted_once_no_message_needs_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = EntityPath::parse("q");
    let broker = open(dir.path());
    let n = DELIVERY_LOG_MIN_MESSAGES + 1;
    queue_with(&broker, n).await;
    let received = peek_lock(&broker, &path, 10).await;
    assert_eq!(delivery_logs(&broker, "q"), 1);
    // Abandon all but the last and receive them again: their counts move
    // to a second log; the first still holds the last one's count.
    let (again_ones, last) = received.split_at(n - 1);
    for message in again_ones {
        abandon(&broker, &path, message).await;
    }
    let again = peek_lock(&broker, &path, 10).await;
    assert_eq!(again.len(), n - 1);
    assert!(again.iter().all(|m| m.record.delivery_count == 2));
    assert_eq!(delivery_logs(&broker, "q"), 2);
    // Completing the last one leaves the first log without references.
    complete(&broker, &path, last).await;
    assert_eq!(delivery_logs(&broker, "q"), 1);
    // A small receive rewrites its message's record and releases it from
    // the second log, which the completes of the others then empty.
    abandon(&broker, &path, &again[0]).await;
    let third = peek_lock(&broker, &path, 10).await;
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].record.delivery_count, 3);
    assert_eq!(delivery_logs(&broker, "q"), 1);
    complete(&broker, &path, &again[1..]).await;
    assert_eq!(delivery_logs(&broker, "q"), 0);
    complete(&broker, &path, &third).await;
    assert!(broker.peek(&path, 1, 10).expect("peek").is_empty());
}

#[tokio::test]
async fn delivery_logs_of_settled_messages_are_deleted_at_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = open(dir.path());
    {
        let broker = &first;
        queue_with(broker, DELIVERY_LOG_MIN_MESSAGES).await;
        // Logs left behind (say, their deletion was lost in a crash): one
        // for a message that exists and one that does not, one only for
        // messages that do not.
        let plant = |id: DeliveryLogId, log: DeliveryLog| {
            broker
                .store
                .messages()
                .insert(
                    delivery_log_key("q", false, id),
                    store::encode(TREE, &log).expect("encode"),
                )
                .expect("insert");
        };
        plant(5, vec![(1, 4), (99, 7)]);
        plant(3, vec![(98, 1)]);
        broker.store.commit().await.expect("commit");
    }
    let (_copy, broker) = crash_copy(dir.path());
    // Log 3 refers to nothing and is gone; log 5 still holds message 1's count.
    assert_eq!(delivery_logs(&broker, "q"), 1);
    let received = peek_lock(&broker, &EntityPath::parse("q"), 10).await;
    let counts: Vec<u32> = received.iter().map(|m| m.record.delivery_count).collect();
    let mut expected = vec![1; DELIVERY_LOG_MIN_MESSAGES];
    expected[0] = 5;
    assert_eq!(counts, expected);
    // The new counts went to a log whose id is past every one seen, and
    // log 5, superseded, is gone.
    assert_eq!(delivery_logs(&broker, "q"), 1);
    assert!(
        broker
            .store
            .messages()
            .get(delivery_log_key("q", false, 6))
            .expect("get")
            .is_some()
    );
}
