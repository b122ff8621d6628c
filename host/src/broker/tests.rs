//! Broker behaviour seen from the store: what a restart finds.
//!
//! A "restart" here opens a copy of the data directory taken while the
//! first broker still runs, after its writes were acknowledged: what a
//! `kill -9` at that moment leaves on disk (sled keeps its directory
//! locked while the first one lives).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::task::Poll;
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

/// Runs the scheduler until `queue` has `n` waiting receivers.
async fn until_waiters(broker: &Broker, queue: &str, n: usize) {
    let queue = broker.queue(queue).expect("queue");
    for _ in 0..1000 {
        if queue.state().waiters.len() == n {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!(
        "expected {n} waiting receivers, found {}",
        queue.state().waiters.len()
    );
}

/// Polls `future` once, in this task: a send runs up to its commit and
/// waits there for its fsync, with nothing else run in between. Rarely
/// (about once in 150 runs) the flush thread finishes before that first
/// poll looks, and the send is done: callers settle it and try again.
async fn poll_once<F: Future>(mut future: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await
}

/// How many sends a test tries before it gives up on one staying parked.
const PARK_ATTEMPTS: usize = 10;

/// A broker on a fresh data directory with queue `q` holding `n` messages.
async fn broker_with_queue(n: usize) -> (tempfile::TempDir, Arc<Broker>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Arc::new(open(dir.path()));
    queue_with(&broker, n).await;
    (dir, broker)
}

/// A peek-lock receive of up to `max` messages from `q`, waiting long.
fn spawn_receive(
    broker: &Arc<Broker>,
    max: usize,
) -> tokio::task::JoinHandle<Result<Vec<ReceivedMessage>, BrokerError>> {
    let broker = broker.clone();
    tokio::spawn(async move {
        broker
            .receive_batch(
                &EntityPath::parse("q"),
                ReceiveMode::PeekLock,
                max,
                Duration::from_secs(30),
            )
            .await
    })
}

// The tests below run on tokio's current-thread runtime: a spawned task runs
// only when the test yields, so each step happens exactly where it says.

#[tokio::test]
async fn a_message_sent_to_a_waiting_receiver_is_locked_for_it_by_the_send_itself() {
    let (dir, broker) = broker_with_queue(0).await;
    let path = EntityPath::parse("q");
    let receiver = spawn_receive(&broker, 5);
    until_waiters(&broker, "q", 1).await;
    broker
        .send("q", vec![message("hello")])
        .await
        .expect("send");
    // The receiver has not run since the send: the send locked it already,
    // in the record it wrote, and took the receiver off the waiting list.
    let info = broker.queue_info("q").expect("info");
    assert_eq!((info.locked_message_count, info.message_count), (1, 1));
    assert_eq!(broker.queue("q").expect("queue").state().waiters.len(), 0);
    let received = receiver.await.expect("join").expect("receive");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].record.body, b"hello");
    assert_eq!(received[0].record.delivery_count, 1);
    assert!(received[0].lock.is_some());
    // That delivery is on disk with the message: after a crash it counts.
    let (_copy, restarted) = crash_copy(dir.path());
    let again = peek_lock(&restarted, &path, 5).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].record.delivery_count, 2);
    // And the lock it got settles like any other.
    complete(&broker, &path, &received).await;
    assert_eq!(broker.queue_info("q").expect("info").message_count, 0);
}

#[tokio::test]
async fn a_send_hands_each_waiting_receiver_at_most_what_it_asked_for_oldest_first() {
    let (_dir, broker) = broker_with_queue(0).await;
    let path = EntityPath::parse("q");
    let mut receivers = Vec::new();
    for max in [2, 1] {
        receivers.push(spawn_receive(&broker, max));
        until_waiters(&broker, "q", receivers.len()).await;
    }
    let sent = (1..=4).map(|i| message(&i.to_string())).collect();
    broker.send("q", sent).await.expect("send");
    let mut bodies = Vec::new();
    for receiver in receivers {
        let received = receiver.await.expect("join").expect("receive");
        bodies.push(
            received
                .iter()
                .map(|m| String::from_utf8_lossy(&m.record.body).into_owned())
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(bodies, vec![vec!["1", "2"], vec!["3"]]);
    // The fourth found no one waiting and is in the queue, never delivered.
    let rest = peek_lock(&broker, &path, 5).await;
    assert_eq!(rest.len(), 1);
    assert_eq!(
        (
            rest[0].record.body.as_slice(),
            rest[0].record.delivery_count
        ),
        (&b"4"[..], 1)
    );
}

#[tokio::test]
async fn a_receiver_that_gave_up_leaves_no_waiter_and_misses_no_message() {
    let (_dir, broker) = broker_with_queue(0).await;
    let path = EntityPath::parse("q");
    let receiver = spawn_receive(&broker, 1);
    until_waiters(&broker, "q", 1).await;
    // The HTTP client hung up: the receive's future is dropped.
    receiver.abort();
    assert!(receiver.await.expect_err("aborted").is_cancelled());
    until_waiters(&broker, "q", 0).await;
    broker.send("q", vec![message("kept")]).await.expect("send");
    let received = peek_lock(&broker, &path, 1).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].record.delivery_count, 1);
}

