//! Order flow, step 1: validates each `orders.created` event.
//!
//! A valid order goes to the queue `fulfil` with its computed total; an
//! invalid one is dead-lettered with reason `InvalidOrder` and a description
//! that names the offending field.

use serde::{Deserialize, Serialize};
use sluice_sdk::log::{self, Level};
use sluice_sdk::send::{self, OutgoingMessage};
use sluice_sdk::{Error, Event, Result};

/// The event type this handler validates.
const ORDER_CREATED: &str = "orders.created";
/// Where valid orders go next.
const FULFIL_QUEUE: &str = "fulfil";

/// The `data` of an `orders.created` event.
#[derive(Deserialize)]
struct Order {
    id: String,
    customer: String,
    lines: Vec<Line>,
}

/// One order line. Signed so that a negative quantity or price is reported
/// as such rather than as a JSON type error.
#[derive(Deserialize, Serialize)]
struct Line {
    sku: String,
    quantity: i64,
    unit_price_cents: i64,
}

/// The body of the message sent to `fulfil`: the order plus its total.
#[derive(Serialize)]
struct ValidatedOrder<'a> {
    id: &'a str,
    customer: &'a str,
    lines: &'a [Line],
    total_cents: i64,
}

/// Validates an order and queues it for fulfilment.
#[sluice_sdk::event_handler]
fn validate_order(event: Event) -> Result<()> {
    if event.event_type != ORDER_CREATED {
        // The subscription should only deliver orders.created; anything else
        // is not ours to judge, so let it pass rather than dead-letter it.
        log::write(
            Level::Warn,
            "ignoring event of unexpected type",
            &[("event_id", &event.id), ("event_type", &event.event_type)],
        );
        return Ok(());
    }

    // A payload that is not an order at all is as invalid as a bad field.
    let order: Order = serde_json::from_slice(&event.data).map_err(|error| {
        Error::dead_letter("InvalidOrder", format!("data is not an order: {error}"))
    })?;
    let total_cents =
        validate(&order).map_err(|problem| Error::dead_letter("InvalidOrder", problem))?;

    let body = ValidatedOrder {
        id: &order.id,
        customer: &order.customer,
        lines: &order.lines,
        total_cents,
    };
    let message = OutgoingMessage::json(&body)?
        // The order id as message id lets the queue drop duplicates when
        // the same event is delivered twice.
        .with_message_id(&order.id)
        .with_correlation_id(&order.id)
        .with_subject("order")
        .with_property("customer", &order.customer);
    let sequence_number = send::send(FULFIL_QUEUE, &message)?;

    log::write(
        Level::Info,
        "order validated",
        &[
            ("order_id", &order.id),
            ("customer", &order.customer),
            ("lines", &order.lines.len()),
            ("total_cents", &total_cents),
            ("sequence_number", &sequence_number),
        ],
    );
    Ok(())
}

/// Checks the order's fields and returns its total in cents, or what is
/// wrong with it, naming the field.
fn validate(order: &Order) -> std::result::Result<i64, String> {
    if order.id.trim().is_empty() {
        return Err("`id` must not be empty".to_string());
    }
    if order.lines.is_empty() {
        return Err(format!(
            "order `{}`: `lines` must hold at least one line",
            order.id
        ));
    }
    let mut total_cents: i64 = 0;
    for (index, line) in order.lines.iter().enumerate() {
        if line.quantity <= 0 {
            return Err(format!(
                "order `{}`: `lines[{index}].quantity` must be above zero, got {}",
                order.id, line.quantity
            ));
        }
        if line.unit_price_cents <= 0 {
            return Err(format!(
                "order `{}`: `lines[{index}].unit_price_cents` must be above zero, got {}",
                order.id, line.unit_price_cents
            ));
        }
        total_cents = line
            .quantity
            .checked_mul(line.unit_price_cents)
            .and_then(|line_total| total_cents.checked_add(line_total))
            .ok_or_else(|| format!("order `{}`: the total of `lines` overflows", order.id))?;
    }
    Ok(total_cents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(json: &str) -> Order {
        serde_json::from_str(json).expect("test orders are valid JSON")
    }

    #[test]
    fn valid_order_totals_its_lines() {
        let order = order(
            r#"{"id":"A-1","customer":"ada","lines":[
                {"sku":"BOOK","quantity":2,"unit_price_cents":1500},
                {"sku":"PEN","quantity":1,"unit_price_cents":250}]}"#,
        );
        assert_eq!(validate(&order), Ok(3250));
    }

    #[test]
    fn problems_name_the_field() {
        let empty = order(r#"{"id":"A-2","customer":"ada","lines":[]}"#);
        assert!(validate(&empty).is_err_and(|p| p.contains("`lines`")));
        let zero = order(
            r#"{"id":"A-3","customer":"ada","lines":[{"sku":"X","quantity":0,"unit_price_cents":1}]}"#,
        );
        assert!(validate(&zero).is_err_and(|p| p.contains("`lines[0].quantity`")));
        let no_id = order(r#"{"id":"","customer":"ada","lines":[]}"#);
        assert!(validate(&no_id).is_err_and(|p| p.contains("`id`")));
    }
}
