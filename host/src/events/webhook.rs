//! The HTTP side of Event Grid webhook delivery: one POST of events to a subscriber
//! endpoint and how Event Grid classifies the answer (delivered, retried with an
//! optional minimum delay, or dead-lettered at once), the headers Event Grid sends,
//! the two endpoint validation handshakes (Event Grid schema `SubscriptionValidationEvent`
//! and CloudEvents 1.0 abuse protection via `OPTIONS`), and the HTTP client settings.
//! It owns no state: scheduling, retry counting and dead-letter storage live elsewhere.

use reqwest::header::CONTENT_TYPE;
use std::time::Duration;

/// How long Event Grid waits for an endpoint's answer before it queues the event for retry.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the `validationUrl` stays valid for a manual (asynchronous) handshake.
pub const MANUAL_VALIDATION_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Limit on establishing a TCP/TLS connection (part of the overall delivery timeout).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Origin in Event Grid's `WebHook-Request-Origin` and CloudEvents deliveries' `Origin`.
pub const EVENT_GRID_ORIGIN: &str = "eventgrid.azure.net";
/// `Content-Type` of Event Grid schema (and custom schema) deliveries.
pub const EVENT_GRID_CONTENT_TYPE: &str = "application/json; charset=utf-8";
/// `Content-Type` of CloudEvents 1.0 schema deliveries.
pub const CLOUD_EVENTS_CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";
/// `aeg-event-type` of an ordinary event delivery.
pub const NOTIFICATION: &str = "Notification";
/// `aeg-event-type` of the Event Grid schema validation handshake.
pub const SUBSCRIPTION_VALIDATION: &str = "SubscriptionValidation";

/// Most of a validation answer's body that is read; a `validationResponse` is tiny.
const MAX_VALIDATION_BODY: usize = 64 * 1024;

/// One POST of one or more events to a webhook.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    /// The subscriber's endpoint URL.
    pub url: &'a str,
    /// The serialized JSON array (Event Grid schema) or event(s) (CloudEvents).
    pub body: Vec<u8>,
    /// Usually [`EVENT_GRID_CONTENT_TYPE`] or [`CLOUD_EVENTS_CONTENT_TYPE`].
    pub content_type: &'a str,
    /// [`delivery_headers`] plus any custom delivery properties; CloudEvents deliveries
    /// also carry `("Origin", EVENT_GRID_ORIGIN)`.
    pub headers: Vec<(String, String)>,
    /// Time allowed for the whole exchange, normally [`DELIVERY_TIMEOUT`].
    pub timeout: Duration,
}

/// What Event Grid makes of the endpoint's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The endpoint acknowledged with 200, 201, 202, 203 or 204.
    Delivered {
        /// The status the endpoint answered.
        status: u16,
    },
    /// Retry on the normal schedule (10 s, 30 s, 1 min, 5 min, ...).
    Retry {
        /// The endpoint's status, or `None` when no answer came (timeout, network error).
        status: Option<u16>,
        /// Why the attempt failed, for logs and `lastDeliveryOutcome`.
        reason: String,
        /// A floor Event Grid applies before the next attempt for some failures;
        /// `None` when the normal schedule applies.
        min_delay: Option<Duration>,
    },
    /// Never retried: dead-letter at once (or drop when no dead-letter destination).
    DeadLetter {
        /// The endpoint's status.
        status: u16,
        /// Why the event will never be delivered.
        reason: String,
    },
}

/// Outcome of an endpoint validation handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// The endpoint proved ownership; deliveries may start.
    Validated,
    /// The endpoint answered 200 but did not echo the code; the subscription waits in
    /// `AwaitingManualAction` for a GET on the validation URL within
    /// [`MANUAL_VALIDATION_WINDOW`].
    AwaitingManualValidation {
        /// What the endpoint answered instead of the code.
        reason: String,
    },
    /// Validation failed; the subscription's provisioning state becomes `Failed`.
    Failed {
        /// What was wrong.
        reason: String,
    },
}

/// The HTTP client for webhook traffic: redirects are never followed (Event Grid does
/// not, and the CloudEvents webhook spec forbids it), connections time out after
/// [`CONNECT_TIMEOUT`], and the user agent is `sluice-eventgrid/1`.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent("sluice-eventgrid/1")
        .build()
        // Building only fails if the TLS backend cannot start; rustls with bundled
        // webpki roots always can, so this fallback is never taken in practice.
        .unwrap_or_default()
}

