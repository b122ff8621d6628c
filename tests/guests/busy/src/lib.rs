//! Test guest: a message handler that computes for a while, then completes.
//!
//! The body is the number of millions of loop iterations to run. The guest
//! has no clock (it imports no WASI), so it spins instead of sleeping; a few
//! thousand million iterations outlast a one-second peek-lock, which is what
//! the lock auto-renewal test needs.

use std::hint::black_box;

use sluice_sdk::{Message, Result};

/// Spins for `body` million iterations.
#[sluice_sdk::message_handler]
fn busy(message: Message) -> Result<()> {
    let millions: u64 = message.text()?.trim().parse().unwrap_or(0);
    let mut acc = 0u64;
    for i in 0..millions.saturating_mul(1_000_000) {
        acc = black_box(acc.wrapping_add(i));
    }
    black_box(acc);
    Ok(())
}
