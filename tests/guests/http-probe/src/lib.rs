//! Test guest: an HTTP handler (`#[http_handler]`), routed at
//! `/api/probe/{*rest}` by the tests.
//!
//! - `.../echo` answers 200 with JSON: method, path, query param `q`,
//!   principal, traceparent, body length;
//! - `.../enqueue` sends the body to the queue `accepted` and answers 202
//!   with the message's sequence number;
//! - `.../panic` panics (the host answers 500);
//! - `.../spin` loops forever (the host answers 504 at the deadline);
//! - anything else answers 404 in the host's error shape.

use sluice_sdk::http::{Request, Response};
use sluice_sdk::send::{OutgoingMessage, send};

#[sluice_sdk::http_handler]
fn probe(request: Request) -> sluice_sdk::Result<Response> {
    let action = request.path().rsplit('/').next().unwrap_or_default().to_string();
    match action.as_str() {
        "echo" => Response::json(
            200,
            &serde_json::json!({
                "method": request.method(),
                "path": request.path(),
                "q": request.query_param("q"),
                "principal": request.principal(),
                "traceparent": request.header("traceparent"),
                "bodyBytes": request.body().len(),
            }),
        ),
        "enqueue" => {
            let message = OutgoingMessage::bytes(request.body().to_vec())
                .with_subject(request.principal().unwrap_or("nobody"));
            let sequence_number = send("accepted", &message)?;
            Response::json(202, &serde_json::json!({ "sequenceNumber": sequence_number }))
        }
        "panic" => panic!("probe asked to panic"),
        "spin" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        other => Ok(Response::problem(404, &format!("no probe action `{other}`"))),
    }
}