/// Headers Event Grid sends with every request to a webhook, in this order:
/// `aeg-event-type` ([`NOTIFICATION`], [`SUBSCRIPTION_VALIDATION`], `SubscriptionDeletion`),
/// `aeg-subscription-name` (upper-cased, as Azure sends it), `aeg-delivery-count`
/// (the number of earlier attempts: 0 on the first), `aeg-data-version` (empty when the
/// event has none, e.g. CloudEvents) and `aeg-metadata-version` (always "1").
pub fn delivery_headers(
    subscription_name: &str,
    event_type_header: &str,
    delivery_count: u32,
    data_version: Option<&str>,
) -> Vec<(String, String)> {
    let (name, count) = (subscription_name.to_uppercase(), delivery_count.to_string());
    let pairs = [
        ("aeg-event-type", event_type_header),
        ("aeg-subscription-name", &name),
        ("aeg-delivery-count", &count),
        ("aeg-data-version", data_version.unwrap_or_default()),
        ("aeg-metadata-version", "1"),
    ];
    pairs.map(|(k, v)| (k.to_owned(), v.to_owned())).into()
}

/// POSTs one delivery and classifies the answer; never fails or panics.
pub async fn deliver(client: &reqwest::Client, delivery: Delivery<'_>) -> DeliveryOutcome {
    let timeout = delivery.timeout;
    match post(client, delivery).send().await {
        Ok(response) => outcome_for_status(response.status().as_u16()),
        Err(error) => {
            let (reason, min_delay) = describe_error(&error, timeout);
            retry(None, reason, min_delay)
        }
    }
}

fn post(client: &reqwest::Client, delivery: Delivery<'_>) -> reqwest::RequestBuilder {
    let request = client.post(delivery.url).timeout(delivery.timeout);
    let request = request.header(CONTENT_TYPE, delivery.content_type);
    let request = request.body(delivery.body);
    (delivery.headers.into_iter()).fold(request, |request, (k, v)| request.header(k, v))
}

fn retry(status: Option<u16>, reason: String, min_delay: Option<Duration>) -> DeliveryOutcome {
    DeliveryOutcome::Retry {
        status,
        reason,
        min_delay,
    }
}

// Status classification for webhook endpoints, from "Event Grid message delivery and retry"
// https://learn.microsoft.com/azure/event-grid/delivery-and-retry
// ("Retry schedule", "Message delivery status", "LastDeliveryOutcome: Probation"):
//
// | status / condition            | outcome                                          |
// |-------------------------------|--------------------------------------------------|
// | 200 201 202 203 204           | delivered (only these; 205+ are failures)        |
// | 400 Bad Request               | not retried: dead-letter                         |
// | 401 Unauthorized              | not retried for webhooks: dead-letter            |
// | 403 Forbidden                 | not retried: dead-letter                         |
// | 413 Request Entity Too Large  | not retried: dead-letter                         |
// | 404 Not Found                 | retry after 5 minutes or more                    |
// | 408 Request Timeout           | retry after 2 minutes or more                    |
// | 503 Service Unavailable       | retry after 30 seconds or more                   |
// | all others (3xx included)     | retry after 10 s or more = the normal schedule   |
// | no answer within 30 s         | retry (probation TimedOut: 10 s = normal)        |
// | socket / connection error     | retry, 30 s floor (probation SocketError)        |
// | DNS resolution error          | retry, 5 min floor (probation ResolutionError)   |
//
// Older revisions of the page retried 401/403/404 after 5 minutes and dead-lettered only
// 400/413; this follows the current page's webhook row (400, 401, 403, 413 not retried).

/// Classifies an endpoint's HTTP status the way Event Grid does (table above).
pub fn outcome_for_status(status: u16) -> DeliveryOutcome {
    let code = reqwest::StatusCode::from_u16(status).ok();
    let phrase = code.and_then(|code| code.canonical_reason());
    let phrase = phrase.unwrap_or("(non-standard)");
    let answered = format!("endpoint answered {status} {phrase}");
    let floors = [(404, 300), (408, 120), (503, 30)];
    let floor = floors.into_iter().find(|&(code, _)| code == status);
    let (got, min_delay) = (Some(status), floor.map(|(_, s)| Duration::from_secs(s)));
    match status {
        200..=204 => DeliveryOutcome::Delivered { status },
        400 | 401 | 403 | 413 => DeliveryOutcome::DeadLetter {
            status,
            reason: format!("{answered}, which Event Grid never retries"),
        },
        300..=399 => retry(got, format!("{answered}; redirect not followed"), None),
        _ => retry(got, answered, min_delay),
    }
}

