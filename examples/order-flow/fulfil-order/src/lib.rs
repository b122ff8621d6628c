//! Order flow, step 2: fulfils each order queued on `fulfil` by
//! `validate-order` and announces it as an `orders.fulfilled` event on the
//! topic `fulfilled`.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use sluice_sdk::log::{self, Level};
use sluice_sdk::publish::{self, OutgoingEvent};
use sluice_sdk::{Message, Result};

/// Where fulfilled orders are announced.
const FULFILLED_TOPIC: &str = "fulfilled";

/// The parts of a validated order this step needs.
#[derive(Deserialize)]
struct ValidatedOrder {
    id: String,
    total_cents: u64,
    // Only counted: the lines were checked by validate-order.
    lines: Vec<IgnoredAny>,
}

/// The `data` of an `orders.fulfilled` event.
#[derive(Serialize)]
struct Fulfilled<'a> {
    id: &'a str,
    total_cents: u64,
    lines: usize,
}

/// Fulfils an order and publishes `orders.fulfilled`.
#[sluice_sdk::message_handler]
fn fulfil_order(message: Message) -> Result<()> {
    // A body that is not a validated order is dead-lettered (`InvalidBody`).
    let order: ValidatedOrder = message.json()?;

    let event = OutgoingEvent::new("orders.fulfilled")
        .with_subject(format!("orders/{}", order.id))
        .with_json(&Fulfilled {
            id: &order.id,
            total_cents: order.total_cents,
            lines: order.lines.len(),
        })?;
    publish::publish(FULFILLED_TOPIC, &event)?;

    log::write(
        Level::Info,
        "order fulfilled",
        &[
            ("order_id", &order.id),
            ("total_cents", &order.total_cents),
            ("lines", &order.lines.len()),
            ("delivery_count", &message.delivery_count),
        ],
    );
    Ok(())
}
