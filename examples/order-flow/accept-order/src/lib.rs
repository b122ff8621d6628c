//! Order flow, step 0: the front door. `POST /api/orders` with an order as
//! JSON is checked for its shape (a JSON object with an `id` and at least
//! one line) and published as `orders.created` to the topic `orders`,
//! where validate-order takes over; the caller gets 202 with the order id.
//! A body that is not such an order gets 400 (not JSON) or 422 (wrong
//! shape), and nothing is published. The business rules (quantities,
//! prices) stay in validate-order, which dead-letters what breaks them.
//!
//! Deployed with an HTTP trigger, e.g.
//! `sluice deploy accept-order accept-order.wasm --route orders --method POST --auth api-key --api-key shop=<key>`.

use serde::Deserialize;
use sluice_sdk::http::{Request, Response};
use sluice_sdk::publish::{OutgoingEvent, publish};

#[derive(Deserialize)]
struct OrderShape {
    id: String,
    lines: Vec<serde_json::Value>,
}

#[sluice_sdk::http_handler]
fn accept(request: Request) -> sluice_sdk::Result<Response> {
    let Ok(order) = serde_json::from_slice::<serde_json::Value>(request.body()) else {
        return Ok(Response::problem(400, "the body must be an order as JSON"));
    };
    let shape: OrderShape = match serde_json::from_value(order.clone()) {
        Ok(shape) => shape,
        Err(e) => return Ok(Response::problem(422, &format!("not an order: {e}"))),
    };
    if shape.id.trim().is_empty() || shape.lines.is_empty() {
        return Ok(Response::problem(
            422,
            "an order needs a non-empty `id` and at least one line",
        ));
    }
    let event = OutgoingEvent::new("orders.created")
        .with_id(format!("evt-{}", shape.id))
        .with_subject(format!("orders/{}", shape.id))
        .with_json(&order)?;
    publish("orders", &event)?;
    sluice_sdk::log::info(format!(
        "accepted order {} from {}",
        shape.id,
        request.principal().unwrap_or("?")
    ));
    Response::json(202, &serde_json::json!({ "accepted": shape.id }))
}