/// A reason naming what went wrong, and the floor Event Grid's probation applies.
fn describe_error(error: &reqwest::Error, timeout: Duration) -> (String, Option<Duration>) {
    let socket_floor = Some(Duration::from_secs(30));
    if error.is_timeout() {
        let (what, after) = match error.is_connect() {
            true => ("connect timed out", CONNECT_TIMEOUT.min(timeout)),
            false => ("timed out", timeout),
        };
        return (format!("{what} after {}", human_duration(after)), None);
    }
    // Walk the source chain: its texts name the cause, an io::Error gives its kind.
    let (mut texts, mut refused) = (Vec::<String>::new(), false);
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        let text = current.to_string();
        if !texts.iter().any(|seen| seen.contains(&text)) {
            texts.push(text);
        }
        let io = current.downcast_ref::<std::io::Error>();
        refused |= io.is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
        source = current.source();
    }
    let chain = texts.join(": ");
    if refused {
        (format!("connection refused ({chain})"), socket_floor)
    } else if chain.contains("dns error") {
        let floor = Some(Duration::from_secs(300));
        (format!("DNS resolution failed ({chain})"), floor)
    } else if error.is_builder() {
        (format!("invalid request ({chain})"), None)
    } else if error.is_connect() {
        (format!("connection failed ({chain})"), socket_floor)
    } else {
        (format!("network error ({chain})"), socket_floor)
    }
}

/// "30s" for whole seconds, "250ms" otherwise.
fn human_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// The body Event Grid POSTs for the synchronous handshake: a one-element array holding a
/// `Microsoft.EventGrid.SubscriptionValidationEvent` (`dataVersion` "2",
/// `metadataVersion` "1", empty `subject`, RFC 3339 `eventTime`, fresh UUID `id`).
pub fn subscription_validation_event(
    topic_resource: &str,
    validation_code: &str,
    validation_url: &str,
) -> serde_json::Value {
    let event_time = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    serde_json::json!([{
        "id": uuid::Uuid::new_v4().to_string(),
        "topic": topic_resource,
        "subject": "",
        "data": { "validationCode": validation_code, "validationUrl": validation_url },
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": event_time,
        "metadataVersion": "1",
        "dataVersion": "2",
    }])
}

/// Event Grid schema handshake: POSTs [`subscription_validation_event`] with
/// `aeg-event-type: SubscriptionValidation`. `Validated` when the endpoint answers
/// 200 OK with JSON `{"validationResponse": "<code>"}` (key matched exactly);
/// `AwaitingManualValidation` when it answers 200 without the code; `Failed` for any
/// other status (202 included), a timeout after [`DELIVERY_TIMEOUT`] or a network error.
/// Azure retries a timed-out attempt after 5 s; doing so is the caller's choice.
pub async fn validate_event_grid(
    client: &reqwest::Client,
    url: &str,
    topic_resource: &str,
    subscription: &str,
    validation_code: &str,
    validation_url: &str,
) -> Handshake {
    let event = subscription_validation_event(topic_resource, validation_code, validation_url);
    let delivery = Delivery {
        url,
        body: event.to_string().into_bytes(),
        content_type: EVENT_GRID_CONTENT_TYPE,
        headers: delivery_headers(subscription, SUBSCRIPTION_VALIDATION, 0, Some("2")),
        timeout: DELIVERY_TIMEOUT,
    };
    let mut response = match post(client, delivery).send().await {
        Ok(response) => response,
        Err(error) => return failed("validation request failed", &error),
    };
    let status = response.status().as_u16();
    if status != 200 {
        let reason = format!("endpoint answered {status} to the validation event, not 200 OK");
        return Handshake::Failed { reason };
    }
    let mut body = Vec::new();
    while body.len() < MAX_VALIDATION_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(error) => return failed("reading the validation answer failed", &error),
        }
    }
    judge_validation_response(&body, validation_code)
}

