//! Test guest: a message handler that always fails with an ordinary error.
//!
//! Every delivery is abandoned with the reason `downstream unavailable`, so
//! the host redelivers the message until the queue's max delivery count and
//! then dead-letters it.

use sluice_sdk::{Error, Message, Result};

/// Fails every time, as a handler whose downstream service is down would.
#[sluice_sdk::message_handler]
fn always_fail(_message: Message) -> Result<()> {
    Err(Error::msg("downstream unavailable"))
}
