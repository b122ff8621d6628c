//! Test guest: a batch handler (`#[message_batch_handler]`).
//!
//! Each invocation first sends the number of messages it got to the queue
//! `batch-sizes`, then settles every message as its text body says:
//! `dead` is dead-lettered (reason `Rejected`), `retry` is abandoned, and
//! anything else completes. A `trap` anywhere in the batch panics, which
//! fails the whole invocation; a `short` makes it return one outcome too
//! few, which the host refuses (the whole batch is abandoned).

use sluice_sdk::send::{self, OutgoingMessage};
use sluice_sdk::{Error, Message, Result};

/// Reports the batch size, then gives one outcome per message.
#[sluice_sdk::message_batch_handler]
fn settle_as_told(messages: Vec<Message>) -> Result<Vec<Result<()>>> {
    send::send(
        "batch-sizes",
        &OutgoingMessage::text(messages.len().to_string()),
    )?;
    let mut outcomes: Vec<Result<()>> = messages
        .iter()
        .map(|message| match message.text()? {
            "dead" => Err(Error::dead_letter("Rejected", "the body said dead")),
            "retry" => Err(Error::msg("the body said retry")),
            "trap" => panic!("the body said trap"),
            _ => Ok(()),
        })
        .collect();
    if messages.iter().any(|m| m.body == b"short") {
        outcomes.pop();
    }
    Ok(outcomes)
}