fn failed(what: &str, error: &reqwest::Error) -> Handshake {
    let (cause, _) = describe_error(error, DELIVERY_TIMEOUT);
    let reason = format!("{what}: {cause}");
    Handshake::Failed { reason }
}

fn judge_validation_response(body: &[u8], code: &str) -> Handshake {
    let minutes = MANUAL_VALIDATION_WINDOW.as_secs() / 60;
    let manual = |what: String| Handshake::AwaitingManualValidation {
        reason: format!(
            "endpoint answered 200 {what}; the subscription awaits a GET on its \
             validationUrl within {minutes} minutes"
        ),
    };
    let json = serde_json::from_slice::<serde_json::Value>(body).ok();
    let Some(object) = json.as_ref().and_then(|value| value.as_object()) else {
        return manual("without a JSON object body".into());
    };
    let mut keys = object.keys();
    let near_miss = keys.find(|key| key.eq_ignore_ascii_case("validationResponse"));
    match (object.get("validationResponse"), near_miss) {
        (Some(serde_json::Value::String(echoed)), _) if echoed == code => Handshake::Validated,
        (Some(other), _) => {
            let got = other.to_string();
            manual(format!(
                "with validationResponse {got:.80}, not the validation code"
            ))
        }
        (None, Some(key)) => manual(format!("with key {key:?}, not \"validationResponse\"")),
        (None, None) => manual("without a validationResponse".into()),
    }
}

