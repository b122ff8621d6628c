//! Test guest: a message handler that panics when the body is the text
//! `boom`, and completes every other message.
//!
//! A panic is a trap: the host must survive it, count the delivery, and keep
//! handling the next messages with a fresh instance.

use sluice_sdk::Message;

/// Panics with "boom" on the body `boom`; completes anything else.
#[sluice_sdk::message_handler]
fn maybe_panic(message: Message) {
    if message.body == b"boom" {
        panic!("boom");
    }
}