/// The count of `q`'s messages that are (receivable, locked, scheduled).
fn states(broker: &Broker) -> (usize, usize, usize) {
    let info = broker.queue_info("q").expect("info");
    (
        info.active_message_count - info.locked_message_count,
        info.locked_message_count,
        info.scheduled_message_count,
    )
}

#[tokio::test]
async fn a_receiver_gone_after_the_send_took_it_leaves_the_message_receivable_at_once() {
    let (dir, broker) = broker_with_queue(0).await;
    let queue = broker.queue("q").expect("queue");
    let path = EntityPath::parse("q");
    // The send takes the waiter and waits for its fsync.
    let mut parked = None;
    for _ in 0..PARK_ATTEMPTS {
        let waiting = Waiting::register(&queue, &mut queue.state().waiters, 1);
        let mut send = Box::pin(broker.send("q", vec![message("orphan")]));
        if poll_once(send.as_mut()).await.is_pending() {
            parked = Some((waiting, send));
            break;
        }
        drop(waiting);
        complete(&broker, &path, &peek_lock(&broker, &path, 1).await).await;
    }
    let (waiting, send) = parked.expect("a send waits for its fsync");
    assert_eq!(queue.state().waiters.len(), 0);
    assert_eq!(broker.queue_info("q").expect("info").message_count, 0);
    drop(waiting);
    send.await.expect("send");
    // Receivable again without waiting for the lock to expire; the
    // delivery stays counted, in memory as on disk, like that of a receive
    // whose answer was lost.
    assert_eq!(states(&broker), (1, 0, 0));
    let (_copy, restarted) = crash_copy(dir.path());
    for broker in [&*broker, &restarted] {
        let received = peek_lock(broker, &path, 1).await;
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].record.delivery_count, 2);
    }
}

#[tokio::test]
async fn messages_handed_to_a_receive_cancelled_before_it_took_them_are_released_at_once() {
    let (_dir, broker) = broker_with_queue(0).await;
    let queue = broker.queue("q").expect("queue");
    let waiting = Waiting::register(&queue, &mut queue.state().waiters, 1);
    // The send completes and hands the message over; the receive is
    // cancelled (its future dropped) before it looks.
    broker
        .send("q", vec![message("dropped")])
        .await
        .expect("send");
    assert_eq!(states(&broker), (0, 1, 0));
    drop(waiting);
    assert_eq!(states(&broker), (1, 0, 0));
    let received = peek_lock(&broker, &EntityPath::parse("q"), 1).await;
    assert_eq!(received[0].record.delivery_count, 2);
}

#[tokio::test]
async fn a_scheduled_message_is_not_handed_to_a_waiting_receiver() {
    let (_dir, broker) = broker_with_queue(0).await;
    let receiver = spawn_receive(&broker, 1);
    until_waiters(&broker, "q", 1).await;
    let later = NewMessage {
        scheduled_at_ms: Some(now_ms() + 60_000),
        ..message("later")
    };
    broker.send("q", vec![later]).await.expect("send");
    assert_eq!(states(&broker), (0, 0, 1));
    assert_eq!(broker.queue("q").expect("queue").state().waiters.len(), 1);
    receiver.abort();
}

#[tokio::test]
async fn an_older_receivable_message_goes_before_a_new_one_is_handed_over() {
    let (_dir, broker) = broker_with_queue(1).await;
    let path = EntityPath::parse("q");
    let first = peek_lock(&broker, &path, 1).await;
    // A waiter registered while the queue had nothing receivable, then the
    // old message abandoned before that waiter looked again.
    let queue = broker.queue("q").expect("queue");
    let waiting = Waiting::register(&queue, &mut queue.state().waiters, 1);
    abandon(&broker, &path, &first[0]).await;
    broker.send("q", vec![message("new")]).await.expect("send");
    // The new message was not handed past the old one.
    assert_eq!(states(&broker), (2, 0, 0));
    assert_eq!(queue.state().waiters.len(), 1);
    drop(waiting);
    let received = peek_lock(&broker, &path, 2).await;
    let got: Vec<(&[u8], u32)> = received
        .iter()
        .map(|m| (m.record.body.as_slice(), m.record.delivery_count))
        .collect();
    assert_eq!(got, vec![(&b"0"[..], 2), (&b"new"[..], 1)]);
}

#[tokio::test]
async fn a_send_whose_caller_went_away_during_its_commit_still_makes_its_message_receivable() {
    let (_dir, broker) = broker_with_queue(0).await;
    let path = EntityPath::parse("q");
    // The send writes the message and waits for its fsync.
    let mut parked = None;
    for _ in 0..PARK_ATTEMPTS {
        let mut send = Box::pin(broker.send("q", vec![message("orphaned send")]));
        if poll_once(send.as_mut()).await.is_pending() {
            parked = Some(send);
            break;
        }
        complete(&broker, &path, &peek_lock(&broker, &path, 1).await).await;
    }
    let send = parked.expect("a send waits for its fsync");
    let stored = broker
        .store
        .messages()
        .scan_prefix(key_prefix("q", TAG_ACTIVE))
        .count();
    assert_eq!(stored, 1, "the send wrote its message");
    // The HTTP client hangs up: the send's future is dropped mid-commit.
    drop(send);
    // The message still becomes receivable once durable, without a restart.
    let received = peek_lock(&broker, &path, 1).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].record.body, b"orphaned send");
}