/// CloudEvents 1.0 webhook abuse protection: sends `OPTIONS` with
/// `WebHook-Request-Origin: <origin>` (normally [`EVENT_GRID_ORIGIN`]). Like Event Grid it
/// sends no `WebHook-Request-Rate` or `WebHook-Request-Callback` and ignores any
/// `WebHook-Allowed-Rate`, so there is no asynchronous grant. `Validated` when the answer
/// is 200 with a `WebHook-Allowed-Origin` equal to the origin or `*` (ASCII
/// case-insensitive); otherwise `Failed` naming what was wrong.
pub async fn validate_cloud_events(client: &reqwest::Client, url: &str, origin: &str) -> Handshake {
    let request = client
        .request(reqwest::Method::OPTIONS, url)
        .timeout(DELIVERY_TIMEOUT)
        .header("WebHook-Request-Origin", origin);
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => return failed("abuse-protection request failed", &error),
    };
    let status = response.status().as_u16();
    let allowed: Vec<String> = (response.headers().get_all("WebHook-Allowed-Origin").iter())
        .map(|value| String::from_utf8_lossy(value.as_bytes()).trim().to_owned())
        .collect();
    let reason = if status != 200 {
        format!("endpoint answered {status} to the OPTIONS request, not 200 OK")
    } else if allowed.is_empty() {
        "endpoint answered 200 without a WebHook-Allowed-Origin header (Event Grid does \
         not support granting by WebHook-Request-Callback)"
            .into()
    } else if (allowed.iter()).any(|value| value == "*" || value.eq_ignore_ascii_case(origin)) {
        return Handshake::Validated;
    } else {
        let allowed = format!("{allowed:?}");
        format!("WebHook-Allowed-Origin is {allowed:.80}, expected {origin:?} or \"*\"")
    };
    Handshake::Failed { reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use hyper::body::{Bytes, Incoming};
    use hyper::{Request, Response, server::conn::http1, service::service_fn};
    use hyper_util::rt::TokioIo;
    use std::sync::{Arc, Mutex};

    /// One request as the test server saw it: head and body.
    type Seen = (hyper::http::request::Parts, Vec<u8>);
    type Log = Arc<Mutex<Vec<Seen>>>;
    type Headers = &'static [(&'static str, &'static str)];

    fn header<'a>((parts, _): &'a Seen, name: &str) -> Option<&'a str> {
        parts.headers.get(name).map(|value| value.to_str().unwrap())
    }

    /// Runs a real HTTP/1.1 server on 127.0.0.1:0; returns its endpoint URL and request log.
    /// Each answer is sent `delay` after the request arrived.
    async fn serve<F>(delay: Duration, answer: F) -> (String, Log)
    where
        F: Fn(&Seen) -> Response<Full<Bytes>> + Send + Sync + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (log, answer) = (Log::default(), Arc::new(answer));
        let state = (log.clone(), answer);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                let service = service_fn(move |request: Request<Incoming>| {
                    let (log, answer) = state.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await.unwrap().to_bytes().to_vec();
                        let response = answer(&(parts.clone(), body.clone()));
                        log.lock().unwrap().push((parts, body));
                        tokio::time::sleep(delay).await;
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let io = TokioIo::new(stream);
                tokio::spawn(http1::Builder::new().serve_connection(io, service));
            }
        });
        (format!("http://{addr}/api/events"), log)
    }

    fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Response<Full<Bytes>> {
        let builder = Response::builder().status(status);
        let builder = headers.iter().fold(builder, |b, (k, v)| b.header(*k, *v));
        let body = Full::new(Bytes::from(body.to_owned()));
        builder.body(body).unwrap()
    }

    /// A server answering each request with the status named in its `x-answer` header.
    async fn status_server() -> (String, Log) {
        serve(Duration::ZERO, |seen| {
            let status = header(seen, "x-answer").unwrap_or("200").parse().unwrap();
            reply(status, &[("location", "/elsewhere")], "")
        })
        .await
    }

    const BODY: &[u8] = br#"[{"id":"1"}]"#;

    fn delivery(url: &str, headers: Vec<(String, String)>) -> Delivery<'_> {
        let body = BODY.to_vec();
        let (content_type, timeout) = (EVENT_GRID_CONTENT_TYPE, DELIVERY_TIMEOUT);
        Delivery {
            url,
            body,
            content_type,
            headers,
            timeout,
        }
    }

    async fn deliver_answered(url: &str, status: u16) -> DeliveryOutcome {
        let answer = vec![("x-answer".to_owned(), status.to_string())];
        deliver(&client(), delivery(url, answer)).await
    }

    #[tokio::test]
    async fn server_answering_400_is_dead_lettered_without_retry() {
        let (url, log) = status_server().await;
        let outcome = deliver_answered(&url, 400).await;
        let reason = "endpoint answered 400 Bad Request, which Event Grid never retries".into();
        let status = 400;
        assert_eq!(outcome, DeliveryOutcome::DeadLetter { status, reason });
        assert_eq!(log.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn every_status_is_classified_like_the_delivery_and_retry_doc() {
        let (url, log) = status_server().await;
        for status in [200, 201, 202, 203, 204] {
            let delivered = DeliveryOutcome::Delivered { status };
            assert_eq!(deliver_answered(&url, status).await, delivered);
        }
        for status in [400, 401, 403, 413] {
            let outcome = deliver_answered(&url, status).await;
            assert!(
                matches!(outcome, DeliveryOutcome::DeadLetter { status: s, .. } if s == status)
            );
        }
        let floors = [(404, 300), (408, 120), (503, 30)].map(|(s, f)| (s, Some(f)));
        let normal = [205, 429, 500, 502, 504].map(|s| (s, None));
        for (status, floor) in floors.into_iter().chain(normal) {
            let phrase = reqwest::StatusCode::from_u16(status).unwrap();
            let phrase = phrase.canonical_reason().unwrap();
            let reason = format!("endpoint answered {status} {phrase}");
            let expected = retry(Some(status), reason, floor.map(Duration::from_secs));
            assert_eq!(deliver_answered(&url, status).await, expected);
        }
        let reason = "endpoint answered 302 Found; redirect not followed".to_owned();
        assert_eq!(
            deliver_answered(&url, 302).await,
            retry(Some(302), reason, None)
        );
        // One request per delivery: the 302's Location was never fetched.
        assert_eq!(log.lock().unwrap().len(), 5 + 4 + 3 + 5 + 1);
        // Codes no real server can send are still classified without panicking.
        for status in [0, 999, u16::MAX] {
            assert!(matches!(
                outcome_for_status(status),
                DeliveryOutcome::Retry { .. }
            ));
        }
    }

    #[tokio::test]
    async fn slow_endpoint_times_out_and_is_retried() {
        let (url, _) = serve(Duration::from_secs(5), |_| reply(200, &[], "")).await;
        let mut slow = delivery(&url, Vec::new());
        slow.timeout = Duration::from_millis(200);
        let expected = retry(None, "timed out after 200ms".into(), None);
        assert_eq!(deliver(&client(), slow).await, expected);
        assert_eq!(human_duration(DELIVERY_TIMEOUT), "30s");
    }

    #[tokio::test]
    async fn refused_connection_is_retried_with_reason_naming_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/api/events", listener.local_addr().unwrap());
        drop(listener);
        let outcome = deliver(&client(), delivery(&url, vec![])).await;
        let DeliveryOutcome::Retry { reason, .. } = &outcome else {
            panic!("expected retry, got {outcome:?}");
        };
        assert!(reason.starts_with("connection refused"), "{reason}");
        let socket_floor = Some(Duration::from_secs(30));
        assert_eq!(outcome, retry(None, reason.clone(), socket_floor));
    }

    #[tokio::test]
    async fn malformed_url_or_header_is_an_outcome_not_a_panic() {
        let outcome = deliver(&client(), delivery("no url", vec![])).await;
        let DeliveryOutcome::Retry { reason, .. } = &outcome else {
            panic!("expected retry, got {outcome:?}");
        };
        assert!(reason.starts_with("invalid request"), "{reason}");
        let (url, log) = status_server().await;
        let bad = vec![("bad header".to_owned(), "x\ny".to_owned())];
        let outcome = deliver(&client(), delivery(&url, bad)).await;
        assert!(matches!(
            outcome,
            DeliveryOutcome::Retry { status: None, .. }
        ));
        assert!(log.lock().unwrap().is_empty());
        let handshake = validate_cloud_events(&client(), &url, "o\nrigin").await;
        assert_eq!(verdict(handshake).0, "failed");
        let handshake = validate_event_grid(&client(), "::", "t", "s", "c", "u").await;
        assert_eq!(verdict(handshake).0, "failed");
    }

    #[tokio::test]
    async fn delivery_sends_event_grid_headers() {
        let (url, log) = status_server().await;
        let mut headers = delivery_headers("my-Sub-1", NOTIFICATION, 0, Some("1.0"));
        headers.push(("x-custom".into(), "value".into()));
        let outcome = deliver(&client(), delivery(&url, headers)).await;
        assert_eq!(outcome, DeliveryOutcome::Delivered { status: 200 });
        let seen = log.lock().unwrap()[0].clone();
        assert_eq!((seen.0.method.as_str(), &seen.1[..]), ("POST", BODY));
        for (name, value) in [
            ("content-type", "application/json; charset=utf-8"),
            ("user-agent", "sluice-eventgrid/1"),
            ("aeg-event-type", "Notification"),
            ("aeg-subscription-name", "MY-SUB-1"),
            ("aeg-delivery-count", "0"),
            ("aeg-data-version", "1.0"),
            ("aeg-metadata-version", "1"),
            ("x-custom", "value"),
        ] {
            assert_eq!(header(&seen, name), Some(value), "{name}");
        }
        let cloud = delivery_headers("s", NOTIFICATION, 3, None);
        assert_eq!(cloud[2], ("aeg-delivery-count".into(), "3".into()));
        assert_eq!(cloud[3], ("aeg-data-version".into(), String::new()));
    }

    const CODE: &str = "512d38b6-c7b8-40c8-89fe-f46f9e9622b6";
    const ECHO: &str = r#"{"validationResponse":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}"#;
    const CHECK_URL: &str = "https://rp-eastus2.eventgrid.azure.net:553/s/validate?id=1";
    const TOPIC: &str = "/subscriptions/0/resourceGroups/rg/providers/Microsoft.EventGrid/topics/t";

    async fn validate_against(status: u16, body: &'static str) -> (Handshake, Log) {
        let (url, log) = serve(Duration::ZERO, move |_| reply(status, &[], body)).await;
        let client = client();
        let handshake = validate_event_grid(&client, &url, TOPIC, "mysub", CODE, CHECK_URL);
        (handshake.await, log)
    }

    /// The handshake's kind and reason, for one-line assertions.
    fn verdict(handshake: Handshake) -> (&'static str, String) {
        match handshake {
            Handshake::Validated => ("validated", String::new()),
            Handshake::AwaitingManualValidation { reason } => ("manual", reason),
            Handshake::Failed { reason } => ("failed", reason),
        }
    }

    #[tokio::test]
    async fn endpoint_echoing_validation_code_is_validated() {
        let (handshake, log) = validate_against(200, ECHO).await;
        assert_eq!(handshake, Handshake::Validated);
        let seen = log.lock().unwrap()[0].clone();
        assert_eq!(seen.0.method, "POST");
        let aeg = [
            "aeg-event-type",
            "aeg-subscription-name",
            "aeg-delivery-count",
        ];
        let aeg = aeg.map(|name| header(&seen, name).unwrap());
        assert_eq!(aeg, ["SubscriptionValidation", "MYSUB", "0"]);
        let mut sent: serde_json::Value = serde_json::from_slice(&seen.1).unwrap();
        let id = sent[0]["id"].take();
        assert!(uuid::Uuid::parse_str(id.as_str().unwrap()).is_ok(), "{id}");
        let time = sent[0]["eventTime"].take().as_str().unwrap().to_owned();
        assert!(
            time.len() >= 20 && &time[10..11] == "T" && time.ends_with('Z'),
            "{time}"
        );
        let expected = serde_json::json!([{
            "id": null, "topic": TOPIC, "subject": "",
            "data": { "validationCode": CODE, "validationUrl": CHECK_URL },
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "eventTime": null, "metadataVersion": "1", "dataVersion": "2",
        }]);
        assert_eq!(sent, expected);
    }

    #[tokio::test]
    async fn endpoint_ignoring_validation_code_awaits_manual_validation() {
        for body in ["", "ok", "{}", r#"{"validationResponse":"wrong"}"#] {
            let (kind, reason) = verdict(validate_against(200, body).await.0);
            assert_eq!(kind, "manual");
            assert!(
                reason.contains("validationUrl within 10 minutes"),
                "{reason}"
            );
        }
        let pascal = r#"{"ValidationResponse":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}"#;
        let (kind, reason) = verdict(validate_against(200, pascal).await.0);
        assert_eq!(kind, "manual");
        assert!(reason.contains("key \"ValidationResponse\""), "{reason}");
    }

    #[tokio::test]
    async fn endpoint_not_answering_200_fails_validation() {
        for status in [202, 404, 500] {
            let (kind, reason) = verdict(validate_against(status, ECHO).await.0);
            assert_eq!(kind, "failed");
            assert!(reason.contains(&format!("answered {status} ")), "{reason}");
        }
    }

    async fn options_answered(status: u16, headers: Headers) -> (Handshake, Log) {
        let (url, log) = serve(Duration::ZERO, move |_| reply(status, headers, "")).await;
        let handshake = validate_cloud_events(&client(), &url, EVENT_GRID_ORIGIN).await;
        (handshake, log)
    }

    #[tokio::test]
    async fn cloud_events_endpoint_allowing_origin_passes_abuse_protection() {
        let allowed: Headers = &[("WebHook-Allowed-Origin", "eventgrid.azure.net")];
        let (handshake, log) = options_answered(200, allowed).await;
        assert_eq!(handshake, Handshake::Validated);
        let seen = log.lock().unwrap()[0].clone();
        assert_eq!(seen.0.method, "OPTIONS");
        let sent = ["webhook-request-origin", "webhook-request-rate"].map(|h| header(&seen, h));
        assert_eq!(sent, [Some("eventgrid.azure.net"), None]);
        let upper: Headers = &[("webhook-allowed-origin", "EventGrid.Azure.NET")];
        let star: Headers = &[("WebHook-Allowed-Origin", "*")];
        for headers in [upper, star] {
            assert_eq!(options_answered(200, headers).await.0, Handshake::Validated);
        }
    }

    #[tokio::test]
    async fn cloud_events_endpoint_not_allowing_origin_fails() {
        let other: Headers = &[("WebHook-Allowed-Origin", "other.example.com")];
        let allow: Headers = &[("Allow", "POST, OPTIONS")];
        let cases: [(u16, Headers, &str); 3] = [
            (200, other, "is [\"other.example.com\"], expected"),
            (200, allow, "without a WebHook-Allowed-Origin"),
            (405, &[], "answered 405 to the OPTIONS"),
        ];
        for (status, headers, expected) in cases {
            let (kind, reason) = verdict(options_answered(status, headers).await.0);
            assert_eq!(kind, "failed");
            assert!(reason.contains(expected), "{reason}");
        }
    }
}
